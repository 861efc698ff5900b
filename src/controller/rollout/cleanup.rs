//! Removing target Secrets no longer wanted: pruned on every rollout, all of them when a License is
//! deleted, and orphans (Licenses deleted while the operator was away) once at start-up.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use tracing::info;

use super::managed::{Candidate, ManagedSecrets, SecretKey};
use super::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL, RolloutSettings, owner_uid_label};
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
    Ok(owner_uid_label(&meta.metadata) == Some(uid))
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
/// bypassed), as the targets' watch shows them once it has listed them all. An owner in the License
/// cache (`cached`: the UIDs of the Licenses this operator reconciles) is alive; any other owner is
/// looked up in the API by name, so another operator's Licenses (a sharded installation's) are
/// never mistaken for orphans. (It used to list the Secrets itself: at 10,000 Licenses one more
/// read of every Secret out of etcd, competing with the restart's own checks.)
pub async fn sweep_orphans(
    client: &Client,
    managed: &ManagedSecrets,
    cached: &HashSet<String>,
) -> Result<usize, kube::Error> {
    managed.synced().await;
    let candidates = managed.owned_by_others(cached);
    let listed = listed_alive(client, &candidates).await?;
    let mut removed = 0;
    for Candidate {
        secret: (secret_ns, secret_name),
        owner: (ns, name),
        owner_uid,
    } in candidates
    {
        if listed.contains(&owner_uid) {
            continue;
        }
        let licenses: Api<License> = Api::namespaced(client.clone(), &ns);
        let alive = licenses
            .get_opt(&name)
            .await?
            .is_some_and(|l| l.uid().as_deref() == Some(owner_uid.as_str()));
        if !alive && delete_secret(client, &secret_ns, &secret_name).await? {
            removed += 1;
            info!(namespace = %secret_ns, secret = %secret_name, owner = %format!("{ns}/{name}"),
                "removed orphaned target Secret");
        }
    }
    Ok(removed)
}

/// A namespace holding the owners of at least this many candidates has its Licenses listed once
/// instead of looked up one by one (another installation's 1,000 targets cost 1,000 GETs at every
/// restart otherwise).
const LIST_FROM: usize = 16;

/// The UIDs of the Licenses alive in the namespaces that own many candidates, listed from the API
/// server's watch cache. Only a *found* owner is trusted from there (a cache that lags can only
/// keep a Secret one restart longer); an owner not found is looked up with a GET before its
/// Secret goes.
async fn listed_alive(client: &Client, candidates: &[Candidate]) -> Result<HashSet<String>, kube::Error> {
    let mut alive = HashSet::new();
    for namespace in crowded_namespaces(candidates) {
        let licenses: Api<License> = Api::namespaced(client.clone(), namespace);
        let listed = licenses.list_metadata(&ListParams::default().match_any()).await?;
        alive.extend(listed.items.into_iter().filter_map(|l| l.metadata.uid));
    }
    Ok(alive)
}

fn crowded_namespaces(candidates: &[Candidate]) -> Vec<&str> {
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    for candidate in candidates {
        *owners.entry(candidate.owner.0.as_str()).or_default() += 1;
    }
    owners
        .into_iter()
        .filter(|(_, n)| *n >= LIST_FROM)
        .map(|(namespace, _)| namespace)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_in(namespace: &str, count: usize) -> impl Iterator<Item = Candidate> {
        (0..count).map(move |i| Candidate {
            secret: ("targets".into(), format!("{namespace}-{i}")),
            owner: (namespace.into(), format!("lic-{i}")),
            owner_uid: format!("{namespace}-uid-{i}"),
        })
    }

    #[test]
    fn only_namespaces_owning_many_candidates_are_listed() {
        let candidates: Vec<Candidate> = owned_in("crowded", LIST_FROM)
            .chain(owned_in("sparse", LIST_FROM - 1))
            .chain(owned_in("also-crowded", LIST_FROM + 1))
            .collect();
        assert_eq!(crowded_namespaces(&candidates), vec!["also-crowded", "crowded"]);
        assert!(crowded_namespaces(&[]).is_empty());
    }

    #[test]
    fn a_namespace_counts_the_owners_it_holds_not_the_targets() {
        // Targets of one namespace's Licenses spread over many namespaces: one list.
        let spread: Vec<Candidate> = owned_in("owners", LIST_FROM)
            .enumerate()
            .map(|(i, c)| Candidate {
                secret: (format!("target-ns-{i}"), "t".into()),
                ..c
            })
            .collect();
        assert_eq!(crowded_namespaces(&spread), vec!["owners"]);
    }
}
