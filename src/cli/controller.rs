use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::info;

use crate::controller::leader::{self, Ended};
use crate::controller::rollout::RolloutSettings;
use crate::controller::trust::TrustStore;
use crate::controller::{RunOptions, Settings};
use crate::license::Policy;
use crate::license::humanize::parse_duration;
use crate::telemetry::logging::{self, LogFormat};
use crate::telemetry::{Liveness, Metrics, Readiness, http};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig to use; default: in-cluster, else $KUBECONFIG, else ~/.kube/config.
    #[arg(long, env = "KEYWARD_KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Directory of trusted vendor public keys, one `<kid>.pem` per key; re-read while running.
    #[arg(long, env = "KEYWARD_TRUSTED_KEYS", value_name = "DIR")]
    trusted_keys: PathBuf,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KEYWARD_NAMESPACE", value_name = "NS")]
    namespace: Option<String>,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "KEYWARD_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, env = "KEYWARD_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    health_addr: SocketAddr,
    #[arg(long, env = "KEYWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Warning window for keys that do not sign their own `warn`.
    #[arg(long, env = "KEYWARD_DEFAULT_WARN", default_value = "30d", value_parser = parse_duration)]
    default_warn: jiff::SignedDuration,
    /// Grace period for keys that do not sign their own `grace`.
    #[arg(long, env = "KEYWARD_DEFAULT_GRACE", default_value = "14d", value_parser = parse_duration)]
    default_grace: jiff::SignedDuration,
    /// Let Licenses in any namespace roll keys out into other namespaces (otherwise only Licenses in
    /// the operator's own namespace may).
    #[arg(long, env = "KEYWARD_ALLOW_CROSS_NAMESPACE_TARGETS")]
    allow_cross_namespace_targets: bool,
    /// The operator's own namespace, where only administrators create Licenses.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    operator_namespace: Option<String>,
    /// Reconcile only Licenses with these labels, e.g. `shard=a`.
    #[arg(long, env = "KEYWARD_LICENSE_SELECTOR", value_name = "SELECTOR")]
    license_selector: Option<String>,
    /// Elect a leader among replicas with a Lease; only the leader reconciles.
    #[arg(long, env = "KEYWARD_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: the operator's namespace, POD_NAMESPACE).
    #[arg(long, env = "KEYWARD_LEADER_ELECTION_NAMESPACE", value_name = "NS")]
    leader_election_namespace: Option<String>,
    /// Identity in the leader Lease (default: POD_NAME, else host name and process id).
    #[arg(long, env = "KEYWARD_LEADER_ELECTION_IDENTITY", value_name = "ID")]
    leader_election_identity: Option<String>,
    /// Report unhealthy (so that the kubelet restarts the process) once the controller's caches
    /// have not synced for this long although the API server answers. An unreachable API server
    /// never makes the operator unhealthy.
    #[arg(long, env = "KEYWARD_RECOVERY_DEADLINE", default_value = "5m", value_parser = parse_duration)]
    recovery_deadline: jiff::SignedDuration,
    /// How often to re-read the trusted keys directory.
    #[arg(long, env = "KEYWARD_TRUST_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    trust_reload_interval: jiff::SignedDuration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    limit_malloc_arenas();
    logging::init(args.log_format);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

/// glibc gives threads that allocate at the same time arenas of their own (up to eight per core)
/// and hands little of them back: with 10,000 Licenses the operator's RSS peak was 139 MiB, with
/// two arenas 116 MiB (`FLEET_LICENSES=10000 cargo bench --bench operator -- fleet`). The reconciles do not contend for the allocator enough for more to pay.
/// `MALLOC_ARENA_MAX` in the environment still decides, if set. Before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; no other thread exists yet to race with it.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// This replica's identity: the pod name in a cluster, else host name and process id (two
/// operators on one machine must not share a leader identity).
fn instance() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string());
            format!("{}-{}", host.unwrap_or_else(|_| "keyward".into()), std::process::id())
        })
}

/// Flips to true on SIGTERM or an interrupt.
fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => info!("interrupt received; shutting down"),
        }
        let _ = tx.send(true);
    });
    rx
}

/// How long reconciles in flight may take to finish after SIGTERM (the kubelet waits 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs `work` to its end, or until `SHUTDOWN_GRACE` after the shutdown signal, whichever is
/// first (`None`). kube-runtime's controller holds its runner until the License cache has
/// synced: a shutdown that comes before the sync would otherwise wait forever.
async fn within_grace<T>(work: impl Future<Output = T>, shutdown: watch::Receiver<bool>) -> Option<T> {
    let deadline = async {
        until_true(shutdown).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        done = work => Some(done),
        () = deadline => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "shutdown did not finish within its grace period; exiting anyway");
            None
        }
    }
}

async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let trust = TrustStore::load(&args.trusted_keys)
        .with_context(|| format!("loading trusted keys from {}", args.trusted_keys.display()))
        .map_err(super::usage)?;
    let client = super::cluster::client(args.kubeconfig.as_ref()).await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Readiness::default();
    let liveness = Liveness::default();
    serve_http(&args, &trust, metrics.clone(), ready.clone(), liveness.clone()).await?;
    let shutdown = shutdown_on_signals();
    let identity = args.leader_election_identity.clone().unwrap_or_else(instance);
    let options = run_options(&args, trust, identity.clone(), liveness);
    if !args.leader_elect {
        let run = crate::controller::run(client, options, metrics, ready, until_true(shutdown.clone()));
        within_grace(run, shutdown).await;
        return Ok(ExitCode::SUCCESS);
    }
    let lease_namespace = args
        .leader_election_namespace
        .or(args.operator_namespace)
        .context("--leader-elect needs --leader-election-namespace or POD_NAMESPACE")
        .map_err(super::usage)?;
    // A standby is healthy and ready: it can take over at any moment.
    ready.set_ready();
    let run_client = client.clone();
    let elected = leader::run(
        client,
        &lease_namespace,
        &identity,
        shutdown.clone(),
        move |stop| async move {
            crate::controller::run(run_client, options, metrics, Readiness::default(), until_true(stop)).await;
        },
    );
    let Some(ended) = within_grace(elected, shutdown).await else {
        return Ok(ExitCode::SUCCESS);
    };
    Ok(match ended? {
        Ended::Shutdown => ExitCode::SUCCESS,
        Ended::LeadershipLost => {
            tracing::error!("lost the leader Lease; exiting so a fresh process can stand by");
            ExitCode::FAILURE
        }
    })
}

/// Binds the metrics and health servers before anything else runs, so a taken port fails the
/// start at once, and serves them in the background.
async fn serve_http(
    args: &Args,
    trust: &TrustStore,
    metrics: Arc<Metrics>,
    ready: Readiness,
    liveness: Liveness,
) -> anyhow::Result<()> {
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let health_listener = tokio::net::TcpListener::bind(args.health_addr)
        .await
        .with_context(|| format!("binding {}", args.health_addr))?;
    let (metrics_addr, health_addr) = (metrics_listener.local_addr()?, health_listener.local_addr()?);
    info!(metrics = %metrics_addr, health = %health_addr, keys = ?trust.current().ids(), "keyward controller starting");
    tokio::spawn(http::serve_metrics(metrics_listener, metrics));
    let health = http::Health {
        liveness,
        recovery_deadline: args.recovery_deadline.unsigned_abs(),
    };
    tokio::spawn(http::serve_health(health_listener, ready, health));
    Ok(())
}

fn run_options(args: &Args, trust: TrustStore, instance: String, liveness: Liveness) -> RunOptions {
    let rollout = RolloutSettings {
        operator_namespace: args.operator_namespace.clone(),
        allow_cross_namespace_targets: args.allow_cross_namespace_targets,
        cluster_wide: args.namespace.is_none(),
    };
    RunOptions {
        namespace: args.namespace.clone(),
        trust,
        trust_reload_interval: args
            .trust_reload_interval
            .unsigned_abs()
            .max(Duration::from_millis(100)),
        settings: Settings {
            policy: Policy {
                warn: args.default_warn,
                grace: args.default_grace,
                ..Policy::default()
            },
            rollout,
        },
        instance,
        license_selector: args.license_selector.clone(),
        liveness,
    }
}
