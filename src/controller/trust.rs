//! The vendor public keys this installation trusts: a directory (the chart mounts a ConfigMap),
//! re-read while running. Trust never comes from a License or a tenant's namespace.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::collections::BTreeMap;

use crate::keyfiles::{KeyFileError, read_trust_file, trust_dir_files};
use crate::license::{KeySet, TrustedKey};

#[derive(Clone)]
pub struct TrustStore {
    dir: PathBuf,
    inner: Arc<RwLock<Loaded>>,
}

/// The keys in force, and each file's last good keys: a file that turns unreadable keeps
/// contributing what it held, so one broken update cannot invalidate the licenses it signed.
#[derive(Default)]
struct Loaded {
    keys: Arc<KeySet>,
    by_file: BTreeMap<PathBuf, Vec<TrustedKey>>,
}

/// What one reload did.
#[derive(Debug, Default)]
pub struct Reload {
    pub changed: bool,
    /// Files that could not be read; their last good keys stay in force.
    pub errors: Vec<KeyFileError>,
}

impl TrustStore {
    /// Loads the directory once; an unreadable directory or a bad key is an error at start-up.
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        let mut by_file = BTreeMap::new();
        for path in trust_dir_files(dir)? {
            let keys = read_trust_file(&path)?;
            by_file.insert(path, keys);
        }
        let keys = key_set(&by_file)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            inner: Arc::new(RwLock::new(Loaded {
                keys: Arc::new(keys),
                by_file,
            })),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).keys.clone()
    }

    /// Re-reads the directory file by file. A file that cannot be read keeps its last good keys
    /// (and is reported); valid files, new ones included, are taken as they are; a deleted file's
    /// keys go. Should the result be inconsistent (one id for two keys), nothing changes.
    pub fn reload(&self) -> Reload {
        let mut reload = Reload::default();
        let files = match trust_dir_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                reload.errors.push(e);
                return reload;
            }
        };
        // Files are read without holding the lock: reconciles read the keys in force meanwhile.
        // Only this store's watch task reloads, so nothing changes `by_file` in between.
        let previous = self.inner.read().unwrap_or_else(|e| e.into_inner()).by_file.clone();
        let mut by_file = BTreeMap::new();
        for path in files {
            match read_trust_file(&path) {
                Ok(keys) => {
                    by_file.insert(path, keys);
                }
                Err(e) => {
                    reload.errors.push(e);
                    if let Some(keys) = previous.get(&path) {
                        by_file.insert(path, keys.clone());
                    }
                }
            }
        }
        let mut loaded = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match key_set(&by_file) {
            Ok(keys) if keys != *loaded.keys => {
                *loaded = Loaded {
                    keys: Arc::new(keys),
                    by_file,
                };
                reload.changed = true;
            }
            Ok(_) => loaded.by_file = by_file,
            Err(e) => reload.errors.push(e),
        }
        reload
    }

    /// Polls the directory every `interval`; calls `on_change` after each change and `on_error`
    /// for each file that could not be read. Polling (not inotify) because a mounted ConfigMap
    /// changes by swapping a symlink.
    pub async fn watch(
        self,
        interval: Duration,
        on_change: impl Fn(&KeySet) + Send + 'static,
        on_error: impl Fn(&KeyFileError) + Send + 'static,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let dir = self.clone();
            match tokio::task::spawn_blocking(move || dir.reload()).await {
                Ok(reload) => {
                    reload.errors.iter().for_each(&on_error);
                    if reload.changed {
                        on_change(&self.current());
                    }
                }
                Err(e) => tracing::error!(error = %e, "trusted key reload task failed"),
            }
        }
    }
}

fn key_set(by_file: &BTreeMap<PathBuf, Vec<TrustedKey>>) -> Result<KeySet, KeyFileError> {
    let mut set = KeySet::new();
    for (path, keys) in by_file {
        for key in keys {
            set.insert(key.clone()).map_err(|cause| KeyFileError::Key {
                path: path.clone(),
                cause,
            })?;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::keys::{public_key_to_pem, signing_key_from_seed};

    #[test]
    fn reload_picks_up_changes_and_keeps_keys_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let pem = |s: u8| public_key_to_pem(&signing_key_from_seed(&[s; 32]).verifying_key());
        std::fs::write(dir.path().join("a.pem"), pem(1)).unwrap();
        let store = TrustStore::load(dir.path()).unwrap();
        assert_eq!(store.current().ids(), ["a"]);
        assert!(!store.reload().changed);
        std::fs::write(dir.path().join("b.pem"), pem(2)).unwrap();
        assert!(store.reload().changed);
        assert_eq!(store.current().ids(), ["a", "b"]);
        // A broken new file is reported; a valid key added beside it is still picked up.
        std::fs::write(dir.path().join("c.pem"), "garbage").unwrap();
        std::fs::write(dir.path().join("d.pem"), pem(4)).unwrap();
        let reload = store.reload();
        assert_eq!(reload.errors.len(), 1, "{:?}", reload.errors);
        assert!(reload.changed);
        assert_eq!(store.current().ids(), ["a", "b", "d"]);
        // A file in force that turns broken keeps its key; one deleted loses it.
        std::fs::write(dir.path().join("a.pem"), "truncated").unwrap();
        std::fs::remove_file(dir.path().join("b.pem")).unwrap();
        let reload = store.reload();
        assert_eq!(reload.errors.len(), 2);
        assert_eq!(
            store.current().ids(),
            ["a", "d"],
            "a bad update keeps the keys in force"
        );
        // Two files naming one id with different keys change nothing.
        std::fs::write(dir.path().join("e.jwk"), jwk(5, "d")).unwrap();
        let reload = store.reload();
        assert!(!reload.changed);
        assert!(
            reload
                .errors
                .iter()
                .any(|e| e.to_string().contains("used by two different"))
        );
        assert_eq!(store.current().ids(), ["a", "d"]);
    }

    fn jwk(seed: u8, kid: &str) -> String {
        crate::license::jwk::to_jwk(&signing_key_from_seed(&[seed; 32]).verifying_key(), Some(kid))
    }
}
