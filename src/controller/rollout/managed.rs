//! Keyward's target Secrets as the Secret watch last saw them: who owns each, at which
//! resourceVersion, and which of them Keyward knows to hold a given revision.
//!
//! Two costs of every reconcile go away with it. Pruning needs a License's managed Secrets: a
//! label-selected LIST reads every Secret of the cluster out of etcd on the API servers tests and
//! many clusters run (1.20 has no label index), so a fleet of N Licenses cost O(N²) reads (a no-op
//! reconcile of 1,000 Licenses took ~23 ms of API server time). And a target Keyward wrote or
//! checked, unchanged since (same resourceVersion), needs no GET to know it is up to date.
//!
//! The watch can lag: an index that is behind only ever causes a GET that was not needed, or a
//! prune that waits for the next reconcile (the Secret's own watch event wakes its owner). Never a
//! wrong write: every write still goes through the API server with its preconditions.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use super::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};
use kube::api::ObjectMeta;

/// (namespace, name) of a Secret.
pub type SecretKey = (String, String);

#[derive(Clone, Default)]
pub struct ManagedSecrets(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    seen: HashMap<SecretKey, Seen>,
    by_owner: HashMap<String, BTreeSet<SecretKey>>,
    /// A relist in progress: its objects replace `seen` once complete.
    relisting: Option<Vec<(SecretKey, Seen)>>,
    /// The version at which Keyward last wrote, or read and found, each target with a revision.
    confirmed: HashMap<SecretKey, Confirmed>,
}

#[derive(Clone, PartialEq)]
struct Seen {
    owner_uid: String,
    resource_version: String,
}

#[derive(Clone, PartialEq)]
struct Confirmed {
    resource_version: String,
    revision: String,
}

fn key_of(meta: &ObjectMeta) -> Option<SecretKey> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// The Secret's owner and version, when Keyward manages it.
fn managed(meta: &ObjectMeta) -> Option<(SecretKey, Seen)> {
    let labels = meta.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let seen = Seen {
        owner_uid: labels.get(OWNER_UID_LABEL)?.clone(),
        resource_version: meta.resource_version.clone()?,
    };
    Some((key_of(meta)?, seen))
}

impl ManagedSecrets {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything: after the store went back in time, a version may name another write.
    pub fn clear(&self) {
        *self.state() = State::default();
    }

    /// Follows one event of the Secret metadata watch.
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut state = self.state();
        match event {
            watcher::Event::Init => state.relisting = Some(Vec::new()),
            watcher::Event::InitApply(s) => {
                if let (Some(list), Some(entry)) = (state.relisting.as_mut(), managed(&s.metadata)) {
                    list.push(entry);
                }
            }
            watcher::Event::InitDone => {
                let listed = state.relisting.take().unwrap_or_default();
                state.replace_all(listed);
            }
            watcher::Event::Apply(s) => match managed(&s.metadata) {
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

    /// Keyward wrote this target, or read it and found it holding `revision`.
    pub fn confirm(&self, target: &ObjectMeta, revision: &str) {
        let (Some(key), Some(resource_version)) = (key_of(target), target.resource_version.clone()) else {
            return;
        };
        let confirmed = Confirmed {
            resource_version,
            revision: revision.to_string(),
        };
        self.state().confirmed.insert(key, confirmed);
    }

    /// The version and revision Keyward last wrote or read for this target, when the watch shows
    /// it still at that version and owned by `owner_uid`: nobody has changed it since.
    pub fn unchanged_since_confirmed(&self, key: &SecretKey, owner_uid: &str) -> Option<(String, String)> {
        let state = self.state();
        let (seen, confirmed) = (state.seen.get(key)?, state.confirmed.get(key)?);
        (seen.owner_uid == owner_uid && confirmed.resource_version == seen.resource_version)
            .then(|| (confirmed.resource_version.clone(), confirmed.revision.clone()))
    }

    /// Whether the target is known to hold `revision` for this owner.
    pub fn holds(&self, key: &SecretKey, owner_uid: &str, revision: &str) -> bool {
        self.unchanged_since_confirmed(key, owner_uid)
            .is_some_and(|(_, held)| held == revision)
    }
}

impl State {
    fn insert(&mut self, key: SecretKey, seen: Seen) {
        if let Some(old) = self.seen.get(&key)
            && old.owner_uid != seen.owner_uid
        {
            self.unlink_owner(&key, &old.owner_uid.clone());
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
        self.confirmed.remove(&key);
    }

    fn unlink_owner(&mut self, key: &SecretKey, uid: &str) {
        if let Some(set) = self.by_owner.get_mut(uid) {
            set.remove(key);
            if set.is_empty() {
                self.by_owner.remove(uid);
            }
        }
    }

    fn replace_all(&mut self, listed: Vec<(SecretKey, Seen)>) {
        self.seen.clear();
        self.by_owner.clear();
        for (key, seen) in listed {
            self.insert(key, seen);
        }
        let seen = &self.seen;
        self.confirmed.retain(|key, _| seen.contains_key(key));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secret(ns: &str, name: &str, owner: Option<&str>, version: &str) -> PartialObjectMeta<Secret> {
        let labels = owner.map(|uid| {
            BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (OWNER_UID_LABEL.to_string(), uid.to_string()),
            ])
        });
        PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                labels,
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        }
    }

    fn key(ns: &str, name: &str) -> SecretKey {
        (ns.into(), name.into())
    }

    #[test]
    fn indexes_only_managed_secrets_by_owner_and_follows_changes() {
        let index = ManagedSecrets::default();
        index.observe(&watcher::Event::Apply(secret("a", "t", Some("u1"), "1")));
        index.observe(&watcher::Event::Apply(secret("b", "t", Some("u1"), "2")));
        index.observe(&watcher::Event::Apply(secret("a", "key", None, "3")));
        assert_eq!(index.owned_by("u1"), BTreeSet::from([key("a", "t"), key("b", "t")]));
        assert!(index.is_owned_by(&key("a", "t"), "u1"));
        assert!(!index.is_owned_by(&key("a", "key"), "u1"));

        // Relabelled to another owner, then no longer managed, then deleted.
        index.observe(&watcher::Event::Apply(secret("a", "t", Some("u2"), "4")));
        assert_eq!(index.owned_by("u1"), BTreeSet::from([key("b", "t")]));
        assert_eq!(index.owned_by("u2"), BTreeSet::from([key("a", "t")]));
        index.observe(&watcher::Event::Apply(secret("a", "t", None, "5")));
        assert!(index.owned_by("u2").is_empty());
        index.observe(&watcher::Event::Delete(secret("b", "t", Some("u1"), "6")));
        assert!(index.owned_by("u1").is_empty());
        assert!(index.0.lock().unwrap().by_owner.is_empty(), "no empty sets kept");
    }

    #[test]
    fn a_relist_replaces_the_index_only_once_complete() {
        let index = ManagedSecrets::default();
        index.observe(&watcher::Event::Apply(secret("a", "gone", Some("u1"), "1")));
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(secret("a", "new", Some("u1"), "7")));
        assert_eq!(
            index.owned_by("u1"),
            BTreeSet::from([key("a", "gone")]),
            "served from the last complete view meanwhile"
        );
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.owned_by("u1"), BTreeSet::from([key("a", "new")]));
    }

    #[test]
    fn a_target_holds_a_revision_only_at_the_version_confirmed() {
        let index = ManagedSecrets::default();
        let written = secret("a", "t", Some("u1"), "10");
        index.confirm(&written.metadata, "rev1");
        assert!(
            !index.holds(&key("a", "t"), "u1", "rev1"),
            "the watch has not shown it yet"
        );
        index.observe(&watcher::Event::Apply(written.clone()));
        assert!(index.holds(&key("a", "t"), "u1", "rev1"));
        assert!(!index.holds(&key("a", "t"), "u1", "rev2"), "another revision");
        assert!(!index.holds(&key("a", "t"), "u2", "rev1"), "another owner");

        // Someone else's edit: a new version nobody confirmed.
        index.observe(&watcher::Event::Apply(secret("a", "t", Some("u1"), "11")));
        assert!(!index.holds(&key("a", "t"), "u1", "rev1"));
        index.confirm(&secret("a", "t", Some("u1"), "11").metadata, "rev1");
        assert!(index.holds(&key("a", "t"), "u1", "rev1"));

        // Deleted: forgotten, also across a relist that no longer lists it.
        index.observe(&watcher::Event::Delete(secret("a", "t", Some("u1"), "12")));
        assert!(!index.holds(&key("a", "t"), "u1", "rev1"));
        index.confirm(&secret("b", "t", Some("u1"), "13").metadata, "rev1");
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitDone);
        assert!(index.0.lock().unwrap().confirmed.is_empty());
    }
}
