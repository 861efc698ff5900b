//! Removing target Secrets no longer wanted: pruned on every rollout, all of them when a License is
//! deleted, and orphans (Licenses deleted while the operator was away) once at start-up.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::info;

use super::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL, RolloutSettings, owner_of};
use crate::api::v1alpha1::License;

fn managed_secrets_api(client: &Client, license: &License, settings: &RolloutSettings) -> Api<Secret> {
    if settings.cluster_wide {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &license.namespace().unwrap_or_default())
    }
}

fn owned_by(license: &License) -> ListParams {
    ListParams::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{OWNER_UID_LABEL}={}",
        license.uid().unwrap_or_default()
    ))
}

/// Deletes a Secret; one already gone counts as deleted.
async fn delete_secret(client: &Client, namespace: &str, name: &str) -> Result<bool, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes this License's managed Secrets not in `keep` (namespace, name).
pub async fn prune(
    client: &Client,
    license: &License,
    settings: &RolloutSettings,
    keep: &BTreeSet<(String, String)>,
) -> Result<(), kube::Error> {
    let secrets = managed_secrets_api(client, license, settings);
    for secret in secrets.list_metadata(&owned_by(license)).await? {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        if !keep.contains(&key) && delete_secret(client, &key.0, &key.1).await? {
            info!(namespace = %key.0, secret = %key.1, "removed target Secret no longer wanted");
        }
    }
    Ok(())
}

/// Removes every Secret this License manages (on deletion).
pub async fn remove_all(client: &Client, license: &License, settings: &RolloutSettings) -> Result<(), kube::Error> {
    prune(client, license, settings, &BTreeSet::new()).await
}

/// Deletes managed Secrets whose License no longer exists (deleted while the finalizer was
/// bypassed). Owners are looked up in the API, not a local cache, so another operator's
/// Licenses are never mistaken for orphans.
pub async fn sweep_orphans(client: &Client, namespace: Option<&str>) -> Result<usize, kube::Error> {
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut removed = 0;
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    for secret in secrets.list_metadata(&managed).await? {
        let Some((ns, name)) = owner_of(&secret.metadata) else {
            continue;
        };
        let owner_uid = secret.labels().get(OWNER_UID_LABEL).cloned();
        let licenses: Api<License> = Api::namespaced(client.clone(), &ns);
        let alive = licenses
            .get_opt(&name)
            .await?
            .is_some_and(|l| l.meta().uid == owner_uid);
        let secret_ns = secret.namespace().unwrap_or_default();
        if !alive && delete_secret(client, &secret_ns, &secret.name_any()).await? {
            removed += 1;
            info!(namespace = %secret_ns, secret = %secret.name_any(), owner = %format!("{ns}/{name}"),
                "removed orphaned target Secret");
        }
    }
    Ok(removed)
}
