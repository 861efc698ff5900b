//! Which Licenses reference which object (their key Secret, their usage ConfigMap), so an event on
//! that object wakes exactly those Licenses. Filled in by reconciles; a stale entry only wakes a
//! License that then finds nothing changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

type Key = (String, String);

#[derive(Clone, Default)]
pub struct RefIndex {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    licenses_by_object: HashMap<Key, BTreeSet<String>>,
    object_by_license: HashMap<Key, String>,
}

impl RefIndex {
    pub fn set(&self, namespace: &str, license: &str, object: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let license_key = (namespace.to_string(), license.to_string());
        if inner.object_by_license.get(&license_key).map(String::as_str) == Some(object) {
            return;
        }
        inner.unlink(&license_key);
        inner.object_by_license.insert(license_key, object.to_string());
        inner
            .licenses_by_object
            .entry((namespace.to_string(), object.to_string()))
            .or_default()
            .insert(license.to_string());
    }

    pub fn remove(&self, namespace: &str, license: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.unlink(&(namespace.to_string(), license.to_string()));
    }

    pub fn licenses_for(&self, namespace: &str, object: &str) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .licenses_by_object
            .get(&(namespace.to_string(), object.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Inner {
    fn unlink(&mut self, license_key: &Key) {
        if let Some(old) = self.object_by_license.remove(license_key) {
            let object_key = (license_key.0.clone(), old);
            if let Some(set) = self.licenses_by_object.get_mut(&object_key) {
                set.remove(&license_key.1);
                if set.is_empty() {
                    self.licenses_by_object.remove(&object_key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_objects_to_licenses_and_follows_changes() {
        let index = RefIndex::default();
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
