//! Keyward's target Secrets as their own watch last saw them: who owns each, at which
//! resourceVersion, which revision it is annotated with and a digest of its data. The watch
//! selects Keyward's label, so it carries only target Secrets, and the index keeps no payload.
//!
//! Three costs of every reconcile go away with it. Pruning needs a License's managed Secrets: a
//! label-selected LIST reads every Secret of the cluster out of etcd on the API servers tests and
//! many clusters run (1.20 has no label index), so a fleet of N Licenses cost O(N²) reads (a no-op
//! reconcile at 1,000 Licenses took ~23 ms of wall time). A target that already holds the
//! content needs no GET to know it, also right after a restart. And a target that must change is
//! replaced at the version the watch shows, without reading it first.
//!
//! The index can lag: then a replace is refused (409) and the Secret is read, or a prune waits for
//! the next reconcile. Someone else's edit of a target reaches the index before it wakes the
//! target's License (the same watch stream does both, in that order), so the reconcile it causes
//! sees the edit. Every write still goes through the API server with its preconditions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher;
use sha2::{Digest, Sha256};

use crate::controller::object_key::{ObjectKey, Relist, key_of};

use super::{MANAGED_BY, MANAGED_BY_LABEL, REVISION_ANNOTATION, owner_of, owner_uid_label};

/// (namespace, name) of a Secret.
pub type SecretKey = ObjectKey;

/// A target whose owner is not among the Licenses this operator reconciles: an orphan if that
/// owner no longer exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub secret: SecretKey,
    /// The owner's (namespace, name), from the target's annotation.
    pub owner: (String, String),
    pub owner_uid: String,
}

/// The label selector of the target Secrets' watch.
pub fn selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// Every other Secret: the two selectors together select each Secret exactly once.
pub fn unmanaged_selector() -> String {
    format!("{MANAGED_BY_LABEL}!={MANAGED_BY}")
}

#[derive(Clone)]
pub struct ManagedSecrets {
    state: Arc<Mutex<State>>,
    /// Whether the watch has listed every target once (since the last `clear`).
    synced: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for ManagedSecrets {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            synced: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

#[derive(Default)]
struct State {
    seen: HashMap<SecretKey, Seen>,
    by_owner: HashMap<String, BTreeSet<SecretKey>>,
    relist: Relist,
}

#[derive(Clone, PartialEq)]
struct Seen {
    owner_uid: String,
    /// The owner's namespace and name, as the Secret's annotation gives them.
    owner: Option<(String, String)>,
    resource_version: String,
    revision: Option<String>,
    data: [u8; 32],
}

/// What the index knows of one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// Owned by this License, annotated with this revision and holding exactly this data.
    Holds,
    /// Owned by this License, at this resourceVersion, with other content.
    Differs { resource_version: String },
    /// Not seen as this License's: absent, someone else's, or not seen yet.
    Unknown,
}

/// A digest of a Secret's data, independent of the order it arrived in.
pub fn data_digest(data: Option<&BTreeMap<String, ByteString>>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (key, value) in data.into_iter().flatten() {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.0.len() as u64).to_be_bytes());
        hasher.update(&value.0);
    }
    hasher.finalize().into()
}

/// The Secret's owner, version and content, when Keyward manages it.
fn managed(secret: &Secret) -> Option<(SecretKey, Seen)> {
    let meta = &secret.metadata;
    let seen = Seen {
        owner_uid: owner_uid_label(meta)?.to_string(),
        owner: owner_of(meta),
        resource_version: meta.resource_version.clone()?,
        revision: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION))
            .cloned(),
        data: data_digest(secret.data.as_ref()),
    };
    Some((key_of(meta)?, seen))
}

impl ManagedSecrets {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything, for a controller that starts over.
    pub fn clear(&self) {
        *self.state() = State::default();
        self.synced.send_replace(false);
    }

    /// Resolves once the watch has listed every target.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`: the wait cannot fail while this borrow lasts.
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Targets whose owner UID is not in `alive`: the candidates for orphans.
    pub fn owned_by_others(&self, alive: &HashSet<String>) -> Vec<Candidate> {
        self.state()
            .seen
            .iter()
            .filter(|(_, seen)| !alive.contains(&seen.owner_uid))
            .filter_map(|(key, seen)| {
                Some(Candidate {
                    secret: key.clone(),
                    owner: seen.owner.clone()?,
                    owner_uid: seen.owner_uid.clone(),
                })
            })
            .collect()
    }

    /// Follows one event of the target Secrets' watch.
    pub fn observe(&self, event: &watcher::Event<Secret>) {
        let mut state = self.state();
        match event {
            watcher::Event::Init => state.relist.start(),
            // Applied at once (the listed object already wakes its License, whose reconcile must
            // see it); only removals wait for the list to be complete.
            watcher::Event::InitApply(s) => {
                if let Some((key, seen)) = managed(s) {
                    state.relist.listed(&key);
                    state.insert(key, seen);
                }
            }
            watcher::Event::InitDone => {
                let listed = state.relist.finish();
                state.keep_only(&listed);
                self.synced.send_replace(true);
            }
            watcher::Event::Apply(s) => match managed(s) {
                Some((key, seen)) => state.insert(key, seen),
                None => state.forget(key_of(&s.metadata)),
            },
            watcher::Event::Delete(s) => state.forget(key_of(&s.metadata)),
        }
    }

    /// The Secrets labelled as managed for the License with this UID.
    pub fn owned_by(&self, uid: &str) -> BTreeSet<SecretKey> {
        self.state().by_owner.get(uid).cloned().unwrap_or_default()
    }

    /// Whether the watch has seen this Secret as managed for the License with this UID.
    pub fn is_owned_by(&self, key: &SecretKey, uid: &str) -> bool {
        self.state().seen.get(key).is_some_and(|s| s.owner_uid == uid)
    }

    /// What the watch last showed of this target, against the content it should hold.
    pub fn known(&self, key: &SecretKey, owner_uid: &str, revision: &str, data: &[u8; 32]) -> Known {
        let state = self.state();
        match state.seen.get(key) {
            Some(seen) if seen.owner_uid == owner_uid => {
                if seen.revision.as_deref() == Some(revision) && &seen.data == data {
                    Known::Holds
                } else {
                    Known::Differs {
                        resource_version: seen.resource_version.clone(),
                    }
                }
            }
            _ => Known::Unknown,
        }
    }
}

impl State {
    fn insert(&mut self, key: SecretKey, seen: Seen) {
        if let Some(old) = self.seen.get(&key)
            && old.owner_uid != seen.owner_uid
        {
            let old_owner = old.owner_uid.clone();
            self.unlink_owner(&key, &old_owner);
        }
        self.by_owner
            .entry(seen.owner_uid.clone())
            .or_default()
            .insert(key.clone());
        self.seen.insert(key, seen);
    }

    fn forget(&mut self, key: Option<SecretKey>) {
        let Some(key) = key else { return };
        if let Some(old) = self.seen.remove(&key) {
            self.unlink_owner(&key, &old.owner_uid);
        }
    }

    fn unlink_owner(&mut self, key: &SecretKey, uid: &str) {
        if let Some(set) = self.by_owner.get_mut(uid) {
            set.remove(key);
            if set.is_empty() {
                self.by_owner.remove(uid);
            }
        }
    }

    fn keep_only(&mut self, listed: &HashSet<SecretKey>) {
        let unlisted: Vec<SecretKey> = self.seen.keys().filter(|k| !listed.contains(*k)).cloned().collect();
        for key in unlisted {
            self.forget(Some(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::controller::rollout::OWNER_UID_LABEL;

    fn secret(ns: &str, name: &str, owner: Option<&str>, version: &str, revision: &str, data: &str) -> Secret {
        let labels = owner.map(|uid| {
            BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (OWNER_UID_LABEL.to_string(), uid.to_string()),
            ])
        });
        Secret {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                labels,
                annotations: Some(BTreeMap::from([(
                    REVISION_ANNOTATION.to_string(),
                    revision.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "license".to_string(),
                ByteString(data.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    fn key(ns: &str, name: &str) -> SecretKey {
        (ns.into(), name.into())
    }

    fn digest(data: &str) -> [u8; 32] {
        data_digest(Some(&BTreeMap::from([(
            "license".to_string(),
            ByteString(data.as_bytes().to_vec()),
        )])))
    }

    #[test]
    fn indexes_only_managed_secrets_by_owner_and_follows_changes() {
        let index = ManagedSecrets::default();
        index.observe(&watcher::Event::Apply(secret("a", "t", Some("u1"), "1", "r", "k")));
        index.observe(&watcher::Event::Apply(secret("b", "t", Some("u1"), "2", "r", "k")));
        index.observe(&watcher::Event::Apply(secret("a", "key", None, "3", "r", "k")));
        assert_eq!(index.owned_by("u1"), BTreeSet::from([key("a", "t"), key("b", "t")]));
        assert!(index.is_owned_by(&key("a", "t"), "u1"));
        assert!(!index.is_owned_by(&key("a", "key"), "u1"));

        // Relabelled to another owner, then no longer managed, then deleted.
        index.observe(&watcher::Event::Apply(secret("a", "t", Some("u2"), "4", "r", "k")));
        assert_eq!(index.owned_by("u1"), BTreeSet::from([key("b", "t")]));
        assert_eq!(index.owned_by("u2"), BTreeSet::from([key("a", "t")]));
        index.observe(&watcher::Event::Apply(secret("a", "t", None, "5", "r", "k")));
        assert!(index.owned_by("u2").is_empty());
        index.observe(&watcher::Event::Delete(secret("b", "t", Some("u1"), "6", "r", "k")));
        assert!(index.owned_by("u1").is_empty());
        assert!(index.state().by_owner.is_empty(), "no empty sets kept");
    }

    #[test]
    fn a_relist_applies_what_it_lists_at_once_and_removes_only_once_complete() {
        let index = ManagedSecrets::default();
        index.observe(&watcher::Event::Apply(secret("a", "gone", Some("u1"), "1", "r", "k")));
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(secret(
            "a",
            "new",
            Some("u1"),
            "7",
            "r",
            "k",
        )));
        assert_eq!(
            index.owned_by("u1"),
            BTreeSet::from([key("a", "gone"), key("a", "new")]),
            "what the relist shows counts at once; removals wait for it to be complete"
        );
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.owned_by("u1"), BTreeSet::from([key("a", "new")]));
    }

    #[test]
    fn a_target_holds_the_content_only_with_the_same_owner_revision_and_data() {
        let index = ManagedSecrets::default();
        let at = key("a", "t");
        assert_eq!(
            index.known(&at, "u1", "r1", &digest("k1")),
            Known::Unknown,
            "not seen yet"
        );
        index.observe(&watcher::Event::Apply(secret("a", "t", Some("u1"), "10", "r1", "k1")));
        assert_eq!(index.known(&at, "u1", "r1", &digest("k1")), Known::Holds);
        assert_eq!(
            index.known(&at, "u2", "r1", &digest("k1")),
            Known::Unknown,
            "another owner's"
        );
        let differs = Known::Differs {
            resource_version: "10".into(),
        };
        assert_eq!(index.known(&at, "u1", "r2", &digest("k2")), differs, "a new revision");

        // Someone else's edit of the data alone, keeping the annotation: not up to date.
        index.observe(&watcher::Event::Apply(secret(
            "a",
            "t",
            Some("u1"),
            "11",
            "r1",
            "tampered",
        )));
        let differs = Known::Differs {
            resource_version: "11".into(),
        };
        assert_eq!(index.known(&at, "u1", "r1", &digest("k1")), differs);

        index.observe(&watcher::Event::Delete(secret("a", "t", Some("u1"), "12", "r1", "k1")));
        assert_eq!(index.known(&at, "u1", "r1", &digest("k1")), Known::Unknown);
    }

    #[tokio::test]
    async fn orphan_candidates_once_every_target_is_listed() {
        let index = ManagedSecrets::default();
        let mut owned = secret("a", "t", Some("u1"), "1", "r", "k");
        owned
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(super::super::OWNER_ANNOTATION.into(), "a/lic".into());
        let mut alive_one = owned.clone();
        alive_one.metadata.name = Some("t2".into());
        alive_one
            .metadata
            .labels
            .get_or_insert_default()
            .insert(OWNER_UID_LABEL.into(), "u2".into());
        let unnamed = secret("a", "t3", Some("u3"), "1", "r", "k");

        index.observe(&watcher::Event::Init);
        for s in [&owned, &alive_one, &unnamed] {
            index.observe(&watcher::Event::InitApply(s.clone()));
        }
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), index.synced()).await;
        assert!(pending.is_err(), "not synced before the list is complete");
        index.observe(&watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(1), index.synced())
            .await
            .expect("synced once listed");

        let alive = HashSet::from(["u2".to_string()]);
        assert_eq!(
            index.owned_by_others(&alive),
            vec![Candidate {
                secret: key("a", "t"),
                owner: key("a", "lic"),
                owner_uid: "u1".to_string()
            }],
            "owners alive, and Secrets without the owner annotation, are no candidates"
        );
        index.clear();
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), index.synced()).await;
        assert!(pending.is_err(), "a controller that starts over lists again");
    }

    #[test]
    fn the_digest_depends_on_every_key_and_value() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), ByteString(v.as_bytes().to_vec()))]);
        assert_ne!(data_digest(Some(&one("ab", "c"))), data_digest(Some(&one("a", "bc"))));
        assert_ne!(data_digest(Some(&one("a", "b"))), data_digest(None));
        assert_eq!(data_digest(Some(&BTreeMap::new())), data_digest(None));
    }
}
