//! Removing target Secrets no longer wanted: pruned on every rollout, all of them when a License is
//! deleted, and orphans (Licenses deleted while the operator was away) once at start-up.

use std::collections::{BTreeSet, HashSet};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::info;

use super::managed::{ManagedSecrets, SecretKey};
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

/// Deletes this License's managed Secrets not in `keep` (namespace, name): those the Secret watch
/// shows labelled for it, and those its last status lists, which the watch may not have shown yet
/// (written moments ago; their echo wakes nobody) and which are checked before they go.
pub async fn prune(
    client: &Client,
    managed: &ManagedSecrets,
    license: &License,
    keep: &BTreeSet<SecretKey>,
) -> Result<(), kube::Error> {
    let uid = license.uid().unwrap_or_default();
    let listed = license
        .status
        .iter()
        .flat_map(|s| &s.rollout)
        .flat_map(|r| &r.details)
        .map(|d| (d.namespace.clone(), d.secret_name.clone()));
    let mut candidates = managed.owned_by(&uid);
    candidates.extend(listed);
    for key in candidates.difference(keep) {
        let ours = managed.is_owned_by(key, &uid) || labelled_for(client, key, &uid).await?;
        if ours && delete_secret(client, &key.0, &key.1).await? {
            info!(namespace = %key.0, secret = %key.1, "removed target Secret no longer wanted");
        }
    }
    Ok(())
}

/// Whether the Secret exists and is labelled as managed for the License with this UID.
async fn labelled_for(client: &Client, (namespace, name): &SecretKey, uid: &str) -> Result<bool, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(meta) = api.get_metadata_opt(name).await? else {
        return Ok(false);
    };
    let labels = meta.labels();
    Ok(labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(OWNER_UID_LABEL).map(String::as_str) == Some(uid))
}

/// Removes every Secret this License manages (on deletion, or when its targets are removed from
/// the spec), listed from the API server: nothing may be missed when no later reconcile comes.
pub async fn remove_all(client: &Client, license: &License, settings: &RolloutSettings) -> Result<(), kube::Error> {
    let secrets = managed_secrets_api(client, license, settings);
    for secret in secrets.list_metadata(&owned_by(license)).await? {
        let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        if delete_secret(client, &namespace, &name).await? {
            info!(namespace = %namespace, secret = %name, "removed target Secret no longer wanted");
        }
    }
    Ok(())
}

/// Deletes managed Secrets whose License no longer exists (deleted while the finalizer was
/// bypassed). Owners are looked up in the API, not a local cache, so another operator's
/// Licenses (a sharded installation's) are never mistaken for orphans: one paged LIST of the
/// Licenses' metadata after the Secrets' (an owner that existed when its Secret was listed is in
/// the later list unless it is gone), not one GET per Secret.
pub async fn sweep_orphans(client: &Client, namespace: Option<&str>) -> Result<usize, kube::Error> {
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let secrets = list_metadata_paged::<Secret>(scoped(client, namespace), &managed).await?;
    if secrets.is_empty() {
        return Ok(0);
    }
    let licenses = list_metadata_paged::<License>(scoped(client, namespace), &ListParams::default()).await?;
    let alive: HashSet<(String, String, String)> = licenses
        .iter()
        .map(|l| {
            (
                l.namespace().unwrap_or_default(),
                l.name_any(),
                l.uid().unwrap_or_default(),
            )
        })
        .collect();
    let mut removed = 0;
    for secret in &secrets {
        let Some((ns, name)) = owner_of(&secret.metadata) else {
            continue;
        };
        let owner_uid = secret.labels().get(OWNER_UID_LABEL).cloned().unwrap_or_default();
        let owner_alive = if namespace.is_none_or(|scope| scope == ns) {
            alive.contains(&(ns.clone(), name.clone(), owner_uid))
        } else {
            // An owner outside the namespace this operator lists: ask for it by name.
            let licenses: Api<License> = Api::namespaced(client.clone(), &ns);
            licenses
                .get_opt(&name)
                .await?
                .is_some_and(|l| l.uid() == Some(owner_uid))
        };
        let secret_ns = secret.namespace().unwrap_or_default();
        if !owner_alive && delete_secret(client, &secret_ns, &secret.name_any()).await? {
            removed += 1;
            info!(namespace = %secret_ns, secret = %secret.name_any(), owner = %format!("{ns}/{name}"),
                "removed orphaned target Secret");
        }
    }
    Ok(removed)
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Every object's metadata, 500 per request, so a large cluster is never one huge response.
async fn list_metadata_paged<K>(api: Api<K>, params: &ListParams) -> Result<Vec<PartialObjectMeta<K>>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.clone().limit(500);
    let mut all = Vec::new();
    loop {
        let page = api.list_metadata(&params).await?;
        all.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => params = params.continue_token(&next),
            None => return Ok(all),
        }
    }
}
