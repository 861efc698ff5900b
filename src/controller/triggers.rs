//! Which Licenses an event on another object should wake. Each mapping is cheap and local (an
//! index or the License cache): no API calls on the watch path.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::ResourceExt;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};

use super::echoes::WriteEchoes;
use super::ref_index::RefIndex;
use super::rollout;
use crate::api::v1alpha1::License;

fn at(namespace: &str, name: &str) -> ObjectRef<License> {
    ObjectRef::new(name).within(namespace)
}

/// A Secret is a License's key Secret.
pub fn secret(index: &RefIndex, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<License>> {
    let namespace = secret.namespace().unwrap_or_default();
    index
        .licenses_for(&namespace, &secret.name_any())
        .iter()
        .map(|l| at(&namespace, l))
        .collect()
}

/// A target Secret wakes the License that manages it, unless this event is the echo of Keyward's
/// own write (from the targets' own watch, after it updated the index the reconcile reads); and,
/// echo or not, any License whose key it is (the Secret metadata watch leaves targets out).
pub fn target(echoes: &WriteEchoes, index: &RefIndex, secret: &Secret) -> Vec<ObjectRef<License>> {
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let owner = match rollout::owner_of(&secret.metadata) {
        Some((ns, name)) if !echoes.is_echo(&secret.metadata) => Some(at(&ns, &name)),
        _ => None,
    };
    let key_of = index
        .licenses_for(&namespace, &secret.name_any())
        .into_iter()
        .map(|l| at(&namespace, &l));
    owner.into_iter().chain(key_of).collect()
}

/// A usage report changed.
pub fn config_map(index: &RefIndex, cm: &PartialObjectMeta<ConfigMap>) -> Vec<ObjectRef<License>> {
    let namespace = cm.namespace().unwrap_or_default();
    index
        .licenses_for(&namespace, &cm.name_any())
        .iter()
        .map(|l| at(&namespace, l))
        .collect()
}

/// A namespace appearing or relabelled may add or remove selector targets.
pub fn namespace(store: &Store<License>, _: &PartialObjectMeta<Namespace>) -> Vec<ObjectRef<License>> {
    store
        .state()
        .iter()
        .filter(|l| {
            l.spec
                .rollout
                .iter()
                .flat_map(|r| &r.targets)
                .any(|t| t.namespace_selector.is_some())
        })
        .map(|l| ObjectRef::from_obj(l.as_ref()))
        .collect()
}

/// Namespaces whose Pods count toward a License's seats: its own and its rollout targets'.
fn seat_scope(l: &License) -> impl Iterator<Item = &str> {
    let explicit = l
        .spec
        .rollout
        .iter()
        .flat_map(|r| &r.targets)
        .filter_map(|t| t.namespace.as_deref());
    let resolved = l
        .status
        .iter()
        .flat_map(|s| &s.rollout)
        .flat_map(|r| &r.details)
        .map(|d| d.namespace.as_str());
    l.metadata
        .namespace
        .as_deref()
        .into_iter()
        .chain(explicit)
        .chain(resolved)
}

/// A Pod started, stopped or changed phase: Licenses counting it as a seat recount.
pub fn pod_seats(
    store: &Store<License>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<ObjectRef<License>> {
    store
        .state()
        .iter()
        .filter(|l| {
            let Some(selector) = l.spec.seats.as_ref().and_then(|s| s.pod_selector.clone()) else {
                return false;
            };
            let matches = Selector::try_from(selector).is_ok_and(|s| s.matches(labels));
            matches && seat_scope(l).any(|ns| ns == namespace)
        })
        .map(|l| ObjectRef::from_obj(l.as_ref()))
        .collect()
}

/// The readers of some (namespace, Secret) pairs changed: Licenses whose targets they are look
/// again at who reads their key.
pub fn target_readers(store: &Store<License>, touched: &[(String, String)]) -> Vec<ObjectRef<License>> {
    if touched.is_empty() {
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|l| {
            l.status
                .iter()
                .flat_map(|s| &s.rollout)
                .flat_map(|r| &r.details)
                .any(|d| touched.iter().any(|(ns, s)| *ns == d.namespace && *s == d.secret_name))
        })
        .map(|l| ObjectRef::from_obj(l.as_ref()))
        .collect()
}
