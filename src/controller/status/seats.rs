//! The `WithinSeats` condition and `status.seats`, from the measured [`SeatUsage`].

use jiff::Timestamp;

use super::conditions::{self, Desired, previous};
use super::events::{EventKind, EventReason, PlannedEvent};
use super::rfc3339;
use crate::api::v1alpha1::{LicenseStatus, SeatsStatus};
use crate::controller::finding::{ConditionType, Reason, reasons};
use crate::controller::seats::SeatUsage;

reasons! {
    /// Reasons of the `WithinSeats` condition once usage is measured (an unmeasurable usage's
    /// reason is its [`crate::controller::seats::SeatReason`]).
    pub enum WithinSeatsReason {
        KeyNotValid,
        Unlimited,
        SeatsExceeded,
        WithinEntitlement,
    }
}

/// `used/entitled`, just the entitlement when usage is not measured; `unlimited` for no entitlement.
pub fn summary(used: Option<u64>, entitled: Option<u64>) -> String {
    let entitled = entitled.map_or("unlimited".to_string(), |e| e.to_string());
    match used {
        Some(u) => format!("{u}/{entitled}"),
        None => entitled,
    }
}

/// Adds seat usage to a status computed by [`super::evaluate`]: `status.seats`, the `WithinSeats`
/// condition, and an event when usage goes over the entitlement or comes back. Going over never
/// changes the lifecycle state: the workload decides, but nobody can miss it.
pub fn with_seats(
    status: &mut LicenseStatus,
    prev: Option<&LicenseStatus>,
    usage: Option<&SeatUsage>,
    now: Timestamp,
) -> Vec<PlannedEvent> {
    conditions::remove(status, ConditionType::WithinSeats);
    let Some(usage) = usage else { return Vec::new() };
    let verified = status
        .condition(ConditionType::Valid.as_str())
        .is_some_and(|c| c.status == "True");
    let prev_seats = prev.and_then(|s| s.seats.as_ref());
    let seats = status.seats.get_or_insert_with(SeatsStatus::default);
    let desired = match usage {
        SeatUsage::Unavailable(finding) => {
            Desired::unknown(ConditionType::WithinSeats, finding.reason, finding.message.clone())
        }
        SeatUsage::Measured { used, breakdown } => {
            seats.used = Some(*used);
            seats.breakdown = breakdown.clone();
            let unchanged = prev_seats.is_some_and(|p| p.used == Some(*used) && p.breakdown == *breakdown);
            seats.measured_at = if unchanged {
                prev_seats.and_then(|p| p.measured_at.clone())
            } else {
                Some(rfc3339(now))
            };
            compare(verified, *used, seats.entitled)
        }
    };
    seats.summary = Some(summary(seats.used, seats.entitled));
    let events = crossing_events(
        previous(prev, ConditionType::WithinSeats).map(|c| c.status.as_str()),
        &desired,
    );
    conditions::set(status, prev, desired, now);
    events
}

fn compare(verified: bool, used: u64, entitled: Option<u64>) -> Desired {
    use WithinSeatsReason::*;
    let t = ConditionType::WithinSeats;
    match (verified, entitled) {
        (false, _) => Desired::unknown(t, KeyNotValid, "no verified entitlement to compare with"),
        (true, None) => Desired::new(
            t,
            true,
            Unlimited,
            format!("{used} seats used; the license grants unlimited seats"),
        ),
        (true, Some(e)) if used > e => Desired::new(t, false, SeatsExceeded, format!("{used} seats used of {e}")),
        (true, Some(e)) => Desired::new(t, true, WithinEntitlement, format!("{used} seats used of {e}")),
    }
}

/// One event when usage goes over the entitlement, one when it comes back.
fn crossing_events(was: Option<&str>, desired: &Desired) -> Vec<PlannedEvent> {
    match (was, desired.status) {
        (Some("False"), "False") => Vec::new(),
        (_, "False") => vec![PlannedEvent::new(
            EventKind::Warning,
            EventReason::SeatsExceeded,
            "CountSeats",
            desired.message.clone(),
        )],
        (Some("False"), "True") => vec![PlannedEvent::new(
            EventKind::Normal,
            EventReason::WithinSeats,
            "CountSeats",
            format!("back within the entitlement: {}", desired.message),
        )],
        _ => Vec::new(),
    }
}
