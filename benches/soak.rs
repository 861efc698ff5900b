//! `make soak`: the operator under continuous change for a long time, on its own control plane.
//!
//! 1,000 Licenses in 50 namespaces, each rolled out to a target in its namespace, plus one License
//! rolled out by namespace selector to 10 namespaces whose labels keep flipping. Meanwhile:
//! rotations (`SOAK_ROTATIONS_PER_SECOND`, default 5), a key Secret deleted and recreated every
//! 10 s, a tampered key written every 20 s (and put right 5 s later), a namespace label flipped
//! every 15 s, and the API server restarted every `SOAK_APISERVER_RESTART_MINUTES` (default 5).
//!
//! Each window (`SOAK_WINDOW_SECONDS`, default 60) reports reconciles/s, the rollout latency of
//! that window's rotations (p50/p99: key Secret written until its target holds the new key), the
//! operator's RSS and open file descriptors. It fails if any target ever held an empty or
//! unverifiable key, if RSS or descriptors keep growing (the last third of the windows against
//! the first third after the first window), or if any License has not converged 120 s after the
//! load stops. `SOAK_MINUTES` (default 10) sets the length.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::{License, LicenseState};
use keyward::license::Format;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use common::audit::TargetAuditor;
use common::measure::{percentile, rss_kib};
use common::operator::*;

const NAMESPACES: usize = 50;
const PER_NAMESPACE: usize = 20;
const FLIPPING_NAMESPACES: usize = 10;
const TEAM_LABEL: &str = "keyward-soak/team";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Where one License's key lives.
#[derive(Clone)]
struct Slot {
    index: usize,
    namespace: String,
    name: String,
}

/// The key each License should end with, and when each rotation was written.
#[derive(Default)]
struct Ledger {
    latest: HashMap<(String, String), String>,
    pending: HashMap<(String, String), (String, Instant)>,
    latencies: Vec<Duration>,
}

struct Soak {
    client: Client,
    vendor: Vendor,
    slots: Vec<Slot>,
    flipping: Vec<String>,
    ledger: Arc<Mutex<Ledger>>,
    /// One per slot, held from the ledger's entry to the write landing: two changes of one key
    /// Secret must land in the order the ledger records them. Unserialised, a rotation retrying
    /// through an API server restart could land after a later one, and the License would then
    /// rightly hold a key the ledger no longer expects (the likeliest cause of the recorded
    /// 30-minute run's one "unconverged" License; the diagnostic below now tells the two apart).
    writing: Vec<tokio::sync::Mutex<()>>,
}

impl Soak {
    async fn set_up(client: &Client, run: &str) -> (Self, common::TestNamespace) {
        let vendor = Vendor::new("vendor");
        let token = vendor.token("zizq");
        let mut slots = Vec::new();
        for _ in 0..NAMESPACES {
            let ns = labelled_namespace(client, "soak", json!({"keyward-soak/run": run})).await;
            for i in 0..PER_NAMESPACE {
                slots.push(Slot {
                    index: slots.len(),
                    namespace: ns.clone(),
                    name: format!("lic-{i}"),
                });
            }
        }
        futures::stream::iter(slots.clone())
            .for_each_concurrent(32, |slot| {
                let (client, token, run) = (client.clone(), token.clone(), run.to_string());
                async move {
                    put_secret(&client, &slot.namespace, &slot.name, "license", token.as_bytes()).await;
                    create_license_from(
                        &client,
                        &slot.namespace,
                        json!({
                            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
                            "metadata": {"name": slot.name, "labels": {"keyward-soak/run": run}},
                            "spec": {"secretRef": {"name": slot.name}, "product": "zizq",
                                     "rollout": {"targets": [{"secretName": format!("{}-target", slot.name)}]}}
                        }),
                    )
                    .await;
                }
            })
            .await;
        let home = common::TestNamespace::new("soak-home").await;
        let mut flipping = Vec::new();
        for _ in 0..FLIPPING_NAMESPACES {
            flipping.push(labelled_namespace(client, "soak-flip", json!({TEAM_LABEL: run})).await);
        }
        put_secret(client, &home.name, "fan-out", "license", token.as_bytes()).await;
        create_license_from(
            client,
            &home.name,
            json!({
                "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
                "metadata": {"name": "fan-out", "labels": {"keyward-soak/run": run}},
                "spec": {"secretRef": {"name": "fan-out"}, "product": "zizq",
                         "rollout": {"targets": [{"secretName": "fan-out-target",
                             "namespaceSelector": {"matchLabels": {TEAM_LABEL: run}}}]}}
            }),
        )
        .await;
        let ledger = Ledger {
            latest: slots
                .iter()
                .map(|s| ((s.namespace.clone(), s.name.clone()), token.clone()))
                .collect(),
            ..Ledger::default()
        };
        let soak = Self {
            client: client.clone(),
            vendor,
            slots,
            flipping,
            ledger: Arc::new(Mutex::new(ledger)),
            writing: (0..NAMESPACES * PER_NAMESPACE)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        };
        (soak, home)
    }

    fn pick(&self) -> Slot {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        self.slots[u32::from_le_bytes(b) as usize % self.slots.len()].clone()
    }

    async fn rotate(&self, round: u64) {
        let slot = self.pick();
        let _writing = self.writing[slot.index].lock().await;
        let mut claims = self.vendor.claims("zizq", Some(365 * 86_400));
        claims.jti = Some(format!("soak-{round}"));
        let token = self.vendor.sign(&claims, &Format::Jwt);
        let key = (slot.namespace.clone(), slot.name.clone());
        {
            let mut ledger = self.ledger.lock().unwrap();
            ledger.latest.insert(key.clone(), token.clone());
            ledger.pending.insert(key, (token.clone(), Instant::now()));
        }
        try_put(&self.client, &slot, token.as_bytes()).await;
    }

    /// A key Secret deleted, then recreated with the key it should hold.
    async fn delete_and_recreate(&self) {
        let slot = self.pick();
        let _writing = self.writing[slot.index].lock().await;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &slot.namespace);
        let _ = secrets.delete(&slot.name, &DeleteParams::default()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.restore(&slot).await;
    }

    /// A tampered key (which must never reach a target), put right 5 s later.
    async fn tamper(&self) {
        let slot = self.pick();
        let _writing = self.writing[slot.index].lock().await;
        let good = self.ledger.lock().unwrap().latest[&(slot.namespace.clone(), slot.name.clone())].clone();
        let mut bad = good.into_bytes();
        let i = bad.iter().position(|b| *b == b'.').unwrap() + 5;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        try_put(&self.client, &slot, &bad).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        self.restore(&slot).await;
    }

    async fn restore(&self, slot: &Slot) {
        let good = self.ledger.lock().unwrap().latest[&(slot.namespace.clone(), slot.name.clone())].clone();
        try_put(&self.client, slot, good.as_bytes()).await;
    }

    async fn flip(&self, round: u64, run: &str) {
        let ns = &self.flipping[round as usize % self.flipping.len()];
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Ok(current) = api.get(ns).await else { return };
        let labelled = current.labels().contains_key(TEAM_LABEL);
        let value = if labelled { serde_json::Value::Null } else { json!(run) };
        let patch = json!({"metadata": {"labels": {TEAM_LABEL: value}}});
        let _ = api.patch(ns, &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
}

/// Writes a key Secret, retrying through API server restarts.
async fn try_put(client: &Client, slot: &Slot, value: &[u8]) {
    use base64::Engine;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": slot.name}, "type": "Opaque",
        "data": {"license": base64::engine::general_purpose::STANDARD.encode(value)},
    });
    let api: Api<Secret> = Api::namespaced(client.clone(), &slot.namespace);
    for _ in 0..100 {
        let params = PatchParams::apply("keyward-soak").force();
        if api.patch(&slot.name, &params, &Patch::Apply(&secret)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not write {}/{} for 20 s", slot.namespace, slot.name);
}

/// Records, for each rotation, when its target first held the new key.
fn measure_rollouts(client: &Client, ledger: Arc<Mutex<Ledger>>) -> tokio::task::JoinHandle<()> {
    let api: Api<Secret> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut targets = watcher(
            api,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=keyward"),
        )
        .default_backoff()
        .applied_objects()
        .boxed();
        while let Some(event) = targets.next().await {
            let Ok(secret) = event else { continue };
            let Some(name) = secret.name_any().strip_suffix("-target").map(str::to_string) else {
                continue;
            };
            let key = (secret.namespace().unwrap_or_default(), name);
            let holds = secret.data.as_ref().and_then(|d| d.get("license")).map(|b| b.0.clone());
            let mut ledger = ledger.lock().unwrap();
            if let Some((token, at)) = ledger.pending.get(&key).cloned()
                && holds.as_deref() == Some(token.as_bytes())
            {
                ledger.pending.remove(&key);
                ledger.latencies.push(at.elapsed());
            }
        }
    })
}

struct Window {
    reconciles_per_second: f64,
    p50: Duration,
    p99: Duration,
    rotations: usize,
    rss_mib: u64,
    fds: usize,
}

fn report(i: usize, w: &Window) {
    println!(
        "window {i:>3}: {:>7.1} reconciles/s  rollout p50 {:>6.0} ms  p99 {:>6.0} ms ({:>4} rotations)  RSS {:>4} MiB  fds {:>4}",
        w.reconciles_per_second,
        w.p50.as_secs_f64() * 1000.0,
        w.p99.as_secs_f64() * 1000.0,
        w.rotations,
        w.rss_mib,
        w.fds
    );
}

/// Growth without bound: the last third of the windows above the first third (after the first
/// window, which includes the cold start) by more than `slack`.
fn grows(values: &[f64], slack: f64) -> Option<(f64, f64)> {
    let steady = values.get(1..)?;
    let third = steady.len() / 3;
    if third == 0 {
        return None;
    }
    let first = steady[..third].iter().cloned().fold(f64::MIN, f64::max);
    let last = steady[steady.len() - third..].iter().cloned().fold(f64::MIN, f64::max);
    (last > first + slack).then_some((first, last))
}

async fn converged(client: &Client, soak: &Soak) -> Vec<String> {
    let latest = soak.ledger.lock().unwrap().latest.clone();
    let mut wrong = Vec::new();
    let licenses: Api<License> = Api::all(client.clone());
    let Ok(list) = licenses.list(&ListParams::default().labels("keyward-soak/run")).await else {
        return vec!["the Licenses could not be listed".into()];
    };
    let targets: Api<Secret> = Api::all(client.clone());
    let Ok(held) = targets
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=keyward"))
        .await
    else {
        return vec!["the targets could not be listed".into()];
    };
    let held: HashMap<(String, String), Vec<u8>> = held
        .items
        .into_iter()
        .filter_map(|s| {
            let token = s.data.as_ref()?.get("license")?.0.clone();
            Some(((s.namespace()?, s.name_any()), token))
        })
        .collect();
    for l in &list.items {
        let active = l.status.as_ref().and_then(|s| s.state) == Some(LicenseState::Active);
        let rolled = l
            .status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.up_to_date == r.targets);
        let (ns, name) = (l.namespace().unwrap_or_default(), l.name_any());
        let target_ok = match latest.get(&(ns.clone(), name.clone())) {
            Some(token) => {
                held.get(&(ns.clone(), format!("{name}-target"))).map(Vec::as_slice) == Some(token.as_bytes())
            }
            None => true,
        };
        if !(active && rolled && target_ok) {
            wrong.push(format!("{ns}/{name}"));
        }
    }
    wrong
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak skipped: run it with `make soak`");
        return;
    }
    let minutes = setting("SOAK_MINUTES", 10);
    let window = Duration::from_secs(setting("SOAK_WINDOW_SECONDS", 60));
    let restart_every = Duration::from_secs(60 * setting("SOAK_APISERVER_RESTART_MINUTES", 5));
    let rotations_per_second = setting("SOAK_ROTATIONS_PER_SECOND", 5).max(1);
    set_log_filter("info");
    let client = common::client().await;
    install_crd(&client).await;
    let run = run_id();
    let (soak, home) = Soak::set_up(&client, &run).await;
    let soak = Arc::new(soak);
    let auditor = TargetAuditor::start_selecting(&client, &soak.vendor, "zizq", "app.kubernetes.io/managed-by=keyward");
    let operator = Operator::start_cluster_wide(
        soak.vendor.trust_dir.path(),
        &[
            "--license-selector",
            &format!("keyward-soak/run={run}"),
            "--operator-namespace",
            &home.name,
        ],
    );
    operator.wait_ready().await;
    let measuring = measure_rollouts(&client, soak.ledger.clone());
    println!(
        "soak: {} Licenses in {NAMESPACES} namespaces + 1 rolled out to {FLIPPING_NAMESPACES} flipping namespaces, {minutes} min, {rotations_per_second} rotations/s, API server restart every {} min",
        soak.slots.len(),
        restart_every.as_secs() / 60
    );

    let load = {
        let (soak, run) = (soak.clone(), run.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / rotations_per_second));
            let started = Instant::now();
            let mut last_restart = Instant::now();
            for round in 0u64.. {
                tick.tick().await;
                let s = soak.clone();
                tokio::spawn(async move { s.rotate(round).await });
                let elapsed = started.elapsed().as_secs();
                if round % (10 * rotations_per_second) == 0 {
                    let s = soak.clone();
                    tokio::spawn(async move { s.delete_and_recreate().await });
                }
                if round % (20 * rotations_per_second) == 5 {
                    let s = soak.clone();
                    tokio::spawn(async move { s.tamper().await });
                }
                if round % (15 * rotations_per_second) == 0 {
                    let (s, run) = (soak.clone(), run.clone());
                    tokio::spawn(async move { s.flip(round, &run).await });
                }
                if last_restart.elapsed() >= restart_every && elapsed > 0 {
                    println!("  restarting the API server");
                    tokio::task::spawn_blocking(|| {
                        common::control_plane("stop-apiserver");
                        common::control_plane("start-apiserver");
                    })
                    .await
                    .unwrap();
                    last_restart = Instant::now();
                }
            }
        })
    };

    let mut windows = Vec::new();
    let mut last_reconciles = operator.metric("keyward_reconcile_total").unwrap_or(0.0);
    let end = Instant::now() + Duration::from_secs(60 * minutes);
    while Instant::now() < end {
        tokio::time::sleep(window).await;
        let reconciles = operator.metric("keyward_reconcile_total").unwrap_or(last_reconciles);
        let mut latencies = std::mem::take(&mut soak.ledger.lock().unwrap().latencies);
        let w = Window {
            reconciles_per_second: (reconciles - last_reconciles) / window.as_secs_f64(),
            rotations: latencies.len(),
            p50: percentile(&mut latencies, 0.5),
            p99: percentile(&mut latencies, 0.99),
            rss_mib: rss_kib(operator.pid()).0 / 1024,
            fds: open_fds(operator.pid()),
        };
        last_reconciles = reconciles;
        report(windows.len() + 1, &w);
        windows.push(w);
    }
    load.abort();

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut unconverged = converged(&client, &soak).await;
    while !unconverged.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        unconverged = converged(&client, &soak).await;
    }
    measuring.abort();
    let (audited, bad) = auditor.tally();
    println!(
        "audit: {audited} target versions checked, {} invalid or empty",
        bad.len()
    );
    let rss: Vec<f64> = windows.iter().map(|w| w.rss_mib as f64).collect();
    let fds: Vec<f64> = windows.iter().map(|w| w.fds as f64).collect();
    let mut failures = Vec::new();
    if !bad.is_empty() {
        failures.push(format!(
            "targets held an invalid or empty key: {:?}",
            &bad[..bad.len().min(10)]
        ));
    }
    if let Some((a, b)) = grows(&rss, 16.0) {
        failures.push(format!("RSS grew from {a} MiB to {b} MiB"));
    }
    if let Some((a, b)) = grows(&fds, 16.0) {
        failures.push(format!("open descriptors grew from {a} to {b}"));
    }
    for id in unconverged.iter().take(5) {
        // What an unconverged License shows, for whoever investigates the failed run.
        let (ns, name) = id.split_once('/').unwrap_or_default();
        if let Ok(l) = Api::<License>::namespaced(client.clone(), ns).get(name).await {
            let expected = soak
                .ledger
                .lock()
                .unwrap()
                .latest
                .get(&(ns.to_string(), name.to_string()))
                .cloned();
            let tail = |t: &[u8]| String::from_utf8_lossy(&t[t.len().saturating_sub(12)..]).into_owned();
            let in_key_secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get(name)
                .await
                .ok()
                .and_then(|s| s.data?.get("license").map(|v| tail(&v.0)));
            println!(
                "unconverged {id}: the ledger expects a key ending …{}, the key Secret holds …{}; status {}",
                expected.as_deref().map_or(String::new(), |t| tail(t.as_bytes())),
                in_key_secret.unwrap_or_else(|| "(nothing)".into()),
                serde_json::to_string(&l.status).unwrap_or_default()
            );
        }
    }
    if !unconverged.is_empty() {
        failures.push(format!(
            "{} Licenses unconverged 120 s after the load stopped, e.g. {:?}",
            unconverged.len(),
            &unconverged[..unconverged.len().min(5)]
        ));
    }
    if failures.is_empty() {
        println!("soak passed: every License converged, no invalid key ever rolled out, memory and descriptors flat");
    } else {
        for f in &failures {
            println!("soak FAILED: {f}");
        }
        // The operator's log goes with its temporary directory: keep a copy for the investigation.
        let kept = std::env::temp_dir().join("keyward-soak-operator.log");
        if std::fs::copy(&operator.log, &kept).is_ok() {
            println!("the operator's log: {}", kept.display());
        }
        std::process::exit(1);
    }
}
