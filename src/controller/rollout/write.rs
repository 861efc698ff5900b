//! Writing one target Secret and nudging the Pods that mount it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::content::Content;
use super::managed::{Known, ManagedSecrets, data_digest};
use super::targets::{Wanted, target_allowed};
use super::{
    MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION, OWNER_UID_LABEL, REVISION_ANNOTATION, RolloutReason,
    RolloutSettings, owner_of,
};
use crate::api::v1alpha1::License;
use crate::controller::echoes::WriteEchoes;

/// What happened to one target: the Pods carrying the revision when written, or why not.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOutcome {
    pub wanted: Wanted,
    pub result: Result<Option<u32>, RolloutReason>,
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

/// What Keyward knows of its target Secrets: the watch echoes of its own writes still to come,
/// and what the targets' watch last showed.
type Ledger<'a> = (&'a WriteEchoes, &'a ManagedSecrets);

async fn write_target(
    client: &Client,
    (echoes, managed): Ledger<'_>,
    license: &License,
    w: &Wanted,
    content: &Content,
) -> Result<Written, kube::Error> {
    let uid = license.uid().unwrap_or_default();
    let key = (w.namespace.clone(), w.secret_name.clone());
    let api: Api<Secret> = Api::namespaced(client.clone(), &w.namespace);
    let desired = managed_secret(license, w, content);
    let digest = data_digest(desired.data.as_ref());
    match managed.known(&key, &uid, &content.revision, &digest) {
        Known::Holds => Ok(Written::UpToDate),
        Known::Differs { resource_version } => match replace_at(&api, echoes, &desired, resource_version).await? {
            Some(written) => Ok(written),
            None => read_and_write(&api, echoes, desired, &uid, &content.revision).await,
        },
        Known::Unknown => read_and_write(&api, echoes, desired, &uid, &content.revision).await,
    }
}

/// Replaces the target at the version the watch shows, without reading it first. `None` when
/// the index is behind (409, or 404 if it is gone): the caller reads the Secret instead.
async fn replace_at(
    api: &Api<Secret>,
    echoes: &WriteEchoes,
    desired: &Secret,
    resource_version: String,
) -> Result<Option<Written>, kube::Error> {
    let mut at_version = desired.clone();
    at_version.metadata.resource_version = Some(resource_version);
    match api
        .replace(&desired.name_any(), &PostParams::default(), &at_version)
        .await
    {
        Ok(replaced) => {
            echoes.record(&replaced.metadata);
            Ok(Some(Written::Changed))
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the target, then creates it, leaves it (it holds the content already, or someone else
/// owns it) or replaces it at the version read: a concurrent writer makes that fail and retry.
async fn read_and_write(
    api: &Api<Secret>,
    echoes: &WriteEchoes,
    mut desired: Secret,
    uid: &str,
    revision: &str,
) -> Result<Written, kube::Error> {
    let name = desired.name_any();
    let Some(existing) = api.get_opt(&name).await? else {
        echoes.record(&api.create(&PostParams::default(), &desired).await?.metadata);
        return Ok(Written::Changed);
    };
    let owner_uid = existing.labels().get(OWNER_UID_LABEL).map(String::as_str);
    if owner_of(&existing.metadata).is_none() || owner_uid != Some(uid) {
        return Ok(Written::Conflict);
    }
    let same_data = existing.data == desired.data;
    let same_revision = existing.annotations().get(REVISION_ANNOTATION).map(String::as_str) == Some(revision);
    if same_data && same_revision {
        return Ok(Written::UpToDate);
    }
    desired.metadata.resource_version = existing.metadata.resource_version;
    let replaced = api.replace(&name, &PostParams::default(), &desired).await?;
    echoes.record(&replaced.metadata);
    Ok(Written::Changed)
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

/// Writes one target (if the License may) and nudges its Pods.
pub async fn roll_out_target(
    client: &Client,
    ledger: Ledger<'_>,
    license: &License,
    wanted: Wanted,
    content: &Content,
    settings: &RolloutSettings,
) -> TargetOutcome {
    let own = license.namespace().unwrap_or_default();
    let result = if !target_allowed(&own, &wanted.namespace, settings) {
        Err(RolloutReason::TargetNotAllowed)
    } else {
        write_and_nudge(client, ledger, license, &wanted, content).await
    };
    TargetOutcome { wanted, result }
}

async fn write_and_nudge(
    client: &Client,
    ledger: Ledger<'_>,
    license: &License,
    w: &Wanted,
    content: &Content,
) -> Result<Option<u32>, RolloutReason> {
    match write_target(client, ledger, license, w, content).await {
        Ok(Written::Conflict) => Err(RolloutReason::TargetConflict),
        Ok(written) => {
            if matches!(written, Written::Changed) {
                info!(namespace = %w.namespace, secret = %w.secret_name, revision = %content.revision,
                    "target Secret updated");
            }
            let Some(selector) = &w.pod_selector else {
                return Ok(None);
            };
            match nudge_pods(client, &w.namespace, selector, &content.revision).await {
                Ok(n) => Ok(Some(n)),
                Err(e) => {
                    warn!(namespace = %w.namespace, error = %e, "could not annotate Pods");
                    Ok(None)
                }
            }
        }
        Err(e) => {
            warn!(namespace = %w.namespace, secret = %w.secret_name, error = %e, "could not write target Secret");
            Err(RolloutReason::WriteFailed)
        }
    }
}
