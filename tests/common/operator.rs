//! The real `keyward controller` binary as a child process, plus a vendor to mint keys for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyward::api::License;
use keyward::license::keys::{public_key_to_pem, signing_key_from_seed};
use keyward::license::{Claims, ExtraClaims, Format, issue};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use serde_json::json;

use super::{env, eventually};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Applies `crds/` with the real kubectl (so it must apply cleanly on this server's version) and
/// waits until the CRD is established.
pub async fn install_crd(client: &Client) {
    // Once per process: concurrent `kubectl apply` of a new object race to create it.
    static APPLIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    APPLIED.get_or_init(|| {
        super::kubectl(&["apply", "-f", &super::repo_root().join("crds").display().to_string()]);
    });
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, "licenses.keyward.dev", conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");
}

pub struct Operator {
    child: Child,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub log: PathBuf,
    /// Started under a wrapper command: the operator is the wrapper's child.
    wrapped: bool,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts `keyward controller` watching one namespace, trusting the keys in `trust_dir`.
    pub fn start(namespace: &str, trust_dir: &Path, extra: &[&str]) -> Self {
        Self::launch(&[], Some(namespace), trust_dir, extra)
    }

    /// Starts the operator under a wrapper command (`strace -f -o FILE`, say).
    pub fn start_under(wrapper: &[&str], namespace: &str, trust_dir: &Path, extra: &[&str]) -> Self {
        Self::launch(wrapper, Some(namespace), trust_dir, extra)
    }

    /// Starts an operator watching every namespace; give it `--license-selector` so concurrent
    /// tests' operators leave each other's Licenses alone. `KEYWARD_OPERATOR_WRAPPER` runs it
    /// under a profiler for the benchmarks (`heaptrack -o /tmp/keyward`, say).
    pub fn start_cluster_wide(trust_dir: &Path, extra: &[&str]) -> Self {
        let wrapper = std::env::var("KEYWARD_OPERATOR_WRAPPER").unwrap_or_default();
        let wrapper: Vec<&str> = wrapper.split_whitespace().collect();
        Self::launch(&wrapper, None, trust_dir, extra)
    }

    /// Starts an operator watching every namespace with the credentials of `kubeconfig`.
    pub fn start_as(kubeconfig: &Path, trust_dir: &Path, extra: &[&str]) -> Self {
        Self::launch_as(Some(kubeconfig), &[], None, trust_dir, extra)
    }

    fn launch(wrapper: &[&str], namespace: Option<&str>, trust_dir: &Path, extra: &[&str]) -> Self {
        Self::launch_as(env().kubeconfig.as_deref(), wrapper, namespace, trust_dir, extra)
    }

    fn launch_as(
        kubeconfig: Option<&Path>,
        wrapper: &[&str],
        namespace: Option<&str>,
        trust_dir: &Path,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let health_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(env!("CARGO_BIN_EXE_keyward"));
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_keyward")),
        };
        cmd.arg("controller")
            .args(
                kubeconfig
                    .map(|k| vec![std::ffi::OsStr::new("--kubeconfig"), k.as_os_str()])
                    .unwrap_or_default(),
            )
            .args(namespace.map(|ns| vec!["--namespace", ns]).unwrap_or_default())
            .arg("--trusted-keys")
            .arg(trust_dir)
            .args([
                "--metrics-addr",
                &metrics_addr.to_string(),
                "--health-addr",
                &health_addr.to_string(),
            ])
            .args(["--trust-reload-interval", "200ms"])
            .args(extra)
            .env("RUST_LOG", LOG_FILTER.get().copied().unwrap_or("info,keyward=debug"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: prctl is async-signal-safe; it makes the child die with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start keyward controller");
        Self {
            child,
            metrics_addr,
            health_addr,
            log,
            wrapped: !wrapper.is_empty(),
            _dir: dir,
        }
    }

    pub async fn wait_ready(&self) {
        let addr = self.health_addr;
        eventually("operator /readyz", Duration::from_secs(30), || async move {
            http_get(addr, "/readyz").filter(|(code, _)| *code == 200).map(|_| ())
        })
        .await;
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_addr, "/metrics").expect("metrics endpoint").1
    }

    /// The value of one sample, e.g. `keyward_reconcile_total`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's own process id (not a wrapper's).
    pub fn pid(&self) -> u32 {
        self.operator_pid().map_or(self.child.id(), |pid| pid as u32)
    }

    /// The exit status, if the operator has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("query the operator process")
    }

    /// Fails, with the log, if the operator has exited for any reason. The child's real exit
    /// state, not `/proc/PID`: an exited child stays a zombie with a `/proc` entry until reaped.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("query the operator process") {
            panic!("the operator exited ({status}):\n{}", self.logs());
        }
    }

    /// The operator's own process: the child, or under a wrapper the wrapper's child.
    fn operator_pid(&self) -> Option<i32> {
        if !self.wrapped {
            return Some(self.child.id() as i32);
        }
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    pub fn kill(&mut self) {
        if let Some(pid) = self.operator_pid().filter(|_| self.wrapped) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM to the operator, then wait for a clean exit (a wrapper such as strace exits with
    /// the operator's status).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.operator_pid().expect("the operator process");
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.logs());
        }
        self.kill();
    }
}

/// Minimal HTTP/1.0 GET for the operator's loopback endpoints.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

static LOG_FILTER: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// The log filter of every operator started from now on (benchmarks log what a deployment
/// logs; tests default to debug for their failure output).
pub fn set_log_filter(filter: &'static str) {
    let _ = LOG_FILTER.set(filter);
}

/// A software vendor: a signing key and a directory the operator trusts.
pub struct Vendor {
    pub key: SigningKey,
    pub kid: String,
    pub trust_dir: tempfile::TempDir,
}

impl Vendor {
    pub fn new(kid: &str) -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let key = signing_key_from_seed(&seed);
        let trust_dir = tempfile::tempdir().unwrap();
        std::fs::write(
            trust_dir.path().join(format!("{kid}.pem")),
            public_key_to_pem(&key.verifying_key()),
        )
        .unwrap();
        Self {
            key,
            kid: kid.to_string(),
            trust_dir,
        }
    }

    pub fn claims(&self, product: &str, expires_in_secs: Option<i64>) -> Claims {
        let now = Timestamp::now().as_second();
        Claims {
            sub: "Acme Corp".into(),
            aud: product.into(),
            iss: Some("vendor.example".into()),
            iat: Some(now),
            nbf: None,
            exp: expires_in_secs.map(|s| now + s),
            jti: Some("lic-test".into()),
            tier: Some("pro".into()),
            features: vec!["queues".into(), "sso".into()],
            seats: Some(25),
            grace: None,
            warn: None,
            extra: ExtraClaims::default(),
        }
    }

    pub fn sign(&self, claims: &Claims, format: &Format) -> String {
        issue(claims, &self.key, Some(&self.kid), format).unwrap()
    }

    pub fn token(&self, product: &str) -> String {
        self.sign(&self.claims(product, Some(365 * 86_400)), &Format::Jwt)
    }

    /// A renewal: another valid JWT for `product`, with `tier`, valid for two years.
    pub fn renewed(&self, product: &str, tier: &str) -> String {
        let mut claims = self.claims(product, Some(730 * 86_400));
        claims.tier = Some(tier.into());
        self.sign(&claims, &Format::Jwt)
    }
}

pub async fn put_secret(client: &Client, namespace: &str, name: &str, key: &str, value: &[u8]) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {key: base64_std(value)},
    }))
    .unwrap();
    secrets
        .patch(
            name,
            &PatchParams::apply("keyward-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply secret");
}

/// The key a target Secret holds (its `license` entry); `None` while the Secret is missing or
/// cannot be read (fault tests read it while the API server is down).
pub async fn target_token(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()??;
    String::from_utf8(secret.data?.get("license")?.0.clone()).ok()
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn create_license(client: &Client, namespace: &str, name: &str, secret: &str, product: &str) -> License {
    let licenses: Api<License> = Api::namespaced(client.clone(), namespace);
    let license: License = serde_json::from_value(json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
        "metadata": {"name": name},
        "spec": {"secretRef": {"name": secret}, "product": product},
    }))
    .unwrap();
    licenses
        .create(&PostParams::default(), &license)
        .await
        .expect("create license")
}

/// Waits until the License's status satisfies `check`, returning it.
pub async fn wait_license(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&License) -> bool,
) -> License {
    wait_license_within(client, namespace, name, what, Duration::from_secs(30), check).await
}

/// [`wait_license`] with its own deadline, for waits that include starting a Pod.
pub async fn wait_license_within(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    deadline: Duration,
    check: impl Fn(&License) -> bool,
) -> License {
    let licenses: Api<License> = Api::namespaced(client.clone(), namespace);
    eventually(what, deadline, || {
        let licenses = licenses.clone();
        let check = &check;
        async move { licenses.get_opt(name).await.ok().flatten().filter(|l| check(l)) }
    })
    .await
}

pub fn state(l: &License) -> Option<String> {
    l.status.as_ref()?.state.map(|s| s.to_string())
}

pub fn condition(l: &License, type_: &str) -> Option<(String, String)> {
    l.status_condition(type_).map(|c| (c.status.clone(), c.reason.clone()))
}

/// A License `name` for product `zizq` whose key is in Secret `lic`, rolled out to `targets`.
pub async fn create_license_with_targets(
    client: &Client,
    namespace: &str,
    name: &str,
    targets: serde_json::Value,
) -> License {
    create_license_from(
        client,
        namespace,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License", "metadata": {"name": name},
            "spec": {"secretRef": {"name": "lic"}, "product": "zizq", "rollout": {"targets": targets}}
        }),
    )
    .await
}

/// Creates a License from a full manifest (for rollout specs and labels).
pub async fn create_license_from(client: &Client, namespace: &str, manifest: serde_json::Value) -> License {
    let licenses: Api<License> = Api::namespaced(client.clone(), namespace);
    let license: License = serde_json::from_value(manifest).unwrap();
    licenses
        .create(&PostParams::default(), &license)
        .await
        .expect("create license")
}

/// A Namespace with labels, for selector targets.
pub async fn labelled_namespace(client: &Client, prefix: &str, labels: serde_json::Value) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).unwrap();
    let name = format!(
        "{prefix}-{}",
        suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// A run id unique to one test, for labels that keep concurrent tests' operators apart.
pub fn run_id() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// License `zizq` rolled out to one target (`zizq-license`) in a fresh namespace, with its
/// operator running.
pub async fn rolled_out(prefix: &str) -> (Client, super::TestNamespace, Vendor, Operator, License) {
    let client = super::client().await;
    install_crd(&client).await;
    let ns = super::TestNamespace::new(prefix).await;
    let vendor = Vendor::new("vendor-2026");
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license_with_targets(&client, &ns.name, "zizq", json!([{"secretName": "zizq-license"}])).await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    let l = wait_license(&client, &ns.name, "zizq", "rolled out", |l| {
        condition(l, "RolledOut").is_some_and(|c| c.0 == "True")
    })
    .await;
    (client, ns, vendor, operator, l)
}

/// Rotates License `name`'s key (Secret `lic`) to a renewal with `tier`, and waits until the
/// License shows it.
pub async fn rotate_and_wait(client: &Client, namespace: &str, name: &str, vendor: &Vendor, tier: &str) {
    put_secret(
        client,
        namespace,
        "lic",
        "license",
        vendor.renewed("zizq", tier).as_bytes(),
    )
    .await;
    wait_license(client, namespace, name, &format!("rotated to {tier}"), |l| {
        l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some(tier)
    })
    .await;
}
