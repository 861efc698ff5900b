//! How the caches name the namespaced objects they follow.

use std::collections::HashSet;

use kube::api::ObjectMeta;

/// (namespace, name) of a namespaced object.
pub type ObjectKey = (String, String);

pub fn key_of(meta: &ObjectMeta) -> Option<ObjectKey> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// The object's key and the resourceVersion this copy of it is at.
pub fn versioned(meta: &ObjectMeta) -> Option<(ObjectKey, String)> {
    Some((key_of(meta)?, meta.resource_version.clone()?))
}

/// The keys a relist has listed so far. The caches apply each listed object at once (it already
/// wakes its Licenses) and forget, once the relist is complete, what it did not list.
#[derive(Debug, Default)]
pub struct Relist(Option<HashSet<ObjectKey>>);

impl Relist {
    pub fn start(&mut self) {
        self.0 = Some(HashSet::new());
    }

    pub fn listed(&mut self, key: &ObjectKey) {
        if let Some(keys) = self.0.as_mut() {
            keys.insert(key.clone());
        }
    }

    /// Every key the relist listed.
    pub fn finish(&mut self) -> HashSet<ObjectKey> {
        self.0.take().unwrap_or_default()
    }
}
