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

/// Tracks the highest revision seen; a lower one is a rewind.
#[derive(Debug, Default)]
pub struct RevisionTracker {
    highest: Option<u64>,
}

impl RevisionTracker {
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
                self.highest = Some(self.highest.map_or(revision, |h| h.max(revision)));
                None
            }
        }
    }
}

/// Returns when the store behind the API server has gone back in time. `seen` is the
/// controller's cache of Licenses: their versions are revisions the store has reached.
/// Every answer of the API server, whatever its status, is reported to `liveness`.
pub async fn watch(client: Client, namespace: Option<String>, seen: Store<License>, liveness: Liveness) -> Rewind {
    let secrets: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut tracker = RevisionTracker::default();
    loop {
        let cached = seen
            .state()
            .iter()
            .filter_map(|l| l.metadata.resource_version.as_deref()?.parse::<u64>().ok())
            .max();
        let current = match secrets.list_metadata(&ListParams::default().limit(1)).await {
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
        };
        if let Some(current) = current {
            // What the cache holds was reached before this read: it counts as seen first.
            if let Some(rewind) = cached
                .and_then(|c| tracker.observe(c))
                .or_else(|| tracker.observe(current))
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
}
