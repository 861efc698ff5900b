use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::*;
use crate::api::v1alpha1::{LicenseState, LicenseStatus};
use crate::controller::finding::{Finding, Reason};
use crate::controller::key_source::{KeyReason, Refusal};
use crate::controller::seats::{SeatReason, SeatUsage};
use crate::license::{DEFAULT_LEEWAY, VerifiedLicense};

// The API's condition types, spelled out: the typed ones must serialise to exactly these.
const READY: &str = "Ready";
const VALID: &str = "Valid";
const EXPIRING: &str = "Expiring";
const IN_GRACE: &str = "InGrace";
const READ_ONLY: &str = "ReadOnly";
const WITHIN_SEATS: &str = "WithinSeats";
use crate::license::keys::signing_key_from_seed;
use crate::license::{Claims, ExtraClaims, Format, KeySet, TrustedKey, VerifyOptions, issue, verify};

const DAY: SignedDuration = SignedDuration::from_hours(24);
const ISSUED: i64 = 1_800_000_000;
const EXP: i64 = ISSUED + 365 * 86_400;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

fn license(seed: u8, exp: Option<i64>) -> VerifiedLicense {
    license_from(seed, exp, Some(10))
}

fn license_with_seats(seats: Option<u64>) -> VerifiedLicense {
    license_from(1, Some(EXP), seats)
}

fn license_from(seed: u8, exp: Option<i64>, seats: Option<u64>) -> VerifiedLicense {
    let key = signing_key_from_seed(&[seed; 32]);
    let claims = Claims {
        sub: "Acme".into(),
        aud: "zizq".into(),
        iss: None,
        iat: Some(ISSUED),
        nbf: None,
        exp,
        jti: Some("lic-1".into()),
        tier: Some("pro".into()),
        features: vec!["sso".into()],
        seats,
        grace: None,
        warn: None,
        extra: ExtraClaims::default(),
    };
    let token = issue(&claims, &key, Some("v1"), &Format::Jwt).unwrap();
    let mut keys = KeySet::new();
    keys.insert(TrustedKey::new(Some("v1"), key.verifying_key()).unwrap())
        .unwrap();
    verify(token.as_bytes(), &keys, &VerifyOptions::at(ts(ISSUED))).unwrap()
}

fn ok(l: VerifiedLicense) -> KeyOutcome {
    KeyOutcome::Verified(Box::new(l))
}

fn refusal(reason: &str) -> KeyOutcome {
    let typed = *KeyReason::ALL
        .iter()
        .find(|r| r.as_str() == reason)
        .expect("a KeyReason spells it");
    KeyOutcome::Refused(Refusal {
        finding: Finding::new(typed, format!("{reason} happened")),
        fingerprint: Some("sha256:bad".into()),
        not_before: None,
    })
}

fn condition<'a>(s: &'a LicenseStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

fn run(prev: Option<&LicenseStatus>, key: &KeyOutcome, at: Timestamp) -> Outcome {
    evaluate(prev, key, &Policy::default(), Some(3), at)
}

#[test]
fn a_valid_key_fills_every_field() {
    let out = run(None, &ok(license(1, Some(EXP))), ts(ISSUED + 10));
    let s = &out.status;
    assert_eq!(s.state, Some(LicenseState::Active));
    assert_eq!(s.licensee.as_deref(), Some("Acme"));
    assert_eq!(s.product.as_deref(), Some("zizq"));
    assert_eq!(s.tier.as_deref(), Some("pro"));
    assert_eq!(s.features.as_deref(), Some(&["sso".to_string()][..]));
    assert_eq!(s.seats.as_ref().unwrap().entitled, Some(10));
    assert_eq!(s.key_id.as_deref(), Some("v1"));
    assert!(s.key_fingerprint.as_deref().unwrap().starts_with("sha256:"));
    assert_eq!(s.issued_at.as_deref(), Some("2027-01-15T08:00:00Z"));
    assert_eq!(s.expires_at, Some(rfc3339(ts(EXP))));
    assert_eq!(s.grace_ends_at, Some(rfc3339(ts(EXP) + DAY * 14)));
    assert_eq!(s.next_transition_at, Some(rfc3339(ts(EXP) - DAY * 30)));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.last_good.as_ref().unwrap().licensee, "Acme");
    assert_eq!(out.wake_at, Some(ts(EXP) - DAY * 30));
    for (t, status) in [
        (READY, "True"),
        (VALID, "True"),
        (EXPIRING, "False"),
        (IN_GRACE, "False"),
        (READ_ONLY, "False"),
    ] {
        assert_eq!(condition(s, t).status, status, "{t}");
        assert_eq!(condition(s, t).observed_generation, Some(3));
    }
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].reason, "Validated");
}

#[test]
fn reconciling_again_changes_nothing_and_emits_nothing() {
    let key = ok(license(1, Some(EXP)));
    let first = run(None, &key, ts(ISSUED + 10));
    let second = run(Some(&first.status), &key, ts(ISSUED + 5000));
    assert_eq!(second.status, first.status);
    assert!(second.events.is_empty());
}

#[test]
fn states_conditions_and_events_through_the_lifecycle() {
    let key = ok(license(1, Some(EXP)));
    let mut prev = run(None, &key, ts(ISSUED)).status;
    let steps = [
        (
            ts(EXP) - DAY * 30,
            LicenseState::Warning,
            "ExpiresSoon",
            (EXPIRING, "True"),
        ),
        (ts(EXP), LicenseState::Grace, "InGracePeriod", (IN_GRACE, "True")),
        (
            ts(EXP) + DAY * 14,
            LicenseState::ReadOnly,
            "ReadOnly",
            (READ_ONLY, "True"),
        ),
    ];
    for (at, state, reason, (cond_type, cond_status)) in steps {
        let out = run(Some(&prev), &key, at);
        assert_eq!(out.status.state, Some(state));
        assert_eq!(out.events[0].reason, reason);
        assert_eq!(out.events[0].kind, EventKind::Warning);
        assert_eq!(condition(&out.status, cond_type).status, cond_status);
        assert_eq!(condition(&out.status, cond_type).last_transition_time.0, at);
        prev = out.status;
    }
    assert_eq!(condition(&prev, READY).status, "False");
    assert_eq!(prev.next_transition_at, None);
}

#[test]
fn last_transition_time_moves_only_on_status_change() {
    let key = ok(license(1, Some(EXP)));
    let first = run(None, &key, ts(ISSUED));
    let warning = run(Some(&first.status), &key, ts(EXP) - DAY * 30);
    // Valid stayed True: its time is unchanged; Expiring flipped: its time moved.
    assert_eq!(
        condition(&warning.status, VALID).last_transition_time,
        condition(&first.status, VALID).last_transition_time
    );
    assert_ne!(
        condition(&warning.status, EXPIRING).last_transition_time,
        condition(&first.status, EXPIRING).last_transition_time
    );
}

#[test]
fn one_notice_per_day_in_the_last_fourteen_days_and_not_again_after_restart() {
    let key = ok(license(1, Some(EXP)));
    let mut prev = run(None, &key, ts(EXP) - DAY * 20).status;
    let mut notices = 0;
    let mut at = ts(EXP) - DAY * 20;
    while at < ts(EXP) {
        let out = run(Some(&prev), &key, at);
        notices += out.events.iter().filter(|e| e.reason == "ExpiryNotice").count();
        // The same instant reconciled again (a restart) sends nothing new.
        assert!(run(Some(&out.status), &key, at).events.is_empty());
        prev = out.status;
        at += SignedDuration::from_hours(6);
    }
    assert_eq!(notices, 14);
    assert_eq!(prev.last_notice.as_ref().unwrap().days_left, 1);
}

#[test]
fn wake_up_is_the_next_notice_inside_the_notice_window() {
    let key = ok(license(1, Some(EXP)));
    let out = run(None, &key, ts(EXP) - DAY * 10 + SignedDuration::from_secs(5));
    assert_eq!(out.wake_at, Some(ts(EXP) - DAY * 9));
    assert_eq!(out.status.next_transition_at, Some(rfc3339(ts(EXP))));
}

#[test]
fn a_refused_key_keeps_the_last_good_one_and_says_why() {
    let good = run(None, &ok(license(1, Some(EXP))), ts(ISSUED)).status;
    let out = run(Some(&good), &refusal("SignatureInvalid"), ts(ISSUED + 60));
    let s = &out.status;
    assert_eq!(s.state, Some(LicenseState::Invalid));
    assert_eq!(s.last_good, good.last_good);
    assert_eq!(s.licensee, None, "unverified claims are never shown as facts");
    assert_eq!(condition(s, VALID).status, "False");
    assert_eq!(condition(s, VALID).reason, "SignatureInvalid");
    assert_eq!(condition(s, READY).status, "False");
    assert_eq!(condition(s, EXPIRING).status, "Unknown");
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].reason, "SignatureInvalid");
    assert!(out.events[0].note.contains("last good key"), "{}", out.events[0].note);
    assert_eq!(out.wake_at, None);
    // The same refusal again: no new event. A different one: a new event.
    assert!(
        run(Some(s), &refusal("SignatureInvalid"), ts(ISSUED + 90))
            .events
            .is_empty()
    );
    assert_eq!(
        run(Some(s), &refusal("SecretNotFound"), ts(ISSUED + 90)).events[0].reason,
        "SecretNotFound"
    );
    // A valid key again clears the refusal.
    let back = run(Some(s), &ok(license(1, Some(EXP))), ts(ISSUED + 120));
    assert_eq!(back.status.state, Some(LicenseState::Active));
    assert_eq!(back.events[0].reason, "Validated");
}

#[test]
fn rotation_to_another_valid_key_is_announced() {
    let first = run(None, &ok(license(1, Some(EXP))), ts(ISSUED)).status;
    let out = run(Some(&first), &ok(license(2, Some(EXP + 86_400))), ts(ISSUED + 10));
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].reason, "KeyRotated");
    assert_ne!(out.status.key_fingerprint, first.key_fingerprint);
}

#[test]
fn not_yet_valid_is_pending_and_wakes_at_the_start() {
    let not_before = ts(ISSUED + 3600);
    let key = KeyOutcome::Refused(Refusal {
        finding: Finding::new(KeyReason::NotYetValid, "later"),
        fingerprint: None,
        not_before: Some(not_before),
    });
    let out = run(None, &key, ts(ISSUED));
    assert_eq!(out.status.state, Some(LicenseState::Pending));
    assert_eq!(out.wake_at, Some(not_before - DEFAULT_LEEWAY));
}

#[test]
fn perpetual_keys_never_wake() {
    let out = run(None, &ok(license(1, None)), ts(ISSUED));
    assert_eq!(out.status.state, Some(LicenseState::Active));
    assert_eq!(out.wake_at, None);
    assert_eq!(condition(&out.status, EXPIRING).reason, "Perpetual");
}

fn measured(used: u64) -> Option<SeatUsage> {
    Some(SeatUsage::Measured {
        used,
        breakdown: BTreeMap::new(),
    })
}

#[test]
fn seats_within_over_and_back_with_one_event_each_way() {
    let key = ok(license(1, Some(EXP)));
    let at = ts(ISSUED + 10);
    let mut s = run(None, &key, at).status;
    assert!(with_seats(&mut s, None, measured(8).as_ref(), at).is_empty());
    assert_eq!(condition(&s, WITHIN_SEATS).status, "True");
    assert_eq!(condition(&s, WITHIN_SEATS).message, "8 seats used of 10");
    assert_eq!(s.seats.as_ref().unwrap().summary.as_deref(), Some("8/10"));
    let measured_at = s.seats.as_ref().unwrap().measured_at.clone();
    assert!(measured_at.is_some());

    let mut over = run(Some(&s), &key, ts(ISSUED + 20)).status;
    let events = with_seats(&mut over, Some(&s), measured(12).as_ref(), ts(ISSUED + 20));
    assert_eq!(
        (
            condition(&over, WITHIN_SEATS).status.as_str(),
            condition(&over, WITHIN_SEATS).reason.as_str()
        ),
        ("False", "SeatsExceeded")
    );
    assert_eq!(condition(&over, WITHIN_SEATS).message, "12 seats used of 10");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].reason),
        (EventKind::Warning, "SeatsExceeded")
    );
    assert_eq!(
        over.state,
        Some(LicenseState::Active),
        "going over never changes the lifecycle state"
    );
    // Still over: no new event, and an unchanged count keeps its measuredAt.
    let mut still = run(Some(&over), &key, ts(ISSUED + 30)).status;
    assert!(with_seats(&mut still, Some(&over), measured(12).as_ref(), ts(ISSUED + 30)).is_empty());
    assert_eq!(still.seats, over.seats);
    assert_eq!(still, over);
    let mut back = run(Some(&still), &key, ts(ISSUED + 40)).status;
    let events = with_seats(&mut back, Some(&still), measured(10).as_ref(), ts(ISSUED + 40));
    assert_eq!((events.len(), events[0].reason), (1, "WithinSeats"));
    assert_ne!(back.seats.as_ref().unwrap().measured_at, measured_at);
}

#[test]
fn unlimited_keys_never_flip() {
    let key = ok(license_with_seats(None));
    let mut s = run(None, &key, ts(ISSUED)).status;
    assert!(with_seats(&mut s, None, measured(1_000_000).as_ref(), ts(ISSUED)).is_empty());
    assert_eq!(condition(&s, WITHIN_SEATS).status, "True");
    assert_eq!(condition(&s, WITHIN_SEATS).reason, "Unlimited");
    assert_eq!(s.seats.as_ref().unwrap().summary.as_deref(), Some("1000000/unlimited"));
}

#[test]
fn an_unreadable_report_is_a_reason_not_a_crash() {
    let key = ok(license(1, Some(EXP)));
    let mut s = run(None, &key, ts(ISSUED)).status;
    let usage = SeatUsage::Unavailable(Finding::new(SeatReason::SeatsReportInvalid, "not JSON"));
    assert!(with_seats(&mut s, None, Some(&usage), ts(ISSUED)).is_empty());
    assert_eq!(
        (
            condition(&s, WITHIN_SEATS).status.as_str(),
            condition(&s, WITHIN_SEATS).reason.as_str()
        ),
        ("Unknown", "SeatsReportInvalid")
    );
    assert_eq!(s.seats.as_ref().unwrap().summary.as_deref(), Some("10"));
    // Without spec.seats there is no condition at all.
    let mut plain = run(None, &key, ts(ISSUED)).status;
    with_seats(&mut plain, None, None, ts(ISSUED));
    assert!(plain.conditions.iter().all(|c| c.type_ != WITHIN_SEATS));
}

#[test]
fn a_renewal_in_the_warning_window_rotates_and_returns_to_active() {
    let warning = run(None, &ok(license(1, Some(EXP))), ts(EXP - 10 * 86_400)).status;
    assert_eq!(warning.state, Some(LicenseState::Warning));
    let out = run(
        Some(&warning),
        &ok(license(2, Some(EXP + 365 * 86_400))),
        ts(EXP - 10 * 86_400 + 5),
    );
    let reasons: Vec<&str> = out.events.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["KeyRotated", "Validated"]);
    // From Invalid, a valid key is validated, not rotated.
    let invalid = run(Some(&warning), &refusal("SignatureInvalid"), ts(EXP - 10 * 86_400 + 6)).status;
    let back = run(
        Some(&invalid),
        &ok(license(2, Some(EXP + 365 * 86_400))),
        ts(EXP - 10 * 86_400 + 7),
    );
    let reasons: Vec<&str> = back.events.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["Validated"]);
}

fn kstatus(key: &KeyOutcome, rollout: Option<&crate::controller::rollout::RolloutSummary>) -> LicenseStatus {
    let mut s = run(None, key, ts(ISSUED)).status;
    with_kstatus(&mut s, None, key, rollout, None, ts(ISSUED));
    s
}

#[test]
fn stalled_and_reconciling_are_present_only_while_true() {
    use crate::controller::rollout::{RolloutReason, RolloutSummary};
    let valid = kstatus(&ok(license(1, Some(EXP))), None);
    assert!(valid.condition("Stalled").is_none() && valid.condition("Reconciling").is_none());
    let refused = kstatus(&refusal("SignatureInvalid"), None);
    let stalled = refused.condition("Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "SignatureInvalid")
    );
    assert!(refused.condition("Reconciling").is_none());
    let waiting = KeyOutcome::Refused(Refusal {
        finding: Finding::new(KeyReason::NotYetValid, "later"),
        fingerprint: None,
        not_before: Some(ts(ISSUED + 3600)),
    });
    let pending = kstatus(&waiting, None);
    let reconciling = pending.condition("Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "WaitingForKey")
    );
    assert!(
        pending.condition("Stalled").is_none(),
        "a key that starts later needs nobody"
    );
    for missing in ["SecretNotFound", "KeyNotFound"] {
        let s = kstatus(&refusal(missing), None);
        assert!(s.condition("Stalled").is_none(), "{missing}: the Secret may come later");
        assert_eq!(s.condition("Reconciling").unwrap().reason, "WaitingForSecret");
    }
    for (reason, stalls) in [
        (RolloutReason::TargetConflict, true),
        (RolloutReason::TargetNotAllowed, true),
        (RolloutReason::InvalidSpec, true),
        (RolloutReason::RolledOut, false),
    ] {
        let summary = RolloutSummary {
            status: Default::default(),
            finding: Finding::new(reason, "m"),
        };
        let s = kstatus(&ok(license(1, Some(EXP))), Some(&summary));
        assert_eq!(s.condition("Stalled").is_some(), stalls, "{reason}");
    }
    // Once the cause is gone, the condition goes too.
    let mut s = refused.clone();
    let key = ok(license(1, Some(EXP)));
    with_kstatus(&mut s, Some(&refused), &key, None, None, ts(ISSUED + 5));
    assert!(s.condition("Stalled").is_none());
}
