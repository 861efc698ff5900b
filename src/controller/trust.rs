//! The vendor public keys this installation trusts: a directory (the chart mounts a ConfigMap),
//! re-read while running. Trust never comes from a License or a tenant's namespace.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::keyfiles::{KeyFileError, load_trust_dir};
use crate::license::KeySet;

#[derive(Clone)]
pub struct TrustStore {
    dir: PathBuf,
    keys: Arc<RwLock<Arc<KeySet>>>,
}

impl TrustStore {
    /// Loads the directory once; an unreadable directory or a bad key is an error at start-up.
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        let keys = load_trust_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            keys: Arc::new(RwLock::new(Arc::new(keys))),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the directory. `Ok(true)` when the trusted keys changed. On error the keys in
    /// force stay as they were: a broken ConfigMap update must not invalidate every license.
    pub fn reload(&self) -> Result<bool, KeyFileError> {
        let fresh = load_trust_dir(&self.dir)?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if **keys == fresh {
            return Ok(false);
        }
        *keys = Arc::new(fresh);
        Ok(true)
    }

    /// Polls the directory every `interval`; calls `on_change` after each change. Polling (not
    /// inotify) because a mounted ConfigMap changes by swapping a symlink.
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
                Ok(Ok(true)) => on_change(&self.current()),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => on_error(&e),
                Err(e) => tracing::error!(error = %e, "trusted key reload task failed"),
            }
        }
    }
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
        assert!(!store.reload().unwrap());
        std::fs::write(dir.path().join("b.pem"), pem(2)).unwrap();
        assert!(store.reload().unwrap());
        assert_eq!(store.current().ids(), ["a", "b"]);
        std::fs::write(dir.path().join("c.pem"), "garbage").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(
            store.current().ids(),
            ["a", "b"],
            "a bad update keeps the keys in force"
        );
    }
}
