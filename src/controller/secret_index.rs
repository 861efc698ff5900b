//! Which Licenses reference which Secret, so a Secret event wakes exactly those Licenses.
//! Filled in by reconciles; a stale entry only wakes a License that then finds nothing changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

type Key = (String, String);

#[derive(Clone, Default)]
pub struct SecretIndex {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    licenses_by_secret: HashMap<Key, BTreeSet<String>>,
    secret_by_license: HashMap<Key, String>,
}

impl SecretIndex {
    pub fn set(&self, namespace: &str, license: &str, secret: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let license_key = (namespace.to_string(), license.to_string());
        if inner.secret_by_license.get(&license_key).map(String::as_str) == Some(secret) {
            return;
        }
        inner.unlink(&license_key);
        inner.secret_by_license.insert(license_key, secret.to_string());
        inner
            .licenses_by_secret
            .entry((namespace.to_string(), secret.to_string()))
            .or_default()
            .insert(license.to_string());
    }

    pub fn remove(&self, namespace: &str, license: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.unlink(&(namespace.to_string(), license.to_string()));
    }

    pub fn licenses_for(&self, namespace: &str, secret: &str) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .licenses_by_secret
            .get(&(namespace.to_string(), secret.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Inner {
    fn unlink(&mut self, license_key: &Key) {
        if let Some(old) = self.secret_by_license.remove(license_key) {
            let secret_key = (license_key.0.clone(), old);
            if let Some(set) = self.licenses_by_secret.get_mut(&secret_key) {
                set.remove(&license_key.1);
                if set.is_empty() {
                    self.licenses_by_secret.remove(&secret_key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_secrets_to_licenses_and_follows_changes() {
        let index = SecretIndex::default();
        index.set("ns", "a", "s1");
        index.set("ns", "b", "s1");
        index.set("other", "a", "s1");
        assert_eq!(index.licenses_for("ns", "s1"), ["a", "b"]);
        index.set("ns", "a", "s2");
        assert_eq!(index.licenses_for("ns", "s1"), ["b"]);
        assert_eq!(index.licenses_for("ns", "s2"), ["a"]);
        index.remove("ns", "b");
        assert!(index.licenses_for("ns", "s1").is_empty());
        assert_eq!(index.licenses_for("other", "s1"), ["a"]);
    }
}
