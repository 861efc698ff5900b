//! The lifecycle conditions (Valid, Ready, Expiring, InGrace, ReadOnly), the key's fields in the
//! status, and the daily expiry notice.

use jiff::Timestamp;

use super::conditions::Desired;
use super::events::{EventKind, EventReason, PlannedEvent};
use super::rfc3339;
use crate::api::v1alpha1::{LastGood, LastNotice, LicenseState, LicenseStatus, SeatsStatus};
use crate::controller::finding::{ConditionType, reasons};
use crate::controller::key_source::{KeyReason, Refusal};
use crate::license::lifecycle::{Evaluation, Expiry};
use crate::license::{DEFAULT_LEEWAY, Policy, State, Timeline, VerifiedLicense};

reasons! {
    /// Reasons of the lifecycle conditions when the key verified (a refused key's reason is its
    /// [`KeyReason`]).
    pub enum LifecycleReason {
        Verified,
        Active,
        ExpiresSoon,
        InGracePeriod,
        GracePeriodOver,
        Perpetual,
        NotExpiring,
        Expired,
        NotExpired,
        LicenseInForce,
        KeyNotValid,
    }
}

/// What the lifecycle part of the status decides.
pub struct Decided {
    pub status: LicenseStatus,
    pub conditions: Vec<Desired>,
    pub events: Vec<PlannedEvent>,
    pub wake_at: Option<Timestamp>,
}

pub fn verified(prev: Option<&LicenseStatus>, license: &VerifiedLicense, policy: &Policy, now: Timestamp) -> Decided {
    let claims = &license.claims;
    let timeline = Timeline::new(claims, &policy.for_claims(claims));
    let eval = timeline.evaluate(now);
    let (notice, last_notice) = daily_notice(prev, license, &eval, timeline.expiry, now);
    Decided {
        status: verified_status(prev, license, &eval, timeline.expiry, last_notice),
        conditions: conditions(license, eval.state, timeline.expiry),
        events: notice.into_iter().collect(),
        wake_at: eval.next_wakeup(),
    }
}

fn conditions(license: &VerifiedLicense, state: State, expiry: Option<Expiry>) -> Vec<Desired> {
    vec![
        Desired::new(
            ConditionType::Valid,
            true,
            LifecycleReason::Verified,
            format!("signed by trusted key {:?}", license.key_id),
        ),
        ready(state, expiry),
        expiring(state, expiry),
        in_grace(state, expiry),
        read_only(state, expiry),
    ]
}

fn ready(state: State, expiry: Option<Expiry>) -> Desired {
    use LifecycleReason::*;
    let (reason, message) = match (state, expiry) {
        (State::Active, None) => (Active, "the license is valid and perpetual".to_string()),
        (State::Active, Some(e)) => (Active, format!("the license is valid until {}", e.expires_at)),
        (State::Warning, Some(e)) => (
            ExpiresSoon,
            format!("the license expires at {}; renew it", e.expires_at),
        ),
        (State::Grace, Some(e)) => (
            InGracePeriod,
            format!(
                "the license expired at {}; everything works until {}",
                e.expires_at, e.grace_ends_at
            ),
        ),
        (State::ReadOnly, Some(e)) => (
            GracePeriodOver,
            format!(
                "the license expired at {} and its grace period ended at {}",
                e.expires_at, e.grace_ends_at
            ),
        ),
        (_, None) => (Active, "the license is valid".to_string()),
    };
    Desired::new(ConditionType::Ready, state != State::ReadOnly, reason, message)
}

fn expiring(state: State, expiry: Option<Expiry>) -> Desired {
    use LifecycleReason::*;
    let t = ConditionType::Expiring;
    match (state, expiry) {
        (_, None) => Desired::new(t, false, Perpetual, "the license never expires"),
        (State::Active, Some(e)) => Desired::new(
            t,
            false,
            NotExpiring,
            format!("the warning window opens at {}", e.warning_at),
        ),
        (State::Warning, Some(e)) => {
            Desired::new(t, true, ExpiresSoon, format!("the license expires at {}", e.expires_at))
        }
        (_, Some(e)) => Desired::new(t, false, Expired, format!("the license expired at {}", e.expires_at)),
    }
}

fn in_grace(state: State, expiry: Option<Expiry>) -> Desired {
    use LifecycleReason::*;
    let t = ConditionType::InGrace;
    match (state, expiry) {
        (State::Grace, Some(e)) => Desired::new(
            t,
            true,
            Expired,
            format!("the grace period ends at {}", e.grace_ends_at),
        ),
        (State::ReadOnly, Some(e)) => Desired::new(
            t,
            false,
            GracePeriodOver,
            format!("the grace period ended at {}", e.grace_ends_at),
        ),
        _ => Desired::new(t, false, NotExpired, "the license has not expired"),
    }
}

fn read_only(state: State, expiry: Option<Expiry>) -> Desired {
    let t = ConditionType::ReadOnly;
    match (state, expiry) {
        (State::ReadOnly, Some(e)) => Desired::new(
            t,
            true,
            LifecycleReason::GracePeriodOver,
            format!(
                "read-only since {}; renew the license to restore full service",
                e.grace_ends_at
            ),
        ),
        _ => Desired::new(
            t,
            false,
            LifecycleReason::LicenseInForce,
            "the license grants full service",
        ),
    }
}

/// The daily notice due now, if not already sent for this key and day (the status remembers the
/// last one, so neither a retry nor a restart repeats it).
fn daily_notice(
    prev: Option<&LicenseStatus>,
    license: &VerifiedLicense,
    eval: &Evaluation,
    expiry: Option<Expiry>,
    now: Timestamp,
) -> (Option<PlannedEvent>, Option<LastNotice>) {
    let last_notice = prev.and_then(|s| s.last_notice.clone());
    let (Some(notice), Some(e)) = (eval.notice, expiry) else {
        return (None, last_notice);
    };
    let fingerprint = license.fingerprint.to_string();
    let already = last_notice
        .as_ref()
        .is_some_and(|n| n.key_fingerprint == fingerprint && n.days_left == notice.days_left);
    if already {
        return (None, last_notice);
    }
    let days = if notice.days_left == 1 {
        "1 day".to_string()
    } else {
        format!("{} days", notice.days_left)
    };
    let event = PlannedEvent::new(
        EventKind::Warning,
        EventReason::ExpiryNotice,
        "Notify",
        format!(
            "license for {:?} expires in {days}, at {}; renew it",
            license.claims.sub, e.expires_at
        ),
    );
    let sent = LastNotice {
        key_fingerprint: fingerprint,
        days_left: notice.days_left,
        sent_at: rfc3339(now),
    };
    (Some(event), Some(sent))
}

fn verified_status(
    prev: Option<&LicenseStatus>,
    license: &VerifiedLicense,
    eval: &Evaluation,
    expiry: Option<Expiry>,
    last_notice: Option<LastNotice>,
) -> LicenseStatus {
    let claims = &license.claims;
    let fingerprint = license.fingerprint.to_string();
    let expires = expiry.map(|e| rfc3339(e.expires_at));
    LicenseStatus {
        state: Some(eval.state.into()),
        licensee: Some(claims.sub.clone()),
        product: Some(claims.aud.to_string()),
        tier: claims.tier.clone(),
        features: Some(claims.features.clone()),
        seats: Some(SeatsStatus {
            entitled: claims.seats,
            summary: Some(super::seats::summary(None, claims.seats)),
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
        ..LicenseStatus::default()
    }
}

pub fn refused(prev: Option<&LicenseStatus>, refusal: &Refusal) -> Decided {
    let pending = refusal.reason() == KeyReason::NotYetValid;
    let (state, why) = if pending {
        (LicenseState::Pending, "the key is not valid yet")
    } else {
        (LicenseState::Invalid, "the key was refused")
    };
    let unknown = |t| Desired::unknown(t, LifecycleReason::KeyNotValid, why);
    let conditions = vec![
        Desired::new(ConditionType::Valid, false, refusal.reason(), refusal.message()),
        Desired::new(ConditionType::Ready, false, refusal.reason(), refusal.message()),
        unknown(ConditionType::Expiring),
        unknown(ConditionType::InGrace),
        unknown(ConditionType::ReadOnly),
    ];
    let status = LicenseStatus {
        state: Some(state),
        key_fingerprint: refusal.fingerprint.clone(),
        last_good: prev.and_then(|s| s.last_good.clone()),
        last_notice: prev.and_then(|s| s.last_notice.clone()),
        rollout: prev.and_then(|s| s.rollout.clone()),
        ..LicenseStatus::default()
    };
    Decided {
        status,
        conditions,
        events: Vec::new(),
        // A key valid from a later instant becomes valid by itself: look again then.
        wake_at: refusal.not_before.and_then(|t| t.checked_sub(DEFAULT_LEEWAY).ok()),
    }
}
