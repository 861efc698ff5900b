//! Integration test harness: one real kube-apiserver + etcd per test binary, or a cluster you name.
//!
//! * `KEYWARD_TEST_KUBECONFIG=path` — use that control plane (the Makefile's, or your own)
//!   and its non-admin sibling `KEYWARD_TEST_DEVELOPER_KUBECONFIG` when set.
//! * `KEYWARD_TEST_USE_EXISTING_CLUSTER=1` — run against the cluster of `KUBECONFIG` (kind, k3d,
//!   a cloud cluster). Tests that need the test environment's non-admin user are skipped there.
//! * otherwise — `hack/envtest.sh start` a private control plane, stopped when the binary exits
//!   (an atexit hook, and the script's own watchdog should the binary be killed), and its
//!   directory deleted; `KEYWARD_KEEP_ENVTEST=1` keeps the directory (logs, etcd) for inspection.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub struct TestEnv {
    pub kubeconfig: Option<PathBuf>,
    pub developer_kubeconfig: Option<PathBuf>,
    /// The envtest state directory when this process started the control plane itself.
    pub dir: Option<PathBuf>,
    /// Whether the control plane has a node, or why not.
    pub node: Result<(), String>,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();
static WANT_NODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The test environment with a real node (see `node.rs`): asks for one before the control plane
/// starts. Every test of a binary that needs the node must come through here.
pub fn env_with_node() -> &'static TestEnv {
    WANT_NODE.store(true, std::sync::atomic::Ordering::SeqCst);
    let env = env();
    assert!(
        !(env.dir.is_some() && env.node.is_err() && node::can_run().is_ok()),
        "this binary's control plane started without a node: every test in a node test binary must call common::node::start()"
    );
    env
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Stops the control plane and deletes its directory (etcd's data alone is tens of MiB per test
/// binary), unless `KEYWARD_KEEP_ENVTEST=1` asks to keep it for inspection.
extern "C" fn stop_control_plane() {
    if let Some(dir) = ENV.get().and_then(|e| e.dir.as_ref()) {
        let keep = std::env::var("KEYWARD_KEEP_ENVTEST").as_deref() == Ok("1");
        let mut stop = Command::new(repo_root().join("hack/envtest.sh"));
        stop.arg("stop").arg(dir);
        if keep {
            eprintln!(
                "KEYWARD_KEEP_ENVTEST=1: the control plane's files stay in {}",
                dir.display()
            );
        } else {
            stop.arg("--remove");
        }
        let _ = stop.status();
    }
}

pub fn env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        if let Ok(path) = std::env::var("KEYWARD_TEST_KUBECONFIG") {
            let developer = std::env::var("KEYWARD_TEST_DEVELOPER_KUBECONFIG")
                .ok()
                .map(PathBuf::from)
                .or_else(|| {
                    let sibling = Path::new(&path).with_file_name("kubeconfig-developer");
                    sibling.exists().then_some(sibling)
                });
            return TestEnv {
                kubeconfig: Some(path.into()),
                developer_kubeconfig: developer,
                dir: None,
                node: Err(
                    "KEYWARD_TEST_KUBECONFIG names a control plane whose node (if any) this run does not manage".into(),
                ),
            };
        }
        if std::env::var("KEYWARD_TEST_USE_EXISTING_CLUSTER").as_deref() == Ok("1") {
            return TestEnv {
                kubeconfig: None,
                developer_kubeconfig: None,
                dir: None,
                node: Err("an existing cluster's nodes cannot be given this run's images".into()),
            };
        }
        let dir = tempfile::Builder::new()
            .prefix("keyward-envtest-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let node = if WANT_NODE.load(std::sync::atomic::Ordering::SeqCst) {
            node::can_run()
        } else {
            Err("not asked for".into())
        };
        let mut start = Command::new(repo_root().join("hack/envtest.sh"));
        start
            .arg("start")
            .arg(&dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string());
        if node.is_ok() {
            start.arg("--node").arg("--images").arg(node::images_dir());
        }
        let out = start.output().expect("run hack/envtest.sh");
        assert!(
            out.status.success(),
            "hack/envtest.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_control_plane) };
        TestEnv {
            kubeconfig: Some(dir.join("kubeconfig")),
            developer_kubeconfig: Some(dir.join("kubeconfig-developer")),
            dir: Some(dir),
            node,
        }
    })
}

async fn client_from(path: Option<&Path>) -> Client {
    let config = match path {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).expect("read kubeconfig");
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig")
        }
        None => Config::infer().await.expect("KUBECONFIG"),
    };
    Client::try_from(config).expect("client")
}

/// An admin client.
pub async fn client() -> Client {
    client_from(env().kubeconfig.as_deref()).await
}

/// A client for the test environment's non-admin user, when there is one.
pub async fn developer_client() -> Option<Client> {
    match &env().developer_kubeconfig {
        Some(path) => Some(client_from(Some(path)).await),
        None => None,
    }
}

/// Arguments that point kubectl, helm or keyward at the test control plane.
pub fn kubeconfig_args() -> Vec<String> {
    env()
        .kubeconfig
        .as_ref()
        .map(|p| vec!["--kubeconfig".into(), p.display().to_string()])
        .unwrap_or_default()
}

pub fn kubectl_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("KUBECTL_BIN") {
        return bin.into();
    }
    let local = repo_root().join("bin/kubectl");
    if local.exists() { local } else { "kubectl".into() }
}

pub fn helm_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("HELM_BIN") {
        return bin.into();
    }
    let local = repo_root().join("bin/helm");
    if local.exists() { local } else { "helm".into() }
}

pub fn chart() -> String {
    repo_root().join("charts/keyward").display().to_string()
}

/// Runs helm; returns whether it succeeded and everything it printed.
pub fn helm(args: &[&str]) -> (bool, String) {
    let out = Command::new(helm_bin()).args(args).output().expect("run helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Write requests the API server has served, by `verb resource/subresource`.
pub async fn apiserver_writes(client: &kube::Client) -> std::collections::BTreeMap<String, u64> {
    apiserver_requests(client, &["POST", "PUT", "PATCH", "DELETE", "APPLY"]).await
}

/// The API server's own count of requests with these verbs, by verb and resource.
pub async fn apiserver_requests(client: &kube::Client, verbs: &[&str]) -> std::collections::BTreeMap<String, u64> {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.expect("API server metrics");
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let verb = label("verb");
        if !verbs.contains(&verb.as_str()) {
            continue;
        }
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let key = format!("{verb} {}/{}", label("resource"), label("subresource"));
        *counts.entry(key).or_default() += value as u64;
    }
    counts
}

/// Runs `hack/envtest.sh ACTION DIR` on this binary's own control plane (fault injection), or
/// returns `false` when the control plane is not ours to break.
pub fn control_plane(action: &str) -> bool {
    control_plane_with(action, &[])
}

/// [`control_plane`] with arguments after the directory (a snapshot file, say).
pub fn control_plane_with(action: &str, args: &[&str]) -> bool {
    let Some(dir) = env().dir.as_ref() else { return false };
    let out = Command::new(repo_root().join("hack/envtest.sh"))
        .arg(action)
        .arg(dir)
        .args(args)
        .output()
        .expect("run envtest.sh");
    assert!(
        out.status.success(),
        "envtest.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Runs kubectl with `input` on stdin; returns stdout, panics with stderr on failure.
pub fn kubectl_with_input(args: &[&str], input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(kubectl_bin())
        .args(kubeconfig_args())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl against the test cluster; returns stdout, panics with stderr on failure.
pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new(kubectl_bin())
        .args(kubeconfig_args())
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A namespace of its own for one test, deleted when dropped (on the test control plane it then
/// stays Terminating, as there is no namespace controller; the control plane goes away anyway).
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).unwrap();
        let name = format!(
            "{prefix}-{}",
            suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"keyward.dev/test": "true"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name, client }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let api = Api::<Namespace>::all(self.client.clone());
        let name = self.name.clone();
        // Drop cannot await; fire the delete on the current runtime if there is one.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

/// Records that the calling test did not run its checks, so it is counted as skipped, never as
/// passed: a line in `$KEYWARD_SKIP_LOG` (which `.ci/run` counts), and the reason on stderr. In
/// CI (`CI=true`) a skip is a failure: CI's configuration must run everything.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{line} (a skip fails CI, whose configuration must run every test)"
    );
    if let Ok(path) = std::env::var("KEYWARD_SKIP_LOG") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the skip log");
        writeln!(file, "{line}").expect("write the skip log");
    }
}

/// Lets the non-admin `developer` author Licenses and the given core resources (e.g. `secrets`)
/// in `namespace`, and nothing else: a tenant of the cluster.
pub async fn grant_license_author(admin: &Client, namespace: &str, resources: &[&str]) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "license-author"},
        "rules": [
            {"apiGroups": ["keyward.dev"], "resources": ["licenses"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": resources, "verbs": ["get", "list", "create", "update", "patch", "delete"]}
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "license-author"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "license-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "developer"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// The non-admin user's client, or a recorded skip where this cluster has none.
pub async fn developer_client_or_skip(test: &str) -> Option<Client> {
    let client = developer_client().await;
    if client.is_none() {
        skip(test, "no non-admin user on this cluster");
    }
    client
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
/// Checks that `check` holds throughout `window`, polling every 50 ms: for "this did not happen",
/// where a single look could come too early. Callers say why the window is long enough.
pub async fn holds_for<F, Fut>(what: &str, window: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        assert!(check().await, "{what} stopped holding within {window:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub mod audit;
pub mod measure;
pub mod node;
pub mod operator;
