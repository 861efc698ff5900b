//! Rolling verified keys out to workloads, on a real API server, with the real binary.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use keyward::api::License;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use common::operator::*;
use common::{TestNamespace, client, eventually, kubectl};

async fn secret_data(client: &Client, ns: &str, name: &str) -> Option<(String, Value, Secret)> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()?;
    let data = secret.data.clone().unwrap_or_default();
    let token = String::from_utf8(data.get("license")?.0.clone()).unwrap();
    let json = serde_json::from_slice(&data.get("license.json")?.0).unwrap();
    Some((token, json, secret))
}

async fn wait_secret(client: &Client, ns: &str, name: &str, what: &str, check: impl Fn(&str, &Value) -> bool) -> Value {
    eventually(what, Duration::from_secs(30), || async {
        secret_data(client, ns, name)
            .await
            .filter(|(t, j, _)| check(t, j))
            .map(|(_, j, _)| j)
    })
    .await
}

async fn wait_gone(client: &Client, ns: &str, name: &str) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} removed"), Duration::from_secs(30), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "example.invalid/zizq:1",
            "volumeMounts": [{"name": "license", "mountPath": "/etc/zizq/license", "readOnly": true}]}],
            "volumes": [{"name": "license", "secret": {"secretName": "zizq-license"}}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn keys_roll_out_by_name_and_selector_live_and_fail_safe() {
    let client = client().await;
    install_crd(&client).await;
    let run = run_id();
    let home = TestNamespace::new("rollout-home").await;
    let named = TestNamespace::new("rollout-named").await;
    let team = json!({"keyward-test/team": format!("t-{run}")});
    let sel_a = labelled_namespace(&client, "rollout-sel", team.clone()).await;
    let sel_b = labelled_namespace(&client, "rollout-sel", team.clone()).await;
    let vendor = Vendor::new("vendor-2026");
    let token = vendor.token("zizq");
    put_secret(&client, &home.name, "lic", "license", token.as_bytes()).await;

    // A workload in the named namespace: a Deployment (never touched) and a running Pod.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &named.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "zizq"},
        "spec": {"selector": {"matchLabels": {"app": "zizq"}},
            "template": {"metadata": {"labels": {"app": "zizq"}}, "spec": pod("x", "zizq").spec}}
    }))
    .unwrap();
    let deployment = deployments.create(&PostParams::default(), &deployment).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &named.name);
    let pod = pods
        .create(&PostParams::default(), &pod("zizq-0", "zizq"))
        .await
        .unwrap();

    // The License lives in the operator's namespace, so it may target others.
    let labels = json!({"keyward-test/run": run});
    create_license_from(&client, &home.name, json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
        "metadata": {"name": "zizq", "labels": labels},
        "spec": {"secretRef": {"name": "lic"}, "product": "zizq", "rollout": {"targets": [
            {"namespace": named.name, "secretName": "zizq-license", "podSelector": {"matchLabels": {"app": "zizq"}}},
            {"namespaceSelector": {"matchLabels": team}, "secretName": "zizq-license"}
        ]}}
    }))
    .await;
    let selector = format!("keyward-test/run={run}");
    let operator = Operator::start_cluster_wide(
        vendor.trust_dir.path(),
        &["--license-selector", &selector, "--operator-namespace", &home.name],
    );
    operator.wait_ready().await;

    for ns in [&named.name, &sel_a, &sel_b] {
        let json = wait_secret(&client, ns, "zizq-license", "target Secret", |t, _| t == token).await;
        assert_eq!(json["state"], "Active");
        assert_eq!(json["licensee"], "Acme Corp");
        assert_eq!(json["tier"], "pro");
        assert_eq!(json["seats"], 25);
        assert_eq!(json["features"], json!(["queues", "sso"]));
        assert!(json["expiresAt"].is_string() && json["graceEndsAt"].is_string());
    }
    let (_, _, target) = secret_data(&client, &named.name, "zizq-license").await.unwrap();
    assert_eq!(
        target.labels().get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("keyward")
    );
    let l = wait_license(&client, &home.name, "zizq", "rolled out", |l| {
        condition(l, "RolledOut").map(|c| c.0).as_deref() == Some("True")
    })
    .await;
    let rollout = l.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(
        (rollout.targets, rollout.up_to_date, rollout.summary.as_str()),
        (3, 3, "3/3")
    );
    let wide = kubectl(&["get", "licenses", "-n", &home.name, "-o", "wide"]);
    assert!(wide.contains("ROLLED-OUT") && wide.contains("3/3"), "{wide}");

    // The running Pod is nudged with the revision, nothing restarts.
    let revision = rollout.revision.clone().unwrap();
    let nudged = eventually("pod annotated", Duration::from_secs(20), || async {
        let p = pods.get("zizq-0").await.unwrap();
        (p.annotations().get("keyward.dev/license-revision") == Some(&revision)).then_some(p)
    })
    .await;
    assert_eq!(nudged.uid(), pod.uid(), "same Pod, not recreated");
    let after = deployments.get("zizq").await.unwrap();
    assert_eq!(after.metadata.generation, deployment.metadata.generation);
    assert_eq!(after.spec, deployment.spec, "pod template untouched");

    // Rotation propagates to every target and re-nudges the Pod.
    let token2 = vendor.renewed("zizq", "enterprise");
    put_secret(&client, &home.name, "lic", "license", token2.as_bytes()).await;
    for ns in [&named.name, &sel_a, &sel_b] {
        let json = wait_secret(&client, ns, "zizq-license", "rotated", |t, _| t == token2).await;
        assert_eq!(json["tier"], "enterprise");
    }
    eventually("pod re-annotated", Duration::from_secs(20), || async {
        let p = pods.get("zizq-0").await.unwrap();
        (p.annotations().get("keyward.dev/license-revision") != Some(&revision)).then_some(())
    })
    .await;

    // An invalid rotation changes nothing downstream.
    put_secret(
        &client,
        &home.name,
        "lic",
        "license",
        Vendor::new("stranger").token("zizq").as_bytes(),
    )
    .await;
    wait_license(&client, &home.name, "zizq", "KeyNotValid", |l| {
        condition(l, "RolledOut").map(|c| c.1).as_deref() == Some("KeyNotValid")
    })
    .await;
    // The refusal's reconcile is done (its status seen); a write to a target would come from
    // that same reconcile, so two quiet seconds show there is none.
    common::holds_for(
        "every target keeps the last good key",
        Duration::from_secs(2),
        || async {
            for ns in [&named.name, &sel_a, &sel_b] {
                let (t, _, _) = secret_data(&client, ns, "zizq-license").await.unwrap();
                if t != token2 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    put_secret(&client, &home.name, "lic", "license", token2.as_bytes()).await;

    // A namespace that starts matching gets its Secret; one that stops matching loses it.
    let sel_c = labelled_namespace(&client, "rollout-sel", team.clone()).await;
    wait_secret(&client, &sel_c, "zizq-license", "new namespace served", |t, _| {
        t == token2
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &sel_a,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"keyward-test/team": null}}})),
        )
        .await
        .unwrap();
    wait_gone(&client, &sel_a, "zizq-license").await;

    // Deleting the License removes every target Secret.
    Api::<License>::namespaced(client.clone(), &home.name)
        .delete("zizq", &DeleteParams::default())
        .await
        .unwrap();
    for ns in [&named.name, &sel_b, &sel_c] {
        wait_gone(&client, ns, "zizq-license").await;
    }
    let logs = operator.logs();
    assert!(!logs.contains(&token) && !logs.contains(&token2), "tokens never logged");
}

#[tokio::test]
async fn foreign_secrets_are_never_overwritten_and_cross_namespace_targets_are_refused() {
    let client = client().await;
    install_crd(&client).await;
    let run = run_id();
    let tenant = TestNamespace::new("tenant").await;
    let other = TestNamespace::new("victim").await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &tenant.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    put_secret(&client, &tenant.name, "app-config", "license", b"someone else's data").await;
    create_license_from(
        &client,
        &tenant.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "zizq", "labels": {"keyward-test/run": run}},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq", "rollout": {"targets": [
                {"secretName": "app-config"},
                {"secretName": "mine"},
                {"namespace": other.name, "secretName": "stolen"}
            ]}}
        }),
    )
    .await;
    let selector = format!("keyward-test/run={run}");
    let operator = Operator::start_cluster_wide(vendor.trust_dir.path(), &["--license-selector", &selector]);
    operator.wait_ready().await;
    let l = wait_license(&client, &tenant.name, "zizq", "rollout reported", |l| {
        l.status.as_ref().and_then(|s| s.rollout.as_ref()).is_some()
    })
    .await;
    let (status, reason) = condition(&l, "RolledOut").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "TargetConflict"));
    let details = l.status.unwrap().rollout.unwrap().details;
    let reason_of = |name: &str| {
        details
            .iter()
            .find(|d| d.secret_name == name)
            .and_then(|d| d.reason.clone())
    };
    assert_eq!(reason_of("app-config").as_deref(), Some("TargetConflict"));
    assert_eq!(reason_of("stolen").as_deref(), Some("TargetNotAllowed"));
    assert_eq!(reason_of("mine"), None);
    let (foreign, _) = Api::<Secret>::namespaced(client.clone(), &tenant.name)
        .get("app-config")
        .await
        .map(|s| (s.data.unwrap()["license"].0.clone(), ()))
        .unwrap();
    assert_eq!(foreign, b"someone else's data");
    assert!(
        Api::<Secret>::namespaced(client.clone(), &other.name)
            .get_opt("stolen")
            .await
            .unwrap()
            .is_none()
    );
    assert!(secret_data(&client, &tenant.name, "mine").await.is_some());
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("ha").await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license(&client, &ns.name, "zizq", "lic", "zizq").await;
    let ha = |id: &str| {
        [
            "--leader-elect",
            "--leader-election-namespace",
            ns.name.as_str(),
            "--leader-election-identity",
            id,
        ]
        .map(String::from)
    };
    let mut first = Operator::start(
        &ns.name,
        vendor.trust_dir.path(),
        &ha("replica-a").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    first.wait_ready().await;
    wait_license(&client, &ns.name, "zizq", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    let second = Operator::start(
        &ns.name,
        vendor.trust_dir.path(),
        &ha("replica-b").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    second.wait_ready().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let holder = || async { leases.get("keyward-leader").await.ok()?.spec?.holder_identity };
    assert_eq!(holder().await.as_deref(), Some("replica-a"));
    let history = LeaseHistory::record(&leases);

    // The leader dies without releasing its Lease; the standby takes over once the Lease the
    // leader last renewed expires: within the Lease duration (10 s) of the kill, plus a second
    // for this test's 50 ms polling and the API round trips.
    first.kill();
    let killed = Instant::now();
    eventually("standby takes over", Duration::from_secs(20), || async {
        (holder().await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(takeover < Duration::from_secs(11), "takeover took {takeover:?}");
    // And it reconciles: a rotation is picked up.
    rotate_and_wait(&client, &ns.name, "zizq", &vendor, "enterprise").await;
    eprintln!("leader takeover after SIGKILL: {takeover:?}");

    // A leader asked to stop (SIGTERM) exits cleanly and releases its Lease; a third replica takes
    // over. (kube-lease-manager's standby looks again only when the lock it saw would expire, so
    // the handover takes up to the Lease duration even after a release.)
    let third_args = ha("replica-c");
    let third = Operator::start(
        &ns.name,
        vendor.trust_dir.path(),
        &third_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    third.wait_ready().await;
    let mut second = second;
    let status = second.terminate();
    assert!(status.success(), "a clean shutdown exits 0: {status:?}");
    assert!(second.logs().contains("released the leader Lease"), "{}", second.logs());
    let stopped = Instant::now();
    eventually("handover after SIGTERM", Duration::from_secs(20), || async {
        (holder().await.as_deref() == Some("replica-c")).then_some(())
    })
    .await;
    let handover = stopped.elapsed();
    assert!(handover < Duration::from_secs(11), "handover took {handover:?}");
    eprintln!("leader handover after SIGTERM: {handover:?}");
    // One holder at a time, in order: the standby never held the Lease while the leader lived.
    assert_eq!(history.holders(), ["replica-a", "replica-b", "replica-c"]);
}

/// Every holder a Lease has had, in order, as a watch sees it.
struct LeaseHistory {
    holders: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseHistory {
    fn record(leases: &Api<Lease>) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let holders = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = holders.clone();
        let config = watcher::Config::default().fields("metadata.name=keyward-leader");
        let mut stream = watcher(leases.clone(), config).applied_objects().boxed();
        let task = tokio::spawn(async move {
            while let Some(Ok(lease)) = stream.next().await {
                // A released Lease has no holder: that is not a holder of its own.
                let Some(holder) = lease.spec.and_then(|s| s.holder_identity) else {
                    continue;
                };
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(&holder) {
                    seen.push(holder);
                }
            }
        });
        Self { holders, task }
    }

    fn holders(&self) -> Vec<String> {
        self.holders.lock().unwrap().clone()
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A leader whose Lease is taken stops reconciling and exits, so a fresh process can stand by.
#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_reconciling_and_exits() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("ha-lost").await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license(&client, &ns.name, "zizq", "lic", "zizq").await;
    let mut leader = Operator::start(
        &ns.name,
        vendor.trust_dir.path(),
        &[
            "--leader-elect",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-identity",
            "replica-a",
        ],
    );
    wait_license(&client, &ns.name, "zizq", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    // Another party takes the Lease, as a partitioned leader would find on its next renewal.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let taken = json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now, "leaseDurationSeconds": 3600}});
    leases
        .patch("keyward-leader", &PatchParams::default(), &Patch::Merge(&taken))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = leader.try_exit() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the leader kept running without its Lease:\n{}",
            leader.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "losing the Lease is a failure exit: {status:?}");
    assert!(leader.logs().contains("lost the leader Lease"), "{}", leader.logs());
    assert_eq!(
        leases
            .get("keyward-leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("intruder"),
        "the old leader did not take the Lease back"
    );
}

/// Two rotations within a minute are two `RolledOut` events, each naming its own revision.
/// Broken before: kube-runtime's recorder folded the second into the first as a series whose
/// note still named the first revision.
#[tokio::test]
async fn each_rotation_is_its_own_event_naming_its_own_revision() {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::ListParams;

    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("rollout-events").await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_with_targets(&client, &ns.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    let mut revisions = Vec::new();
    for tier in ["pro", "enterprise", "ultimate"] {
        if tier != "pro" {
            put_secret(
                &client,
                &ns.name,
                "lic",
                "license",
                vendor.renewed("zizq", tier).as_bytes(),
            )
            .await;
        }
        let l = wait_license(&client, &ns.name, "zizq", &format!("{tier} rolled out"), |l| {
            l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some(tier)
                && condition(l, "RolledOut").map(|c| c.0).as_deref() == Some("True")
        })
        .await;
        revisions.push(l.status.unwrap().rollout.unwrap().revision.unwrap());
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let notes = eventually("three RolledOut events", Duration::from_secs(10), || async {
        let rolled: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("RolledOut"))
            .collect();
        (rolled.len() >= 3).then_some(rolled)
    })
    .await;
    assert!(notes.iter().all(|e| e.series.is_none()), "no folded series: {notes:#?}");
    for revision in &revisions {
        let naming = notes
            .iter()
            .filter(|e| e.note.as_deref().is_some_and(|n| n.contains(revision.as_str())))
            .count();
        assert_eq!(naming, 1, "one event names {revision}: {notes:#?}");
    }
}

/// A target Secret may be another License's key Secret (a team re-checking the key it is handed).
/// Target Secrets are watched apart from all other Secrets; a renewal written there still wakes
/// the License that reads it, although it is Keyward's own write.
#[tokio::test]
async fn a_target_that_is_another_licenses_key_wakes_it() {
    let (client, ns, vendor, _operator, _) = rolled_out("chained").await;
    let downstream = json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "License", "metadata": {"name": "downstream"},
        "spec": {"secretRef": {"name": "zizq-license", "key": "license"}, "product": "zizq"}
    });
    create_license_from(&client, &ns.name, downstream).await;
    wait_license(&client, &ns.name, "downstream", "Active on the rolled-out key", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;

    rotate_and_wait(&client, &ns.name, "zizq", &vendor, "enterprise").await;
    wait_license(
        &client,
        &ns.name,
        "downstream",
        "on the renewal rolled out to it",
        |l| l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some("enterprise"),
    )
    .await;
}
