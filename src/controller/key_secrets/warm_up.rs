//! The key Secrets of the first License list, read before any reconcile asks for them.
//!
//! A (re)started controller checks every License at once, and each check needs its key. Read one
//! GET at a time, a restart at 10,000 Licenses with a key Secret each cost the API server 10,000
//! requests (the fleet benchmark counts them). Here the first list's key Secrets are read once
//! the list is in, a namespace at a time: a namespace with many of them with one list from the
//! API server's watch cache, the others one by one from that cache. The list's end is passed on
//! (and reconciles, which kube-runtime holds until then, start) once the reads are done, so the
//! reconciles find the keys in the cache. A copy is used only at the version the Secret watch
//! shows (`KeySecrets::current`): a stale one costs a read, never a wrong answer. The wait is
//! bounded: past `LIMIT` the reads go on in the background and the reconciles read what is
//! missing themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{debug, info};

use super::KeySecrets;
use crate::api::v1alpha1::License;

/// A namespace with at least this many key Secrets is read with one list (which also brings its
/// other Secrets, e.g. Helm's releases, through memory for a moment); fewer are read one by one.
const LIST_FROM: usize = 16;

/// Reads in flight at once.
const CONCURRENCY: usize = 8;

/// How long the end of the first list waits for the reads.
const LIMIT: Duration = Duration::from_secs(10);

pub struct WarmUp {
    cache: KeySecrets,
    client: Client,
    /// Following the first list; `None` once it is complete.
    plan: Option<Plan>,
}

/// The key Secret names of the listed Licenses, by namespace. The list comes from the API
/// server's watch cache, in no particular order, so nothing is read before its end.
#[derive(Debug, Default)]
struct Plan(BTreeMap<String, BTreeSet<String>>);

#[derive(Debug, PartialEq)]
enum Read {
    /// List the namespace's Secrets, keeping these.
    Namespace(String, BTreeSet<String>),
    /// Get one Secret.
    One(String, String),
}

impl Plan {
    fn want(&mut self, license: &License) {
        let Some(namespace) = license.metadata.namespace.as_ref() else {
            return;
        };
        let names = self.0.entry(namespace.clone()).or_default();
        let spec = &license.spec;
        for key in std::iter::once(&spec.secret_ref).chain(&spec.additional_keys) {
            names.insert(key.name.clone());
        }
    }

    fn reads(self) -> Vec<Read> {
        self.0
            .into_iter()
            .flat_map(|(namespace, names)| reads(namespace, names))
            .collect()
    }
}

fn reads(namespace: String, names: BTreeSet<String>) -> Vec<Read> {
    if names.len() >= LIST_FROM {
        vec![Read::Namespace(namespace, names)]
    } else {
        names
            .into_iter()
            .map(|name| Read::One(namespace.clone(), name))
            .collect()
    }
}

impl WarmUp {
    pub fn new(cache: KeySecrets, client: Client) -> Self {
        Self {
            cache,
            client,
            plan: Some(Plan::default()),
        }
    }

    /// Follows the License watch. At the end of its first list, the reads to finish (or give up
    /// waiting for) before that end is passed on.
    pub fn observe(&mut self, event: &watcher::Event<License>) -> Option<BoxFuture<'static, ()>> {
        match event {
            watcher::Event::InitApply(license) => {
                self.plan.as_mut()?.want(license);
                None
            }
            watcher::Event::InitDone => {
                let (cache, client) = (self.cache.clone(), self.client.clone());
                let reads = futures::stream::iter(self.plan.take()?.reads());
                let done = tokio::spawn(
                    reads.for_each_concurrent(CONCURRENCY, move |read| perform(cache.clone(), client.clone(), read)),
                );
                Some(Box::pin(wait(done)))
            }
            _ => None,
        }
    }
}

async fn wait(done: tokio::task::JoinHandle<()>) {
    let started = std::time::Instant::now();
    match tokio::time::timeout(LIMIT, done).await {
        Ok(_) => debug!(took = ?started.elapsed(), "key Secrets read ahead"),
        Err(_) => info!("key Secrets still being read ahead; reconciles go on"),
    }
}

/// A failed read costs nothing: the reconcile reads it again.
async fn perform(cache: KeySecrets, client: Client, read: Read) {
    match read {
        Read::One(namespace, name) => {
            let reader = cache.reader(Api::namespaced(client, &namespace), &namespace);
            let _ = reader.prefetch(&name).await;
        }
        Read::Namespace(namespace, names) => {
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            let Ok(listed) = api.list(&ListParams::default().match_any()).await else {
                return;
            };
            for secret in listed.items {
                let Some(name) = secret.metadata.name.as_ref() else {
                    continue;
                };
                if names.contains(name) {
                    cache.remember((namespace.clone(), name.clone()), Some(secret));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(namespace: &str, key: &str, additional: &[&str]) -> License {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": format!("for-{key}"), "namespace": namespace},
            "spec": {"secretRef": {"name": key}, "product": "zizq",
                     "additionalKeys": additional.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    fn one(namespace: &str, name: &str) -> Read {
        Read::One(namespace.into(), name.into())
    }

    #[test]
    fn a_namespace_is_read_with_one_list_when_it_has_many_keys_and_key_by_key_otherwise() {
        let mut plan = Plan::default();
        let many: BTreeSet<String> = (0..LIST_FROM).map(|i| format!("key-{i:02}")).collect();
        // Namespaces interleaved, as a list from the watch cache may give them.
        for (i, name) in many.iter().enumerate() {
            plan.want(&license("c", name, &[]));
            if i == 3 {
                plan.want(&license("a", "shared", &["next"]));
                plan.want(&license("b", "shared", &[]));
                plan.want(&license("a", "shared", &[]));
            }
        }
        assert_eq!(
            plan.reads(),
            [
                one("a", "next"),
                one("a", "shared"),
                one("b", "shared"),
                Read::Namespace("c".into(), many)
            ]
        );
    }

    #[test]
    fn one_key_short_of_the_threshold_is_read_key_by_key() {
        let mut plan = Plan::default();
        for i in 0..LIST_FROM - 1 {
            plan.want(&license("a", &format!("key-{i:02}"), &[]));
        }
        let reads = plan.reads();
        assert_eq!(reads.len(), LIST_FROM - 1);
        assert!(reads.iter().all(|r| matches!(r, Read::One(..))));
    }

    #[tokio::test]
    async fn only_the_first_list_is_read_ahead() {
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let mut warm_up = WarmUp::new(KeySecrets::default(), client);
        let mut list_once = || {
            assert!(warm_up.observe(&watcher::Event::Init).is_none());
            let apply = watcher::Event::InitApply(license("a", "k", &[]));
            assert!(warm_up.observe(&apply).is_none());
            warm_up.observe(&watcher::Event::InitDone).is_some()
        };
        assert!(list_once(), "the first list's end waits");
        assert!(!list_once(), "a relist's does not");
    }
}
