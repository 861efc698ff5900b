//! Operator benchmarks on the local control plane (`make bench-operator`): figures for the README.
//!
//! * cold start: 1,000 Licenses exist; time from starting the operator until all are Active;
//! * memory: operator RSS with 10,000 unrelated 64 KiB Secrets in the cluster;
//! * pod-memory: operator RSS with 5,000 Pods that read Secrets (the consumer index);
//! * propagation: from a key Secret update to all 100 target Secrets updated, p50/p99, against a
//!   bare Secret update round trip (update, then see it through a watch) measured in the same run.
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

use common::operator::*;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

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
}
