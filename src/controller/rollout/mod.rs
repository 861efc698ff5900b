//! Delivering a verified key to the workloads that need it, without restarting them.
//!
//! For each target namespace Keyward keeps a Secret holding `license` and `license.json`, labelled
//! as managed by Keyward for one License (by UID: owner references cannot cross namespaces). It
//! never overwrites a Secret it does not manage, never writes a refused key, and nudges running
//! Pods with an annotation so the kubelet refreshes their mounted Secret within seconds. It never
//! touches pod templates and never deletes Pods.
//!
//! This module owns what can be found about a rollout: [`RolloutSummary`] and [`RolloutReason`].

mod cleanup;
pub mod content;
mod managed;
mod targets;
mod write;

use std::collections::BTreeSet;

use futures::StreamExt;
use kube::Client;
use kube::api::ObjectMeta;

pub use cleanup::{remove_all, sweep_orphans};
use content::Content;
pub use managed::{ManagedSecrets, SecretKey, selector as managed_selector, unmanaged_selector};
pub use targets::{Targets, Wanted, namespaces, resolve};
use write::{TargetOutcome, roll_out_target};

use super::echoes::WriteEchoes;

use super::error::Error;
use super::finding::{Finding, Reason, reasons};
use crate::api::v1alpha1::{License, RolloutStatus, TargetStatus};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "keyward";
pub const OWNER_UID_LABEL: &str = "keyward.dev/owner-uid";
pub const OWNER_ANNOTATION: &str = "keyward.dev/license";
pub const REVISION_ANNOTATION: &str = "keyward.dev/license-revision";

/// Parallel writes per rollout: enough to cover 100 namespaces in a few round trips.
const CONCURRENCY: usize = 16;

reasons! {
    /// Where a rollout stands: the `RolledOut` condition's reason, and a target's when it is not
    /// up to date.
    pub enum RolloutReason {
        RolledOut,
        InvalidSpec,
        /// The current key was refused: targets keep the last good key.
        KeyNotValid,
        TargetConflict,
        TargetNotAllowed,
        WriteFailed,
    }
}

/// Failing reasons, most actionable first: the one the condition shows when several apply.
const FAILURE_PRECEDENCE: [RolloutReason; 3] = [
    RolloutReason::TargetConflict,
    RolloutReason::TargetNotAllowed,
    RolloutReason::WriteFailed,
];

/// Where rollout may write, from the operator's installation.
#[derive(Debug, Clone, Default)]
pub struct RolloutSettings {
    /// The operator's own namespace: Licenses there may target any namespace.
    pub operator_namespace: Option<String>,
    pub allow_cross_namespace_targets: bool,
    /// Whether the operator watches every namespace (and may list namespaces).
    pub cluster_wide: bool,
}

/// The result of rolling the key out, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSummary {
    pub status: RolloutStatus,
    pub finding: Finding<RolloutReason>,
}

impl RolloutSummary {
    pub fn rolled_out(&self) -> bool {
        self.finding.reason == RolloutReason::RolledOut
    }
}

/// The owner of a managed Secret, as `namespace/name`, from its annotation.
pub fn owner_of(meta: &ObjectMeta) -> Option<(String, String)> {
    let managed = meta.labels.as_ref()?.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY);
    let owner = meta.annotations.as_ref()?.get(OWNER_ANNOTATION)?;
    let (ns, name) = owner.split_once('/')?;
    managed.then(|| (ns.to_string(), name.to_string()))
}

/// The UID of the License a Secret is labelled as managed for (Keyward's labels only).
pub fn owner_uid_label(meta: &ObjectMeta) -> Option<&str> {
    let labels = meta.labels.as_ref()?;
    let managed = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY);
    managed
        .then(|| labels.get(OWNER_UID_LABEL).map(String::as_str))
        .flatten()
}

/// Rolls `content` out, or, with no verified key (`content` is `None`), leaves every target as it is.
pub async fn roll_out(
    client: &Client,
    echoes: &WriteEchoes,
    managed: &ManagedSecrets,
    license: &License,
    targets: &Targets,
    content: Option<&Content>,
    settings: &RolloutSettings,
) -> Result<Option<RolloutSummary>, Error> {
    if license.spec.rollout.as_ref().is_none_or(|r| r.targets.is_empty()) {
        // Targets were removed from the spec: their Secrets go too. Licenses that never had
        // targets skip the lookup.
        let had_targets = license.status.as_ref().is_some_and(|s| s.rollout.is_some());
        if had_targets && content.is_some() {
            cleanup::remove_all(client, license, settings).await?;
        }
        return Ok(None);
    }
    let wanted = match targets {
        Ok(w) => w.clone(),
        Err(finding) => return Ok(Some(invalid_spec(finding))),
    };
    let Some(content) = content else {
        return Ok(Some(kept_last_good(license, wanted.len() as u32)));
    };
    let outcomes: Vec<TargetOutcome> = futures::stream::iter(wanted)
        .map(|w| roll_out_target(client, (echoes, managed), license, w, content, settings))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    // A Secret someone else owns is never pruned; every other unwanted one of ours goes.
    let keep: BTreeSet<(String, String)> = outcomes
        .iter()
        .filter(|o| o.result != Err(RolloutReason::TargetConflict))
        .map(|o| (o.wanted.namespace.clone(), o.wanted.secret_name.clone()))
        .collect();
    cleanup::prune(client, managed, license, &keep).await?;
    let summary = summarise(&outcomes, &content.revision);
    if outcomes.iter().any(|o| o.result == Err(RolloutReason::WriteFailed)) {
        // A transient API error: retry with backoff rather than report a settled state.
        return Err(Error::Rollout(summary.finding.message));
    }
    Ok(Some(summary))
}

fn invalid_spec(finding: &Finding<RolloutReason>) -> RolloutSummary {
    RolloutSummary {
        status: RolloutStatus {
            summary: "0/0".into(),
            ..RolloutStatus::default()
        },
        finding: finding.clone(),
    }
}

/// Fail safe: a refused key changes nothing downstream. Every target still holds the revision it
/// had, which is the last good key, not the current one: none is up to date.
fn kept_last_good(license: &License, total: u32) -> RolloutSummary {
    let prev = license.status.as_ref().and_then(|s| s.rollout.clone());
    let details = prev
        .iter()
        .flat_map(|p| p.details.iter())
        .map(|t| TargetStatus {
            up_to_date: false,
            reason: Some(RolloutReason::KeyNotValid.as_str().into()),
            ..t.clone()
        })
        .collect();
    let revision = prev.and_then(|p| p.revision);
    let message = match &revision {
        Some(r) => format!("the current key was refused; target Secrets keep the last good key (revision {r})"),
        None => "the current key was refused; no key has been rolled out".to_string(),
    };
    RolloutSummary {
        status: RolloutStatus {
            targets: total,
            up_to_date: 0,
            summary: format!("0/{total}"),
            revision,
            details,
            ..RolloutStatus::default()
        },
        finding: Finding::new(RolloutReason::KeyNotValid, message),
    }
}

fn summarise(outcomes: &[TargetOutcome], revision: &str) -> RolloutSummary {
    let total = outcomes.len() as u32;
    let up_to_date = outcomes.iter().filter(|o| o.result.is_ok()).count() as u32;
    let failing: Vec<(&Wanted, RolloutReason)> = outcomes
        .iter()
        .filter_map(|o| o.result.err().map(|r| (&o.wanted, r)))
        .collect();
    let finding = match FAILURE_PRECEDENCE
        .into_iter()
        .find(|reason| failing.iter().any(|(_, r)| r == reason))
    {
        None => Finding::new(
            RolloutReason::RolledOut,
            format!("{up_to_date}/{total} target Secrets hold revision {revision}"),
        ),
        Some(reason) => {
            let list: Vec<String> = failing
                .iter()
                .map(|(w, r)| format!("{}/{} ({r})", w.namespace, w.secret_name))
                .collect();
            Finding::new(
                reason,
                format!(
                    "{up_to_date}/{total} target Secrets up to date; not written: {}",
                    list.join(", ")
                ),
            )
        }
    };
    RolloutSummary {
        status: RolloutStatus {
            targets: total,
            up_to_date,
            summary: format!("{up_to_date}/{total}"),
            revision: Some(revision.to_string()),
            details: outcomes.iter().map(target_status).collect(),
            ..RolloutStatus::default()
        },
        finding,
    }
}

fn target_status(o: &TargetOutcome) -> TargetStatus {
    TargetStatus {
        namespace: o.wanted.namespace.clone(),
        secret_name: o.wanted.secret_name.clone(),
        up_to_date: o.result.is_ok(),
        reason: o.result.err().map(|r| r.as_str().to_string()),
        pods: o.result.ok().flatten(),
    }
}
