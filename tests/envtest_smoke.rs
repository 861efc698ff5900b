//! The test control plane is real: CRDs establish, watches deliver, the status subresource and
//! printer columns work, and RBAC refuses a non-admin user.

mod common;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const CRD_NAME: &str = "gadgets.smoke.keyward.dev";

async fn install_smoke_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": "smoke.keyward.dev",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Colour", "type": "string", "jsonPath": ".spec.colour"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"colour": {"type": "string"}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
                }}}
            }]
        }
    }))
    .unwrap();
    let ssapply = PatchParams::apply("keyward-tests").force();
    crds.patch(CRD_NAME, &ssapply, &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, CRD_NAME, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");
}

fn gadget_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("smoke.keyward.dev", "v1", "Gadget"))
}

#[tokio::test]
async fn crd_watch_status_and_printer_columns() {
    let client = common::client().await;
    install_smoke_crd(&client).await;
    let ns = common::TestNamespace::new("smoke").await;
    let ar = gadget_resource();
    let gadgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);

    // Start watching before creating, so the object must arrive through the watch.
    let mut stream = watcher(gadgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut obj = DynamicObject::new("g1", &ar);
    obj.data = json!({"spec": {"colour": "teal"}});
    gadgets
        .create(&PostParams::default(), &obj)
        .await
        .expect("create gadget");
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let o = stream.next().await.expect("stream open").expect("watch event");
            if o.metadata.name.as_deref() == Some("g1") {
                return o;
            }
        }
    })
    .await
    .expect("gadget seen by the watcher");
    assert_eq!(seen.data["spec"]["colour"], "teal");

    // Status goes through its own subresource.
    let status = json!({"status": {"phase": "Ready"}});
    gadgets
        .patch_status("g1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    let got = gadgets.get("g1").await.unwrap();
    assert_eq!(got.data["status"]["phase"], "Ready");

    let table = common::kubectl(&["get", "gadgets", "-n", &ns.name]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "COLOUR", "PHASE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["g1", "teal", "Ready"], "{table}");
}

#[tokio::test]
async fn rbac_refuses_the_non_admin_user() {
    let Some(developer) = common::developer_client_or_skip("rbac_refuses_the_non_admin_user").await else {
        return;
    };
    let ns = common::TestNamespace::new("rbac").await;
    let secrets: Api<Secret> = Api::namespaced(developer, &ns.name);
    let err = secrets
        .list(&Default::default())
        .await
        .expect_err("developer must not list secrets");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other}"),
    }
    // The admin can.
    let admin: Api<Secret> = Api::namespaced(common::client().await, &ns.name);
    admin.list(&Default::default()).await.expect("admin lists secrets");
}
