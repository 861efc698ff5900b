//! Recognising the watch events of Keyward's own writes (target Secrets, License status).
//!
//! Every target Secret Keyward writes comes back through the Secret watch, which maps it to its
//! License, and every status write comes back through the License watch: without this, each
//! write would queue one more reconcile of a License that has just been reconciled (measured: a
//! cold start of 1,000 Licenses reconciled each about three times).
//! A write records the resourceVersion the API server gave it; the event carrying exactly that
//! version is its echo and is dropped, once. Anyone else's change to a target has another
//! version and still wakes the License, which puts the target or the status right.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::object_key::{ObjectKey, versioned};

/// How long a write's echo is waited for before the cache is taken as it is: an echo can be lost
/// (the object changed again before a relist), and nothing may wait for it forever.
pub const ECHO_WAIT: Duration = Duration::from_secs(2);

/// (namespace, name) → the resourceVersion Keyward's latest write got, and when.
type Writes = HashMap<ObjectKey, (String, Instant)>;

#[derive(Clone, Default)]
pub struct WriteEchoes(Arc<Mutex<Writes>>);

impl WriteEchoes {
    /// Keyward wrote this object (the API server's answer to the write).
    pub fn record(&self, written: &ObjectMeta) {
        if let Some((at, version)) = versioned(written) {
            self.0.lock().unwrap().insert(at, (version, Instant::now()));
        }
    }

    /// Whether `cached` predates Keyward's latest write to it, written less than [`ECHO_WAIT`]
    /// before `now`: its echo is still to come, and a reconcile of this copy would decide from a
    /// status already replaced (and write it, and its events, a second time).
    pub fn awaiting(&self, cached: &ObjectMeta, now: Instant) -> bool {
        let Some((at, version)) = versioned(cached) else {
            return false;
        };
        let writes = self.0.lock().unwrap();
        writes
            .get(&at)
            .is_some_and(|(written, when)| *written != version && now.duration_since(*when) < ECHO_WAIT)
    }

    /// Forgets every write: after the store went back in time, a version may name another
    /// write.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Whether a watched object is the echo of Keyward's latest write to it; an echo is
    /// recognised once and forgotten, so the map holds only writes whose event is still to come.
    pub fn is_echo(&self, seen: &ObjectMeta) -> bool {
        let Some((at, version)) = versioned(seen) else {
            return false;
        };
        let mut writes = self.0.lock().unwrap();
        if writes.get(&at).is_some_and(|(written, _)| *written == version) {
            writes.remove(&at);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, name: &str, version: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_the_exact_version_written_is_an_echo_and_only_once() {
        let echoes = WriteEchoes::default();
        echoes.record(&meta("a", "t", "10"));
        assert!(!echoes.is_echo(&meta("a", "t", "11")), "someone else's change");
        assert!(!echoes.is_echo(&meta("b", "t", "10")), "another namespace");
        assert!(echoes.is_echo(&meta("a", "t", "10")));
        assert!(
            !echoes.is_echo(&meta("a", "t", "10")),
            "a replay of the same version is not ours twice"
        );
        assert!(echoes.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_copy_older_than_a_recent_write_awaits_its_echo_for_a_while() {
        let echoes = WriteEchoes::default();
        assert!(
            !echoes.awaiting(&meta("a", "t", "9"), Instant::now()),
            "nothing written"
        );
        echoes.record(&meta("a", "t", "10"));
        let now = Instant::now();
        assert!(echoes.awaiting(&meta("a", "t", "9"), now), "the copy before the write");
        assert!(!echoes.awaiting(&meta("b", "t", "9"), now), "another namespace");
        assert!(!echoes.awaiting(&meta("a", "t", "9"), now + ECHO_WAIT), "an echo lost");
        assert!(!echoes.awaiting(&meta("a", "t", "10"), now), "the copy written");
        assert!(echoes.is_echo(&meta("a", "t", "10")));
        assert!(!echoes.awaiting(&meta("a", "t", "9"), now), "the echo has come");
    }

    #[test]
    fn a_later_write_replaces_the_earlier_one() {
        let echoes = WriteEchoes::default();
        echoes.record(&meta("a", "t", "10"));
        echoes.record(&meta("a", "t", "12"));
        assert!(!echoes.is_echo(&meta("a", "t", "10")));
        assert!(echoes.is_echo(&meta("a", "t", "12")));
    }
}
