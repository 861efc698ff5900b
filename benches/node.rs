//! Rotation to the workload on the real node (`make bench-node`): from a key Secret update until
//! the new key is readable inside every Pod, for 10 Pods in 5 namespaces selected by the target's
//! `podSelector` (nudged), 10 Pods mounting the same target Secret but not selected (the kubelet
//! finds the change on its own), and, as the baseline without Keyward, 10 Pods mounting a Secret
//! the benchmark updates itself at the same instants. All in one run.
//!
//! "Readable inside the Pod" is read where the Pod reads it: the file in the Secret volume the
//! kubelet mounted for it. Rotations come every `ROTATION_INTERVAL`, shorter than the kubelet's
//! own resync (about a minute): a Pod that is not nudged may skip versions, and its latency for a
//! rotation is the time until it holds that version or a later one.
//!
//! `KEYWARD_BENCH_ROTATIONS` (default 20) sets the number of rotations.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use keyward::license::Format;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use common::measure::percentile;
use common::node::{self, Node};
use common::operator::*;

const NAMESPACES: usize = 5;
const PODS_PER_KIND: usize = 2;
const ROTATION_INTERVAL: Duration = Duration::from_secs(5);
/// Longer than the kubelet's resync (1 min plus jitter) with room to spare.
const SETTLE: Duration = Duration::from_secs(150);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Nudged,
    NotNudged,
    Bare,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Nudged => "nudged",
            Kind::NotNudged => "not-nudged",
            Kind::Bare => "bare",
        }
    }

    fn secret(self) -> &'static str {
        match self {
            Kind::Bare => "bare-key",
            _ => "zizq-license",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Nudged => "nudged (podSelector)",
            Kind::NotNudged => "not nudged (kubelet resync)",
            Kind::Bare => "bare Secret update, no Keyward (kubelet resync)",
        }
    }
}

fn workload_pod(name: &str, kind: Kind) -> Pod {
    let (repository, tag) = node::image_ref("license-watcher");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": kind.label()}},
        "spec": {
            "hostNetwork": true,
            "containers": [{
                "name": "zizq",
                "image": format!("{repository}:{tag}"),
                "imagePullPolicy": "Never",
                "args": ["--license-file=/etc/zizq/license/license", "--public-key=/etc/zizq/vendor/vendor.pem", "--product=zizq"],
                "volumeMounts": [
                    {"name": "license", "mountPath": "/etc/zizq/license", "readOnly": true},
                    {"name": "vendor-key", "mountPath": "/etc/zizq/vendor", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "license", "secret": {"secretName": kind.secret()}},
                {"name": "vendor-key", "configMap": {"name": "zizq-vendor-key"}}
            ]
        }
    }))
    .unwrap()
}

/// Five namespaces of workloads, and the License rolling the key out to them.
async fn set_up(client: &Client, vendor: &Vendor, run: &str, first: &str) -> (common::TestNamespace, Vec<String>) {
    let home = common::TestNamespace::new("bench-node").await;
    let team = json!({"keyward-bench/team": run});
    let pem = std::fs::read_to_string(vendor.trust_dir.path().join(format!("{}.pem", vendor.kid))).unwrap();
    let mut namespaces = Vec::new();
    for _ in 0..NAMESPACES {
        let ns = labelled_namespace(client, "bench-workload", team.clone()).await;
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "zizq-vendor-key"}, "data": {"vendor.pem": pem}}))
                .unwrap();
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        put_secret(client, &ns, "bare-key", "license", first.as_bytes()).await;
        namespaces.push(ns);
    }
    put_secret(client, &home.name, "lic", "license", first.as_bytes()).await;
    create_license_from(
        client,
        &home.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "zizq", "labels": {"keyward-bench/run": run}},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
                "rollout": {"targets": [{"namespaceSelector": {"matchLabels": team}, "secretName": "zizq-license",
                    "podSelector": {"matchLabels": {"app": Kind::Nudged.label()}}}]}}
        }),
    )
    .await;
    (home, namespaces)
}

async fn start_workloads(client: &Client, namespaces: &[String]) -> Vec<(Kind, Pod)> {
    for ns in namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        for kind in [Kind::Nudged, Kind::NotNudged, Kind::Bare] {
            for i in 0..PODS_PER_KIND {
                let pod = workload_pod(&format!("{}-{i}", kind.label()), kind);
                common::eventually(
                    "a Pod created (its ServiceAccount exists)",
                    Duration::from_secs(30),
                    || {
                        let (pods, pod) = (pods.clone(), pod.clone());
                        async move { pods.create(&PostParams::default(), &pod).await.ok() }
                    },
                )
                .await;
            }
        }
    }
    let mut all = Vec::new();
    for ns in namespaces {
        for kind in [Kind::Nudged, Kind::NotNudged, Kind::Bare] {
            let ready = node::ready_pods(client, ns, &format!("app={}", kind.label()), PODS_PER_KIND).await;
            all.extend(ready.into_iter().map(|p| (kind, p)));
        }
    }
    all
}

/// For each Pod, the instant it first held each version (index into `tokens`).
struct Observer {
    first_seen: Vec<BTreeMap<usize, Instant>>,
}

impl Observer {
    fn look(&mut self, node: &Node, pods: &[(Kind, Pod)], tokens: &[String]) {
        let now = Instant::now();
        for (i, (_, pod)) in pods.iter().enumerate() {
            let Some(bytes) = node.mounted_secret(pod, "license", "license") else {
                continue;
            };
            if let Some(version) = tokens.iter().position(|t| t.as_bytes() == bytes) {
                self.first_seen[i].entry(version).or_insert(now);
            }
        }
    }

    /// The instant a Pod first held `version` or a later one.
    fn reached(&self, pod: usize, version: usize) -> Option<Instant> {
        self.first_seen[pod].range(version..).map(|(_, t)| *t).min()
    }
}

async fn rotations(client: &Client, node: &Node, rounds: usize) {
    let vendor = Vendor::new("vendor");
    let run = run_id();
    let mut tokens = vec![vendor.token("zizq")];
    let (home, namespaces) = set_up(client, &vendor, &run, &tokens[0]).await;
    let _operator = Operator::start_cluster_wide(
        vendor.trust_dir.path(),
        &[
            "--license-selector",
            &format!("keyward-bench/run={run}"),
            "--operator-namespace",
            &home.name,
        ],
    );
    let pods = start_workloads(client, &namespaces).await;
    let mut observer = Observer {
        first_seen: vec![BTreeMap::new(); pods.len()],
    };
    common::eventually("every Pod holds the first key", Duration::from_secs(120), || {
        observer.look(node, &pods, &tokens);
        let all = (0..pods.len()).all(|p| observer.reached(p, 0).is_some());
        async move { all.then_some(()) }
    })
    .await;

    let mut rotated_at = Vec::new();
    for round in 1..=rounds {
        let mut claims = vendor.claims("zizq", Some(365 * 86_400));
        claims.jti = Some(format!("round-{round}"));
        tokens.push(vendor.sign(&claims, &Format::Jwt));
        let token = tokens[round].clone();
        let started = Instant::now();
        // The key Secret (Keyward's input) and the baseline's Secrets change at the same instant.
        let updates = namespaces
            .iter()
            .map(|ns| put_secret(client, ns, "bare-key", "license", token.as_bytes()));
        futures::future::join(
            put_secret(client, &home.name, "lic", "license", token.as_bytes()),
            futures::future::join_all(updates),
        )
        .await;
        rotated_at.push((round, started));
        let next = started + ROTATION_INTERVAL;
        while Instant::now() < next {
            observer.look(node, &pods, &tokens);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let settle = Instant::now() + SETTLE;
    while Instant::now() < settle && !(0..pods.len()).all(|p| observer.reached(p, rounds).is_some()) {
        observer.look(node, &pods, &tokens);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report(&pods, &observer, &rotated_at);
    for (_, pod) in &pods {
        assert_eq!(node::restarts(pod), 0, "no workload restarted");
    }
}

fn report(pods: &[(Kind, Pod)], observer: &Observer, rotated_at: &[(usize, Instant)]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "rotation to the workload: {} rotations every {:?}, {NAMESPACES} namespaces, {PODS_PER_KIND} Pods of each kind per namespace",
        rotated_at.len(),
        ROTATION_INTERVAL
    );
    for kind in [Kind::Nudged, Kind::NotNudged, Kind::Bare] {
        let mut samples = Vec::new();
        let mut missing = 0;
        for (p, (k, _)) in pods.iter().enumerate() {
            if *k != kind {
                continue;
            }
            for (round, at) in rotated_at {
                match observer.reached(p, *round) {
                    Some(t) => samples.push(t.saturating_duration_since(*at)),
                    None => missing += 1,
                }
            }
        }
        if samples.is_empty() {
            println!("  {:<50} no Pod saw any rotation", kind.describe());
            continue;
        }
        let (p50, p99) = (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99));
        let max = *samples.last().unwrap();
        println!(
            "  {:<50} p50 {:>7.0} ms  p99 {:>7.0} ms  max {:>7.0} ms  ({} samples{})",
            kind.describe(),
            ms(p50),
            ms(p99),
            ms(max),
            samples.len(),
            if missing > 0 {
                format!(", {missing} never seen within {SETTLE:?}")
            } else {
                String::new()
            }
        );
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("node benchmarks skipped: run them with `cargo bench --bench node`");
        return;
    }
    let Some(node) = node::start("the node benchmark") else {
        return;
    };
    let rounds = std::env::var("KEYWARD_BENCH_ROTATIONS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    set_log_filter("info");
    let client = common::client().await;
    install_crd(&client).await;
    rotations(&client, &node, rounds).await;
}
