//! The start-up sweep deletes Secrets cluster-wide, so it must delete exactly the orphans: target
//! Secrets whose License no longer exists (or was recreated under another UID), and nothing else:
//! not the targets of live Licenses of this or another installation, not Secrets that merely look
//! similar. A test binary of its own: the sweep sees the whole cluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use common::operator::*;
use common::{TestNamespace, client, eventually};

async fn secret(client: &Client, ns: &str, name: &str, labels: serde_json::Value, annotations: serde_json::Value) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "stringData": {"license": "x"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// A Secret labelled and annotated as Keyward's target of `owner` (namespace/name) with `uid`.
async fn target(client: &Client, ns: &str, name: &str, owner: &str, uid: &str) {
    secret(
        client,
        ns,
        name,
        json!({"app.kubernetes.io/managed-by": "keyward", "keyward.dev/owner-uid": uid}),
        json!({"keyward.dev/license": owner}),
    )
    .await;
}

async fn names(client: &Client, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .filter(|n| !n.starts_with("default-token"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_start_up_sweep_deletes_exactly_the_orphans() {
    let client = client().await;
    install_crd(&client).await;
    let mine = TestNamespace::new("sweep-mine").await;
    let theirs = TestNamespace::new("sweep-theirs").await;
    let vendor = Vendor::new("vendor-2026");
    let alive = create_license(&client, &mine.name, "alive", "lic", "zizq").await;
    // A License of another installation (another shard's selector): alive, not ours to reconcile.
    let other = create_license(&client, &theirs.name, "other-install", "lic", "zizq").await;
    let (alive_uid, other_uid) = (alive.uid().unwrap(), other.uid().unwrap());
    let at = |ns: &str, name: &str| format!("{ns}/{name}");

    target(&client, &mine.name, "kept-alive", &at(&mine.name, "alive"), &alive_uid).await;
    target(
        &client,
        &mine.name,
        "orphan-deleted",
        &at(&mine.name, "gone"),
        "uid-of-a-deleted-license",
    )
    .await;
    target(
        &client,
        &mine.name,
        "orphan-recreated",
        &at(&mine.name, "alive"),
        "uid-before-recreation",
    )
    .await;
    target(
        &client,
        &theirs.name,
        "kept-other-install",
        &at(&theirs.name, "other-install"),
        &other_uid,
    )
    .await;
    target(
        &client,
        &theirs.name,
        "orphan-elsewhere",
        &at(&theirs.name, "missing"),
        "uid-x",
    )
    .await;
    // Enough live Licenses of the other installation with targets that the sweep lists their
    // namespace instead of looking each owner up (`LIST_FROM` in `rollout/cleanup.rs`), and an
    // orphan among them whose name is alive under another UID: the list must keep exactly the
    // live ones.
    let mut kept_theirs = vec!["kept-other-install".to_string()];
    for i in 0..16 {
        let live = create_license(&client, &theirs.name, &format!("other-{i}"), "lic", "zizq").await;
        let name = format!("kept-other-{i:02}");
        target(
            &client,
            &theirs.name,
            &name,
            &at(&theirs.name, &format!("other-{i}")),
            &live.uid().unwrap(),
        )
        .await;
        kept_theirs.push(name);
    }
    kept_theirs.sort();
    target(
        &client,
        &theirs.name,
        "orphan-recreated-elsewhere",
        &at(&theirs.name, "other-0"),
        "uid-before-recreation-elsewhere",
    )
    .await;
    // Look-alikes: Keyward's label without its owner annotation; the annotation under another
    // manager; another manager's label value.
    secret(
        &client,
        &mine.name,
        "lookalike-label",
        json!({"app.kubernetes.io/managed-by": "keyward"}),
        json!({}),
    )
    .await;
    secret(
        &client,
        &mine.name,
        "lookalike-annotation",
        json!({"app.kubernetes.io/managed-by": "helm", "keyward.dev/owner-uid": "uid-x"}),
        json!({"keyward.dev/license": at(&mine.name, "gone")}),
    )
    .await;
    secret(
        &client,
        &mine.name,
        "lookalike-manager",
        json!({"app.kubernetes.io/managed-by": "keyward-legacy", "keyward.dev/owner-uid": "uid-x"}),
        json!({"keyward.dev/license": at(&mine.name, "gone")}),
    )
    .await;

    // Cluster-wide, reconciling nothing here (its selector matches no License): only the sweep acts.
    let operator = Operator::start_cluster_wide(
        vendor.trust_dir.path(),
        &["--license-selector", "keyward-test/sweep=none"],
    );
    eventually("the sweep's report", Duration::from_secs(30), || async {
        operator.logs().contains("removed=4").then_some(())
    })
    .await;
    assert_eq!(
        BTreeMap::from([
            (mine.name.clone(), names(&client, &mine.name).await),
            (theirs.name.clone(), names(&client, &theirs.name).await),
        ]),
        BTreeMap::from([
            (
                mine.name.clone(),
                vec![
                    "kept-alive".to_string(),
                    "lookalike-annotation".into(),
                    "lookalike-label".into(),
                    "lookalike-manager".into(),
                ]
            ),
            (theirs.name.clone(), kept_theirs),
        ])
    );
}
