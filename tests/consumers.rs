//! Workloads that would never see a renewal: Pods reading a target Secret through `subPath`,
//! `env` or `envFrom`, started before the current key was rolled out. On a real API server, with
//! Pod objects whose status this test writes as a kubelet would (there is no node here).

mod common;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use keyward::api::License;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use common::eventually;
use common::operator::*;

/// A running Pod reading `secret` the given way, started at `started`.
async fn pod(client: &Client, ns: &str, name: &str, secret: &str, how: &str, started: Timestamp) {
    let mut container = json!({"name": "app", "image": "example.invalid/zizq:1"});
    let mut volumes = json!([]);
    match how {
        "volume" | "subPath" => {
            let mut mount = json!({"name": "lic", "mountPath": "/etc/zizq/license"});
            if how == "subPath" {
                mount["subPath"] = "license".into();
            }
            container["volumeMounts"] = json!([mount]);
            volumes = json!([{"name": "lic", "secret": {"secretName": secret}}]);
        }
        "env" => {
            container["env"] =
                json!([{"name": "LICENSE", "valueFrom": {"secretKeyRef": {"name": secret, "key": "license"}}}])
        }
        "envFrom" => container["envFrom"] = json!([{"secretRef": {"name": secret}}]),
        _ => unreachable!(),
    }
    let manifest: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [container], "volumes": volumes}
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &manifest).await.unwrap();
    let status = json!({"status": {"phase": "Running", "startTime": started.to_string()}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

fn consumers(l: &License) -> Option<Value> {
    let c = l.status.as_ref()?.rollout.as_ref()?.consumers.as_ref()?;
    Some(serde_json::to_value(c).unwrap())
}

async fn restart_events(client: &Client, ns: &str) -> usize {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RestartRequired"))
        .count()
}

#[tokio::test]
async fn pods_that_would_never_see_a_renewal_are_reported() {
    let (client, ns, _vendor, operator, l) = rolled_out("consumers").await;
    let since: Timestamp = l
        .status
        .unwrap()
        .rollout
        .unwrap()
        .revision_since
        .unwrap()
        .parse()
        .unwrap();
    let before = since - SignedDuration::from_hours(1);

    // Created after the License settled: the Pod watch must wake it.
    for (name, how) in [
        ("by-volume", "volume"),
        ("by-subpath", "subPath"),
        ("by-env", "env"),
        ("by-envfrom", "envFrom"),
    ] {
        pod(&client, &ns.name, name, "zizq-license", how, before).await;
    }
    pod(&client, &ns.name, "unrelated", "something-else", "subPath", before).await;
    let expected = json!({"live": 1, "restartRequired": 3, "pods": [
        {"namespace": ns.name, "name": "by-env", "secretName": "zizq-license", "reads": ["env"]},
        {"namespace": ns.name, "name": "by-envfrom", "secretName": "zizq-license", "reads": ["envFrom"]},
        {"namespace": ns.name, "name": "by-subpath", "secretName": "zizq-license", "reads": ["subPath"]},
    ]});
    let l = wait_license(&client, &ns.name, "zizq", "three Pods need a restart", |l| {
        consumers(l).as_ref() == Some(&expected)
    })
    .await;
    let c = condition(&l, "ConsumersLive").unwrap();
    assert_eq!((c.0.as_str(), c.1.as_str()), ("False", "RestartRequired"));
    assert!(
        l.status_condition("ConsumersLive")
            .unwrap()
            .message
            .contains("by-subpath (subPath)"),
        "{:?}",
        l.status_condition("ConsumersLive")
    );
    assert_eq!(
        operator.metric(&format!(
            "keyward_license_consumers_restart_required{{namespace=\"{}\",name=\"zizq\"}}",
            ns.name
        )),
        Some(3.0)
    );
    let text = String::from_utf8(
        std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["status", "zizq", "-n", &ns.name])
            .args(common::kubeconfig_args())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("1 live, 3 need a restart") && text.contains("by-envfrom"),
        "{text}"
    );

    // One Warning per set of Pods, not per reconcile: reconciles with the same set add none.
    let events = eventually("a RestartRequired event", Duration::from_secs(10), || async {
        let n = restart_events(&client, &ns.name).await;
        (n > 0).then_some(n)
    })
    .await;
    let licenses: Api<License> = Api::namespaced(client.clone(), &ns.name);
    for i in 0..3 {
        let poke = json!({"metadata": {"annotations": {"keyward-test/poke": i.to_string()}}});
        licenses
            .patch("zizq", &PatchParams::default(), &Patch::Merge(&poke))
            .await
            .unwrap();
    }
    // Each poke is reconciled within milliseconds; two seconds cover all three.
    common::holds_for("no event per reconcile", Duration::from_secs(2), || async {
        restart_events(&client, &ns.name).await == events
    })
    .await;

    // A frozen reader started after the rollout read the current key: it is live, not flagged.
    pod(
        &client,
        &ns.name,
        "late-subpath",
        "zizq-license",
        "subPath",
        Timestamp::now() + SignedDuration::from_hours(1),
    )
    .await;
    wait_license(&client, &ns.name, "zizq", "the late Pod is live", |l| {
        consumers(l).is_some_and(|c| c["live"] == 2 && c["restartRequired"] == 3)
    })
    .await;

    // Restarted (here: deleted), the stale Pods no longer hold an older key.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for name in ["by-subpath", "by-env", "by-envfrom"] {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    let l = wait_license(&client, &ns.name, "zizq", "all live", |l| {
        consumers(l).is_some_and(|c| c["restartRequired"] == 0)
    })
    .await;
    assert_eq!(consumers(&l).unwrap()["live"], 2);
    let c = condition(&l, "ConsumersLive").unwrap();
    assert_eq!((c.0.as_str(), c.1.as_str()), ("True", "AllLive"));
}
