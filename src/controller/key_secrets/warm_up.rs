//! The key Secrets of the first License list, read before any reconcile asks for them.
//!
//! A (re)started controller checks every License at once, and each check needs its key. Read one
//! GET at a time, a restart at 10,000 Licenses with a key Secret each cost the API server 10,000
//! requests (the fleet benchmark counts them). Here the first list's key Secrets
//! are read while the list arrives, a namespace at a time: a namespace with many of them with one
//! list from the API server's watch cache, the others one by one from that cache. The list's end
//! is passed on (and reconciles, which kube-runtime holds until then, start) once the reads are
//! done, so the reconciles find the keys in the cache. A copy is used only at the version the
//! Secret watch shows (`KeySecrets::current`): a stale one costs a read, never a wrong answer.
//! The wait is bounded: past `LIMIT` the reads go on in the background and the reconciles read
//! what is missing themselves.

use std::collections::BTreeSet;
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
    /// Following the first list; `None` once it is complete.
    listing: Option<Listing>,
}

struct Listing {
    plan: Plan,
    reads: futures::channel::mpsc::UnboundedSender<Read>,
    done: tokio::task::JoinHandle<()>,
}

/// The key Secret names of the namespace the list is in. A cluster-wide list arrives in
/// etcd's order, a namespace at a time: once the list moves on, a namespace's names are complete
/// and can be read while the rest of the list arrives. (Were a namespace to come back, its new
/// names would just be read apart.)
#[derive(Debug, Default)]
struct Plan {
    namespace: String,
    names: BTreeSet<String>,
}

#[derive(Debug, PartialEq)]
enum Read {
    /// List the namespace's Secrets, keeping these.
    Namespace(String, BTreeSet<String>),
    /// Get one Secret.
    One(String, String),
}

impl Plan {
    /// Adds the License's key Secrets; the reads of the namespace the list has just left.
    fn want(&mut self, license: &License) -> Vec<Read> {
        let Some(namespace) = license.metadata.namespace.as_ref() else {
            return Vec::new();
        };
        let left = if *namespace != self.namespace {
            let names = std::mem::take(&mut self.names);
            reads(std::mem::replace(&mut self.namespace, namespace.clone()), names)
        } else {
            Vec::new()
        };
        let spec = &license.spec;
        for key in std::iter::once(&spec.secret_ref).chain(&spec.additional_keys) {
            self.names.insert(key.name.clone());
        }
        left
    }

    /// The reads of the last namespace.
    fn finish(self) -> Vec<Read> {
        reads(self.namespace, self.names)
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
        let (reads, queued) = futures::channel::mpsc::unbounded::<Read>();
        let done = tokio::spawn(
            queued.for_each_concurrent(CONCURRENCY, move |read| perform(cache.clone(), client.clone(), read)),
        );
        Self {
            listing: Some(Listing {
                plan: Plan::default(),
                reads,
                done,
            }),
        }
    }

    /// Follows the License watch. At the end of its first list, the reads to finish (or give up
    /// waiting for) before that end is passed on.
    pub fn observe(&mut self, event: &watcher::Event<License>) -> Option<BoxFuture<'static, ()>> {
        match event {
            watcher::Event::InitApply(license) => {
                let listing = self.listing.as_mut()?;
                for read in listing.plan.want(license) {
                    let _ = listing.reads.unbounded_send(read);
                }
                None
            }
            watcher::Event::InitDone => {
                let Listing { plan, reads, done } = self.listing.take()?;
                for read in plan.finish() {
                    let _ = reads.unbounded_send(read);
                }
                drop(reads);
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
    fn a_namespace_is_read_once_the_list_has_left_it_and_with_one_list_when_it_has_many() {
        let mut plan = Plan::default();
        assert_eq!(plan.want(&license("a", "shared", &["next"])), []);
        assert_eq!(plan.want(&license("a", "shared", &[])), []);
        assert_eq!(
            plan.want(&license("b", "shared", &[])),
            [one("a", "next"), one("a", "shared")]
        );
        let many: BTreeSet<String> = (0..LIST_FROM).map(|i| format!("key-{i:02}")).collect();
        let mut left = Vec::new();
        for name in &many {
            left.extend(plan.want(&license("c", name, &[])));
        }
        assert_eq!(left, [one("b", "shared")]);
        assert_eq!(plan.finish(), [Read::Namespace("c".into(), many)]);
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
