//! The `RolledOut` condition and its events, from the rollout's [`RolloutSummary`].

use jiff::Timestamp;

use super::conditions::{self, Desired, previous};
use super::events::{EventKind, EventReason, PlannedEvent};
use super::rfc3339;
use crate::api::v1alpha1::LicenseStatus;
use crate::controller::finding::{ConditionType, Reason};
use crate::controller::rollout::RolloutSummary;

/// Adds the rollout's outcome (or its absence) to a status computed by [`super::evaluate`];
/// returns the events it implies: a new revision fully rolled out, or a rollout newly blocked.
pub fn with_rollout(
    status: &mut LicenseStatus,
    prev: Option<&LicenseStatus>,
    rollout: Option<&RolloutSummary>,
    now: Timestamp,
) -> Vec<PlannedEvent> {
    conditions::remove(status, ConditionType::RolledOut);
    let Some(rollout) = rollout else {
        status.rollout = None;
        return Vec::new();
    };
    let prev_condition = previous(prev, ConditionType::RolledOut);
    let prev_revision = prev
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.revision.as_deref());
    let finding = &rollout.finding;
    let mut events = Vec::new();
    if rollout.rolled_out() {
        let new_revision = prev_revision != rollout.status.revision.as_deref();
        if new_revision || prev_condition.is_none_or(|c| c.status != "True") {
            events.push(PlannedEvent::new(
                EventKind::Normal,
                EventReason::RolledOut,
                "RollOut",
                &finding.message,
            ));
        }
    } else if prev_condition.is_none_or(|c| c.reason != finding.reason.as_str()) {
        events.push(PlannedEvent::new(
            EventKind::Warning,
            finding.reason,
            "RollOut",
            &finding.message,
        ));
    }
    let desired = Desired::new(
        ConditionType::RolledOut,
        rollout.rolled_out(),
        finding.reason,
        finding.message.clone(),
    );
    conditions::set(status, prev, desired, now);
    let mut rolled = rollout.status.clone();
    // The revision's first appearance, kept while it stays the same.
    rolled.revision_since = match prev.and_then(|s| s.rollout.as_ref()) {
        Some(p) if p.revision == rolled.revision => p.revision_since.clone(),
        _ => rolled.revision.as_ref().map(|_| rfc3339(now)),
    };
    status.rollout = Some(rolled);
    events
}
