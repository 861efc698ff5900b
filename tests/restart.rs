//! A restart costs reads only: an operator starting over Licenses that are already reconciled
//! checks every one of them and writes nothing, and so does a full resync (every License
//! re-verified after a trusted-key change; it reads no Secret either), proven by the API server's
//! own count of requests. A test binary of its own, so that no other test writes meanwhile.

mod common;

use std::time::{Duration, Instant};

use keyward::api::License;
use kube::Api;
use serde_json::json;

use common::operator::*;
use common::{TestNamespace, client, eventually};

const LICENSES: usize = 100;

#[tokio::test]
async fn a_restart_over_reconciled_licenses_writes_nothing() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("restart").await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    for i in 0..LICENSES {
        let target = json!([{"secretName": format!("zizq-license-{i}")}]);
        create_license_with_targets(&client, &ns.name, &format!("zizq-{i}"), target).await;
    }
    let mut first = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    let licenses: Api<License> = Api::namespaced(client.clone(), &ns.name);
    let settled = || async {
        let list = licenses.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|l| condition(l, "RolledOut").is_some_and(|c| c.0 == "True"))
            .then_some(())
    };
    eventually("every License rolled out", Duration::from_secs(60), settled).await;
    // Events follow the status writes within milliseconds: wait until the count stands still.
    let mut before = common::apiserver_writes(&client).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = common::apiserver_writes(&client).await;
        if now == before {
            break;
        }
        assert!(Instant::now() < deadline, "writes never settled");
        before = now;
    }
    assert!(first.terminate().success());
    // The first operator's shutdown writes nothing either (no Lease without --leader-elect).
    assert_eq!(common::apiserver_writes(&client).await, before, "shutting down wrote");

    let started = Instant::now();
    let second = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    second.wait_ready().await;
    eventually("every License checked", Duration::from_secs(30), || async {
        (second.metric("keyward_reconcile_total").unwrap_or(0.0) >= LICENSES as f64).then_some(())
    })
    .await;
    let checked = started.elapsed();
    eprintln!("restart over {LICENSES} reconciled Licenses: every one checked {checked:?} after start");
    assert!(checked < Duration::from_secs(10), "{checked:?}");
    // A write would follow its reconcile within milliseconds; two quiet seconds show none came.
    common::holds_for("no write after the restart", Duration::from_secs(2), || async {
        common::apiserver_writes(&client).await == before
    })
    .await;

    // A full resync: another vendor's key added to the trusted keys re-verifies every License,
    // and nothing about any of them changed. The key Secret they share is unchanged since it
    // was read: not one of them reads it again.
    let gets_before = secret_gets(&client).await;
    let other = Vendor::new("other-vendor");
    let (from, to) = (other.trust_dir.path().join("other-vendor.pem"), vendor.trust_dir.path());
    std::fs::copy(&from, to.join("other-vendor.pem")).unwrap();
    eventually("every License checked again", Duration::from_secs(30), || async {
        (second.metric("keyward_reconcile_total").unwrap_or(0.0) >= 2.0 * LICENSES as f64).then_some(())
    })
    .await;
    assert_eq!(second.metric("keyward_trusted_keys"), Some(2.0));
    common::holds_for("no write after the full resync", Duration::from_secs(2), || async {
        common::apiserver_writes(&client).await == before
    })
    .await;
    assert_eq!(secret_gets(&client).await, gets_before, "the full resync read a Secret");

    // A renewal of that shared key reaches every License: none reconciles with the copy it read.
    let renewed = vendor.renewed("zizq", "enterprise");
    put_secret(&client, &ns.name, "lic", "license", renewed.as_bytes()).await;
    eventually("every License on the renewed key", Duration::from_secs(60), || async {
        let list = licenses.list(&Default::default()).await.ok()?;
        let tiers: Vec<_> = list.items.iter().map(|l| l.status.as_ref()?.tier.clone()).collect();
        tiers.iter().all(|t| t.as_deref() == Some("enterprise")).then_some(())
    })
    .await;
}

/// The GET requests for Secrets the API server has served.
async fn secret_gets(client: &kube::Client) -> u64 {
    let gets = common::apiserver_requests(client, &["GET"]).await;
    gets.get("GET secrets/").copied().unwrap_or(0)
}
