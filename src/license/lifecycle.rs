//! Graduated enforcement: where a verified license stands at a given instant.
//!
//! With `exp` the expiry, `warn` the warning window and `grace` the grace period, the states are
//! half-open intervals:
//!
//! | state      | interval                    |
//! |------------|-----------------------------|
//! | `Active`   | `(-inf, exp - warn)`        |
//! | `Warning`  | `[exp - warn, exp)`         |
//! | `Grace`    | `[exp, exp + grace)`        |
//! | `ReadOnly` | `[exp + grace, +inf)`       |
//!
//! An empty interval (`warn = 0` or `grace = 0`) is skipped. A perpetual license (no `exp`) is
//! always `Active`. In the last `notice` (14 days) before expiry, one notice is due per day; the
//! day is identified by how many whole days remain, rounded up.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::claims::Claims;

const DAY: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    Active,
    Warning,
    Grace,
    ReadOnly,
}

impl State {
    pub const ALL: [State; 4] = [State::Active, State::Warning, State::Grace, State::ReadOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "Active",
            State::Warning => "Warning",
            State::Grace => "Grace",
            State::ReadOnly => "ReadOnly",
        }
    }

    /// One line a human reads to know what the state means for them.
    pub fn explanation(self) -> &'static str {
        match self {
            State::Active => "the license is valid and not close to expiry",
            State::Warning => "the license expires soon; renew it to avoid interruption",
            State::Grace => "the license has expired; everything keeps working until the grace period ends",
            State::ReadOnly => "the license expired and its grace period is over; the product runs in read-only mode",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The enforcement policy: signed claims win over the operator's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub warn: SignedDuration,
    pub grace: SignedDuration,
    pub notice: SignedDuration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            warn: DAY * 30,
            grace: DAY * 14,
            notice: DAY * 14,
        }
    }
}

impl Policy {
    /// The policy for one license: its signed `warn` and `grace` claims override these defaults.
    /// Nothing unsigned can lengthen a grace period the vendor signed.
    pub fn for_claims(&self, claims: &Claims) -> Policy {
        let secs = |s: u64| SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX));
        Policy {
            warn: claims.warn.map(secs).unwrap_or(self.warn),
            grace: claims.grace.map(secs).unwrap_or(self.grace),
            notice: self.notice,
        }
    }
}

/// The fixed instants of one license's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub issued_at: Option<Timestamp>,
    pub valid_from: Option<Timestamp>,
    pub expiry: Option<Expiry>,
    pub notice: SignedDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub warning_at: Timestamp,
    pub expires_at: Timestamp,
    pub grace_ends_at: Timestamp,
}

impl Timeline {
    pub fn new(claims: &Claims, policy: &Policy) -> Timeline {
        let expiry = claims.expires_at().map(|expires_at| Expiry {
            warning_at: expires_at.checked_sub(policy.warn).unwrap_or(Timestamp::MIN),
            expires_at,
            grace_ends_at: expires_at.checked_add(policy.grace).unwrap_or(Timestamp::MAX),
        });
        Timeline {
            issued_at: claims.issued_at(),
            valid_from: claims.valid_from(),
            expiry,
            notice: policy.notice,
        }
    }

    pub fn state_at(&self, now: Timestamp) -> State {
        match self.expiry {
            None => State::Active,
            Some(e) if now >= e.grace_ends_at => State::ReadOnly,
            Some(e) if now >= e.expires_at => State::Grace,
            Some(e) if now >= e.warning_at => State::Warning,
            Some(_) => State::Active,
        }
    }

    pub fn evaluate(&self, now: Timestamp) -> Evaluation {
        let state = self.state_at(now);
        let Some(e) = self.expiry else {
            return Evaluation {
                state,
                since: self.valid_from,
                next_transition: None,
                remaining: None,
                notice: None,
            };
        };
        let since = match state {
            State::Active => self.valid_from,
            State::Warning => Some(e.warning_at),
            State::Grace => Some(e.expires_at),
            State::ReadOnly => Some(e.grace_ends_at),
        };
        let next_transition = [e.warning_at, e.expires_at, e.grace_ends_at]
            .into_iter()
            .filter(|&at| at > now)
            .map(|at| Transition {
                state: self.state_at(at),
                at,
            })
            .find(|t| t.state != state);
        Evaluation {
            state,
            since,
            next_transition,
            remaining: Some(e.expires_at.duration_since(now)),
            notice: self.notice_at(now, &e, state),
        }
    }

    fn notice_at(&self, now: Timestamp, e: &Expiry, state: State) -> Option<Notice> {
        let window_start = e.expires_at.checked_sub(self.notice).ok()?;
        if state != State::Warning || now < window_start {
            return None;
        }
        let left = e.expires_at.duration_since(now);
        let days_left = ceil_days(left);
        let next_at = (days_left > 1)
            .then(|| e.expires_at.checked_sub(DAY * (days_left - 1) as i32).ok())
            .flatten();
        Some(Notice { days_left, next_at })
    }
}

/// Whole days in `d`, rounded up (`d` > 0).
fn ceil_days(d: SignedDuration) -> i64 {
    let secs = d.as_secs() + i64::from(d.subsec_nanos() > 0);
    (secs + DAY.as_secs() - 1) / DAY.as_secs()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub state: State,
    pub at: Timestamp,
}

/// A daily expiry notice: due once for each value of `days_left`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub days_left: i64,
    /// When the next day's notice becomes due (none on the last day: expiry comes first).
    pub next_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub state: State,
    /// When the current state began, where known.
    pub since: Option<Timestamp>,
    /// The exact instant the state next changes; `None` once nothing more can change.
    pub next_transition: Option<Transition>,
    /// Time left until expiry (negative after it); `None` for a perpetual license.
    pub remaining: Option<SignedDuration>,
    pub notice: Option<Notice>,
}

impl Evaluation {
    /// The next instant anything observable changes: a state transition or a daily notice.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let notice = self.notice.and_then(|n| n.next_at);
        match (self.next_transition.map(|t| t.at), notice) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::claims::ExtraClaims;

    const EXP: i64 = 2_000_000_000;
    const S: SignedDuration = SignedDuration::from_secs(1);

    fn claims(exp: Option<i64>, warn: Option<u64>, grace: Option<u64>) -> Claims {
        Claims {
            sub: "acme".into(),
            aud: "zizq".into(),
            iss: None,
            iat: Some(1_900_000_000),
            nbf: None,
            exp,
            jti: None,
            tier: None,
            features: vec![],
            seats: None,
            grace,
            warn,
            extra: ExtraClaims::default(),
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn timeline(exp: Option<i64>, warn: Option<u64>, grace: Option<u64>) -> Timeline {
        let c = claims(exp, warn, grace);
        Timeline::new(&c, &Policy::default().for_claims(&c))
    }

    #[test]
    fn default_boundaries_one_second_either_side() {
        let t = timeline(Some(EXP), None, None);
        let exp = ts(EXP);
        let warning_at = exp - DAY * 30;
        let grace_end = exp + DAY * 14;
        let cases = [
            (warning_at - S, State::Active),
            (warning_at, State::Warning),
            (warning_at + S, State::Warning),
            (exp - S, State::Warning),
            (exp, State::Grace),
            (exp + S, State::Grace),
            (grace_end - S, State::Grace),
            (grace_end, State::ReadOnly),
            (grace_end + S, State::ReadOnly),
        ];
        for (at, expected) in cases {
            assert_eq!(t.state_at(at), expected, "at {at}");
        }
    }

    #[test]
    fn next_transition_is_exact_and_since_is_the_interval_start() {
        let t = timeline(Some(EXP), None, None);
        let exp = ts(EXP);
        let e = t.evaluate(ts(1_900_000_000));
        assert_eq!(e.state, State::Active);
        assert_eq!(e.since, Some(ts(1_900_000_000)));
        assert_eq!(
            e.next_transition,
            Some(Transition {
                state: State::Warning,
                at: exp - DAY * 30
            })
        );
        let e = t.evaluate(exp - DAY * 30);
        assert_eq!(e.since, Some(exp - DAY * 30));
        assert_eq!(
            e.next_transition,
            Some(Transition {
                state: State::Grace,
                at: exp
            })
        );
        let e = t.evaluate(exp);
        assert_eq!(e.since, Some(exp));
        assert_eq!(
            e.next_transition,
            Some(Transition {
                state: State::ReadOnly,
                at: exp + DAY * 14
            })
        );
        assert_eq!(e.remaining, Some(SignedDuration::ZERO));
        let e = t.evaluate(exp + DAY * 100);
        assert_eq!(e.state, State::ReadOnly);
        assert_eq!(e.next_transition, None);
        assert_eq!(e.remaining, Some(-(DAY * 100)));
    }

    #[test]
    fn perpetual_is_always_active() {
        let t = timeline(None, Some(5), Some(5));
        for at in [ts(1), ts(EXP), Timestamp::MAX] {
            let e = t.evaluate(at);
            assert_eq!(e.state, State::Active);
            assert_eq!(e.next_transition, None);
            assert_eq!(e.remaining, None);
            assert_eq!(e.notice, None);
            assert_eq!(e.next_wakeup(), None);
        }
    }

    #[test]
    fn policy_from_claims_beats_defaults() {
        let t = timeline(Some(EXP), Some(10), Some(20));
        assert_eq!(t.state_at(ts(EXP - 11)), State::Active);
        assert_eq!(t.state_at(ts(EXP - 10)), State::Warning);
        assert_eq!(t.state_at(ts(EXP + 19)), State::Grace);
        assert_eq!(t.state_at(ts(EXP + 20)), State::ReadOnly);
    }

    #[test]
    fn operator_defaults_apply_only_without_claims() {
        let defaults = Policy {
            warn: S * 100,
            grace: S * 7,
            notice: DAY * 14,
        };
        let signed = claims(Some(EXP), None, Some(3));
        let p = defaults.for_claims(&signed);
        assert_eq!(p.warn, S * 100);
        assert_eq!(
            p.grace,
            S * 3,
            "a signed grace is never lengthened by the operator's defaults"
        );
    }

    #[test]
    fn empty_intervals_are_skipped() {
        let t = timeline(Some(EXP), Some(0), Some(0));
        let e = t.evaluate(ts(EXP - 1));
        assert_eq!(e.state, State::Active);
        assert_eq!(
            e.next_transition,
            Some(Transition {
                state: State::ReadOnly,
                at: ts(EXP)
            })
        );
        assert_eq!(t.state_at(ts(EXP)), State::ReadOnly);
        let t = timeline(Some(EXP), Some(0), Some(60));
        assert_eq!(
            t.evaluate(ts(EXP - 1)).next_transition,
            Some(Transition {
                state: State::Grace,
                at: ts(EXP)
            })
        );
    }

    #[test]
    fn daily_notices_in_the_last_fourteen_days() {
        let t = timeline(Some(EXP), None, None);
        let exp = ts(EXP);
        assert_eq!(t.evaluate(exp - DAY * 14 - S).notice, None);
        let first = t.evaluate(exp - DAY * 14).notice.unwrap();
        assert_eq!(first.days_left, 14);
        assert_eq!(first.next_at, Some(exp - DAY * 13));
        assert_eq!(t.evaluate(exp - DAY * 13 - S).notice.unwrap().days_left, 14);
        assert_eq!(t.evaluate(exp - DAY * 13).notice.unwrap().days_left, 13);
        let last = t.evaluate(exp - S).notice.unwrap();
        assert_eq!(
            last,
            Notice {
                days_left: 1,
                next_at: None
            }
        );
        assert_eq!(t.evaluate(exp).notice, None);
        // The wake-up covers notices as well as transitions.
        let e = t.evaluate(exp - DAY * 14 + S);
        assert_eq!(e.next_wakeup(), Some(exp - DAY * 13));
        assert_eq!(e.next_transition.unwrap().at, exp);
    }

    #[test]
    fn notices_never_start_before_the_warning_window() {
        let t = timeline(Some(EXP), Some(3 * 86_400), None);
        assert_eq!(t.evaluate(ts(EXP) - DAY * 5).notice, None);
        assert_eq!(t.evaluate(ts(EXP) - DAY * 3).notice.unwrap().days_left, 3);
    }

    #[test]
    fn extreme_policies_saturate_instead_of_overflowing() {
        let c = claims(
            Some(crate::license::claims::MAX_NUMERIC_DATE),
            Some(u64::MAX),
            Some(u64::MAX),
        );
        let t = Timeline::new(&c, &Policy::default().for_claims(&c));
        assert_eq!(t.state_at(ts(1)), State::Warning);
        let _ = t.evaluate(Timestamp::MAX);
        let _ = t.evaluate(Timestamp::MIN);
    }
}
