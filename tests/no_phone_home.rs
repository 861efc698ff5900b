//! No phone-home: through a whole scenario (validate, roll out, rotate, refuse, delete), the
//! operator opens no network connection but to the API server. Every `connect` and addressed
//! `sendto`/`sendmsg` of the operator process and its threads is recorded by strace.

mod common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use keyward::api::License;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use common::operator::*;
use common::{TestNamespace, client, eventually};

/// The `ip:port` of every IPv4/IPv6 address a traced process connected or sent to.
fn network_peers(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|l| l.contains("connect(") || l.contains("sendto(") || l.contains("sendmsg("))
        .filter(|l| l.contains("AF_INET"))
        .map(|l| {
            let port = l
                .split("htons(")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or("?");
            let addr = l
                .split("inet_addr(\"")
                .nth(1)
                .or_else(|| l.split("inet_pton(AF_INET6, \"").nth(1))
                .and_then(|r| r.split('"').next())
                .unwrap_or("?");
            format!("{addr}:{port}")
        })
        .collect()
}

fn api_server() -> String {
    let kubeconfig = common::env().kubeconfig.clone().expect("a kubeconfig");
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server in kubeconfig");
    server.trim().to_string()
}

fn trace(program: &[&str], out: &Path) -> String {
    let status = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o"])
        .arg(out)
        .args(program)
        .status()
        .expect("run strace");
    let _ = status;
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn the_audit_sees_a_connection_elsewhere() {
    // The check can fail: a process that connects anywhere but the API server is caught.
    let dir = tempfile::tempdir().unwrap();
    let recorded = trace(
        &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.2/9 || true"],
        &dir.path().join("t"),
    );
    assert_eq!(network_peers(&recorded), ["127.0.0.2:9"], "{recorded}");
}

#[tokio::test]
async fn the_operator_talks_only_to_the_api_server() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("no-phone-home").await;
    let vendor = Vendor::new("vendor-2026");
    let dir = tempfile::tempdir().unwrap();
    let trace_file = dir.path().join("operator.trace");
    let trace_path = trace_file.display().to_string();
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_with_targets(&client, &ns.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let mut operator = Operator::start_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
            &trace_path,
        ],
        &ns.name,
        vendor.trust_dir.path(),
        &[],
    );
    operator.wait_ready().await;
    wait_license(&client, &ns.name, "zizq", "rolled out", |l| {
        condition(l, "RolledOut").is_some_and(|c| c.0 == "True")
    })
    .await;
    rotate_and_wait(&client, &ns.name, "zizq", &vendor, "enterprise").await;
    put_secret(&client, &ns.name, "lic", "license", b"not a license").await;
    wait_license(&client, &ns.name, "zizq", "refused", |l| {
        state(l).as_deref() == Some("Invalid")
    })
    .await;
    Api::<License>::namespaced(client.clone(), &ns.name)
        .delete("zizq", &DeleteParams::default())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    eventually("target removed", Duration::from_secs(30), || async {
        secrets.get_opt("zizq-license").await.unwrap().is_none().then_some(())
    })
    .await;
    operator.assert_running();
    let status = operator.terminate();
    assert!(status.success(), "{status:?}");

    let recorded = std::fs::read_to_string(&trace_file).unwrap();
    let peers = network_peers(&recorded);
    let api = api_server();
    assert!(!peers.is_empty(), "the trace saw no connection at all:\n{recorded}");
    assert!(peers.contains(&api), "the API server {api} not among {peers:?}");
    let elsewhere: Vec<&String> = peers.iter().filter(|p| **p != api).collect();
    assert!(
        elsewhere.is_empty(),
        "connections beyond the API server {api}: {elsewhere:?}\n{recorded}"
    );
}
