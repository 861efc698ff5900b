//! Choosing the key in force among several: a current key and renewals dated to start later.
//!
//! A key is *in force* when it verified (signature, product) and its validity has started. Among
//! those, the one that stays in force longest wins: the latest end of its grace period, a
//! perpetual key beyond all; a tie goes to the key listed first. A key that verified but starts
//! later is *waiting*, and takes over at its start, exactly: the verification leeway for clock
//! skew (a key minted a few seconds "in the future" by the vendor's clock) applies only when no
//! key has started, so a dated renewal never pre-empts the current key by the leeway. A refused
//! key never takes over and never hides a valid one.

use jiff::Timestamp;

use super::VerifyError;
use super::lifecycle::{Policy, Timeline};
use super::verify::{DEFAULT_LEEWAY, VerifiedLicense};

/// What verifying one candidate found, as the selection needs it.
#[derive(Debug, Clone, Copy)]
pub enum Candidate<'a> {
    Verified(&'a VerifiedLicense),
    /// Signed and trusted, but beyond the leeway before its start (`NotYetValid`).
    StartsAt(Timestamp),
    /// Refused for any other reason, or unreadable.
    Refused,
}

impl<'a> Candidate<'a> {
    pub fn of(result: &'a Result<VerifiedLicense, VerifyError>) -> Self {
        match result {
            Ok(l) => Candidate::Verified(l),
            Err(VerifyError::NotYetValid { not_before, .. }) => Candidate::StartsAt(*not_before),
            Err(_) => Candidate::Refused,
        }
    }
}

/// Where one candidate key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    InForce,
    /// Valid, but another key stays in force longer.
    Superseded,
    /// Signed and trusted, valid from `starts_at`.
    Waiting {
        starts_at: Timestamp,
    },
    Refused,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Index of the key in force, if any.
    pub in_force: Option<usize>,
    /// One standing per candidate, in the candidates' order.
    pub standings: Vec<Standing>,
    /// The next instant a waiting key may take over: the selection must be made again then.
    pub next_start: Option<Timestamp>,
}

/// The end of a key's service: when it turns read-only. `None` sorts as never.
fn end(license: &VerifiedLicense, policy: &Policy) -> Option<Timestamp> {
    Timeline::new(&license.claims, &policy.for_claims(&license.claims))
        .expiry
        .map(|e| e.grace_ends_at)
}

/// `a` stays in force longer than `b`.
fn outlasts(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

fn best(indices: &[usize], ends: &[Option<Timestamp>]) -> Option<usize> {
    let mut winner = *indices.first()?;
    for &i in &indices[1..] {
        if outlasts(ends[i], ends[winner]) {
            winner = i;
        }
    }
    Some(winner)
}

/// Chooses among the candidates, verified at `now`, in the order they are listed (the License's
/// primary key first).
pub fn select(candidates: &[Candidate], policy: &Policy, now: Timestamp) -> Selection {
    let starts_later = |l: &VerifiedLicense| l.claims.valid_from().filter(|from| *from > now);
    let mut started = Vec::new();
    let mut early = Vec::new();
    let mut ends = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        let Candidate::Verified(l) = c else {
            ends.push(None);
            continue;
        };
        ends.push(end(l, policy));
        if starts_later(l).is_none() {
            started.push(i);
        } else {
            early.push(i);
        }
    }
    let in_force = best(&started, &ends).or_else(|| best(&early, &ends));
    let standings: Vec<Standing> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Candidate::Verified(_) if Some(i) == in_force => Standing::InForce,
            Candidate::Verified(l) => match starts_later(l) {
                Some(starts_at) => Standing::Waiting { starts_at },
                None => Standing::Superseded,
            },
            Candidate::StartsAt(starts_at) => Standing::Waiting { starts_at: *starts_at },
            Candidate::Refused => Standing::Refused,
        })
        .collect();
    let next_start = standings
        .iter()
        .filter_map(|s| match s {
            // With no key in force, a waiting key is accepted once inside the leeway.
            Standing::Waiting { starts_at } if in_force.is_none() => starts_at.checked_sub(DEFAULT_LEEWAY).ok(),
            Standing::Waiting { starts_at } => Some(*starts_at),
            _ => None,
        })
        .min();
    Selection {
        in_force,
        standings,
        next_start,
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::license::keys::signing_key_from_seed;
    use crate::license::{Claims, ExtraClaims, Format, KeySet, TrustedKey, VerifyOptions, issue, verify};

    const T0: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn keys() -> (ed25519_dalek::SigningKey, KeySet) {
        let key = signing_key_from_seed(&[1; 32]);
        let mut set = KeySet::new();
        set.insert(TrustedKey::new(Some("v1"), key.verifying_key()).unwrap())
            .unwrap();
        (key, set)
    }

    /// A key valid from `nbf` until `exp` (`None`: perpetual), verified at `now`.
    fn candidate(nbf: i64, exp: Option<i64>, product: &str, now: i64) -> Result<VerifiedLicense, VerifyError> {
        let (key, set) = keys();
        let claims = Claims {
            sub: "Acme".into(),
            aud: product.into(),
            iss: None,
            iat: Some(T0 - DAY),
            nbf: Some(nbf),
            exp,
            jti: None,
            tier: None,
            features: vec![],
            seats: None,
            grace: None,
            warn: None,
            extra: ExtraClaims::default(),
        };
        let token = issue(&claims, &key, Some("v1"), &Format::Jwt).unwrap();
        verify(
            token.as_bytes(),
            &set,
            &VerifyOptions::at(ts(now)).product(Some("zizq")),
        )
    }

    fn pick(results: &[Result<VerifiedLicense, VerifyError>], now: i64) -> Selection {
        let candidates: Vec<Candidate> = results.iter().map(Candidate::of).collect();
        select(&candidates, &Policy::default(), ts(now))
    }

    #[test]
    fn a_dated_renewal_waits_and_takes_over_at_its_start_exactly() {
        let exp = T0 + 10 * DAY;
        for now in [T0, exp - 30, exp - 1] {
            let c = [
                candidate(T0 - DAY, Some(exp), "zizq", now),
                candidate(exp, Some(exp + 365 * DAY), "zizq", now),
            ];
            let s = pick(&c, now);
            assert_eq!(
                s.in_force,
                Some(0),
                "at {now}: not before its start, not even by the leeway"
            );
            assert_eq!(s.standings[1], Standing::Waiting { starts_at: ts(exp) });
            assert_eq!(s.next_start, Some(ts(exp)));
        }
        let c = [
            candidate(T0 - DAY, Some(exp), "zizq", exp),
            candidate(exp, Some(exp + 365 * DAY), "zizq", exp),
        ];
        let s = pick(&c, exp);
        assert_eq!(s.in_force, Some(1));
        assert_eq!(s.standings[0], Standing::Superseded);
        assert_eq!(s.next_start, None);
    }

    #[test]
    fn the_key_that_stays_in_force_longest_wins_and_ties_go_to_the_first() {
        let now = T0;
        let c = [
            candidate(T0 - DAY, Some(T0 + DAY), "zizq", now),
            candidate(T0 - DAY, None, "zizq", now),
            candidate(T0 - DAY, Some(T0 + 900 * DAY), "zizq", now),
        ];
        assert_eq!(pick(&c, now).in_force, Some(1), "perpetual outlasts every expiry");
        let c = [
            candidate(T0 - DAY, Some(T0 + DAY), "zizq", now),
            candidate(T0 - DAY, Some(T0 + DAY), "zizq", now),
        ];
        assert_eq!(pick(&c, now).in_force, Some(0));
    }

    #[test]
    fn an_expired_key_never_beats_a_valid_one() {
        let now = T0;
        // Read-only for weeks, listed first.
        let expired = candidate(T0 - 400 * DAY, Some(T0 - 60 * DAY), "zizq", now);
        let valid = candidate(T0 - DAY, Some(T0 + 30 * DAY), "zizq", now);
        let s = pick(&[expired.clone(), valid.clone()], now);
        assert_eq!(s.in_force, Some(1));
        assert_eq!(pick(&[valid, expired], now).in_force, Some(0));
    }

    #[test]
    fn a_refused_key_never_takes_over_nor_hides_a_valid_one() {
        let now = T0;
        let c = [
            candidate(T0 - DAY, None, "other-product", now),
            candidate(T0 - DAY, Some(T0 + DAY), "zizq", now),
        ];
        let s = pick(&c, now);
        assert_eq!(s.in_force, Some(1));
        assert!(matches!(c[0], Err(VerifyError::ProductMismatch { .. })));
        assert_eq!(s.standings[0], Standing::Refused);
        let none = pick(&c[..1], now);
        assert_eq!(none.in_force, None);
    }

    #[test]
    fn with_no_key_started_the_leeway_applies_and_the_wake_up_respects_it() {
        let now = T0;
        // Starts in 30 s: inside the 60 s leeway, so in force already when nothing else is.
        let soon = candidate(T0 + 30, Some(T0 + DAY), "zizq", now);
        assert_eq!(pick(std::slice::from_ref(&soon), now).in_force, Some(0));
        // Starts in an hour: waiting; looked at again when verification will accept it.
        let later = candidate(T0 + 3600, Some(T0 + DAY), "zizq", now);
        let s = pick(&[later], now);
        assert_eq!(s.in_force, None);
        assert_eq!(s.next_start, Some(ts(T0 + 3600) - SignedDuration::from_secs(60)));
    }
}
