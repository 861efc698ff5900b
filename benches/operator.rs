//! Operator benchmarks on the local control plane (`make bench-operator`): figures for the README.
//!
//! * cold start: 1,000 Licenses exist; time from starting the operator until all are Active;
//! * memory: operator RSS with 10,000 unrelated 64 KiB Secrets in the cluster;
//! * pod-memory: operator RSS with 5,000 Pods that read Secrets (the consumer index);
//! * propagation: from a key Secret update to all 100 target Secrets updated, p50/p99, against a
//!   bare Secret update round trip (update, then see it through a watch) measured in the same run.
//!
//! * fleet / fleet-10k: 1,000 / 10,000 Licenses, each with a target, created while the operator
//!   was down: time until all are reconciled against the bare floor (a client making the same
//!   writes at the same concurrency), writes per License, peak RSS; then a restart over them:
//!   time to ready and to every License checked, and the requests it made (no writes). The
//!   Licenses of a namespace share one key Secret; `FLEET_KEYS=own` gives each its own.
//!   `FLEET_LICENSES=N` sets another size, `FLEET_FLOOR=0` leaves the floor out, and
//!   `KEYWARD_OPERATOR_WRAPPER` runs the operator under a profiler (`heaptrack -o FILE`).
//!
//! `cargo bench --bench operator -- cold-start memory propagation` runs a subset.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use keyward::api::{License, LicenseState};
use keyward::license::Format;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use common::measure::{percentile, rss_kib};
use common::operator::*;

async fn all_in_state(client: &Client, ns: &str, n: usize, state: LicenseState) -> bool {
    let list = Api::<License>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items.len() == n
        && list
            .items
            .iter()
            .all(|l| l.status.as_ref().and_then(|s| s.state) == Some(state))
}

async fn cold_start(client: &Client, licenses: usize) {
    let ns = common::TestNamespace::new("bench-cold").await;
    let vendor = Vendor::new("vendor");
    let token = vendor.token("zizq");
    futures::stream::iter(0..licenses)
        .for_each_concurrent(32, |i| {
            let (client, ns, token) = (client.clone(), ns.name.clone(), token.clone());
            async move {
                put_secret(&client, &ns, &format!("lic-{i}"), "license", token.as_bytes()).await;
                create_license(&client, &ns, &format!("lic-{i}"), &format!("lic-{i}"), "zizq").await;
            }
        })
        .await;
    let started = Instant::now();
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    while !all_in_state(client, &ns.name, licenses, LicenseState::Active).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let (rss, peak) = rss_kib(operator.pid());
    println!(
        "cold start: {licenses} Licenses reconciled in {:.2} s ({:.0} Licenses/s); operator RSS {} MiB (peak {} MiB)",
        took.as_secs_f64(),
        licenses as f64 / took.as_secs_f64(),
        rss / 1024,
        peak / 1024
    );
}

async fn memory(client: &Client, secrets: usize) {
    let ns = common::TestNamespace::new("bench-mem").await;
    let vendor = Vendor::new("vendor");
    let mut payload = vec![0u8; 64 * 1024];
    getrandom::fill(&mut payload).unwrap();
    let started = Instant::now();
    futures::stream::iter(0..secrets)
        .for_each_concurrent(32, |i| {
            let (client, ns, payload) = (client.clone(), ns.name.clone(), payload.clone());
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("unrelated-{i}")},
                    "data": {"blob": base64_encode(&payload)},
                }))
                .unwrap();
                Api::<Secret>::namespaced(client, &ns)
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
        })
        .await;
    eprintln!(
        "created {secrets} Secrets of 64 KiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    put_secret(client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license(client, &ns.name, "acme", "lic", "zizq").await;
    // Cluster-wide, as installed by the chart: it sees every Secret in the cluster.
    let operator = Operator::start_cluster_wide(vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    wait_license(client, &ns.name, "acme", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    // Touch some unrelated Secrets: their events must cost nothing lasting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, peak) = rss_kib(operator.pid());
    println!(
        "memory: with {secrets} unrelated 64 KiB Secrets, operator RSS {} MiB (peak {} MiB)",
        rss / 1024,
        peak / 1024
    );
}

/// Operator RSS with `pods` Pods in the cluster, each reading Secrets three ways and carrying a
/// realistic spec: the Pod watch must keep only who reads what, not the Pods.
async fn pod_memory(client: &Client, pods: usize) {
    let ns = common::TestNamespace::new("bench-pods").await;
    let vendor = Vendor::new("vendor");
    let started = Instant::now();
    futures::stream::iter(0..pods)
        .for_each_concurrent(32, |i| {
            let (client, ns) = (client.clone(), ns.name.clone());
            async move {
                let env: Vec<serde_json::Value> = (0..40)
                    .map(|e| json!({"name": format!("SETTING_{e}"), "value": "x".repeat(64)}))
                    .collect();
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("app-{i}"), "labels": {"app": "bench"},
                        "annotations": {"note": "y".repeat(2048)}},
                    "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1", "env": env,
                            "envFrom": [{"secretRef": {"name": format!("cfg-{}", i % 50)}}],
                            "volumeMounts": [{"name": "lic", "mountPath": "/etc/lic"},
                                             {"name": "one", "mountPath": "/etc/one", "subPath": "license"}]}],
                        "volumes": [{"name": "lic", "secret": {"secretName": "zizq-license"}},
                                    {"name": "one", "secret": {"secretName": format!("other-{}", i % 50)}}]}
                }))
                .unwrap();
                Api::<Pod>::namespaced(client, &ns)
                    .create(&PostParams::default(), &pod)
                    .await
                    .unwrap();
            }
        })
        .await;
    eprintln!("created {pods} Pods in {:.1} s", started.elapsed().as_secs_f64());
    put_secret(client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_from(
        client,
        &ns.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License", "metadata": {"name": "acme"},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
                "rollout": {"targets": [{"secretName": "zizq-license"}]}}
        }),
    )
    .await;
    let operator = Operator::start_cluster_wide(vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    wait_license(client, &ns.name, "acme", "consumers counted", |l| {
        l.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .and_then(|r| r.consumers.as_ref())
            .is_some_and(|c| c.live as usize == pods)
    })
    .await;
    let (rss, peak) = rss_kib(operator.pid());
    println!(
        "memory: with {pods} Pods reading Secrets (each ~5 KiB of spec), operator RSS {} MiB (peak {} MiB)",
        rss / 1024,
        peak / 1024
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn propagation(client: &Client, targets: usize, rounds: usize) {
    let run = run_id();
    let home = common::TestNamespace::new("bench-prop").await;
    let team = json!({"keyward-bench/team": run});
    for _ in 0..targets {
        labelled_namespace(client, "bench-target", team.clone()).await;
    }
    let vendor = Vendor::new("vendor");
    put_secret(client, &home.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_from(
        client,
        &home.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "zizq", "labels": {"keyward-bench/run": run}},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
                "rollout": {"targets": [{"namespaceSelector": {"matchLabels": team}, "secretName": "zizq-license"}]}}
        }),
    )
    .await;
    let selector = format!("keyward-bench/run={run}");
    let _operator = Operator::start_cluster_wide(
        vendor.trust_dir.path(),
        &["--license-selector", &selector, "--operator-namespace", &home.name],
    );
    wait_license(client, &home.name, "zizq", "rolled out", |l| {
        l.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.up_to_date as usize == targets)
    })
    .await;

    let managed: Api<Secret> = Api::all(client.clone());
    let mut stream = watcher(
        managed,
        watcher::Config::default().labels("app.kubernetes.io/managed-by=keyward"),
    )
    .applied_objects()
    .boxed();
    let mut rotation = Vec::new();
    for round in 0..rounds {
        let mut claims = vendor.claims("zizq", Some(365 * 86_400));
        claims.jti = Some(format!("round-{round}"));
        let token = vendor.sign(&claims, &Format::Jwt);
        let started = Instant::now();
        put_secret(client, &home.name, "lic", "license", token.as_bytes()).await;
        let mut updated = HashSet::new();
        while updated.len() < targets {
            let s: Secret = stream.try_next().await.unwrap().unwrap();
            let holds = s
                .data
                .as_ref()
                .and_then(|d| d.get("license"))
                .is_some_and(|v| v.0 == token.as_bytes());
            if holds
                && s.annotations()
                    .get("keyward.dev/license")
                    .is_some_and(|o| o.starts_with(&home.name))
            {
                updated.insert(s.namespace().unwrap_or_default());
            }
        }
        rotation.push(started.elapsed());
    }

    // The bare round trip: update one Secret, see the update through a watch.
    let bare_ns = common::TestNamespace::new("bench-bare").await;
    put_secret(client, &bare_ns.name, "plain", "v", b"0").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &bare_ns.name);
    let mut bare_stream = watcher(secrets, watcher::Config::default()).applied_objects().boxed();
    let mut bare = Vec::new();
    for round in 0..rounds {
        let value = format!("{round}-x");
        let started = Instant::now();
        put_secret(client, &bare_ns.name, "plain", "v", value.as_bytes()).await;
        loop {
            let s: Secret = bare_stream.try_next().await.unwrap().unwrap();
            if s.data
                .as_ref()
                .and_then(|d| d.get("v"))
                .is_some_and(|v| v.0 == value.as_bytes())
            {
                break;
            }
        }
        bare.push(started.elapsed());
    }
    // The bare fan-out: a client writing the same 100 Secrets itself, at Keyward's concurrency,
    // until a watch has seen all of them: the least work any rollout to 100 namespaces costs.
    let target_namespaces: Vec<String> = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("keyward-bench/team={run}")))
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    let plain: Api<Secret> = Api::all(client.clone());
    let mut plain_stream = watcher(
        plain,
        watcher::Config::default().labels(&format!("keyward-bench/bare={run}")),
    )
    .applied_objects()
    .boxed();
    let mut fan_out = Vec::new();
    for round in 0..rounds {
        let value = format!("{round}-fan-out");
        let started = Instant::now();
        futures::stream::iter(target_namespaces.iter())
            .for_each_concurrent(16, |ns| {
                let (client, value) = (client.clone(), value.clone());
                let run = run.clone();
                async move {
                    let secret: Secret = serde_json::from_value(json!({
                        "metadata": {"name": "bare-fan-out", "labels": {"keyward-bench/bare": run}},
                        "data": {"v": base64_encode(value.as_bytes())},
                    }))
                    .unwrap();
                    let api: Api<Secret> = Api::namespaced(client, ns);
                    api.patch(
                        "bare-fan-out",
                        &kube::api::PatchParams::apply("bench").force(),
                        &kube::api::Patch::Apply(&secret),
                    )
                    .await
                    .unwrap();
                }
            })
            .await;
        let mut seen = HashSet::new();
        while seen.len() < target_namespaces.len() {
            let s: Secret = plain_stream.try_next().await.unwrap().unwrap();
            if s.data
                .as_ref()
                .and_then(|d| d.get("v"))
                .is_some_and(|v| v.0 == value.as_bytes())
            {
                seen.insert(s.namespace().unwrap_or_default());
            }
        }
        fan_out.push(started.elapsed());
    }
    let (p50, p99) = (percentile(&mut rotation, 0.5), percentile(&mut rotation, 0.99));
    let (b50, b99) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.99));
    let (f50, f99) = (percentile(&mut fan_out, 0.5), percentile(&mut fan_out, 0.99));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "propagation: key update to all {targets} target Secrets updated, {rounds} rotations: p50 {:.0} ms, p99 {:.0} ms",
        ms(p50),
        ms(p99)
    );
    println!(
        "  bare fan-out (a client updating the same {targets} Secrets itself, seen by a watch): p50 {:.0} ms, p99 {:.0} ms; Keyward/bare ratio p50 {:.1}x, p99 {:.1}x",
        ms(f50),
        ms(f99),
        ms(p50) / ms(f50),
        ms(p99) / ms(f99)
    );
    println!(
        "  single Secret update round trip: p50 {:.1} ms, p99 {:.1} ms; ratio p50 {:.0}x, p99 {:.0}x",
        ms(b50),
        ms(b99),
        ms(p50) / ms(b50),
        ms(p99) / ms(b99)
    );
}

/// Licenses (each with a target in its namespace) in `namespaces` namespaces, labelled `run`.
/// How the fleet's Licenses hold their keys: one key Secret per namespace that all its Licenses
/// share, or one each (`FLEET_KEYS=own`), which a restart must read one by one.
#[derive(Clone, Copy, PartialEq)]
enum KeySecrets {
    Shared,
    Own,
}

impl KeySecrets {
    fn from_env() -> Self {
        match std::env::var("FLEET_KEYS").as_deref() {
            Ok("own") => KeySecrets::Own,
            _ => KeySecrets::Shared,
        }
    }

    fn name(self, license: &str) -> String {
        match self {
            KeySecrets::Shared => "lic".into(),
            KeySecrets::Own => format!("{license}-key"),
        }
    }
}

async fn create_fleet(
    client: &Client,
    run: &str,
    token: &str,
    licenses: usize,
    namespaces: usize,
    keys: KeySecrets,
) -> Vec<(String, String)> {
    let mut slots = Vec::new();
    for _ in 0..namespaces {
        let ns = labelled_namespace(client, "bench-fleet", json!({"keyward-bench/fleet": run})).await;
        if keys == KeySecrets::Shared {
            put_secret(client, &ns, &keys.name(""), "license", token.as_bytes()).await;
        }
        for i in 0..licenses / namespaces {
            slots.push((ns.clone(), format!("lic-{i}")));
        }
    }
    futures::stream::iter(slots.clone())
        .for_each_concurrent(64, |(ns, name)| {
            let (client, run) = (client.clone(), run.to_string());
            async move {
                if keys == KeySecrets::Own {
                    put_secret(&client, &ns, &keys.name(&name), "license", token.as_bytes()).await;
                }
                create_license_from(
                    &client,
                    &ns,
                    json!({
                        "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
                        "metadata": {"name": name, "labels": {"keyward-bench/run": run}},
                        "spec": {"secretRef": {"name": keys.name(&name)}, "product": "zizq",
                                 "rollout": {"targets": [{"secretName": format!("{name}-target")}]}}
                    }),
                )
                .await;
            }
        })
        .await;
    slots
}

/// Waits until `count` Licenses labelled `run` are Active and rolled out; returns how long it took.
async fn until_reconciled(client: &Client, run: &str, count: usize) -> Duration {
    let started = Instant::now();
    let api: Api<License> = Api::all(client.clone());
    let mut stream = watcher(
        api,
        watcher::Config::default().labels(&format!("keyward-bench/run={run}")),
    )
    .applied_objects()
    .boxed();
    let mut done = HashSet::new();
    while done.len() < count {
        let l: License = stream.try_next().await.unwrap().unwrap();
        let ok = l.status.as_ref().is_some_and(|s| {
            s.state == Some(LicenseState::Active) && s.rollout.as_ref().is_some_and(|r| r.up_to_date == 1)
        });
        if ok {
            done.insert((l.namespace().unwrap_or_default(), l.name_any()));
        }
    }
    started.elapsed()
}

/// Waits until the API server has counted no new event write for a second; returns when (after
/// `started`, to the poll's 200 ms) the last one was seen.
async fn events_settled(client: &Client, started: Instant) -> Duration {
    let mut last = event_writes(&common::apiserver_writes(client).await);
    let mut changed = Instant::now();
    while changed.elapsed() < Duration::from_secs(1) {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "events still being written after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = event_writes(&common::apiserver_writes(client).await);
        if now != last {
            (last, changed) = (now, Instant::now());
        }
    }
    changed - started
}

/// Events created, in the API server's count of writes.
fn event_writes(writes: &std::collections::BTreeMap<String, u64>) -> u64 {
    writes.get("POST events/").copied().unwrap_or(0)
}

/// The bare floor: what the API server takes for the writes a first reconcile makes (the
/// finalizer, the target Secret, the status, the events), done directly at Keyward's concurrency.
async fn bare_floor(
    client: &Client,
    slots: &[(String, String)],
    template: &License,
    events_per_license: usize,
) -> Duration {
    let token_b64 = base64_encode(b"a-verified-key");
    let status = serde_json::to_value(template.status.as_ref().unwrap()).unwrap();
    let started = Instant::now();
    futures::stream::iter(slots.iter().cloned())
        .for_each_concurrent(32, |(ns, name)| {
            let (client, status, token_b64) = (client.clone(), status.clone(), token_b64.clone());
            async move {
                let licenses: Api<License> = Api::namespaced(client.clone(), &ns);
                let finalizer = json!({"metadata": {"finalizers": ["keyward.dev/cleanup"]}});
                licenses
                    .patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&finalizer))
                    .await
                    .unwrap();
                let target: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("{name}-target"), "labels": {"keyward-bench/bare": "true"}},
                    "data": {"license": token_b64},
                }))
                .unwrap();
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &target)
                    .await
                    .unwrap();
                licenses
                    .patch_status(
                        &name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&json!({"status": status})),
                    )
                    .await
                    .unwrap();
                let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
                for i in 0..events_per_license {
                    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
                        "metadata": {"name": format!("{name}.bench-{i}")},
                        "eventTime": jiff::Timestamp::now().to_string(),
                        "reportingController": "keyward.dev/bench", "reportingInstance": "bench",
                        "action": "Reconcile", "reason": format!("Bench{i}"), "type": "Normal",
                        "note": "the bare floor's event",
                        "regarding": {"apiVersion": "keyward.dev/v1alpha1", "kind": "License", "namespace": ns, "name": name},
                    }))
                    .unwrap();
                    events.create(&PostParams::default(), &event).await.unwrap();
                }
            }
        })
        .await;
    started.elapsed()
}

fn total(writes: &std::collections::BTreeMap<String, u64>) -> u64 {
    writes.values().sum()
}

/// Read requests, as the API server counts them (a watch counts once, when it starts).
const READS: [&str; 3] = ["GET", "LIST", "WATCH"];

/// Cold start of `licenses` Licenses created while the operator was down, against the bare
/// floor; then a restart over them, which must write nothing. `FLEET_FLOOR=0` leaves the floor
/// out (for profiling the operator's part); `FLEET_KEYS=own` gives each License its own key Secret.
async fn fleet(client: &Client, licenses: usize) {
    let vendor = Vendor::new("vendor");
    let token = vendor.token("zizq");
    let namespaces = (licenses / 100).max(1);
    let (run, floor_run) = (run_id(), run_id());
    // The floor's Licenses are created only once the operator's part is measured: the API server
    // reads every License of the cluster out of etcd for a list, so they would slow the
    // operator's start-up list by as much again, which no real installation of this size sees.
    let keys = KeySecrets::from_env();
    let slots = create_fleet(client, &run, &token, licenses, namespaces, keys).await;
    let home = common::TestNamespace::new("bench-fleet-home").await;
    let args = [
        "--license-selector",
        &format!("keyward-bench/run={run}"),
        "--operator-namespace",
        &home.name,
    ];

    let writes_before = common::apiserver_writes(client).await;
    let mut operator = Operator::start_cluster_wide(vendor.trust_dir.path(), &args);
    let started = Instant::now();
    let waiting = until_reconciled(client, &run, slots.len());
    let (took, peak) = {
        let pid = operator.pid();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(pid).0, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let took = waiting.await;
        sampler.abort();
        (took, peak.load(std::sync::atomic::Ordering::Relaxed))
    };
    // Events follow the status writes: count the writes once they have stopped coming.
    let events_done = events_settled(client, started).await;
    let writes_after = common::apiserver_writes(client).await;
    let by_kind: Vec<String> = writes_after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - writes_before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{k} {:.2}", d as f64 / licenses as f64))
        })
        .collect();
    let events = event_writes(&writes_after) - event_writes(&writes_before);
    let events_per_license = (events as f64 / licenses as f64).round() as usize;
    let template = Api::<License>::namespaced(client.clone(), &slots[0].0)
        .get(&slots[0].1)
        .await
        .unwrap();

    println!(
        "fleet cold start: {licenses} Licenses in {namespaces} namespaces, each with a target, {}: {:.2} s ({:.0}/s), last event written by {:.1} s; RSS peak {} MiB",
        match keys {
            KeySecrets::Shared => "key Secrets shared per namespace",
            KeySecrets::Own => "a key Secret each",
        },
        took.as_secs_f64(),
        licenses as f64 / took.as_secs_f64(),
        events_done.as_secs_f64(),
        peak / 1024
    );
    println!("  writes per License: {}", by_kind.join(", "));

    // The restart: ready and every License checked, with no write at all.
    assert!(operator.terminate().success());
    let before = common::apiserver_writes(client).await;
    let reads_before = common::apiserver_requests(client, &READS).await;
    let started = Instant::now();
    let second = Operator::start_cluster_wide(vendor.trust_dir.path(), &args);
    second.wait_ready().await;
    let ready = started.elapsed();
    let mut progress = Instant::now();
    loop {
        let reconciled = second.metric("keyward_reconcile_total").unwrap_or(0.0);
        if reconciled >= licenses as f64 {
            break;
        }
        if progress.elapsed() > Duration::from_secs(10) {
            println!("    {:.0} s: {reconciled} reconciled", started.elapsed().as_secs_f64());
            progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checked = started.elapsed();
    for line in second
        .logs()
        .lines()
        .filter(|l| !l.contains("license unchanged"))
        .take(20)
    {
        println!("    log: {line}");
    }
    let (sum, count) = (
        second.metric("keyward_reconcile_duration_seconds_sum").unwrap_or(0.0),
        second.metric("keyward_reconcile_duration_seconds_count").unwrap_or(0.0),
    );
    println!(
        "  restart: {count} reconciles, mean {:.1} ms each; RSS once all checked {} MiB; {} failed",
        1000.0 * sum / count.max(1.0),
        rss_kib(second.pid()).0 / 1024,
        second
            .metrics()
            .lines()
            .filter(|l| l.starts_with("keyward_reconcile_errors_total"))
            .map(|l| l.rsplit(' ').next().unwrap_or("0").parse::<f64>().unwrap_or(0.0))
            .sum::<f64>()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = common::apiserver_writes(client).await;
    let reads_after = common::apiserver_requests(client, &READS).await;
    let reads: Vec<String> = reads_after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - reads_before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{k} {d}"))
        })
        .collect();
    println!("  restart reads: {}", reads.join(", "));
    println!(
        "  restart over {licenses} reconciled Licenses: ready {:.2} s, every License checked {:.2} s after start, {} write requests (from {} before to {} after)",
        ready.as_secs_f64(),
        checked.as_secs_f64(),
        total(&after) - total(&before),
        total(&before),
        total(&after)
    );
    drop(second);
    if std::env::var("FLEET_FLOOR").is_ok_and(|v| v == "0") {
        return;
    }

    let floor_slots = create_fleet(client, &floor_run, &token, licenses, namespaces, keys).await;
    let floor = bare_floor(client, &floor_slots, &template, events_per_license).await;
    println!(
        "  bare floor (finalizer, target, status, {events_per_license} events per License, concurrency 32): {:.2} s; Keyward/floor {:.2}x",
        floor.as_secs_f64(),
        took.as_secs_f64() / floor.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and a
    // benchmark that creates 10,000 Secrets has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator benchmarks skipped: run them with `cargo bench --bench operator`");
        return;
    }
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    set_log_filter("info");
    let client = common::client().await;
    install_crd(&client).await;
    if run("cold-start") {
        cold_start(&client, 1000).await;
    }
    if run("propagation") {
        propagation(&client, 100, 30).await;
    }
    if run("memory") {
        memory(&client, 10_000).await;
    }
    if run("pod-memory") {
        pod_memory(&client, 5_000).await;
    }
    if run("fleet") {
        // FLEET_LICENSES: another size, for finding where the time goes as the fleet grows.
        let licenses = std::env::var("FLEET_LICENSES").ok().and_then(|n| n.parse().ok());
        fleet(&client, licenses.unwrap_or(1_000)).await;
    }
    if run("fleet-10k") {
        fleet(&client, 10_000).await;
    }
}
