//! Noticing that the cluster's state went back in time.
//!
//! Restoring etcd from a snapshot, or refilling an empty one, sets every resourceVersion back.
//! kube-runtime's watchers resume from the last version they saw, which the rewound store has not
//! reached: such a watch waits and raises no error, so a running operator silently stops seeing
//! changes (reproduced: `tests/restore.rs` timed out after 60 s before this module existed).
//! kube-runtime has no hook for it, so this is the smallest wrapper that helps: every few seconds,
//! a one-item list of Secret metadata reads the store's current revision; a revision lower than
//! one already seen (read so, or carried by a License in the controller's cache) means a rewind,
//! and the controller then starts over with fresh watches (a full relist). The revision is
//! compared as a number: opaque by the API conventions, it is etcd's revision on every API server
//! in use.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use tracing::debug;

use crate::api::v1alpha1::License;
use crate::telemetry::Liveness;

/// How often the store's revision is read.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A rewind: the store's revision went from `from` back to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewind {
    pub from: u64,
    pub to: u64,
}

/// Tracks the highest revision seen; a lower one read from the store is a rewind. (The store's
/// revision, read consistently, never goes back otherwise. The revisions the cache holds raise
/// the bar but are never judged themselves: a License unchanged for a while is older than the
/// store's latest revision. Judging them, as this once did, restarted the controller for
/// nothing under load, as the fleet benchmark showed.)
#[derive(Debug, Default)]
pub struct RevisionTracker {
    highest: Option<u64>,
}

impl RevisionTracker {
    /// A revision known to have been reached, without judging it.
    pub fn raise(&mut self, revision: u64) {
        self.highest = Some(self.highest.map_or(revision, |h| h.max(revision)));
    }

    pub fn observe(&mut self, revision: u64) -> Option<Rewind> {
        match self.highest {
            Some(highest) if revision < highest => {
                self.highest = Some(revision);
                Some(Rewind {
                    from: highest,
                    to: revision,
                })
            }
            _ => {
                self.raise(revision);
                None
            }
        }
    }
}

/// What a fresh read of the License the cache saw change last says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The same object, at the cached version or later.
    Current,
    /// The same object at an earlier version: an object's version never goes back, so the
    /// store did.
    Behind,
    /// Gone, or another object under the name, while the cache still holds it: a deletion the
    /// watch has not delivered yet, or a store that lost it.
    Missing,
}

pub fn probe(cached_uid: &str, cached_version: u64, found: Option<(&str, u64)>) -> Probe {
    match found {
        Some((uid, version)) if uid == cached_uid && version >= cached_version => Probe::Current,
        Some((uid, _)) if uid == cached_uid => Probe::Behind,
        _ => Probe::Missing,
    }
}

/// The cached License with the highest version.
struct Newest {
    namespace: String,
    name: String,
    uid: String,
    version: u64,
    /// It holds Keyward's finalizer and is not being deleted: it cannot leave the store before
    /// Keyward has seen its deletion, so missing from a fresh read means the store lost it.
    guarded: bool,
}

fn newest(seen: &Store<License>) -> Option<Newest> {
    seen.state()
        .iter()
        .filter_map(|l| {
            let m = &l.metadata;
            Some(Newest {
                namespace: m.namespace.clone()?,
                name: m.name.clone()?,
                uid: m.uid.clone()?,
                version: m.resource_version.as_deref()?.parse::<u64>().ok()?,
                guarded: m.deletion_timestamp.is_none()
                    && m.finalizers.iter().flatten().any(|f| f == super::reconcile::FINALIZER),
            })
        })
        .max_by_key(|n| n.version)
}

/// Reads the store's current revision; every answer, whatever its status, goes to `liveness`.
async fn current_revision(secrets: &Api<PartialObjectMeta<Secret>>, liveness: &Liveness) -> Option<u64> {
    match secrets.list_metadata(&ListParams::default().limit(1)).await {
        Ok(list) => {
            liveness.api_answered();
            list.metadata.resource_version.and_then(|v| v.parse::<u64>().ok())
        }
        Err(e) => {
            if matches!(e, kube::Error::Api(_)) {
                liveness.api_answered();
            }
            debug!(error = %e, "could not read the store's revision");
            None
        }
    }
}

/// Reads `n` afresh and judges the store from it; `missing_before` carries an unguarded miss
/// to the next look.
async fn probe_newest(
    client: &Client,
    n: &Newest,
    current: u64,
    missing_before: &mut Option<(String, u64)>,
) -> Option<Rewind> {
    let found = Api::<License>::namespaced(client.clone(), &n.namespace)
        .get_opt(&n.name)
        .await
        .ok()?
        .map(|l| {
            let version = l.metadata.resource_version.as_deref().and_then(|v| v.parse().ok());
            (l.metadata.uid.unwrap_or_default(), version.unwrap_or(0))
        });
    let found = found.as_ref().map(|(u, v)| (u.as_str(), *v));
    let verdict = probe(&n.uid, n.version, found);
    debug!(license = %format!("{}/{}", n.namespace, n.name), cached = n.version, ?found, current, ?verdict, "rewind probe");
    let key = (n.uid.clone(), n.version);
    match verdict {
        Probe::Current => {
            *missing_before = None;
            None
        }
        Probe::Behind => Some(Rewind {
            from: n.version,
            to: found.map_or(0, |f| f.1),
        }),
        Probe::Missing if n.guarded || missing_before.as_ref() == Some(&key) => Some(Rewind {
            from: n.version,
            to: current,
        }),
        Probe::Missing => {
            *missing_before = Some(key);
            None
        }
    }
}

/// Returns when the store behind the API server has gone back in time. `seen` is the
/// controller's cache of Licenses. Two signs, looked at every few seconds:
/// * the store's revision is lower than one already reached (read so, or carried by a cached
///   License);
/// * the License the cache saw change last, read afresh, is at an earlier version, or missing
///   although it holds Keyward's finalizer (at once; without the finalizer, twice in a row, as a
///   deletion may be on its way). This one catches a restore to a point only a few changes back,
///   which the API server's own writes at start-up can carry past the highest revision seen.
pub async fn watch(client: Client, namespace: Option<String>, seen: Store<License>, liveness: Liveness) -> Rewind {
    let secrets: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut tracker = RevisionTracker::default();
    let mut missing_before: Option<(String, u64)> = None;
    loop {
        let newest = newest(&seen);
        if let Some(current) = current_revision(&secrets, &liveness).await {
            // What the cache holds was reached before this read: it raises what counts as seen,
            // but is never itself judged (a License unchanged for a while is simply older than
            // the store's latest revision).
            if let Some(n) = &newest {
                tracker.raise(n.version);
            }
            if let Some(rewind) = tracker.observe(current) {
                return rewind;
            }
            if let Some(n) = newest
                && let Some(rewind) = probe_newest(&client, &n, current, &mut missing_before).await
            {
                return rewind;
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_revision_lower_than_one_seen_is_a_rewind() {
        let mut t = RevisionTracker::default();
        assert_eq!(t.observe(100), None);
        assert_eq!(t.observe(100), None);
        assert_eq!(t.observe(250), None);
        assert_eq!(t.observe(240), Some(Rewind { from: 250, to: 240 }));
        // After a rewind the new history counts.
        assert_eq!(t.observe(241), None);
        assert_eq!(t.observe(7), Some(Rewind { from: 241, to: 7 }));
    }

    #[test]
    fn what_the_cache_holds_only_raises_the_bar() {
        let mut t = RevisionTracker::default();
        assert_eq!(t.observe(7639), None);
        // Licenses unchanged for a while carry older revisions: not a rewind.
        t.raise(7275);
        assert_eq!(t.observe(7700), None);
        // A restore: the cache still holds revisions the store no longer has.
        t.raise(9000);
        assert_eq!(t.observe(120), Some(Rewind { from: 9000, to: 120 }));
    }

    #[test]
    fn a_fresh_read_of_the_newest_license_tells_where_the_store_is() {
        assert_eq!(probe("u", 10, Some(("u", 10))), Probe::Current);
        assert_eq!(probe("u", 10, Some(("u", 12))), Probe::Current);
        assert_eq!(probe("u", 10, Some(("u", 9))), Probe::Behind);
        assert_eq!(probe("u", 10, None), Probe::Missing);
        assert_eq!(probe("u", 10, Some(("other", 50))), Probe::Missing);
    }
}
