//! The License as the controller's watch parses it: every writer's `managedFields` entry and
//! `kubectl apply`'s copy of the whole object are dropped as each object is parsed, not after the
//! whole answer is. A list then never holds them for every License at once, so the License list
//! can come from the API server's watch cache in one piece (at 10,000 Licenses, a paged list out
//! of etcd took seconds longer) without the memory of a fully parsed list.
//!
//! kube-runtime's watcher parses what it lists into the type it watches; this type is the
//! smallest way to change that parsing and keep the watcher itself.

use std::borrow::Cow;

use kube::Resource;
use kube::api::ObjectMeta;
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer};

use crate::api::License;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A License without what the operator never reads.
#[derive(Clone, Debug)]
pub struct SlimLicense(pub License);

impl<'de> Deserialize<'de> for SlimLicense {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut license = License::deserialize(deserializer)?;
        slim(&mut license);
        Ok(Self(license))
    }
}

fn slim(license: &mut License) {
    license.metadata.managed_fields = None;
    if let Some(annotations) = license.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

impl Resource for SlimLicense {
    type DynamicType = ();
    type Scope = <License as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        License::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        License::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        License::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        License::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

/// The same event, carrying the License itself.
pub fn into_license(event: watcher::Event<SlimLicense>) -> watcher::Event<License> {
    use watcher::Event::*;
    match event {
        Apply(SlimLicense(l)) => Apply(l),
        Delete(SlimLicense(l)) => Delete(l),
        Init => Init,
        InitApply(SlimLicense(l)) => InitApply(l),
        InitDone => InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(metadata: serde_json::Value) -> License {
        let object = json!({
            "apiVersion": "keyward.dev/v1alpha1",
            "kind": "License",
            "metadata": metadata,
            "spec": {"secretRef": {"name": "key"}, "product": "p"},
        });
        serde_json::from_value::<SlimLicense>(object).unwrap().0
    }

    #[test]
    fn drops_managed_fields_and_the_last_applied_copy_and_keeps_the_rest() {
        let license = parsed(json!({
            "name": "app", "namespace": "team", "resourceVersion": "7", "uid": "u-1",
            "labels": {"tier": "gold"},
            "annotations": {LAST_APPLIED: "{\"big\": true}", "owner": "platform"},
            "finalizers": ["keyward.dev/cleanup"],
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {}}}],
        }));
        assert_eq!(license.metadata.managed_fields, None);
        let annotations = license.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["owner"], "platform");
        assert_eq!(license.metadata.labels.unwrap()["tier"], "gold");
        assert_eq!(license.metadata.finalizers.unwrap(), ["keyward.dev/cleanup"]);
        assert_eq!(license.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(license.spec.secret_ref.name, "key");
    }

    #[test]
    fn a_list_of_them_is_parsed_item_by_item_into_slim_licenses() {
        let list = json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "LicenseList",
            "metadata": {"resourceVersion": "9"},
            "items": [
                {"metadata": {"name": "a", "managedFields": [{"manager": "m"}]},
                 "spec": {"secretRef": {"name": "k"}, "product": "p"}},
                {"metadata": {"name": "b"}, "spec": {"secretRef": {"name": "k"}, "product": "p"}},
            ],
        });
        let list: kube::core::ObjectList<SlimLicense> = serde_json::from_value(list).unwrap();
        let names: Vec<_> = list.items.iter().map(|l| l.0.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(list.items.iter().all(|l| l.0.metadata.managed_fields.is_none()));
    }

    #[test]
    fn speaks_for_the_license_resource() {
        assert_eq!(
            SlimLicense::url_path(&(), Some("team")),
            License::url_path(&(), Some("team"))
        );
        assert_eq!(SlimLicense::kind(&()), "License");
        assert_eq!(SlimLicense::api_version(&()), "keyward.dev/v1alpha1");
    }

    #[test]
    fn events_carry_the_same_license() {
        let license = parsed(json!({"name": "a", "managedFields": [{"manager": "m"}]}));
        let event = into_license(watcher::Event::InitApply(SlimLicense(license.clone())));
        assert!(
            matches!(event, watcher::Event::InitApply(l) if l.spec == license.spec && l.metadata == license.metadata)
        );
        assert!(matches!(
            into_license(watcher::Event::InitDone),
            watcher::Event::InitDone
        ));
    }
}
