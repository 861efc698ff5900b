//! Delivering a verified key to the workloads that need it, without restarting them.
//!
//! For each target namespace Keyward keeps a Secret holding `license` and `license.json`, labelled
//! as managed by Keyward for one License (by UID: owner references cannot cross namespaces). It
//! never overwrites a Secret it does not manage, never writes a refused key, and nudges running
//! Pods with an annotation so the kubelet refreshes their mounted Secret within seconds. It never
//! touches pod templates and never deletes Pods.

pub mod content;

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::{PartialObjectMeta, Selector};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::error::Error;
use super::status::RolloutSummary;
use crate::api::v1alpha1::{License, RolloutStatus, TargetStatus};
use content::{Content, target_allowed};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "keyward";
pub const OWNER_UID_LABEL: &str = "keyward.dev/owner-uid";
pub const OWNER_ANNOTATION: &str = "keyward.dev/license";
pub const REVISION_ANNOTATION: &str = "keyward.dev/license-revision";

/// Where rollout may write, from the operator's installation.
#[derive(Debug, Clone, Default)]
pub struct RolloutSettings {
    /// The operator's own namespace: Licenses there may target any namespace.
    pub operator_namespace: Option<String>,
    pub allow_cross_namespace_targets: bool,
    /// Whether the operator watches every namespace (and may list namespaces).
    pub cluster_wide: bool,
}

/// Parallel writes per rollout: enough to cover 100 namespaces in a few round trips.
const CONCURRENCY: usize = 16;

/// One target Secret in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    namespace: String,
    secret_name: String,
    pod_selector: Option<String>,
}

/// The owner of a managed Secret, as `namespace/name`, from its annotation.
pub fn owner_of(meta: &ObjectMeta) -> Option<(String, String)> {
    let managed = meta.labels.as_ref()?.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY);
    let owner = meta.annotations.as_ref()?.get(OWNER_ANNOTATION)?;
    let (ns, name) = owner.split_once('/')?;
    managed.then(|| (ns.to_string(), name.to_string()))
}

fn selector_string(selector: &LabelSelector, field: &str) -> Result<String, String> {
    Selector::try_from(selector.clone())
        .map(|s| s.to_string())
        .map_err(|e| format!("{field}: {e}"))
}

/// A License's targets resolved to (namespace, Secret) pairs, or the spec error that prevents it.
pub type Targets = Result<Vec<Wanted>, String>;

/// Resolves the License's targets once per reconcile (rollout and seat counting both use them).
/// Only `namespaceSelector` targets cost an API call.
pub async fn resolve(client: &Client, license: &License, settings: &RolloutSettings) -> Result<Targets, kube::Error> {
    let own = license.namespace().unwrap_or_default();
    let mut out = BTreeSet::new();
    for (i, target) in license.spec.rollout.iter().flat_map(|r| r.targets.iter()).enumerate() {
        if target.secret_name.is_empty() {
            return Ok(Err(format!("spec.rollout.targets[{i}].secretName is empty")));
        }
        let pod_selector = match &target.pod_selector {
            Some(s) => match selector_string(s, &format!("spec.rollout.targets[{i}].podSelector")) {
                Ok(s) => Some(s),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        };
        let namespaces = match (&target.namespace, &target.namespace_selector) {
            (Some(ns), _) => vec![ns.clone()],
            (None, Some(selector)) => {
                let selector = match selector_string(selector, &format!("spec.rollout.targets[{i}].namespaceSelector"))
                {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                if !settings.cluster_wide {
                    return Ok(Err(
                        "namespaceSelector needs an operator that watches all namespaces".into()
                    ));
                }
                let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
                let list = namespaces
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await?;
                list.items
                    .into_iter()
                    .filter(|n| n.metadata.deletion_timestamp.is_none())
                    .map(|n| n.name_any())
                    .collect()
            }
            (None, None) => vec![own.clone()],
        };
        for namespace in namespaces {
            out.insert(Wanted {
                namespace,
                secret_name: target.secret_name.clone(),
                pod_selector: pod_selector.clone(),
            });
        }
    }
    Ok(Ok(out.into_iter().collect()))
}

/// The distinct namespaces of resolved targets.
pub fn namespaces(targets: &[Wanted]) -> Vec<String> {
    let unique: BTreeSet<&str> = targets.iter().map(|w| w.namespace.as_str()).collect();
    unique.into_iter().map(str::to_string).collect()
}

fn managed_secret(license: &License, w: &Wanted, content: &Content) -> Secret {
    let owner = format!("{}/{}", license.namespace().unwrap_or_default(), license.name_any());
    Secret {
        metadata: ObjectMeta {
            name: Some(w.secret_name.clone()),
            namespace: Some(w.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.into(), MANAGED_BY.into()),
                (OWNER_UID_LABEL.into(), license.uid().unwrap_or_default()),
            ])),
            annotations: Some(BTreeMap::from([
                (OWNER_ANNOTATION.into(), owner),
                (REVISION_ANNOTATION.into(), content.revision.clone()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            content
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Secret::default()
    }
}

enum Written {
    UpToDate,
    Changed,
    Conflict,
}

async fn write_target(
    client: &Client,
    license: &License,
    w: &Wanted,
    content: &Content,
) -> Result<Written, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &w.namespace);
    let mut desired = managed_secret(license, w, content);
    match api.get_opt(&w.secret_name).await? {
        None => {
            api.create(&PostParams::default(), &desired).await?;
            Ok(Written::Changed)
        }
        Some(existing) => {
            let uid = existing.labels().get(OWNER_UID_LABEL).cloned();
            if owner_of(&existing.metadata).is_none() || uid != license.uid() {
                return Ok(Written::Conflict);
            }
            let same_data = existing.data == desired.data;
            let same_revision = existing.annotations().get(REVISION_ANNOTATION) == Some(&content.revision);
            if same_data && same_revision {
                return Ok(Written::UpToDate);
            }
            // Replace with the resourceVersion read: a concurrent writer makes this fail and retry.
            desired.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&w.secret_name, &PostParams::default(), &desired).await?;
            Ok(Written::Changed)
        }
    }
}

/// Annotates matching running Pods with the revision; returns how many carry it.
async fn nudge_pods(client: &Client, namespace: &str, selector: &str, revision: &str) -> Result<u32, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut at_revision = 0;
    for pod in pods.list(&ListParams::default().labels(selector)).await? {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if pod.annotations().get(REVISION_ANNOTATION).map(String::as_str) != Some(revision) {
            let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision}}});
            pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        at_revision += 1;
    }
    Ok(at_revision)
}

fn managed_secrets_api(client: &Client, license: &License, settings: &RolloutSettings) -> Api<Secret> {
    if settings.cluster_wide {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &license.namespace().unwrap_or_default())
    }
}

fn owned_by(license: &License) -> ListParams {
    ListParams::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{OWNER_UID_LABEL}={}",
        license.uid().unwrap_or_default()
    ))
}

/// Deletes this License's managed Secrets not in `keep`.
async fn prune(
    client: &Client,
    license: &License,
    settings: &RolloutSettings,
    keep: &BTreeSet<(String, String)>,
) -> Result<(), kube::Error> {
    let secrets = managed_secrets_api(client, license, settings);
    for secret in secrets.list_metadata(&owned_by(license)).await? {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        if !keep.contains(&key) {
            let api: Api<Secret> = Api::namespaced(client.clone(), &key.0);
            match api.delete(&key.1, &DeleteParams::default()).await {
                Ok(_) => info!(namespace = %key.0, secret = %key.1, "removed target Secret no longer wanted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Removes every Secret this License manages (on deletion).
pub async fn remove_all(client: &Client, license: &License, settings: &RolloutSettings) -> Result<(), kube::Error> {
    prune(client, license, settings, &BTreeSet::new()).await
}

/// Rolls `content` out, or, with no verified key (`content` is `None`), leaves every target as it is.
pub async fn roll_out(
    client: &Client,
    license: &License,
    targets: &Targets,
    content: Option<&Content>,
    settings: &RolloutSettings,
) -> Result<Option<RolloutSummary>, Error> {
    let has_targets = license.spec.rollout.as_ref().is_some_and(|r| !r.targets.is_empty());
    if !has_targets {
        // Targets were removed from the spec: their Secrets go too. Licenses that never had
        // targets skip the lookup.
        let had_targets = license.status.as_ref().is_some_and(|s| s.rollout.is_some());
        if had_targets && content.is_some() {
            prune(client, license, settings, &BTreeSet::new()).await?;
        }
        return Ok(None);
    }
    let wanted = match targets {
        Ok(w) => w.clone(),
        Err(message) => {
            return Ok(Some(RolloutSummary {
                status: RolloutStatus {
                    summary: "0/0".into(),
                    ..RolloutStatus::default()
                },
                rolled_out: false,
                reason: "InvalidSpec".into(),
                message: message.clone(),
            }));
        }
    };
    let own = license.namespace().unwrap_or_default();
    let total = wanted.len() as u32;
    let Some(content) = content else {
        // Fail safe: a refused key changes nothing downstream.
        let prev = license.status.as_ref().and_then(|s| s.rollout.clone());
        return Ok(Some(RolloutSummary {
            status: prev.unwrap_or(RolloutStatus {
                targets: total,
                summary: format!("0/{total}"),
                ..RolloutStatus::default()
            }),
            rolled_out: false,
            reason: "KeyNotValid".into(),
            message: "the current key was refused; target Secrets keep the last good key".into(),
        }));
    };

    let results: Vec<TargetStatus> = futures::stream::iter(wanted)
        .map(|w| roll_out_target(client, license, w, content, settings, &own))
        .buffered(CONCURRENCY)
        .collect()
        .await;

    let keep: BTreeSet<(String, String)> = results
        .iter()
        .filter(|r| r.reason.as_deref() != Some("TargetConflict"))
        .map(|r| (r.namespace.clone(), r.secret_name.clone()))
        .collect();
    prune(client, license, settings, &keep).await?;

    let up_to_date = results.iter().filter(|r| r.up_to_date).count() as u32;
    let failing: Vec<&TargetStatus> = results.iter().filter(|r| !r.up_to_date).collect();
    let reason = ["TargetConflict", "TargetNotAllowed", "WriteFailed"]
        .into_iter()
        .find(|reason| failing.iter().any(|f| f.reason.as_deref() == Some(reason)))
        .unwrap_or("RolledOut");
    let message = if failing.is_empty() {
        format!("{up_to_date}/{total} target Secrets hold revision {}", content.revision)
    } else {
        let list: Vec<String> = failing
            .iter()
            .map(|f| {
                format!(
                    "{}/{} ({})",
                    f.namespace,
                    f.secret_name,
                    f.reason.as_deref().unwrap_or("?")
                )
            })
            .collect();
        format!(
            "{up_to_date}/{total} target Secrets up to date; not written: {}",
            list.join(", ")
        )
    };
    let rolled_out = failing.is_empty();
    let write_failed = failing.iter().any(|f| f.reason.as_deref() == Some("WriteFailed"));
    if write_failed {
        // A transient API error: retry with backoff rather than report a settled state.
        return Err(Error::Rollout(message));
    }
    Ok(Some(RolloutSummary {
        status: RolloutStatus {
            targets: total,
            up_to_date,
            summary: format!("{up_to_date}/{total}"),
            revision: Some(content.revision.clone()),
            details: results,
        },
        rolled_out,
        reason: reason.into(),
        message,
    }))
}

async fn roll_out_target(
    client: &Client,
    license: &License,
    w: Wanted,
    content: &Content,
    settings: &RolloutSettings,
    own: &str,
) -> TargetStatus {
    let mut status = TargetStatus {
        namespace: w.namespace.clone(),
        secret_name: w.secret_name.clone(),
        up_to_date: false,
        reason: None,
        pods: None,
    };
    let allowed = target_allowed(
        own,
        &w.namespace,
        settings.operator_namespace.as_deref(),
        settings.allow_cross_namespace_targets,
    );
    if !allowed {
        status.reason = Some("TargetNotAllowed".into());
        return status;
    }
    match write_target(client, license, &w, content).await {
        Ok(Written::Conflict) => status.reason = Some("TargetConflict".into()),
        Ok(written) => {
            if matches!(written, Written::Changed) {
                info!(namespace = %w.namespace, secret = %w.secret_name, revision = %content.revision, "target Secret updated");
            }
            status.up_to_date = true;
            if let Some(selector) = &w.pod_selector {
                match nudge_pods(client, &w.namespace, selector, &content.revision).await {
                    Ok(n) => status.pods = Some(n),
                    Err(e) => warn!(namespace = %w.namespace, error = %e, "could not annotate Pods"),
                }
            }
        }
        Err(e) => {
            warn!(namespace = %w.namespace, secret = %w.secret_name, error = %e, "could not write target Secret");
            status.reason = Some("WriteFailed".into());
        }
    }
    status
}

/// Deletes managed Secrets whose License no longer exists (deleted while the finalizer was
/// bypassed). Owners are looked up in the API, not a local cache, so another operator's
/// Licenses are never mistaken for orphans.
pub async fn sweep_orphans(client: &Client, namespace: Option<&str>) -> Result<usize, kube::Error> {
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut removed = 0;
    for secret in secrets
        .list_metadata(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")))
        .await?
    {
        let Some((ns, name)) = owner_of(&secret.metadata) else {
            continue;
        };
        let owner_uid = secret.labels().get(OWNER_UID_LABEL).cloned();
        let licenses: Api<License> = Api::namespaced(client.clone(), &ns);
        let alive = licenses
            .get_opt(&name)
            .await?
            .is_some_and(|l| l.meta().uid == owner_uid);
        if !alive {
            let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace().unwrap_or_default());
            match api.delete(&secret.name_any(), &DeleteParams::default()).await {
                Ok(_) => removed += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            info!(namespace = %secret.namespace().unwrap_or_default(), secret = %secret.name_any(), owner = %format!("{ns}/{name}"), "removed orphaned target Secret");
        }
    }
    Ok(removed)
}
