//! When to ask for a restart: only when the operator cannot recover on its own.
//!
//! A restart helps when the API server answers but the controller's caches have not synced for a
//! long time (a wedged watch, a lost permission that a new process would report at once). It
//! does not help while the API server is unreachable: every replica would restart in a loop for
//! nothing, so an outage never fails liveness, however long.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nothing recorded yet.
const NEVER: u64 = u64::MAX;

/// Shared between the controller, which reports its progress, and `/healthz`, which judges it.
#[derive(Clone)]
pub struct Liveness(Arc<Inner>);

struct Inner {
    start: Instant,
    /// Milliseconds since `start` when the controller began syncing its caches; NEVER when
    /// synced.
    syncing_since: AtomicU64,
    /// Milliseconds since `start` of the API server's latest answer (any HTTP status).
    api_answered: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self(Arc::new(Inner {
            start: Instant::now(),
            syncing_since: AtomicU64::new(NEVER),
            api_answered: AtomicU64::new(NEVER),
        }))
    }
}

/// Why the operator asks to be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the controller's caches have not synced for {}s although the API server answers; a restart may recover",
    .syncing_for.as_secs()
)]
pub struct Stuck {
    pub syncing_for: Duration,
}

/// The verdict, from milliseconds on one clock: stuck once syncing has lasted longer than
/// `deadline` and the API server answered after that deadline passed.
pub fn verdict(now: u64, syncing_since: u64, api_answered: u64, deadline: Duration) -> Result<(), Stuck> {
    if syncing_since == NEVER || api_answered == NEVER {
        return Ok(());
    }
    let deadline_ms = deadline.as_millis() as u64;
    let syncing_for = now.saturating_sub(syncing_since);
    let answered_after_deadline = api_answered >= syncing_since.saturating_add(deadline_ms);
    if syncing_for > deadline_ms && answered_after_deadline {
        Err(Stuck {
            syncing_for: Duration::from_millis(syncing_for),
        })
    } else {
        Ok(())
    }
}

impl Liveness {
    fn now(&self) -> u64 {
        self.0.start.elapsed().as_millis() as u64
    }

    /// The controller (re)started and is syncing its caches.
    pub fn syncing(&self) {
        self.0.syncing_since.store(self.now(), Ordering::SeqCst);
    }

    /// The caches synced.
    pub fn synced(&self) {
        self.0.syncing_since.store(NEVER, Ordering::SeqCst);
    }

    /// The API server answered a request (whatever the status: it is reachable).
    pub fn api_answered(&self) {
        self.0.api_answered.store(self.now(), Ordering::SeqCst);
    }

    pub fn check(&self, deadline: Duration) -> Result<(), Stuck> {
        verdict(
            self.now(),
            self.0.syncing_since.load(Ordering::SeqCst),
            self.0.api_answered.load(Ordering::SeqCst),
            deadline,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(300);
    const MIN: u64 = 60_000;

    #[test]
    fn synced_or_never_answered_is_alive() {
        assert_eq!(verdict(60 * MIN, NEVER, 59 * MIN, DEADLINE), Ok(()));
        // Syncing for an hour, but the API server never answered: an outage, not a wedge.
        assert_eq!(verdict(60 * MIN, 0, NEVER, DEADLINE), Ok(()));
    }

    #[test]
    fn syncing_within_the_deadline_is_alive() {
        assert_eq!(verdict(4 * MIN, 0, 4 * MIN, DEADLINE), Ok(()));
        assert_eq!(verdict(5 * MIN, 0, 5 * MIN, DEADLINE), Ok(()));
    }

    #[test]
    fn syncing_past_the_deadline_while_the_api_answers_is_stuck() {
        assert_eq!(
            verdict(5 * MIN + 1, 0, 5 * MIN, DEADLINE),
            Err(Stuck {
                syncing_for: Duration::from_millis(5 * MIN + 1)
            })
        );
        let e = verdict(10 * MIN, MIN, 9 * MIN, DEADLINE).unwrap_err();
        assert_eq!(e.syncing_for, Duration::from_secs(9 * 60));
        assert!(e.to_string().contains("540s"), "{e}");
    }

    #[test]
    fn an_outage_that_began_before_the_deadline_is_not_a_wedge() {
        // The API server last answered a minute into the sync and has been silent since.
        assert_eq!(verdict(30 * MIN, 0, MIN, DEADLINE), Ok(()));
    }

    #[test]
    fn the_handle_tracks_sync_and_answers() {
        let l = Liveness::default();
        l.syncing();
        assert_eq!(l.check(Duration::ZERO), Ok(()), "no answer yet");
        l.api_answered();
        l.synced();
        assert_eq!(l.check(Duration::ZERO), Ok(()), "synced");
    }
}
