//! Which target Secrets a License wants, and where it may write them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::core::{PartialObjectMeta, Selector};
use kube::{Api, Client, ResourceExt};

use super::{RolloutReason, RolloutSettings};
use crate::api::v1alpha1::{License, RolloutTarget};
use crate::controller::finding::Finding;

/// One target Secret in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub namespace: String,
    pub secret_name: String,
    pub pod_selector: Option<String>,
}

/// A License's targets resolved to (namespace, Secret) pairs, or the spec error that prevents it.
pub type Targets = Result<Vec<Wanted>, Finding<RolloutReason>>;

fn invalid_spec(message: impl Into<String>) -> Finding<RolloutReason> {
    Finding::new(RolloutReason::InvalidSpec, message)
}

fn selector_string(selector: &LabelSelector, field: &str) -> Result<String, Finding<RolloutReason>> {
    Selector::try_from(selector.clone())
        .map(|s| s.to_string())
        .map_err(|e| invalid_spec(format!("{field}: {e}")))
}

/// Resolves the License's targets once per reconcile (rollout and seat counting both use them).
/// Only `namespaceSelector` targets cost an API call.
pub async fn resolve(client: &Client, license: &License, settings: &RolloutSettings) -> Result<Targets, kube::Error> {
    let own = license.namespace().unwrap_or_default();
    let mut out = BTreeSet::new();
    for (i, target) in license.spec.rollout.iter().flat_map(|r| r.targets.iter()).enumerate() {
        let field = format!("spec.rollout.targets[{i}]");
        if target.secret_name.is_empty() {
            return Ok(Err(invalid_spec(format!("{field}.secretName is empty"))));
        }
        let pod_selector = match &target.pod_selector {
            Some(s) => match selector_string(s, &format!("{field}.podSelector")) {
                Ok(s) => Some(s),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        };
        let namespaces = match target_namespaces(client, target, &field, &own, settings).await? {
            Ok(namespaces) => namespaces,
            Err(e) => return Ok(Err(e)),
        };
        out.extend(namespaces.into_iter().map(|namespace| Wanted {
            namespace,
            secret_name: target.secret_name.clone(),
            pod_selector: pod_selector.clone(),
        }));
    }
    Ok(Ok(out.into_iter().collect()))
}

async fn target_namespaces(
    client: &Client,
    target: &RolloutTarget,
    field: &str,
    own: &str,
    settings: &RolloutSettings,
) -> Result<Result<Vec<String>, Finding<RolloutReason>>, kube::Error> {
    let selector = match (&target.namespace, &target.namespace_selector) {
        (Some(ns), _) => return Ok(Ok(vec![ns.clone()])),
        (None, None) => return Ok(Ok(vec![own.to_string()])),
        (None, Some(selector)) => match selector_string(selector, &format!("{field}.namespaceSelector")) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        },
    };
    if !settings.cluster_wide {
        return Ok(Err(invalid_spec(
            "namespaceSelector needs an operator that watches all namespaces",
        )));
    }
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let list = namespaces
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    Ok(Ok(list
        .items
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|n| n.name_any())
        .collect()))
}

/// The distinct namespaces of resolved targets.
pub fn namespaces(targets: &[Wanted]) -> Vec<String> {
    let unique: BTreeSet<&str> = targets.iter().map(|w| w.namespace.as_str()).collect();
    unique.into_iter().map(str::to_string).collect()
}

/// May a License in `license_ns` write a Secret into `target_ns`? Only into its own namespace,
/// unless it lives in the operator's namespace (administrators only) or the operator allows it.
pub fn target_allowed(license_ns: &str, target_ns: &str, settings: &RolloutSettings) -> bool {
    license_ns == target_ns
        || settings.allow_cross_namespace_targets
        || settings.operator_namespace.as_deref() == Some(license_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(operator_ns: Option<&str>, allow: bool) -> RolloutSettings {
        RolloutSettings {
            operator_namespace: operator_ns.map(str::to_string),
            allow_cross_namespace_targets: allow,
            cluster_wide: true,
        }
    }

    #[test]
    fn cross_namespace_rule() {
        assert!(target_allowed("team-a", "team-a", &settings(Some("keyward"), false)));
        assert!(!target_allowed("team-a", "team-b", &settings(Some("keyward"), false)));
        assert!(!target_allowed("team-a", "team-b", &settings(None, false)));
        assert!(target_allowed("keyward", "team-b", &settings(Some("keyward"), false)));
        assert!(target_allowed("team-a", "team-b", &settings(Some("keyward"), true)));
    }
}
