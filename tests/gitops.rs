//! GitOps tools read a License's health from the kstatus conditions: `kubectl wait`, and Helm 4's
//! `--wait` watcher, on the real binaries against a real API server.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use keyward::license::Format;

use common::operator::*;
use common::{TestNamespace, client};

fn kubectl(args: &[&str]) -> Output {
    Command::new(common::kubectl_bin())
        .args(common::kubeconfig_args())
        .args(args)
        .output()
        .expect("run kubectl")
}

fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn kubectl_wait_succeeds_for_a_valid_license_and_times_out_for_a_refused_one() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("gitops-wait").await;
    let vendor = Vendor::new("vendor-2026");
    let token = vendor.token("zizq");
    put_secret(&client, &ns.name, "good", "license", token.as_bytes()).await;
    put_secret(&client, &ns.name, "bad", "license", tampered(&token).as_bytes()).await;
    create_license(&client, &ns.name, "good", "good", "zizq").await;
    let created = Timestamp::now();
    create_license(&client, &ns.name, "bad", "bad", "zizq").await;
    let _operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);

    let ok = kubectl(&[
        "wait",
        "--for=condition=Ready",
        "license/good",
        "-n",
        &ns.name,
        "--timeout=30s",
    ]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // The refused one is Stalled at once, with the refusal's reason...
    let l = wait_license(&client, &ns.name, "bad", "Stalled", |l| {
        condition(l, "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(condition(&l, "Stalled").unwrap().1, "SignatureInvalid");
    assert!(
        Timestamp::now().duration_since(created) < jiff::SignedDuration::from_secs(10),
        "Stalled was not set at once"
    );
    let stalled = kubectl(&[
        "wait",
        "--for=condition=Stalled",
        "license/bad",
        "-n",
        &ns.name,
        "--timeout=5s",
    ]);
    assert!(stalled.status.success(), "{}", String::from_utf8_lossy(&stalled.stderr));
    // ... and never Ready.
    let started = Instant::now();
    let refused = kubectl(&[
        "wait",
        "--for=condition=Ready",
        "license/bad",
        "-n",
        &ns.name,
        "--timeout=3s",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("timed out"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "it waited the whole timeout"
    );
    // The valid one carries neither abnormal condition.
    let good = wait_license(&client, &ns.name, "good", "Ready", |l| condition(l, "Ready").is_some()).await;
    assert!(condition(&good, "Stalled").is_none() && condition(&good, "Reconciling").is_none());
}

fn helm_install(release: &str, ns: &str, key: &str, timeout: &str) -> Child {
    let chart = common::repo_root().join("tests/fixtures/license-chart");
    Command::new(common::helm_bin())
        .args(["install", release])
        .arg(chart)
        .args(["--namespace", ns, "--wait", "--timeout", timeout])
        .args(common::kubeconfig_args())
        .args(["--set-string", &format!("key={key}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run helm")
}

fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn stderr_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn helm_wait_returns_once_the_license_is_reconciled_and_fails_fast_when_refused() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("gitops-helm").await;
    let vendor = Vendor::new("vendor-2026");
    let token = vendor.sign(&vendor.claims("zizq", Some(365 * 86_400)), &Format::Jwt);

    // No operator yet: Helm's watcher must keep waiting for the License.
    let mut install = helm_install("good", &ns.name, &token, "120s");
    wait_license(&client, &ns.name, "good", "the chart's License created", |_| true).await;
    // Helm created the License; with nothing reconciling it, two more seconds of waiting show
    // that Helm waits for the License itself, not just for its creation.
    assert!(
        exit_within(&mut install, Duration::from_secs(2)).is_none(),
        "helm returned before the License was reconciled"
    );
    let _operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    let status =
        exit_within(&mut install, Duration::from_secs(60)).expect("helm returned once the License was reconciled");
    assert!(status.success(), "{}", stderr_of(install));
    let l = wait_license(&client, &ns.name, "good", "Ready", |_| true).await;
    assert_eq!(condition(&l, "Ready").map(|c| c.0).as_deref(), Some("True"));

    // A refused key: Stalled=True is kstatus's Failed, and Helm stops waiting long before its timeout.
    let started = Instant::now();
    let mut refused = helm_install("bad", &ns.name, &tampered(&token), "300s");
    let status = exit_within(&mut refused, Duration::from_secs(90)).expect("helm failed fast on a Stalled License");
    let text = stderr_of(refused);
    assert!(!status.success(), "{text}");
    assert!(started.elapsed() < Duration::from_secs(90), "{text}");
    assert!(text.contains("License") || text.contains("bad"), "{text}");
}
