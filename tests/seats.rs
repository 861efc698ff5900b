//! Seat entitlements against real usage, on a real API server, with the real binary.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use keyward::api::License;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use common::operator::*;
use common::{TestNamespace, client, eventually, kubectl};

async fn running_pod(client: &Client, ns: &str, name: &str, app: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "agent", "image": "example.invalid/agent:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // No kubelet here: report the Pod running as the kubelet would.
    let status = json!({"status": {"phase": "Running"}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn seat_events(client: &Client, ns: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        let reason = e.reason.clone().unwrap_or_default();
        if reason == "SeatsExceeded" || reason == "WithinSeats" {
            *counts.entry(reason).or_default() += e.series.as_ref().map_or(1, |s| s.count as usize);
        }
    }
    counts
}

fn within(l: &License) -> Option<(String, String, String)> {
    l.status_condition("WithinSeats")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn used(l: &License) -> Option<u64> {
    l.status.as_ref()?.seats.as_ref()?.used
}

#[tokio::test]
async fn running_pods_count_as_seats_and_going_over_is_impossible_to_miss() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("seats-pods").await;
    let vendor = Vendor::new("vendor-2026");
    let mut claims = vendor.claims("scout", Some(365 * 86_400));
    claims.seats = Some(2);
    put_secret(
        &client,
        &ns.name,
        "lic",
        "license",
        vendor.sign(&claims, &keyward::license::Format::Jwt).as_bytes(),
    )
    .await;
    create_license_from(
        &client,
        &ns.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "scout"},
            "spec": {"secretRef": {"name": "lic"}, "product": "scout",
                "seats": {"podSelector": {"matchLabels": {"app": "agent"}}},
                "rollout": {"targets": [{"secretName": "scout-license"}]}}
        }),
    )
    .await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    let l = wait_license(&client, &ns.name, "scout", "0 seats", |l| used(l) == Some(0)).await;
    assert_eq!(within(&l).unwrap().0, "True");

    running_pod(&client, &ns.name, "agent-1", "agent").await;
    running_pod(&client, &ns.name, "agent-2", "agent").await;
    running_pod(&client, &ns.name, "other", "web").await; // not a seat
    let l = wait_license(&client, &ns.name, "scout", "2 seats", |l| used(l) == Some(2)).await;
    assert_eq!(
        within(&l).unwrap(),
        ("True".into(), "WithinEntitlement".into(), "2 seats used of 2".into())
    );

    running_pod(&client, &ns.name, "agent-3", "agent").await;
    let l = wait_license(&client, &ns.name, "scout", "3 seats", |l| used(l) == Some(3)).await;
    assert_eq!(
        within(&l).unwrap(),
        ("False".into(), "SeatsExceeded".into(), "3 seats used of 2".into())
    );
    assert_eq!(
        l.status.as_ref().unwrap().state,
        Some(keyward::api::LicenseState::Active),
        "the lifecycle state is untouched"
    );
    let wide = kubectl(&["get", "licenses", "-n", &ns.name, "-o", "wide"]);
    assert!(wide.contains("3/2"), "{wide}");
    // The workload sees it too, to refuse new seats itself.
    let secret = Api::<Secret>::namespaced(client.clone(), &ns.name);
    let json = eventually("license.json carries seats", Duration::from_secs(20), || async {
        let s = secret.get_opt("scout-license").await.unwrap()?;
        let j: serde_json::Value = serde_json::from_slice(&s.data?.get("license.json")?.0).ok()?;
        (j["seatsUsed"] == 3).then_some(j)
    })
    .await;
    assert_eq!(json["seatsEntitled"], 2);
    let metrics = operator.metrics();
    assert!(
        metrics.contains(&format!(
            "keyward_license_seats_used{{namespace=\"{}\",name=\"scout\"}} 3",
            ns.name
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "keyward_license_seats_entitled{{namespace=\"{}\",name=\"scout\"}} 2",
            ns.name
        )),
        "{metrics}"
    );

    // A released seat frees up at once.
    Api::<Pod>::namespaced(client.clone(), &ns.name)
        .delete("agent-3", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let l = wait_license(&client, &ns.name, "scout", "back to 2", |l| used(l) == Some(2)).await;
    assert_eq!(within(&l).unwrap().0, "True");
    let expected = BTreeMap::from([("SeatsExceeded".into(), 1), ("WithinSeats".into(), 1)]);
    common::eventually("one event each way", Duration::from_secs(10), || async {
        (seat_events(&client, &ns.name).await == expected).then_some(())
    })
    .await;
    // Events follow the status write within milliseconds: a repeat would show in two seconds.
    common::holds_for("no seat event repeated", Duration::from_secs(2), || async {
        seat_events(&client, &ns.name).await == expected
    })
    .await;
}

#[tokio::test]
async fn usage_reports_unlimited_keys_and_malformed_reports() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("seats-report").await;
    let vendor = Vendor::new("vendor-2026");
    let mut claims = vendor.claims("controlzero", Some(365 * 86_400));
    claims.seats = Some(10);
    let token = vendor.sign(
        &claims,
        &keyward::license::Format::Prefixed {
            prefix: "cz_ent_".into(),
        },
    );
    put_secret(&client, &ns.name, "lic", "license", token.as_bytes()).await;
    let usage: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let report = |text: &str| {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cz-usage"}, "data": {"usage.json": text}})).unwrap();
        let usage = usage.clone();
        async move {
            usage
                .patch(
                    "cz-usage",
                    &PatchParams::apply("controlzero").force(),
                    &Patch::Apply(&cm),
                )
                .await
                .unwrap()
        }
    };
    report(r#"{"seats_used": 12, "api_keys_active": 8, "dashboard_users": 3, "scout_agents": 1}"#).await;
    create_license_from(
        &client,
        &ns.name,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "cz"},
            "spec": {"secretRef": {"name": "lic"}, "product": "controlzero",
                "seats": {"reportedBy": {"configMapRef": {"name": "cz-usage"}}}}
        }),
    )
    .await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    let l = wait_license(&client, &ns.name, "cz", "12 of 10", |l| used(l) == Some(12)).await;
    assert_eq!(
        within(&l).unwrap(),
        ("False".into(), "SeatsExceeded".into(), "12 seats used of 10".into())
    );
    let seats = l.status.as_ref().unwrap().seats.clone().unwrap();
    assert_eq!(
        seats.breakdown,
        BTreeMap::from([
            ("api_keys_active".into(), 8),
            ("dashboard_users".into(), 3),
            ("scout_agents".into(), 1)
        ])
    );
    assert!(seats.measured_at.is_some());

    report(r#"{"seats_used": 9}"#).await;
    let l = wait_license(&client, &ns.name, "cz", "9 of 10", |l| used(l) == Some(9)).await;
    assert_eq!(within(&l).unwrap().0, "True");

    report("seats: lots").await;
    let l = wait_license(&client, &ns.name, "cz", "malformed report", |l| {
        within(l).is_some_and(|w| w.1 == "SeatsReportInvalid")
    })
    .await;
    assert_eq!(within(&l).unwrap().0, "Unknown");
    assert_eq!(
        l.status.as_ref().unwrap().state,
        Some(keyward::api::LicenseState::Active)
    );

    // An unlimited key never flips, however large the report.
    let mut unlimited = vendor.claims("controlzero", Some(365 * 86_400));
    unlimited.seats = None;
    put_secret(
        &client,
        &ns.name,
        "lic",
        "license",
        vendor.sign(&unlimited, &keyward::license::Format::Jwt).as_bytes(),
    )
    .await;
    // The new key in force before the report changes: otherwise a reconcile could read the old
    // key and the new report, and rightly report the old entitlement exceeded.
    wait_license(&client, &ns.name, "cz", "the unlimited key in force", |l| {
        l.status
            .as_ref()
            .and_then(|s| s.seats.as_ref())
            .is_some_and(|s| s.entitled.is_none())
    })
    .await;
    report(r#"{"seats_used": 100000}"#).await;
    let l = wait_license(&client, &ns.name, "cz", "unlimited", |l| used(l) == Some(100_000)).await;
    assert_eq!(within(&l).unwrap().1, "Unlimited");
    // Unlimited never crosses the entitlement: the events stay as they were for the whole window.
    let expected = BTreeMap::from([("SeatsExceeded".into(), 1), ("WithinSeats".into(), 1)]);
    common::holds_for(
        "no SeatsExceeded for unlimited seats",
        Duration::from_secs(2),
        || async { seat_events(&client, &ns.name).await == expected },
    )
    .await;
    assert!(!operator.logs().contains(&token));
}
