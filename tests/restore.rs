//! Disaster recovery: etcd restored from a snapshot, or wiped and refilled by a GitOps tool,
//! under a running operator. Every resourceVersion goes back in time; the operator must notice on
//! its own and converge on what happens afterwards. A test binary of its own: it rewinds the
//! whole control plane.

mod common;

use std::time::{Duration, Instant};

use keyward::api::License;
use keyward::license::{KeySet, TrustedKey, VerifyOptions, verify};
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::json;

use common::operator::*;
use common::{TestNamespace, client, eventually};

/// One test at a time: each rewinds the shared control plane.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The deadline the reliability report promises for convergence after a rewind.
const CONVERGE: Duration = Duration::from_secs(60);

/// Every target holds a key that verifies (or none).
async fn assert_targets_valid(client: &Client, vendor: &Vendor, namespaces: &[&str]) {
    let mut keys = KeySet::new();
    keys.insert(TrustedKey::new(Some(&vendor.kid), vendor.key.verifying_key()).unwrap())
        .unwrap();
    for ns in namespaces {
        if let Some(token) = target_token(client, ns, "zizq-license").await {
            let at = VerifyOptions::at(jiff::Timestamp::now()).product(Some("zizq"));
            assert!(verify(token.as_bytes(), &keys, &at).is_ok(), "{ns}: an invalid key");
        }
    }
}

/// After a rewind: a new License, a rotation and a deletion all converge within [`CONVERGE`].
async fn converges_after_rewind(client: &Client, vendor: &Vendor, home: &str, fresh: &str) -> Duration {
    let started = Instant::now();
    put_secret(client, fresh, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_with_targets(client, fresh, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let rotated = vendor.renewed("zizq", "ultimate");
    put_secret(client, home, "lic", "license", rotated.as_bytes()).await;
    eventually("the new License rolled out", CONVERGE, || async {
        target_token(client, fresh, "zizq-license").await.map(|_| ())
    })
    .await;
    eventually("the rotation rolled out", CONVERGE, || async {
        (target_token(client, home, "zizq-license").await.as_deref() == Some(rotated.as_str())).then_some(())
    })
    .await;
    Api::<License>::namespaced(client.clone(), fresh)
        .delete("zizq", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted License's target removed", CONVERGE, || async {
        target_token(client, fresh, "zizq-license")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn after_etcd_is_restored_from_a_snapshot_the_operator_converges_without_a_restart() {
    let _serial = SERIAL.lock().await;
    if common::env().dir.is_none() {
        return common::skip(
            "after_etcd_is_restored_from_a_snapshot",
            "needs a control plane of its own",
        );
    }
    let client = client().await;
    install_crd(&client).await;
    let home = TestNamespace::new("restore-home").await;
    let later = TestNamespace::new("restore-later").await;
    let fresh = TestNamespace::new("restore-fresh").await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &home.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_with_targets(&client, &home.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let mut operator = Operator::start_cluster_wide(vendor.trust_dir.path(), &[]);
    eventually("rolled out", CONVERGE, || async {
        target_token(&client, &home.name, "zizq-license").await.map(|_| ())
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("etcd.snapshot");
    assert!(common::control_plane_with(
        "etcd-snapshot",
        &[snapshot.to_str().unwrap()]
    ));
    // Changes the snapshot does not have: a License and a rotation, converged.
    put_secret(&client, &later.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_with_targets(&client, &later.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let enterprise = vendor.renewed("zizq", "enterprise");
    put_secret(&client, &home.name, "lic", "license", enterprise.as_bytes()).await;
    eventually("converged before the restore", CONVERGE, || async {
        let home_done = target_token(&client, &home.name, "zizq-license").await.as_deref() == Some(enterprise.as_str());
        (home_done && target_token(&client, &later.name, "zizq-license").await.is_some()).then_some(())
    })
    .await;

    assert!(common::control_plane_with(
        "etcd-restore",
        &[snapshot.to_str().unwrap()]
    ));
    let client = common::client().await;
    assert_targets_valid(&client, &vendor, &[&home.name, &later.name]).await;
    let took = converges_after_rewind(&client, &vendor, &home.name, &fresh.name).await;
    eprintln!("after the restore: new License, rotation and deletion converged in {took:?}");
    assert_targets_valid(&client, &vendor, &[&home.name, &later.name, &fresh.name]).await;
    operator.assert_running();
    // Convergence may come first (a watch that finds its version ahead of the store relists on
    // its own); the rewind is still noticed and logged, two checks after the store is back.
    eventually("the rewind logged", Duration::from_secs(30), || async {
        operator.logs().contains("resourceVersion went back").then_some(())
    })
    .await;
}

#[tokio::test]
async fn after_etcd_is_wiped_and_refilled_by_gitops_the_operator_converges_without_a_restart() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;

    let _serial = SERIAL.lock().await;
    if common::env().dir.is_none() {
        return common::skip(
            "after_etcd_is_wiped_and_refilled_by_gitops",
            "needs a control plane of its own",
        );
    }
    let client = client().await;
    install_crd(&client).await;
    let home = TestNamespace::new("wipe-home").await;
    let vendor = Vendor::new("vendor-2026");
    let token = vendor.token("zizq");
    put_secret(&client, &home.name, "lic", "license", token.as_bytes()).await;
    create_license_with_targets(&client, &home.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let mut operator = Operator::start_cluster_wide(vendor.trust_dir.path(), &[]);
    eventually("rolled out", CONVERGE, || async {
        target_token(&client, &home.name, "zizq-license").await.map(|_| ())
    })
    .await;

    // An empty store, refilled the way a GitOps tool would: the CRD, the namespaces, the Secret
    // and the License, as they are in Git.
    assert!(common::control_plane("etcd-wipe"));
    let client = common::client().await;
    common::kubectl(&["apply", "-f", &common::repo_root().join("crds").display().to_string()]);
    let fresh = format!("{}-fresh", home.name);
    for ns in [&home.name, &fresh] {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        eventually("namespace re-created", CONVERGE, || async {
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &namespace)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }
    eventually("the CRD served again", CONVERGE, || async {
        Api::<License>::all(client.clone())
            .list(&Default::default())
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    put_secret(&client, &home.name, "lic", "license", token.as_bytes()).await;
    create_license_with_targets(&client, &home.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    eventually("the refilled License rolled out", CONVERGE, || async {
        (target_token(&client, &home.name, "zizq-license").await.as_deref() == Some(token.as_str())).then_some(())
    })
    .await;
    let took = converges_after_rewind(&client, &vendor, &home.name, &fresh).await;
    eprintln!("after the wipe: new License, rotation and deletion converged in {took:?}");
    assert_targets_valid(&client, &vendor, &[&home.name, &fresh]).await;
    operator.assert_running();
    // Convergence may come first (a watch that finds its version ahead of the store relists on
    // its own); the rewind is still noticed and logged, two checks after the store is back.
    eventually("the rewind logged", Duration::from_secs(30), || async {
        operator.logs().contains("resourceVersion went back").then_some(())
    })
    .await;
}
