//! How long the controller's watches pause after an error.
//!
//! kube-runtime's `Controller` puts one backoff over the merged stream of all its watches (the
//! Licenses, and the Secrets, ConfigMaps, Pods and Namespaces they reference), and its default
//! doubles from 0.8 s up to 30 s and resets only after 120 s. During an API server restart every
//! watch fails at once, so a ten-second outage drove the pause to tens of seconds: measured, a key
//! rotated right after such a restart was not seen for over 30 s
//! (`tests/faults.rs api_server_down…`). This backoff doubles from 250 ms to at most 4 s, with
//! jitter so many operators do not return in step, and resets on the first success.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        Some(jittered(base))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// `base` plus up to a quarter of it, at random.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let fraction = match getrandom::fill(&mut byte) {
        Ok(()) => f64::from(byte[0]) / 255.0,
        Err(_) => 0.5,
    };
    base.mul_f64(1.0 + fraction / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap_and_resets() {
        let mut b = WatchBackoff::default();
        let pauses: Vec<Duration> = (0..8).map(|_| b.next().unwrap()).collect();
        for (pause, base_ms) in pauses.iter().zip([250, 500, 1000, 2000, 4000, 4000, 4000, 4000]) {
            let base = Duration::from_millis(base_ms);
            assert!(*pause >= base && *pause <= base.mul_f64(1.25), "{pause:?} for {base:?}");
        }
        b.reset();
        assert!(b.next().unwrap() <= FIRST.mul_f64(1.25));
    }
}
