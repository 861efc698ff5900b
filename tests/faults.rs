//! Faults survived: the API server and etcd restarted under the operator, the operator killed
//! mid-rollout, concurrent writers, a clock that starts mid-window. Each test asserts convergence
//! and that no target ever held an invalid or empty key.
//!
//! These tests break the control plane, so they run one at a time and only on a control plane
//! this test binary started itself (not with KEYWARD_TEST_KUBECONFIG or an existing cluster).

mod common;

use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::License;
use keyward::license::Format;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use common::audit::TargetAuditor;
use common::operator::*;
use common::{TestNamespace, client, eventually};

/// One fault test at a time: they stop the shared control plane.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ours(test: &str) -> bool {
    let owned = common::env().dir.is_some();
    if !owned {
        common::skip(test, "fault tests need a control plane this test binary started itself");
    }
    owned
}

#[tokio::test]
async fn api_server_down_for_ten_seconds_during_a_rotation() {
    let _serial = SERIAL.lock().await;
    if !ours("api_server_down_for_ten_seconds_during_a_rotation") {
        return;
    }
    let (client, ns, vendor, mut operator, l) = rolled_out("fault-api").await;
    let auditor = TargetAuditor::start(&client, &vendor, "zizq", &l);
    let original = target_token(&client, &ns.name, "zizq-license").await.unwrap();

    // The operator is frozen while the rotation is written and the API server stopped, so the
    // rotation can only converge through work done after the outage.
    let pid = operator.pid() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let rotated = vendor.renewed("zizq", "enterprise");
    put_secret(&client, &ns.name, "lic", "license", rotated.as_bytes()).await;
    assert_eq!(
        target_token(&client, &ns.name, "zizq-license").await.as_deref(),
        Some(original.as_str()),
        "the target is still stale when the outage begins"
    );
    assert!(common::control_plane("stop-apiserver"));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // The outage itself, not a wait for a result: the operator must ride out ten seconds.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(common::control_plane("start-apiserver"));

    let client = common::client().await;
    eventually(
        "rotation converges after the outage",
        Duration::from_secs(60),
        || async {
            (target_token(&client, &ns.name, "zizq-license").await.as_deref() == Some(rotated.as_str())).then_some(())
        },
    )
    .await;
    wait_license(&client, &ns.name, "zizq", "status converges", |l| {
        l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some("enterprise")
    })
    .await;
    // A watch lost in the outage and never re-established would miss this one.
    let again = vendor.renewed("zizq", "ultimate");
    put_secret(&client, &ns.name, "lic", "license", again.as_bytes()).await;
    eventually(
        "a rotation after the restart converges",
        Duration::from_secs(30),
        || async {
            (target_token(&client, &ns.name, "zizq-license").await.as_deref() == Some(again.as_str())).then_some(())
        },
    )
    .await;
    operator.assert_running();
    assert!(!operator.logs().contains("panicked"));
    auditor.assert_clean();
}

#[tokio::test]
async fn etcd_restarted_under_the_api_server() {
    let _serial = SERIAL.lock().await;
    if !ours("etcd_restarted_under_the_api_server") {
        return;
    }
    let (client, ns, vendor, mut operator, l) = rolled_out("fault-etcd").await;
    let auditor = TargetAuditor::start(&client, &vendor, "zizq", &l);

    assert!(common::control_plane("stop-etcd"));
    // The outage itself (five seconds without etcd), not a wait for a result.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(common::control_plane("start-etcd"));
    let rotated = vendor.renewed("zizq", "enterprise");
    eventually("API server writable again", Duration::from_secs(60), || {
        let (client, ns, rotated) = (client.clone(), ns.name.clone(), rotated.clone());
        async move {
            let secret: Secret =
                serde_json::from_value(json!({"metadata": {"name": "lic"}, "data": {"license": base64(&rotated)}}))
                    .ok()?;
            let api: Api<Secret> = Api::namespaced(client, &ns);
            api.patch(
                "lic",
                &PatchParams::apply("keyward-tests").force(),
                &Patch::Apply(&secret),
            )
            .await
            .ok()
            .map(|_| ())
        }
    })
    .await;
    eventually(
        "rotation converges after the etcd restart",
        Duration::from_secs(60),
        || async {
            (target_token(&client, &ns.name, "zizq-license").await.as_deref() == Some(rotated.as_str())).then_some(())
        },
    )
    .await;
    operator.assert_running();
    auditor.assert_clean();
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn operator_killed_mid_rollout_to_fifty_namespaces() {
    let _serial = SERIAL.lock().await;
    if !ours("operator_killed_mid_rollout_to_fifty_namespaces") {
        return;
    }
    let client = client().await;
    install_crd(&client).await;
    let run = run_id();
    let home = TestNamespace::new("fault-kill").await;
    let team = json!({"keyward-fault/team": run});
    let mut namespaces = Vec::new();
    for _ in 0..50 {
        namespaces.push(labelled_namespace(&client, "fault-kill-t", team.clone()).await);
    }
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &home.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_from(
        &client,
        &home.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "zizq", "labels": {"keyward-fault/run": run}},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
                "rollout": {"targets": [{"namespaceSelector": {"matchLabels": team}, "secretName": "zizq-license"}]}}
        }),
    )
    .await;
    let selector = format!("keyward-fault/run={run}");
    let args = [
        "--license-selector",
        selector.as_str(),
        "--operator-namespace",
        home.name.as_str(),
    ];
    let mut first = Operator::start_cluster_wide(vendor.trust_dir.path(), &args);
    let l = wait_license(&client, &home.name, "zizq", "rolled out to 50", |l| {
        l.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.up_to_date == 50)
    })
    .await;
    let auditor = TargetAuditor::start(&client, &vendor, "zizq", &l);

    // Rotate, and SIGKILL the operator the moment a watch sees the first target with the new key.
    // A rollout to 50 namespaces takes tens of milliseconds, so the kill can land after it has
    // finished; then the attempt is repeated with a fresh operator and another rotation.
    let owned = format!("keyward.dev/owner-uid={}", l.uid().unwrap());
    let mut attempt = 0;
    let (rotated, tier, done_before_restart) = loop {
        attempt += 1;
        let tier = format!("enterprise-{attempt}");
        let rotated = vendor.renewed("zizq", &tier);
        let mut targets = watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&owned),
        )
        .applied_objects()
        .boxed();
        for _ in 0..50 {
            targets.next().await.unwrap().unwrap(); // the initial listing
        }
        put_secret(&client, &home.name, "lic", "license", rotated.as_bytes()).await;
        loop {
            let s = targets.next().await.unwrap().unwrap();
            if s.data
                .as_ref()
                .and_then(|d| d.get("license"))
                .is_some_and(|v| v.0 == rotated.as_bytes())
            {
                first.kill();
                break;
            }
        }
        drop(targets);
        let mut done = 0;
        for ns in &namespaces {
            done += usize::from(target_token(&client, ns, "zizq-license").await.as_deref() == Some(rotated.as_str()));
        }
        if done < 50 || attempt == 5 {
            break (rotated, tier, done);
        }
        first = Operator::start_cluster_wide(vendor.trust_dir.path(), &args);
        wait_license(&client, &home.name, "zizq", "settled before the next attempt", |l| {
            l.status
                .as_ref()
                .is_some_and(|s| s.tier.as_deref() == Some(tier.as_str()))
        })
        .await;
    };

    let mut second = Operator::start_cluster_wide(vendor.trust_dir.path(), &args);
    for ns in &namespaces {
        let (client, ns) = (client.clone(), ns.clone());
        let rotated = rotated.clone();
        eventually("every target rotated", Duration::from_secs(60), move || {
            let (client, ns, rotated) = (client.clone(), ns.clone(), rotated.clone());
            async move {
                (target_token(&client, &ns, "zizq-license").await.as_deref() == Some(rotated.as_str())).then_some(())
            }
        })
        .await;
    }
    let l = wait_license(&client, &home.name, "zizq", "status converged", |l| {
        l.status.as_ref().is_some_and(|s| {
            s.tier.as_deref() == Some(tier.as_str()) && s.rollout.as_ref().is_some_and(|r| r.up_to_date == 50)
        })
    })
    .await;
    // No orphans: exactly the 50 wanted targets exist, all owned by the live License.
    let managed = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().labels(&format!("keyward.dev/owner-uid={}", l.uid().unwrap())))
        .await
        .unwrap();
    assert_eq!(managed.items.len(), 50);
    // No duplicated work visible: one RolledOut per revision (the first and the rotated ones).
    // Occurrences are counted, series included.
    let events: Api<Event> = Api::namespaced(client.clone(), &home.name);
    let rolled_out = || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("RolledOut"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count as usize))
            .sum::<usize>()
    };
    eventually("one RolledOut per revision", Duration::from_secs(10), || async {
        (rolled_out().await > attempt).then_some(())
    })
    .await;
    // Events are published right after the status write that records them: a duplicate would
    // appear within milliseconds, so two quiet seconds show there is none.
    common::holds_for("no duplicate RolledOut", Duration::from_secs(2), || async {
        rolled_out().await == 1 + attempt
    })
    .await;
    second.assert_running();
    eprintln!(
        "attempt {attempt}: killed after {done_before_restart}/50 targets were rotated; the restart finished the rest"
    );
    assert!(
        done_before_restart < 50,
        "the kill landed after the rollout finished: nothing was interrupted"
    );
    auditor.assert_clean();
}

#[tokio::test]
async fn concurrent_writers_to_status_and_targets_are_outlasted() {
    let _serial = SERIAL.lock().await;
    if !ours("concurrent_writers_to_status_and_targets_are_outlasted") {
        return;
    }
    let (client, ns, _vendor, mut operator, _) = rolled_out("fault-409").await;
    let token = target_token(&client, &ns.name, "zizq-license").await.unwrap();

    // Another writer fights over the target's content and the License status for 3 seconds.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let licenses: Api<License> = Api::namespaced(client.clone(), &ns.name);
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    // Only writes that landed count: a fight the other writer never won proves nothing.
    let (mut target_writes, mut status_writes) = (0, 0);
    while tokio::time::Instant::now() < until {
        let tampered = json!({"data": {"license.json": base64(r#"{"state":"Active","seats":1000000}"#)}});
        if secrets
            .patch("zizq-license", &PatchParams::default(), &Patch::Merge(&tampered))
            .await
            .is_ok()
        {
            target_writes += 1;
        }
        let status = json!({"status": {"state": "Active", "tier": "stolen-enterprise"}});
        if licenses
            .patch_status("zizq", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .is_ok()
        {
            status_writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        target_writes > 20 && status_writes > 20,
        "the competing writes must land: {target_writes} target and {status_writes} status writes succeeded"
    );
    wait_license(&client, &ns.name, "zizq", "status restored", |l| {
        l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some("pro")
    })
    .await;
    eventually("target restored", Duration::from_secs(30), || async {
        let s = secrets.get("zizq-license").await.ok()?;
        let json: serde_json::Value = serde_json::from_slice(&s.data?.get("license.json")?.0).ok()?;
        (json["seats"] == 25).then_some(())
    })
    .await;
    assert_eq!(
        target_token(&client, &ns.name, "zizq-license").await.as_deref(),
        Some(token.as_str())
    );
    operator.assert_running();
}

#[tokio::test]
async fn an_operator_starting_mid_window_flips_at_the_right_instants() {
    let _serial = SERIAL.lock().await;
    if !ours("an_operator_starting_mid_window_flips_at_the_right_instants") {
        return;
    }
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("fault-clock").await;
    let vendor = Vendor::new("vendor-2026");
    // Warning from +2 s, expiry at +7 s, read-only at +10 s; the operator starts at about +3 s.
    let mut claims = vendor.claims("zizq", Some(7));
    claims.warn = Some(5);
    claims.grace = Some(3);
    let exp = Timestamp::from_second(claims.exp.unwrap()).unwrap();
    put_secret(
        &client,
        &ns.name,
        "lic",
        "license",
        vendor.sign(&claims, &Format::Jwt).as_bytes(),
    )
    .await;
    create_license(&client, &ns.name, "zizq", "lic", "zizq").await;
    tokio::time::sleep_until(
        tokio::time::Instant::now()
            + (exp - SignedDuration::from_secs(4))
                .duration_since(Timestamp::now())
                .unsigned_abs(),
    )
    .await;
    let _operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    let l = wait_license(&client, &ns.name, "zizq", "Warning at once", |l| state(l).is_some()).await;
    assert_eq!(
        state(&l).as_deref(),
        Some("Warning"),
        "started inside the warning window"
    );
    let since = |l: &License, t: &str| l.status_condition(t).map(|c| c.last_transition_time.0);
    let l = wait_license(&client, &ns.name, "zizq", "Grace", |l| {
        state(l).as_deref() == Some("Grace")
    })
    .await;
    // Polled every 50 ms: an early flip is seen before the boundary (lower bound), a late one
    // after the second allowed (upper bound).
    let late = Timestamp::now().duration_since(exp);
    assert!(late >= SignedDuration::ZERO, "Grace {late:?} before expiry");
    assert!(late <= SignedDuration::from_secs(1), "Grace {late:?} after expiry");
    assert!(since(&l, "InGrace").unwrap() >= exp);
    wait_license(&client, &ns.name, "zizq", "ReadOnly", |l| {
        state(l).as_deref() == Some("ReadOnly")
    })
    .await;
    let late = Timestamp::now().duration_since(exp + SignedDuration::from_secs(3));
    assert!(
        late >= SignedDuration::ZERO,
        "ReadOnly {late:?} before the grace period ended"
    );
    assert!(
        late <= SignedDuration::from_secs(1),
        "ReadOnly {late:?} after the grace period ended"
    );
}
