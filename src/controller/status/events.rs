//! Events the status layer plans: published once the status that records them is written, so a
//! retry cannot repeat them.

use super::conditions::previous;
use crate::api::v1alpha1::{LicenseState, LicenseStatus};
use crate::controller::finding::{ConditionType, Reason, reasons};
use crate::controller::key_source::{KeyOutcome, Refusal};

reasons! {
    /// Reasons of events that are not a producer's finding passed through.
    pub enum EventReason {
        Validated,
        ExpiresSoon,
        InGracePeriod,
        ReadOnly,
        KeyRotated,
        ExpiryNotice,
        RolledOut,
        SeatsExceeded,
        WithinSeats,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// An event to publish once the status is written.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    pub kind: EventKind,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl PlannedEvent {
    pub fn new(kind: EventKind, reason: impl Reason, action: &'static str, note: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.as_str(),
            action,
            note: note.into(),
        }
    }
}

/// Events for a change of state or of key, compared with the previous status.
pub fn transitions(prev: Option<&LicenseStatus>, new: &LicenseStatus, key: &KeyOutcome) -> Vec<PlannedEvent> {
    match key {
        KeyOutcome::Verified(license) => {
            let what = format!(
                "license for {:?} ({}), key {}, expires {}",
                license.claims.sub,
                license.claims.tier.as_deref().unwrap_or("no tier"),
                license.fingerprint,
                new.expires_at.as_deref().unwrap_or("never")
            );
            verified(prev, new, &what)
        }
        KeyOutcome::Refused(refusal) => refused(prev, new, refusal).into_iter().collect(),
    }
}

/// A new key in force after another verified one is a rotation; a change of state is announced
/// too (a renewal taking over in the warning window both rotates and returns to Active).
fn verified(prev: Option<&LicenseStatus>, new: &LicenseStatus, what: &str) -> Vec<PlannedEvent> {
    let state = new.state.unwrap_or(LicenseState::Pending);
    let prev_state = prev.and_then(|s| s.state);
    let was_verified = prev_state.is_some_and(|s| {
        matches!(
            s,
            LicenseState::Active | LicenseState::Warning | LicenseState::Grace | LicenseState::ReadOnly
        )
    });
    let mut events = Vec::new();
    if was_verified && fingerprint_changed(prev, new) {
        events.push(PlannedEvent::new(
            EventKind::Normal,
            EventReason::KeyRotated,
            "Validate",
            format!("{what}: new key in force"),
        ));
    }
    events.extend(state_change(prev_state, state, new, what));
    events
}

fn state_change(
    prev_state: Option<LicenseState>,
    state: LicenseState,
    new: &LicenseStatus,
    what: &str,
) -> Option<PlannedEvent> {
    if prev_state != Some(state) {
        let (kind, reason, note) = match state {
            LicenseState::Active => (EventKind::Normal, EventReason::Validated, format!("{what}: active")),
            LicenseState::Warning => (
                EventKind::Warning,
                EventReason::ExpiresSoon,
                format!("{what}: expires soon, renew it"),
            ),
            LicenseState::Grace => (
                EventKind::Warning,
                EventReason::InGracePeriod,
                format!(
                    "{what}: expired, in grace until {}",
                    new.grace_ends_at.as_deref().unwrap_or("-")
                ),
            ),
            _ => (
                EventKind::Warning,
                EventReason::ReadOnly,
                format!("{what}: grace period over, read-only"),
            ),
        };
        return Some(PlannedEvent::new(kind, reason, "Validate", note));
    }
    None
}

fn refused(prev: Option<&LicenseStatus>, new: &LicenseStatus, refusal: &Refusal) -> Option<PlannedEvent> {
    let prev_reason = previous(prev, ConditionType::Valid)
        .filter(|c| c.status == "False")
        .map(|c| c.reason.as_str());
    let changed = prev.and_then(|s| s.state) != new.state
        || prev_reason != Some(refusal.reason().as_str())
        || fingerprint_changed(prev, new);
    changed.then(|| {
        let kept = prev
            .and_then(|s| s.last_good.as_ref())
            .map(|g| format!("; last good key {} stays in force for workloads", g.key_fingerprint))
            .unwrap_or_default();
        PlannedEvent::new(
            EventKind::Warning,
            refusal.reason(),
            "Validate",
            format!("{}{kept}", refusal.message()),
        )
    })
}

fn fingerprint_changed(prev: Option<&LicenseStatus>, new: &LicenseStatus) -> bool {
    prev.and_then(|s| s.key_fingerprint.as_deref()) != new.key_fingerprint.as_deref()
}
