//! The License controller, built on kube-runtime: a `Controller` over Licenses that also wakes on
//! changes to the Secrets they reference and to the trusted keys.

mod backoff;
pub mod consumers;
mod context;
mod echoes;
mod error;
mod events;
pub mod finding;
mod key_secrets;
pub mod key_source;
pub mod leader;
mod object_key;
pub mod reconcile;
mod ref_index;
mod rewind;
pub mod rollout;
pub mod seats;
mod slim_license;
pub mod status;
mod triggers;
pub mod trust;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, predicates, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

pub use context::{Context, Settings};
pub use error::Error;
use slim_license::SlimLicense;
use trust::TrustStore;

use crate::api::v1alpha1::License;
use crate::telemetry::{Liveness, Metrics, Readiness};

pub const CONTROLLER_NAME: &str = "keyward";

/// Reconciles in flight at once: enough to keep the API server busy, few enough that a cold start
/// with thousands of Licenses does not hold thousands of responses in memory at the same time.
const RECONCILE_CONCURRENCY: u16 = 32;

pub struct RunOptions {
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub trust: TrustStore,
    pub trust_reload_interval: Duration,
    pub settings: Settings,
    /// This replica's identity, shown as the events' reporting instance.
    pub instance: String,
    /// Reconcile only Licenses with these labels (shard Licenses across operators).
    pub license_selector: Option<String>,
    /// Where the controller reports its progress, for `/healthz`.
    pub liveness: Liveness,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves. Should the cluster's state go back in time
/// (etcd restored), it starts over with fresh watches; readiness is false meanwhile.
pub async fn run(
    client: Client,
    options: RunOptions,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let trust_changes = watch_trust(&options, &metrics);
    let runner = Runner {
        context: Arc::new(Context::new(
            client,
            options.trust,
            options.instance,
            metrics,
            options.settings,
        )),
        namespace: options.namespace,
        license_selector: options.license_selector,
        liveness: options.liveness,
        ready,
        trust_changes,
    };
    let shutdown = shutdown.shared();
    let mut first = true;
    loop {
        runner.run_once(shutdown.clone(), std::mem::take(&mut first)).await;
        if shutdown.peek().is_some() {
            break;
        }
    }
    info!("controller stopped");
}

/// What each controller the process starts (one per rewind of the cluster) shares.
struct Runner {
    context: Arc<Context>,
    namespace: Option<String>,
    license_selector: Option<String>,
    liveness: Liveness,
    ready: Readiness,
    trust_changes: TrustChanges,
}

impl Runner {
    /// One controller, with fresh watches and caches, until `shutdown` or a rewind. The start-up
    /// sweep runs only in the `first`.
    async fn run_once(&self, shutdown: impl Future<Output = ()> + Send + Sync + 'static, first: bool) {
        self.liveness.syncing();
        self.context.forget_watched();
        let namespace = self.namespace.as_deref();
        let (controller, pod_watch) = build(&self.context, namespace, self.license_selector.as_deref());
        let (watchdog, rewound) = self.spawn_rewind_watchdog(controller.store());
        let stop = futures::future::select(Box::pin(shutdown), rewound).map(|_| ());
        let controller = controller
            .reconcile_all_on(self.trust_changes.subscribe())
            .trigger_backoff(backoff::WatchBackoff::default())
            .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
            .graceful_shutdown_on(stop);
        report_ready_when_synced(controller.store(), self.ready.clone(), self.liveness.clone());
        if first {
            sweep_orphans_once_synced(controller.store(), &self.context);
        }
        info!(namespace = namespace.unwrap_or("<all>"), "controller started");
        controller
            .run(reconcile::reconcile, reconcile::error_policy, self.context.clone())
            .for_each(|_| futures::future::ready(()))
            .await;
        watchdog.abort();
        pod_watch.abort();
    }

    /// Reports a rewind of the cluster's state itself, then resolves the receiver, which stops
    /// the controller; `run` then starts anew.
    fn spawn_rewind_watchdog(
        &self,
        seen: Store<License>,
    ) -> (tokio::task::JoinHandle<()>, futures::channel::oneshot::Receiver<()>) {
        let (rewound_tx, rewound_rx) = futures::channel::oneshot::channel::<()>();
        let (client, namespace) = (self.context.client.clone(), self.namespace.clone());
        let (ready, metrics, liveness) = (self.ready.clone(), self.context.metrics.clone(), self.liveness.clone());
        let watchdog = tokio::spawn(async move {
            let r = rewind::watch(client, namespace, seen, liveness).await;
            ready.set_not_ready();
            metrics.watch_resync();
            warn!(
                from = r.from,
                to = r.to,
                "the cluster's resourceVersion went back (etcd restored?); starting over with fresh watches"
            );
            let _ = rewound_tx.send(());
        });
        (watchdog, rewound_rx)
    }
}

/// Trusted-key changes, for each controller the run starts.
struct TrustChanges(tokio::sync::watch::Receiver<u64>);

impl TrustChanges {
    /// A stream that yields once per change from now on.
    fn subscribe(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let mut rx = self.0.clone();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }
}

/// Re-reads the trusted keys while running; every change re-verifies every License.
fn watch_trust(options: &RunOptions, metrics: &Arc<Metrics>) -> TrustChanges {
    metrics.trusted_keys(options.trust.current().len());
    if options.trust.current().is_empty() {
        warn!("no trusted vendor keys are configured: every License will be Invalid (NoTrustedKeys)");
    }
    let (trust_changed, trust_changes) = tokio::sync::watch::channel(0u64);
    let (metrics_ok, metrics_err) = (metrics.clone(), metrics.clone());
    tokio::spawn(options.trust.clone().watch(
        options.trust_reload_interval,
        move |keys| {
            info!(keys = ?keys.ids(), "trusted vendor keys changed; re-verifying every License");
            metrics_ok.trusted_keys(keys.len());
            trust_changed.send_modify(|n| *n += 1);
        },
        move |e| {
            warn!(error = %e, "could not re-read the trusted keys; keeping the keys in force");
            metrics_err.trust_reload_failed();
        },
    ));
    TrustChanges(trust_changes)
}

/// The controller over Licenses, woken also by the objects they reference. Metadata-only
/// watches, but for Keyward's own target Secrets (selected by label; only a digest of each is
/// kept): memory does not grow with the payloads of unrelated objects; what a License references
/// is read on demand in the reconcile. Returns it with the Pod watch it is woken by.
fn build(
    context: &Arc<Context>,
    namespace: Option<&str>,
    license_selector: Option<&str>,
) -> (Controller<License>, tokio::task::JoinHandle<()>) {
    let controller = license_controller(context, namespace, license_selector);
    // Pods are watched once, in full, by `consumers::watch_pods`: it keeps only who reads which
    // Secret, and asks for the reconciles (seats and consumers) itself.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let pod_watch = tokio::spawn(consumers::watch_pods(
        api::<Pod>(&context.client, namespace),
        context.consumers.clone(),
        controller.store(),
        wake,
    ));
    let controller = woken_by_references(controller.reconcile_on(woken), context, namespace);
    (controller, pod_watch)
}

/// The Licenses' own watch: parsed slim, key Secrets warmed up as the first list arrives, and
/// neither unchanged replays nor the echoes of our own status writes passed on.
fn license_controller(
    context: &Arc<Context>,
    namespace: Option<&str>,
    license_selector: Option<&str>,
) -> Controller<License> {
    let client = &context.client;
    let license_watch = match license_selector {
        Some(selector) => from_watch_cache().labels(selector),
        None => from_watch_cache(),
    };
    let (reader, writer) = reflector::store();
    let mut warm_up = key_secrets::WarmUp::new(context.key_secrets.clone(), client.clone());
    let license_events = watcher(api::<SlimLicense>(client, namespace), license_watch)
        .map_ok(slim_license::into_license)
        .then(move |event| {
            let reads = event.as_ref().ok().and_then(|e| warm_up.observe(e));
            async move {
                if let Some(reads) = reads {
                    reads.await;
                }
                event
            }
        });
    let licenses = reflector::reflector(writer, license_events)
        .applied_objects()
        .predicate_filter(predicates::resource_version, Default::default())
        .filter({
            let echoes = context.status_echoes.clone();
            move |l| futures::future::ready(!l.as_ref().is_ok_and(|l| echoes.is_echo(&l.metadata)))
        });
    Controller::for_stream(licenses, reader)
}

/// Wakes Licenses on changes to what they reference: key Secrets, their targets, usage-report
/// ConfigMaps and, across namespaces, the namespaces their targets select.
fn woken_by_references(
    controller: Controller<License>,
    context: &Arc<Context>,
    namespace: Option<&str>,
) -> Controller<License> {
    let client = &context.client;
    let licenses_for_namespaces = controller.store();
    let (secret_index, usage_index) = (context.secret_index.clone(), context.usage_index.clone());
    let keys_of_targets = context.secret_index.clone();
    let echoes = context.target_echoes.clone();
    let managed = context.managed_targets.clone();
    let key_secrets = context.key_secrets.clone();
    let controller = controller
        .watches_stream(
            changed(
                api::<PartialObjectMeta<Secret>>(client, namespace),
                unmanaged(),
                move |e| key_secrets.observe(e),
            ),
            move |s| triggers::secret(&secret_index, &s),
        )
        .watches_stream(
            changed(api::<Secret>(client, namespace), targets(), move |e| managed.observe(e)),
            move |s| triggers::target(&echoes, &keys_of_targets, &s),
        )
        .watches_stream(
            changed(
                api::<PartialObjectMeta<ConfigMap>>(client, namespace),
                everything(),
                |_| {},
            ),
            move |cm| triggers::config_map(&usage_index, &cm),
        );
    if namespace.is_some() {
        return controller;
    }
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    controller.watches_stream(changed(namespaces, everything(), |_| {}), move |n| {
        triggers::namespace(&licenses_for_namespaces, &n)
    })
}

/// The objects of a watch that are new or changed since this controller last saw them. A watch
/// that relists (after an API server restart, or a watch too old to resume) replays every object;
/// passed on, each replay would queue a reconcile of an unchanged License, thousands at once,
/// ahead of the changes that matter (seen in the soak: rotations waited tens of seconds after
/// each API server restart). The License stream is filtered the same way. A rewind starts a new
/// controller, whose filters have seen nothing. `observe` sees every event first (relists included),
/// for indexes that follow the watched objects.
fn changed<K>(
    api: Api<K>,
    config: watcher::Config,
    mut observe: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send,
{
    watcher(api, config)
        .inspect(move |event| {
            if let Ok(event) = event {
                observe(event);
            }
        })
        .touched_objects()
        .predicate_filter(predicates::resource_version, Default::default())
}

/// The lists that start (and restart) the watches are served from the API server's watch cache
/// (resourceVersion "0"), as client-go's informers list: a quorum list reads and decodes every
/// object out of etcd, page by page (at 10,000 Licenses: those and 20,000 Secrets). A
/// cached list can be older than what was seen before (an API server that lags behind another);
/// the watch that follows it brings the changes since. A rewound store is noticed apart from the
/// watches (`rewind`), by a quorum read. Licenses come in one piece too: each is slimmed as it is
/// parsed (`SlimLicense`). Pods stay paged (`consumers`): they are many and large.
fn from_watch_cache() -> watcher::Config {
    let mut config = watcher::Config::default().any_semantic();
    // kube leaves resourceVersion "0" out of a list that has a limit (the pages would come from
    // etcd anyway), and the API server answers a cached list in one piece.
    config.page_size = None;
    config
}

fn everything() -> watcher::Config {
    from_watch_cache()
}

/// Keyward's target Secrets, in full (the index keeps a digest of their data, no payload).
fn targets() -> watcher::Config {
    from_watch_cache().labels(&rollout::managed_selector())
}

/// Every Secret but Keyward's targets, whose own watch covers them: at 10,000 Licenses, a
/// restart's first list of Secret metadata is half as long.
fn unmanaged() -> watcher::Config {
    from_watch_cache().labels(&rollout::unmanaged_selector())
}

fn report_ready_when_synced(store: Store<License>, ready: Readiness, liveness: Liveness) {
    tokio::spawn(async move {
        match synced(&store).await {
            Ok(()) => {
                info!("License cache synced; ready");
                ready.set_ready();
                liveness.synced();
            }
            Err(e) => warn!(error = %e, "License cache never synced"),
        }
    });
}

/// Resolves once the store has synced. Its readiness is one oneshot receiver that wakes only its
/// latest poller, and the controller's runner waits on it too: re-poll rather than wait once.
async fn synced(store: &Store<License>) -> Result<(), reflector::store::WriterDropped> {
    loop {
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            return result;
        }
    }
}

/// Once per process, after the License cache has synced: its Licenses need no lookup.
fn sweep_orphans_once_synced(store: Store<License>, context: &Arc<Context>) {
    let context = context.clone();
    tokio::spawn(async move {
        if synced(&store).await.is_ok() {
            sweep_orphans(&context, store).await;
        }
    });
}

async fn sweep_orphans(context: &Context, licenses: Store<License>) {
    let cached: std::collections::HashSet<String> =
        licenses.state().iter().filter_map(|l| l.metadata.uid.clone()).collect();
    match rollout::sweep_orphans(&context.client, &context.managed_targets, &cached).await {
        Ok(0) => {}
        Ok(n) => info!(
            removed = n,
            "removed target Secrets of Licenses deleted while the operator was away"
        ),
        Err(e) => warn!(error = %e, "could not sweep orphaned target Secrets"),
    }
}
