//! End to end on a real node: the chart's operator Pod (the image `make image-tars` built) and the
//! quickstart's workload Pods, with a renewal reaching the running workload without a restart.
//!
//! Every test here needs the node (`common::node::start`); where it cannot run (not Linux, not
//! root, no images) each test is recorded as skipped.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::node::{self, Node};
use common::operator::{
    Vendor, condition, free_port, install_crd, put_secret, run_id, target_token, wait_license, wait_license_within,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyward::api::License;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

const SELECTOR_LABEL: &str = "keyward.dev/test-run";

fn helm_ok(args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    let kubeconfig = common::kubeconfig_args();
    all.extend(kubeconfig.iter().map(String::as_str));
    let (ok, text) = common::helm(&all);
    assert!(ok, "helm {args:?} failed:\n{text}");
    text
}

/// One installation of the chart on the node, reconciling only Licenses labelled with its run id.
struct Release {
    name: String,
    namespace: String,
    run: String,
}

impl Release {
    /// `helm install --wait` with the image built here, on the node's network (the node has no
    /// Pod network), its servers on loopback, and the API server reached at the node's address.
    async fn install(node: &Node, name: &str, namespace: &str, run: &str, trusted: &[&Vendor], extra: &[&str]) -> Self {
        let (repository, tag) = node::image_ref("keyward");
        let values = serde_json::json!({
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "hostNetwork": true,
            "listenAddress": "127.0.0.1",
            "metrics": {"port": free_port()},
            "health": {"port": free_port()},
            "licenseSelector": format!("{SELECTOR_LABEL}={run}"),
            "extraEnv": [
                {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": node.apiserver_port()},
            ],
        });
        let values_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(values_file.path(), values.to_string()).unwrap();
        let keys: Vec<(String, tempfile::TempDir)> = trusted.iter().map(|v| trusted_key_file(v)).collect();
        let chart = common::chart();
        // `--wait`, as users install it: helm returns once the operator Pod is Ready.
        let mut args = vec![
            "install",
            name,
            &chart,
            "--namespace",
            namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(["-f".into(), values_file.path().display().to_string()]);
        for set in extra {
            args.extend(["--set".into(), set.to_string()]);
        }
        for (set, _dir) in &keys {
            args.extend(["--set-file".into(), set.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        helm_ok(&args);
        Self {
            name: name.into(),
            namespace: namespace.into(),
            run: run.into(),
        }
    }

    fn selector(&self) -> String {
        format!("app.kubernetes.io/instance={}", self.name)
    }

    fn deployment(&self) -> String {
        format!("{}-keyward", self.name)
    }
}

/// `trustedKeys.KID=FILE` for `--set-file`, with the directory that holds FILE.
fn trusted_key_file(vendor: &Vendor) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.pem");
    std::fs::copy(vendor.trust_dir.path().join(format!("{}.pem", vendor.kid)), &file).unwrap();
    (format!("trustedKeys.{}={}", vendor.kid, file.display()), dir)
}

/// A Secret `lic` and a License for it in `namespace`, labelled for `release`, rolled out to
/// `zizq-license`.
async fn license_for(client: &Client, release: &Release, namespace: &str, key: &str) {
    put_secret(client, namespace, "lic", "license", key.as_bytes()).await;
    common::operator::create_license_from(
        client,
        namespace,
        serde_json::json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "zizq", "labels": {SELECTOR_LABEL: release.run}},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
                     "rollout": {"targets": [{"secretName": "zizq-license"}]}}
        }),
    )
    .await;
}

/// The node with one release of the chart on it, trusting `vendor-2026`, and its operator Pod
/// ready; or a recorded skip.
async fn operator_on_node(test: &str) -> Option<(Node, Client, Vendor, Release)> {
    let node = node::start(test)?;
    let client = common::client().await;
    install_crd(&client).await;
    let vendor = Vendor::new("vendor-2026");
    let run = run_id();
    let release = Release::install(
        &node,
        &format!("kw-{run}"),
        &format!("keyward-{run}"),
        &run,
        &[&vendor],
        &[],
    )
    .await;
    node::ready_pods(&client, &release.namespace, &release.selector(), 1).await;
    Some((node, client, vendor, release))
}

fn key_valid(l: &License) -> bool {
    condition(l, "Valid").is_some_and(|c| c.0 == "True")
}

#[tokio::test]
async fn chart_runs_the_operator_pod_hardened_and_upgrades_and_uninstalls() {
    let Some((node, client, vendor, release)) =
        operator_on_node("chart_runs_the_operator_pod_hardened_and_upgrades_and_uninstalls").await
    else {
        return;
    };

    let pod = node::ready_pods(&client, &release.namespace, &release.selector(), 1)
        .await
        .remove(0);
    let container = pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].clone();
    let pid = node
        .container_pid(container.container_id.as_deref().unwrap())
        .expect("the operator's host pid");
    assert_eq!(
        node::process_uid(pid),
        Some(65532),
        "the operator runs as the chart's non-root user"
    );
    assert_eq!(
        node::root_is_read_only(pid),
        Some(true),
        "the operator's root filesystem is read-only"
    );

    // Reconciling with the chart's RBAC alone: a License in another namespace, rolled out there.
    let apps = common::TestNamespace::new("apps").await;
    license_for(&client, &release, &apps.name, &vendor.token("zizq")).await;
    wait_license(
        &client,
        &apps.name,
        "zizq",
        "rolled out by the in-cluster operator",
        |l| condition(l, "RolledOut").is_some_and(|c| c.0 == "True"),
    )
    .await;

    // A key from a vendor the installation does not trust yet, then `helm upgrade` trusting it.
    let next_vendor = Vendor::new("vendor-2027");
    put_secret(
        &client,
        &apps.name,
        "lic",
        "license",
        next_vendor.token("zizq").as_bytes(),
    )
    .await;
    wait_license(&client, &apps.name, "zizq", "the untrusted key refused", |l| {
        condition(l, "Valid").is_some_and(|c| c.0 == "False")
    })
    .await;
    let keys = [trusted_key_file(&vendor), trusted_key_file(&next_vendor)];
    let chart = common::chart();
    let mut args = vec![
        "upgrade",
        &release.name,
        &chart,
        "--namespace",
        &release.namespace,
        "--reuse-values",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for (set, _) in &keys {
        args.extend(["--set-file".into(), set.clone()]);
    }
    helm_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The upgrade replaces the operator Pod (the trusted keys' checksum changed): the old one
    // stops, the new one starts, takes the Lease and syncs before it reconciles.
    wait_license_within(
        &client,
        &apps.name,
        "zizq",
        "the key valid after the upgrade",
        Duration::from_secs(90),
        key_valid,
    )
    .await;

    helm_ok(&["uninstall", &release.name, "--namespace", &release.namespace, "--wait"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    common::eventually("the operator Pods gone", Duration::from_secs(60), || async {
        pods.list(&ListParams::default().labels(&release.selector()))
            .await
            .ok()
            .filter(|l| l.items.is_empty())
    })
    .await;
    let deployment = release.deployment();
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &release.namespace)
            .get_opt(&deployment)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&deployment)
            .await
            .unwrap()
            .is_none()
    );
    // Helm keeps CRDs (and with them every License) on uninstall.
    assert!(
        Api::<CustomResourceDefinition>::all(client.clone())
            .get_opt("licenses.keyward.dev")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<License>::namespaced(client.clone(), &apps.name)
            .get_opt("zizq")
            .await
            .unwrap()
            .is_some()
    );
}

/// The quickstart's workload, on the node's network (the only change the node needs).
fn apply_quickstart_workload(namespace: &str) {
    let workload = common::repo_root().join("examples/quickstart/workload.yaml");
    let patched = common::kubectl(&[
        "patch",
        "--local",
        "-f",
        &workload.display().to_string(),
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"hostNetwork":true}}}}"#,
        "-o",
        "yaml",
    ]);
    common::kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], &patched);
}

/// What each workload Pod shows: its mounted key and its log.
struct Seen {
    key: Vec<u8>,
    log: String,
}

fn seen(node: &Node, pod: &Pod) -> Seen {
    Seen {
        key: node.mounted_secret(pod, "license", "license").unwrap_or_default(),
        log: node.pod_log(pod, "zizq"),
    }
}

async fn current_pods(client: &Client, namespace: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels("app=zizq"))
        .await
        .unwrap()
        .items
}

fn uids_and_restarts(pods: &[Pod]) -> BTreeMap<String, i32> {
    pods.iter()
        .map(|p| (p.metadata.uid.clone().unwrap(), node::restarts(p)))
        .collect()
}

#[tokio::test]
async fn quickstart_workload_takes_a_renewal_live_and_never_sees_a_tampered_key() {
    let Some((node, client, vendor, release)) =
        operator_on_node("quickstart_workload_takes_a_renewal_live_and_never_sees_a_tampered_key").await
    else {
        return;
    };
    let run = release.run.clone();

    // The application team's side, as examples/README.md tells it.
    let apps = common::TestNamespace::new("quickstart").await;
    let ns = apps.name.as_str();
    let first = vendor.token("zizq");
    common::kubectl(&[
        "create",
        "secret",
        "generic",
        "acme-license",
        "-n",
        ns,
        &format!("--from-literal=license={first}"),
    ]);
    let license = common::repo_root().join("examples/quickstart/license.yaml");
    common::kubectl(&["apply", "-n", ns, "-f", &license.display().to_string()]);
    common::kubectl(&["label", "-n", ns, "license", "zizq", &format!("{SELECTOR_LABEL}={run}")]);
    let pem = vendor.trust_dir.path().join("vendor-2026.pem");
    common::kubectl(&[
        "create",
        "configmap",
        "zizq-vendor-key",
        "-n",
        ns,
        &format!("--from-file=vendor.pem={}", pem.display()),
    ]);
    apply_quickstart_workload(ns);

    let pods = node::ready_pods(&client, ns, "app=zizq", 2).await;
    for pod in &pods {
        common::eventually(
            "the workload validated the first key",
            Duration::from_secs(60),
            || async {
                let s = seen(&node, pod);
                (s.key == first.as_bytes() && s.log.contains("license validated")).then_some(())
            },
        )
        .await;
    }
    let before = uids_and_restarts(&current_pods(&client, ns).await);

    // The renewal: the Secret the vendor's key lives in changes; nothing else is touched.
    let renewed = vendor.renewed("zizq", "enterprise");
    common::kubectl_with_input(
        &["apply", "-n", ns, "-f", "-"],
        &common::kubectl(&[
            "create",
            "secret",
            "generic",
            "acme-license",
            "-n",
            ns,
            &format!("--from-literal=license={renewed}"),
            "--dry-run=client",
            "-o",
            "yaml",
        ]),
    );
    for pod in &pods {
        common::eventually(
            "the renewal in every Pod's file and log",
            Duration::from_secs(30),
            || async {
                let s = seen(&node, pod);
                let changed = s.log.find("license key file changed, updating license")?;
                let validated_after = s.log[changed..].contains("license validated");
                (s.key == renewed.as_bytes() && validated_after && s.log.contains("enterprise")).then_some(())
            },
        )
        .await;
    }
    let after = uids_and_restarts(&current_pods(&client, ns).await);
    assert_eq!(before, after, "the same Pods, never restarted");
    assert!(after.values().all(|r| *r == 0), "no restarts: {after:?}");

    // A tampered key: refused, and no Pod ever sees it.
    let mut tampered = renewed.clone().into_bytes();
    let in_claims = renewed.find('.').unwrap() + 5;
    tampered[in_claims] = if tampered[in_claims] == b'A' { b'B' } else { b'A' };
    put_secret(&client, ns, "acme-license", "license", &tampered).await;
    wait_license(&client, ns, "zizq", "the tampered key refused", |l| {
        condition(l, "Valid").is_some_and(|c| c.0 == "False")
    })
    .await;
    let logs_before: Vec<String> = pods.iter().map(|p| seen(&node, p).log).collect();
    // The operator never writes the target once the key is refused; a nudged Pod would see a
    // write within a second, so five seconds of the same files and logs show nothing went out.
    common::holds_for("every Pod keeps the last good key", Duration::from_secs(5), || async {
        pods.iter().zip(&logs_before).all(|(pod, log)| {
            let s = seen(&node, pod);
            s.key == renewed.as_bytes() && &s.log == log
        })
    })
    .await;
    assert_eq!(
        target_token(&client, ns, "zizq-license").await.as_deref(),
        Some(renewed.as_str()),
        "the target the Pods mount still holds the last good key"
    );
    assert_eq!(uids_and_restarts(&current_pods(&client, ns).await), after);
}

#[tokio::test]
async fn deleting_the_leader_pod_hands_over() {
    let Some(node) = node::start("deleting_the_leader_pod_hands_over") else {
        return;
    };
    let client = common::client().await;
    install_crd(&client).await;
    let vendor = Vendor::new("vendor-2026");
    let run = run_id();
    let namespace = format!("keyward-{run}");
    // Two releases sharing the release namespace's Lease: on one node, two host-network replicas
    // of one Deployment would need the same ports.
    let releases = [
        Release::install(
            &node,
            &format!("kw-a-{run}"),
            &namespace,
            &run,
            &[&vendor],
            &["leaderElection.enabled=true"],
        )
        .await,
        Release::install(
            &node,
            &format!("kw-b-{run}"),
            &namespace,
            &run,
            &[&vendor],
            &["leaderElection.enabled=true"],
        )
        .await,
    ];
    let mut pods = Vec::new();
    for release in &releases {
        pods.extend(node::ready_pods(&client, &namespace, &release.selector(), 1).await);
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let holder = || async {
        leases
            .get_opt("keyward-leader")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let names: Vec<String> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    let leader = common::eventually("a leader among the two Pods", Duration::from_secs(60), || async {
        holder().await.filter(|h| names.contains(h))
    })
    .await;

    let apps = common::TestNamespace::new("apps").await;
    license_for(&client, &releases[0], &apps.name, &vendor.token("zizq")).await;
    wait_license(&client, &apps.name, "zizq", "reconciled by the first leader", key_valid).await;

    Api::<Pod>::namespaced(client.clone(), &namespace)
        .delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    // The standby, or the Pod the Deployment starts in the deleted one's place: whichever asks
    // first once the Lease is released.
    let next = common::eventually("another Pod took the Lease", Duration::from_secs(60), || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    // The Pod started in the deleted one's place may win the Lease while its caches still sync:
    // it must then become Ready as leader.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    common::eventually(
        &format!("the new leader {next} a ready operator Pod"),
        Duration::from_secs(60),
        || async { pods.get_opt(&next).await.ok().flatten().filter(node::is_ready) },
    )
    .await;
    common::operator::rotate_and_wait(&client, &apps.name, "zizq", &vendor, "enterprise").await;
}

/// A Pod with the workload's image reading `zizq-license` from `mount_path`, through `sub_path`
/// when given.
fn watcher_pod(name: &str, sub_path: Option<&str>, mount_path: &str, license_file: &str) -> Pod {
    let (repository, tag) = node::image_ref("license-watcher");
    let mut mount = serde_json::json!({"name": "license", "mountPath": mount_path, "readOnly": true});
    if let Some(sub_path) = sub_path {
        mount["subPath"] = sub_path.into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "zizq"}},
        "spec": {
            "hostNetwork": true,
            "containers": [{
                "name": "zizq", "image": format!("{repository}:{tag}"), "imagePullPolicy": "Never",
                "args": [format!("--license-file={license_file}"), "--public-key=/etc/zizq/vendor/vendor.pem", "--product=zizq"],
                "volumeMounts": [mount, {"name": "vendor-key", "mountPath": "/etc/zizq/vendor", "readOnly": true}]
            }],
            "volumes": [
                {"name": "license", "secret": {"secretName": "zizq-license"}},
                {"name": "vendor-key", "configMap": {"name": "zizq-vendor-key"}}
            ]
        }
    }))
    .unwrap()
}

/// The file as the container sees it, through its own mount namespace.
fn file_in_container(node: &Node, pod: &Pod, path: &str) -> Option<Vec<u8>> {
    let id = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .clone()?;
    let pid = node.container_pid(&id)?;
    std::fs::read(format!("/proc/{pid}/root{path}")).ok()
}

#[tokio::test]
async fn a_subpath_reader_really_keeps_the_old_key_and_is_reported() {
    let Some((node, client, vendor, release)) =
        operator_on_node("a_subpath_reader_really_keeps_the_old_key_and_is_reported").await
    else {
        return;
    };
    let run = release.run.clone();
    let apps = common::TestNamespace::new("subpath").await;
    let ns = apps.name.as_str();
    let first = vendor.token("zizq");
    put_secret(&client, ns, "lic", "license", first.as_bytes()).await;
    common::operator::create_license_from(
        &client,
        ns,
        serde_json::json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "zizq", "labels": {SELECTOR_LABEL: run}},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
                     "rollout": {"targets": [{"secretName": "zizq-license", "podSelector": {"matchLabels": {"app": "zizq"}}}]}}
        }),
    )
    .await;
    let pem = vendor.trust_dir.path().join("vendor-2026.pem");
    common::kubectl(&[
        "create",
        "configmap",
        "zizq-vendor-key",
        "-n",
        ns,
        &format!("--from-file=vendor.pem={}", pem.display()),
    ]);
    wait_license(&client, ns, "zizq", "rolled out", |l| {
        condition(l, "RolledOut").is_some_and(|c| c.0 == "True")
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let volume = watcher_pod("volume", None, "/etc/zizq/license", "/etc/zizq/license/license");
    let sub_path = watcher_pod(
        "sub-path",
        Some("license"),
        "/etc/zizq/license.key",
        "/etc/zizq/license.key",
    );
    for pod in [&volume, &sub_path] {
        pods.create(&kube::api::PostParams::default(), pod).await.unwrap();
    }
    let running = node::ready_pods(&client, ns, "app=zizq", 2).await;
    let by_name = |name: &str| {
        running
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap()
            .clone()
    };
    let (volume, sub_path) = (by_name("volume"), by_name("sub-path"));
    assert_eq!(
        file_in_container(&node, &sub_path, "/etc/zizq/license.key").as_deref(),
        Some(first.as_bytes())
    );

    common::operator::rotate_and_wait(&client, ns, "zizq", &vendor, "enterprise").await;
    let renewed = wait_license(&client, ns, "zizq", "the subPath reader reported", |l| {
        l.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .and_then(|r| r.consumers.as_ref())
            .is_some_and(|c| c.restart_required == 1 && c.live == 1)
    })
    .await;
    assert_eq!(
        condition(&renewed, "ConsumersLive").map(|c| c.1).as_deref(),
        Some("RestartRequired")
    );
    let current = target_token(&client, ns, "zizq-license").await.expect("the target");
    assert_ne!(current, first);
    common::eventually(
        "the volume reader holds the renewed key",
        Duration::from_secs(30),
        || async {
            (file_in_container(&node, &volume, "/etc/zizq/license/license").as_deref() == Some(current.as_bytes()))
                .then_some(())
        },
    )
    .await;
    // The kubelet has long refreshed the volume (the nudge reached both Pods); the subPath
    // reader's file is the one bound at its start.
    assert_eq!(
        file_in_container(&node, &sub_path, "/etc/zizq/license.key").as_deref(),
        Some(first.as_bytes()),
        "a subPath mount keeps the key its container started with"
    );
}
