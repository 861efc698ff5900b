//! How the caches name the namespaced objects they follow.

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
