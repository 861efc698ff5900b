//! Key Secrets as last read, used again while the Secret metadata watch shows them unchanged.
//!
//! Every reconcile needs its License's key. Read with a GET each time, a restart or a trusted-key
//! change costs one request per License, and Licenses sharing a key Secret read it once each.
//! Here a Secret read once is kept (its type and data, nothing else) with the resourceVersion it
//! was read at, and used only while the metadata watch the controller runs anyway shows that same
//! version. The watch updates its view before it wakes the Licenses a change concerns, so the
//! reconcile a change causes never reads the old copy. A copy read at a version the watch has not
//! shown yet, or has already moved past, is not used: read again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::GetParams;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

mod warm_up;

pub use warm_up::WarmUp;

use super::object_key::{Relist, key_of, versioned};
use super::rollout::SecretKey;

#[derive(Clone, Default)]
pub struct KeySecrets(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// The resourceVersion of every Secret the metadata watch selects (all but Keyward's targets),
    /// as it last showed it. A target that is also a key Secret is never here, so always read.
    watched: HashMap<SecretKey, String>,
    relist: Relist,
    /// Secrets as last read.
    read: HashMap<SecretKey, Arc<KeySecret>>,
}

impl State {
    /// The watch shows this Secret at `version`; a copy read at another is dropped.
    fn apply(&mut self, key: &SecretKey, version: &str) {
        if self
            .read
            .get(key)
            .is_some_and(|r| r.resource_version.as_deref() != Some(version))
        {
            self.read.remove(key);
        }
        self.watched.insert(key.clone(), version.to_string());
    }
}

/// What a key needs of a Secret, read at `resource_version`: a whole `Secret` would also keep its
/// metadata, for every key Secret of the cluster.
#[derive(Clone)]
pub struct KeySecret {
    pub type_: Option<String>,
    pub data: BTreeMap<String, ByteString>,
    resource_version: Option<String>,
}

impl From<Secret> for KeySecret {
    fn from(secret: Secret) -> Self {
        Self {
            type_: secret.type_,
            data: secret.data.unwrap_or_default(),
            resource_version: secret.metadata.resource_version,
        }
    }
}

impl KeySecrets {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything, for a controller that starts over.
    pub fn clear(&self) {
        *self.state() = State::default();
    }

    /// Follows one event of the Secret metadata watch.
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut state = self.state();
        match event {
            watcher::Event::Init => state.relist.start(),
            // Applied at once, not at the end of the relist: each listed object already wakes
            // its Licenses, whose reconcile must not take a copy the listing has just outdated.
            // Only removals wait for the list to be complete.
            watcher::Event::InitApply(s) => {
                if let Some((key, version)) = versioned(&s.metadata) {
                    state.apply(&key, &version);
                    state.relist.listed(&key);
                }
            }
            watcher::Event::InitDone => {
                let listed = state.relist.finish();
                state.read.retain(|key, _| listed.contains(key));
                state.watched.retain(|key, _| listed.contains(key));
            }
            watcher::Event::Apply(s) => {
                if let Some((key, version)) = versioned(&s.metadata) {
                    state.apply(&key, &version);
                }
            }
            watcher::Event::Delete(s) => {
                if let Some(key) = key_of(&s.metadata) {
                    state.watched.remove(&key);
                    state.read.remove(&key);
                }
            }
        }
    }

    /// How fresh a read of this Secret must be: at least the version the watch shows, or the
    /// latest when the watch has not shown it.
    fn freshness(&self, key: &SecretKey) -> Freshness {
        match self.state().watched.get(key) {
            Some(version) => Freshness::AtLeast(version.clone()),
            None => Freshness::Latest,
        }
    }

    /// The copy read at the version the watch shows, if there is one.
    fn current(&self, key: &SecretKey) -> Option<Arc<KeySecret>> {
        let state = self.state();
        let watched = state.watched.get(key)?;
        let read = state.read.get(key)?;
        (read.resource_version.as_ref() == Some(watched)).then(|| read.clone())
    }

    fn remember(&self, key: SecretKey, secret: Option<Secret>) -> Option<Arc<KeySecret>> {
        let mut state = self.state();
        match secret {
            Some(secret) => {
                let secret = Arc::new(KeySecret::from(secret));
                state.read.insert(key, secret.clone());
                Some(secret)
            }
            None => {
                state.read.remove(&key);
                None
            }
        }
    }

    /// Reads Secrets of one namespace through this cache.
    pub fn reader(&self, api: Api<Secret>, namespace: &str) -> KeySecretReader {
        KeySecretReader {
            cache: self.clone(),
            api,
            namespace: namespace.to_string(),
        }
    }
}

/// Key Secrets of one namespace: from the cache when current, else from the API server.
pub struct KeySecretReader {
    cache: KeySecrets,
    api: Api<Secret>,
    namespace: String,
}

/// How fresh a read from the API server must be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Freshness {
    /// At least the version the watch shows: the API server answers from its watch cache.
    AtLeast(String),
    /// Whatever the API server's watch cache holds: a copy older than the watch's is never used.
    Any,
    /// The latest, read out of etcd: what nothing cheaper can promise.
    Latest,
}

impl Freshness {
    fn params(&self) -> Option<GetParams> {
        match self {
            Freshness::AtLeast(version) => Some(GetParams::at(version)),
            Freshness::Any => Some(GetParams::any()),
            Freshness::Latest => None,
        }
    }
}

impl KeySecretReader {
    /// The Secret's type and data, or `None` when it does not exist: at least as recent as the
    /// version the watch shows.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<KeySecret>>, kube::Error> {
        let key = (self.namespace.clone(), name.to_string());
        if let Some(secret) = self.cache.current(&key) {
            return Ok(Some(secret));
        }
        let freshness = self.cache.freshness(&key);
        self.read(key, freshness).await
    }

    /// For the warm-up: whatever the watch cache holds, kept only if the watch shows that version.
    async fn prefetch(&self, name: &str) -> Result<Option<Arc<KeySecret>>, kube::Error> {
        let key = (self.namespace.clone(), name.to_string());
        self.read(key, Freshness::Any).await
    }

    async fn read(&self, key: SecretKey, freshness: Freshness) -> Result<Option<Arc<KeySecret>>, kube::Error> {
        let secret = match freshness.params() {
            // A version the API server has not reached (a store rewound since the watch saw it)
            // is answered with an error after a wait: then read the latest.
            Some(params) => match get_opt_with(&self.api, &key.1, &params).await {
                Ok(secret) => secret,
                Err(_) => self.api.get_opt(&key.1).await?,
            },
            None => self.api.get_opt(&key.1).await?,
        };
        Ok(self.cache.remember(key, secret))
    }
}

async fn get_opt_with(api: &Api<Secret>, name: &str, params: &GetParams) -> Result<Option<Secret>, kube::Error> {
    match api.get_with(name, params).await {
        Ok(secret) => Ok(Some(secret)),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;

    fn meta(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    fn read_at(name: &str, version: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                labels: Some([("big".to_string(), "label".to_string())].into()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    fn key(name: &str) -> SecretKey {
        ("ns".into(), name.into())
    }

    #[test]
    fn a_copy_is_used_only_at_the_version_the_watch_shows() {
        let cache = KeySecrets::default();
        cache.remember(key("k"), Some(read_at("k", "5")));
        assert!(cache.current(&key("k")).is_none(), "the watch has not shown it yet");

        cache.observe(&watcher::Event::Apply(meta("k", "5")));
        let copy = cache.current(&key("k")).expect("current");
        assert_eq!(copy.type_.as_deref(), Some("Opaque"));

        cache.observe(&watcher::Event::Apply(meta("k", "6")));
        assert!(cache.current(&key("k")).is_none(), "changed since it was read");
        assert!(cache.state().read.is_empty(), "the old copy is dropped");
        // A read that raced the change and came back with the older version is not used either.
        cache.remember(key("k"), Some(read_at("k", "5")));
        assert!(cache.current(&key("k")).is_none());
        cache.remember(key("k"), Some(read_at("k", "6")));
        assert!(cache.current(&key("k")).is_some());

        cache.observe(&watcher::Event::Delete(meta("k", "7")));
        assert!(cache.current(&key("k")).is_none(), "deleted");
        assert!(cache.state().read.is_empty(), "and forgotten");
    }

    #[test]
    fn a_read_is_at_least_as_fresh_as_the_watch_and_the_latest_when_it_is_unseen() {
        let cache = KeySecrets::default();
        assert_eq!(cache.freshness(&key("k")), Freshness::Latest);
        cache.observe(&watcher::Event::Apply(meta("k", "5")));
        assert_eq!(cache.freshness(&key("k")), Freshness::AtLeast("5".into()));
        cache.observe(&watcher::Event::Apply(meta("k", "9")));
        assert_eq!(cache.freshness(&key("k")), Freshness::AtLeast("9".into()));
        assert_eq!(
            Freshness::AtLeast("9".into()).params().and_then(|p| p.resource_version),
            Some("9".into())
        );
        assert_eq!(
            Freshness::Any.params().and_then(|p| p.resource_version),
            Some("0".into())
        );
        assert!(Freshness::Latest.params().is_none());
        cache.observe(&watcher::Event::Delete(meta("k", "9")));
        assert_eq!(cache.freshness(&key("k")), Freshness::Latest);
    }

    #[test]
    fn a_secret_found_missing_is_forgotten() {
        let cache = KeySecrets::default();
        cache.observe(&watcher::Event::Apply(meta("k", "5")));
        cache.remember(key("k"), Some(read_at("k", "5")));
        assert!(cache.remember(key("k"), None).is_none());
        assert!(cache.current(&key("k")).is_none());
    }

    #[test]
    fn a_relist_counts_what_it_lists_at_once_and_drops_the_rest_once_complete() {
        let cache = KeySecrets::default();
        for name in ["kept", "gone"] {
            cache.observe(&watcher::Event::Apply(meta(name, "5")));
            cache.remember(key(name), Some(read_at(name, "5")));
        }
        cache.remember(key("changed"), Some(read_at("changed", "5")));
        cache.observe(&watcher::Event::Apply(meta("changed", "5")));
        cache.observe(&watcher::Event::Init);
        cache.observe(&watcher::Event::InitApply(meta("kept", "5")));
        cache.observe(&watcher::Event::InitApply(meta("changed", "8")));
        assert!(
            cache.current(&key("gone")).is_some(),
            "removals wait for the list to be complete"
        );
        assert!(
            cache.current(&key("changed")).is_none(),
            "a change the relist shows counts at once: it wakes the License already"
        );
        cache.observe(&watcher::Event::InitDone);
        assert!(cache.current(&key("kept")).is_some());
        assert!(cache.current(&key("gone")).is_none());
        assert_eq!(cache.state().read.len(), 1, "only the unchanged copy is kept");
    }
}
