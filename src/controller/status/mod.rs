//! The decision layer: what a License's status should be, and which events are due, given what
//! the producers found (the key's [`KeyOutcome`], the [`RolloutSummary`], the [`SeatUsage`]).
//! Pure: the reconciler gathers the inputs and applies the result.
//!
//! Status holds absolute instants only, never "in 3 days", so reconciling an unchanged License
//! produces an identical status and no write.
//!
//! [`RolloutSummary`]: crate::controller::rollout::RolloutSummary
//! [`SeatUsage`]: crate::controller::seats::SeatUsage

mod conditions;
mod consumers;
mod events;
mod keys;
mod kstatus;
mod lifecycle;
mod rollout;
mod seats;

use jiff::{SignedDuration, Timestamp};

pub use consumers::{ConsumersReason, with_consumers};
pub use events::{EventKind, EventReason, PlannedEvent};
pub use keys::{KeyStanding, with_keys};
pub use kstatus::{ProgressReason, with_kstatus};
pub use lifecycle::LifecycleReason;
pub use rollout::with_rollout;
pub use seats::{WithinSeatsReason, summary as seat_summary, with_seats};

use crate::api::v1alpha1::LicenseStatus;
use crate::controller::key_source::KeyOutcome;
use crate::license::Policy;

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: LicenseStatus,
    pub events: Vec<PlannedEvent>,
    /// When to look again with nothing else changing: the next transition or daily notice.
    pub wake_at: Option<Timestamp>,
}

pub fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// Computes the lifecycle part of the next status and the events it implies; rollout and seats
/// are added by [`with_rollout`] and [`with_seats`].
pub fn evaluate(
    prev: Option<&LicenseStatus>,
    key: &KeyOutcome,
    policy: &Policy,
    generation: Option<i64>,
    now: Timestamp,
) -> Outcome {
    let decided = match key {
        KeyOutcome::Verified(license) => lifecycle::verified(prev, license, policy, now),
        KeyOutcome::Refused(refusal) => lifecycle::refused(prev, refusal),
    };
    let mut status = decided.status;
    status.observed_generation = generation;
    status.conditions = conditions::merge(
        prev.map(|s| s.conditions.as_slice()).unwrap_or(&[]),
        decided.conditions,
        generation,
        now,
    );
    let mut events = events::transitions(prev, &status, key);
    events.extend(decided.events);
    Outcome {
        status,
        events,
        wake_at: decided.wake_at,
    }
}

/// Small margin so a wake-up lands just after a boundary, never just before it.
pub const WAKE_MARGIN: SignedDuration = SignedDuration::from_millis(100);

#[cfg(test)]
mod tests;
