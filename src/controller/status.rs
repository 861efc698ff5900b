//! What a License's status should be, and which events are due, given what the key turned out to
//! be. Pure: the reconciler gathers the inputs and applies the result.
//!
//! Status holds absolute instants only, never "in 3 days", so reconciling an unchanged License
//! produces an identical status and no write.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::v1alpha1::{LastGood, LastNotice, LicenseState, LicenseStatus, RolloutStatus, SeatsStatus};
use crate::license::{DEFAULT_LEEWAY, Policy, State, Timeline, VerifiedLicense};

pub const READY: &str = "Ready";
pub const VALID: &str = "Valid";
pub const EXPIRING: &str = "Expiring";
pub const IN_GRACE: &str = "InGrace";
pub const READ_ONLY: &str = "ReadOnly";
pub const ROLLED_OUT: &str = "RolledOut";
pub const WITHIN_SEATS: &str = "WithinSeats";

/// What reading and verifying the referenced key produced.
#[derive(Debug, Clone)]
pub enum KeyOutcome {
    Verified(Box<VerifiedLicense>),
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// CamelCase reason: a [`crate::license::VerifyError::reason`] or `SecretNotFound`, `KeyNotFound`, …
    pub reason: String,
    pub message: String,
    /// Fingerprint of the refused key, when there was one.
    pub fingerprint: Option<String>,
    /// For `NotYetValid`: when the key starts to be valid.
    pub not_before: Option<Timestamp>,
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
    pub reason: String,
    pub action: &'static str,
    pub note: String,
}

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

/// Computes the next status and the events it implies.
pub fn evaluate(
    prev: Option<&LicenseStatus>,
    key: &KeyOutcome,
    policy: &Policy,
    generation: Option<i64>,
    now: Timestamp,
) -> Outcome {
    let (mut status, desired, mut events, wake_at) = match key {
        KeyOutcome::Verified(license) => verified(prev, license, policy, now),
        KeyOutcome::Refused(refusal) => refused(prev, refusal),
    };
    status.observed_generation = generation;
    status.conditions = merge_conditions(
        prev.map(|s| s.conditions.as_slice()).unwrap_or(&[]),
        desired,
        generation,
        now,
    );
    events.splice(0..0, transition_events(prev, &status, key));
    Outcome {
        status,
        events,
        wake_at,
    }
}

struct Desired {
    type_: &'static str,
    status: &'static str,
    reason: String,
    message: String,
}

fn cond(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Desired {
    Desired {
        type_,
        status: if status { "True" } else { "False" },
        reason: reason.into(),
        message: message.into(),
    }
}

fn unknown(type_: &'static str, reason: &str, message: &str) -> Desired {
    Desired {
        type_,
        status: "Unknown",
        reason: reason.into(),
        message: message.into(),
    }
}

fn verified(
    prev: Option<&LicenseStatus>,
    license: &VerifiedLicense,
    policy: &Policy,
    now: Timestamp,
) -> (LicenseStatus, Vec<Desired>, Vec<PlannedEvent>, Option<Timestamp>) {
    let claims = &license.claims;
    let timeline = Timeline::new(claims, &policy.for_claims(claims));
    let eval = timeline.evaluate(now);
    let expiry = timeline.expiry;
    let fingerprint = license.fingerprint.to_string();
    let expires = expiry.map(|e| rfc3339(e.expires_at));

    let mut conditions = vec![cond(
        VALID,
        true,
        "Verified",
        format!("signed by trusted key {:?}", license.key_id),
    )];
    let (ready_reason, ready_message) = match (eval.state, expiry) {
        (State::Active, None) => ("Active", "the license is valid and perpetual".to_string()),
        (State::Active, Some(e)) => ("Active", format!("the license is valid until {}", e.expires_at)),
        (State::Warning, Some(e)) => (
            "ExpiresSoon",
            format!("the license expires at {}; renew it", e.expires_at),
        ),
        (State::Grace, Some(e)) => (
            "InGracePeriod",
            format!(
                "the license expired at {}; everything works until {}",
                e.expires_at, e.grace_ends_at
            ),
        ),
        (State::ReadOnly, Some(e)) => (
            "GracePeriodOver",
            format!(
                "the license expired at {} and its grace period ended at {}",
                e.expires_at, e.grace_ends_at
            ),
        ),
        (_, None) => ("Active", "the license is valid".to_string()),
    };
    conditions.push(cond(READY, eval.state != State::ReadOnly, ready_reason, ready_message));
    conditions.push(match (eval.state, expiry) {
        (_, None) => cond(EXPIRING, false, "Perpetual", "the license never expires"),
        (State::Active, Some(e)) => cond(
            EXPIRING,
            false,
            "NotExpiring",
            format!("the warning window opens at {}", e.warning_at),
        ),
        (State::Warning, Some(e)) => cond(
            EXPIRING,
            true,
            "ExpiresSoon",
            format!("the license expires at {}", e.expires_at),
        ),
        (_, Some(e)) => cond(
            EXPIRING,
            false,
            "Expired",
            format!("the license expired at {}", e.expires_at),
        ),
    });
    conditions.push(match (eval.state, expiry) {
        (State::Grace, Some(e)) => cond(
            IN_GRACE,
            true,
            "Expired",
            format!("the grace period ends at {}", e.grace_ends_at),
        ),
        (State::ReadOnly, Some(e)) => cond(
            IN_GRACE,
            false,
            "GracePeriodOver",
            format!("the grace period ended at {}", e.grace_ends_at),
        ),
        _ => cond(IN_GRACE, false, "NotExpired", "the license has not expired"),
    });
    conditions.push(match (eval.state, expiry) {
        (State::ReadOnly, Some(e)) => cond(
            READ_ONLY,
            true,
            "GracePeriodOver",
            format!(
                "read-only since {}; renew the license to restore full service",
                e.grace_ends_at
            ),
        ),
        _ => cond(READ_ONLY, false, "LicenseInForce", "the license grants full service"),
    });

    let mut events = Vec::new();
    let mut last_notice = prev.and_then(|s| s.last_notice.clone());
    if let (Some(notice), Some(e)) = (eval.notice, expiry) {
        let already = last_notice
            .as_ref()
            .is_some_and(|n| n.key_fingerprint == fingerprint && n.days_left == notice.days_left);
        if !already {
            let days = if notice.days_left == 1 {
                "1 day".to_string()
            } else {
                format!("{} days", notice.days_left)
            };
            events.push(PlannedEvent {
                kind: EventKind::Warning,
                reason: "ExpiryNotice".into(),
                action: "Notify",
                note: format!(
                    "license for {:?} expires in {days}, at {}; renew it",
                    claims.sub, e.expires_at
                ),
            });
            last_notice = Some(LastNotice {
                key_fingerprint: fingerprint.clone(),
                days_left: notice.days_left,
                sent_at: rfc3339(now),
            });
        }
    }

    let status = LicenseStatus {
        state: Some(eval.state.into()),
        licensee: Some(claims.sub.clone()),
        product: Some(claims.aud.clone()),
        tier: claims.tier.clone(),
        features: Some(claims.features.clone()),
        seats: Some(SeatsStatus {
            entitled: claims.seats,
            summary: Some(seat_summary(None, claims.seats)),
            ..SeatsStatus::default()
        }),
        license_id: claims.jti.clone(),
        key_id: Some(license.key_id.clone()),
        key_fingerprint: Some(fingerprint.clone()),
        issued_at: claims.issued_at().map(rfc3339),
        warning_at: expiry.map(|e| rfc3339(e.warning_at)),
        expires_at: expires.clone(),
        grace_ends_at: expiry.map(|e| rfc3339(e.grace_ends_at)),
        next_transition_at: eval.next_transition.map(|t| rfc3339(t.at)),
        observed_generation: None,
        conditions: Vec::new(),
        last_good: Some(LastGood {
            key_fingerprint: fingerprint,
            licensee: claims.sub.clone(),
            expires_at: expires,
        }),
        last_notice,
        rollout: prev.and_then(|s| s.rollout.clone()),
    };
    (status, conditions, events, eval.next_wakeup())
}

fn refused(
    prev: Option<&LicenseStatus>,
    refusal: &Refusal,
) -> (LicenseStatus, Vec<Desired>, Vec<PlannedEvent>, Option<Timestamp>) {
    let pending = refusal.reason == "NotYetValid";
    let state = if pending {
        LicenseState::Pending
    } else {
        LicenseState::Invalid
    };
    let why = if pending {
        "the key is not valid yet"
    } else {
        "the key was refused"
    };
    let conditions = vec![
        cond(VALID, false, refusal.reason.clone(), refusal.message.clone()),
        cond(READY, false, refusal.reason.clone(), refusal.message.clone()),
        unknown(EXPIRING, "KeyNotValid", why),
        unknown(IN_GRACE, "KeyNotValid", why),
        unknown(READ_ONLY, "KeyNotValid", why),
    ];
    let status = LicenseStatus {
        state: Some(state),
        key_fingerprint: refusal.fingerprint.clone(),
        last_good: prev.and_then(|s| s.last_good.clone()),
        last_notice: prev.and_then(|s| s.last_notice.clone()),
        rollout: prev.and_then(|s| s.rollout.clone()),
        ..LicenseStatus::default()
    };
    // A key valid from a later instant becomes valid by itself: look again then.
    let wake_at = refusal.not_before.and_then(|t| t.checked_sub(DEFAULT_LEEWAY).ok());
    (status, conditions, Vec::new(), wake_at)
}

/// Events for a change of state or of key, compared with the previous status.
fn transition_events(prev: Option<&LicenseStatus>, new: &LicenseStatus, key: &KeyOutcome) -> Vec<PlannedEvent> {
    let prev_state = prev.and_then(|s| s.state);
    let prev_fingerprint = prev.and_then(|s| s.key_fingerprint.as_deref());
    let state = new.state.unwrap_or(LicenseState::Pending);
    let fingerprint_changed = prev_fingerprint != new.key_fingerprint.as_deref();
    match key {
        KeyOutcome::Verified(license) => {
            let expires = new.expires_at.as_deref().unwrap_or("never");
            let what = format!(
                "license for {:?} ({}), key {}, expires {expires}",
                license.claims.sub,
                license.claims.tier.as_deref().unwrap_or("no tier"),
                license.fingerprint
            );
            if prev_state != Some(state) {
                let (kind, reason, note) = match state {
                    LicenseState::Active => (EventKind::Normal, "Validated", format!("{what}: active")),
                    LicenseState::Warning => (
                        EventKind::Warning,
                        "ExpiresSoon",
                        format!("{what}: expires soon, renew it"),
                    ),
                    LicenseState::Grace => (
                        EventKind::Warning,
                        "InGracePeriod",
                        format!(
                            "{what}: expired, in grace until {}",
                            new.grace_ends_at.as_deref().unwrap_or("-")
                        ),
                    ),
                    _ => (
                        EventKind::Warning,
                        "ReadOnly",
                        format!("{what}: grace period over, read-only"),
                    ),
                };
                vec![PlannedEvent {
                    kind,
                    reason: reason.into(),
                    action: "Validate",
                    note,
                }]
            } else if fingerprint_changed {
                vec![PlannedEvent {
                    kind: EventKind::Normal,
                    reason: "KeyRotated".into(),
                    action: "Validate",
                    note: format!("{what}: new key in force"),
                }]
            } else {
                Vec::new()
            }
        }
        KeyOutcome::Refused(refusal) => {
            let prev_reason = prev
                .and_then(|s| s.condition(VALID))
                .filter(|c| c.status == "False")
                .map(|c| c.reason.as_str());
            if prev_state != Some(state) || prev_reason != Some(refusal.reason.as_str()) || fingerprint_changed {
                let kept = prev
                    .and_then(|s| s.last_good.as_ref())
                    .map(|g| format!("; last good key {} stays in force for workloads", g.key_fingerprint))
                    .unwrap_or_default();
                vec![PlannedEvent {
                    kind: EventKind::Warning,
                    reason: refusal.reason.clone(),
                    action: "Validate",
                    note: format!("{}{kept}", refusal.message),
                }]
            } else {
                Vec::new()
            }
        }
    }
}

/// Conditions in the desired order; `lastTransitionTime` moves only when a status changes.
fn merge_conditions(
    prev: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let since = prev
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == d.status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(now.round(jiff::Unit::Second).unwrap_or(now)));
            Condition {
                type_: d.type_.to_string(),
                status: d.status.to_string(),
                reason: d.reason,
                message: d.message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// The result of rolling the key out, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSummary {
    pub status: RolloutStatus,
    pub rolled_out: bool,
    pub reason: String,
    pub message: String,
}

/// Adds the rollout's outcome (or its absence) to a status computed by [`evaluate`]; returns the
/// events it implies: a new revision fully rolled out, or a rollout newly blocked.
pub fn with_rollout(
    status: &mut LicenseStatus,
    prev: Option<&LicenseStatus>,
    rollout: Option<RolloutSummary>,
    now: Timestamp,
) -> Vec<PlannedEvent> {
    status.conditions.retain(|c| c.type_ != ROLLED_OUT);
    let Some(rollout) = rollout else {
        status.rollout = None;
        return Vec::new();
    };
    let prev_condition = prev.and_then(|s| s.condition(ROLLED_OUT));
    let prev_revision = prev
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.revision.as_deref());
    let mut events = Vec::new();
    if rollout.rolled_out
        && (prev_revision != rollout.status.revision.as_deref() || prev_condition.is_none_or(|c| c.status != "True"))
    {
        events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: "RolledOut".into(),
            action: "RollOut",
            note: rollout.message.clone(),
        });
    }
    if !rollout.rolled_out && prev_condition.is_none_or(|c| c.reason != rollout.reason) {
        events.push(PlannedEvent {
            kind: EventKind::Warning,
            reason: rollout.reason.clone(),
            action: "RollOut",
            note: rollout.message.clone(),
        });
    }
    set_condition(
        status,
        prev,
        cond(ROLLED_OUT, rollout.rolled_out, rollout.reason, rollout.message),
        now,
    );
    status.rollout = Some(rollout.status);
    events
}

/// Seat usage as measured, or why it could not be.
#[derive(Debug, Clone, PartialEq)]
pub enum SeatUsage {
    Measured {
        used: u64,
        breakdown: BTreeMap<String, i64>,
    },
    Unavailable {
        reason: String,
        message: String,
    },
}

/// `used/entitled`, just the entitlement when usage is not measured; `unlimited` for no entitlement.
pub fn seat_summary(used: Option<u64>, entitled: Option<u64>) -> String {
    let entitled = entitled.map_or("unlimited".to_string(), |e| e.to_string());
    match used {
        Some(u) => format!("{u}/{entitled}"),
        None => entitled,
    }
}

/// Adds seat usage to a status computed by [`evaluate`]: `status.seats`, the `WithinSeats`
/// condition, and an event when usage goes over the entitlement or comes back. Going over never
/// changes the lifecycle state: the workload decides, but nobody can miss it.
pub fn with_seats(
    status: &mut LicenseStatus,
    prev: Option<&LicenseStatus>,
    usage: Option<SeatUsage>,
    now: Timestamp,
) -> Vec<PlannedEvent> {
    status.conditions.retain(|c| c.type_ != WITHIN_SEATS);
    let Some(usage) = usage else { return Vec::new() };
    let verified = status.conditions.iter().any(|c| c.type_ == VALID && c.status == "True");
    let prev_seats = prev.and_then(|s| s.seats.as_ref());
    let seats = status.seats.get_or_insert_with(SeatsStatus::default);
    let desired = match &usage {
        SeatUsage::Unavailable { reason, message } => unknown(WITHIN_SEATS, reason, message),
        SeatUsage::Measured { used, breakdown } => {
            seats.used = Some(*used);
            seats.breakdown = breakdown.clone();
            let unchanged = prev_seats.is_some_and(|p| p.used == Some(*used) && p.breakdown == *breakdown);
            seats.measured_at = if unchanged {
                prev_seats.and_then(|p| p.measured_at.clone())
            } else {
                Some(rfc3339(now))
            };
            match (verified, seats.entitled) {
                (false, _) => unknown(WITHIN_SEATS, "KeyNotValid", "no verified entitlement to compare with"),
                (true, None) => cond(
                    WITHIN_SEATS,
                    true,
                    "Unlimited",
                    format!("{used} seats used; the license grants unlimited seats"),
                ),
                (true, Some(e)) if *used > e => cond(
                    WITHIN_SEATS,
                    false,
                    "SeatsExceeded",
                    format!("{used} seats used of {e}"),
                ),
                (true, Some(e)) => cond(
                    WITHIN_SEATS,
                    true,
                    "WithinEntitlement",
                    format!("{used} seats used of {e}"),
                ),
            }
        }
    };
    seats.summary = Some(seat_summary(seats.used, seats.entitled));
    let was = prev.and_then(|s| s.condition(WITHIN_SEATS)).map(|c| c.status.clone());
    let mut events = Vec::new();
    if desired.status == "False" && was.as_deref() != Some("False") {
        events.push(PlannedEvent {
            kind: EventKind::Warning,
            reason: "SeatsExceeded".into(),
            action: "CountSeats",
            note: desired.message.clone(),
        });
    }
    if desired.status == "True" && was.as_deref() == Some("False") {
        events.push(PlannedEvent {
            kind: EventKind::Normal,
            reason: "WithinSeats".into(),
            action: "CountSeats",
            note: format!("back within the entitlement: {}", desired.message),
        });
    }
    set_condition(status, prev, desired, now);
    events
}

/// Puts one condition into `status` (replacing one of its type), keeping the previous
/// `lastTransitionTime` when its status has not changed.
fn set_condition(status: &mut LicenseStatus, prev: Option<&LicenseStatus>, desired: Desired, now: Timestamp) {
    status.conditions.retain(|c| c.type_ != desired.type_);
    let prev = prev.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let merged = merge_conditions(prev, vec![desired], status.observed_generation, now);
    status.conditions.extend(merged);
}

/// Small margin so a wake-up lands just after a boundary, never just before it.
pub const WAKE_MARGIN: SignedDuration = SignedDuration::from_millis(100);

#[cfg(test)]
mod tests;
