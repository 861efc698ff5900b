//! The abnormal-true conditions of the kstatus conventions that GitOps tools read (Flux, Helm 4's
//! `--wait`, `kubectl wait`): `Stalled` when the License cannot progress without a person, and
//! `Reconciling` while it waits for work in progress. Each is present only while true.

use jiff::Timestamp;

use super::conditions::{self, Desired};
use crate::api::v1alpha1::LicenseStatus;
use crate::controller::finding::{ConditionType, Reason, reasons};
use crate::controller::key_source::{KeyOutcome, KeyReason};
use crate::controller::rollout::{RolloutReason, RolloutSummary};
use crate::controller::seats::{SeatReason, SeatUsage};

reasons! {
    /// Why a License is `Reconciling`.
    pub enum ProgressReason {
        /// The key is signed and trusted but starts later.
        WaitingForKey,
        /// The Secret, or its data key, does not exist yet: created later by a person, a GitOps
        /// tool or a secrets operator, it is picked up at once.
        WaitingForSecret,
    }
}

/// A finding's reason and message, whatever the producer.
struct Why {
    reason: &'static str,
    message: String,
}

fn why(reason: impl Reason, message: &str) -> Why {
    Why {
        reason: reason.as_str(),
        message: message.to_string(),
    }
}

/// Refusals that resolve by themselves: a key that starts later, a Secret not created yet.
fn waiting(reason: KeyReason) -> Option<ProgressReason> {
    match reason {
        KeyReason::NotYetValid => Some(ProgressReason::WaitingForKey),
        KeyReason::SecretNotFound | KeyReason::KeyNotFound => Some(ProgressReason::WaitingForSecret),
        _ => None,
    }
}

/// What stops the License until someone acts: a refused key (other than one that is only waiting),
/// a target Keyward may not or will not write, an invalid spec.
fn stalled(key: &KeyOutcome, rollout: Option<&RolloutSummary>, seats: Option<&SeatUsage>) -> Option<Why> {
    if let KeyOutcome::Refused(r) = key
        && waiting(r.reason()).is_none()
    {
        return Some(why(r.reason(), r.message()));
    }
    if let Some(r) = rollout.filter(|r| {
        matches!(
            r.finding.reason,
            RolloutReason::TargetConflict | RolloutReason::TargetNotAllowed | RolloutReason::InvalidSpec
        )
    }) {
        return Some(why(r.finding.reason, &r.finding.message));
    }
    match seats {
        Some(SeatUsage::Unavailable(f)) if f.reason == SeatReason::InvalidSpec => Some(why(f.reason, &f.message)),
        _ => None,
    }
}

fn reconciling(key: &KeyOutcome) -> Option<Why> {
    match key {
        KeyOutcome::Refused(r) => waiting(r.reason()).map(|w| why(w, r.message())),
        KeyOutcome::Verified(_) => None,
    }
}

/// Sets or removes `Stalled` and `Reconciling`, from the producers' findings.
pub fn with_kstatus(
    status: &mut LicenseStatus,
    prev: Option<&LicenseStatus>,
    key: &KeyOutcome,
    rollout: Option<&RolloutSummary>,
    seats: Option<&SeatUsage>,
    now: Timestamp,
) {
    for (type_, found) in [
        (ConditionType::Stalled, stalled(key, rollout, seats)),
        (ConditionType::Reconciling, reconciling(key)),
    ] {
        match found {
            Some(w) => conditions::set(
                status,
                prev,
                Desired {
                    type_,
                    status: "True",
                    reason: w.reason,
                    message: w.message,
                },
                now,
            ),
            None => conditions::remove(status, type_),
        }
    }
}
