//! `status.rollout.consumers` and the `ConsumersLive` condition, from the [`ConsumerReport`]:
//! whether every Pod reading a target Secret sees the key in force.

use jiff::Timestamp;

use super::conditions::{self, Desired};
use super::events::{EventKind, PlannedEvent};
use crate::api::v1alpha1::{ConsumersStatus, LicenseStatus, StaleConsumer};
use crate::controller::consumers::ConsumerReport;
use crate::controller::finding::{ConditionType, reasons};

/// Pods listed by name in the status; the count covers the rest.
const LISTED: usize = 20;

reasons! {
    /// Reasons of the `ConsumersLive` condition, and of its event.
    pub enum ConsumersReason {
        AllLive,
        RestartRequired,
    }
}

/// Adds who reads the targets to a status that has a rollout; returns a Warning event when the
/// set of Pods needing a restart changes to a non-empty one (once per set, not per reconcile).
/// Without a report (no targets, or Pods not listed yet) the previous view is kept.
pub fn with_consumers(
    status: &mut LicenseStatus,
    prev: Option<&LicenseStatus>,
    report: Option<&ConsumerReport>,
    now: Timestamp,
) -> Vec<PlannedEvent> {
    let Some(rollout) = status.rollout.as_mut() else {
        conditions::remove(status, ConditionType::ConsumersLive);
        return Vec::new();
    };
    let prev_consumers = prev.and_then(|s| s.rollout.as_ref()).and_then(|r| r.consumers.as_ref());
    let Some(report) = report else {
        rollout.consumers = prev_consumers.cloned();
        if let Some(c) = conditions::previous(prev, ConditionType::ConsumersLive) {
            status.conditions.push(c.clone());
        }
        return Vec::new();
    };
    let consumers = summarise(report);
    let desired = condition(&consumers);
    let changed = prev_consumers.map(|p| &p.pods) != Some(&consumers.pods);
    let events = if changed && consumers.restart_required > 0 {
        vec![PlannedEvent::new(
            EventKind::Warning,
            ConsumersReason::RestartRequired,
            "CheckConsumers",
            desired.message.clone(),
        )]
    } else {
        Vec::new()
    };
    rollout.consumers = Some(consumers);
    conditions::set(status, prev, desired, now);
    events
}

fn summarise(report: &ConsumerReport) -> ConsumersStatus {
    ConsumersStatus {
        live: report.live,
        restart_required: report.stale.len() as u32,
        pods: report
            .stale
            .iter()
            .take(LISTED)
            .map(|c| StaleConsumer {
                namespace: c.namespace.clone(),
                name: c.pod.clone(),
                secret_name: c.secret.clone(),
                reads: c.frozen.iter().map(|u| u.as_str().to_string()).collect(),
            })
            .collect(),
    }
}

fn condition(c: &ConsumersStatus) -> Desired {
    let t = ConditionType::ConsumersLive;
    if c.restart_required == 0 {
        return Desired::new(
            t,
            true,
            ConsumersReason::AllLive,
            format!("{} Pods read the target Secrets and see the current key", c.live),
        );
    }
    let listed: Vec<String> = c
        .pods
        .iter()
        .map(|p| format!("{}/{} ({})", p.namespace, p.name, p.reads.join(", ")))
        .collect();
    let more = c.restart_required as usize - c.pods.len();
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Desired::new(
        t,
        false,
        ConsumersReason::RestartRequired,
        format!(
            "{} Pods read a target Secret in a way fixed at start and hold an older key; restart them: {}{more}",
            c.restart_required,
            listed.join(", ")
        ),
    )
}
