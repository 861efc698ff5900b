//! The example workload picks up a renewed key without restarting.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyward::license::keys::{public_key_to_pem, signing_key_from_seed};
use keyward::license::{Claims, ExtraClaims, Format, issue};

fn example_binary() -> std::path::PathBuf {
    // tests run from target/<profile>/deps; cargo builds examples into target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples/license-watcher");
    if !path.exists() {
        // `cargo test --test license_watcher` alone does not build examples.
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "license-watcher"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

fn token(key: &ed25519_dalek::SigningKey, tier: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims = Claims {
        sub: "Acme".into(),
        aud: "zizq".into(),
        iss: None,
        iat: Some(now),
        nbf: None,
        exp: Some(now + 86_400 * 90),
        jti: None,
        tier: Some(tier.into()),
        features: vec![],
        seats: None,
        grace: None,
        warn: None,
        extra: ExtraClaims::default(),
    };
    issue(&claims, key, None, &Format::Jwt).unwrap()
}

/// Lines of a child's stdout, read on a thread so every wait can have a deadline.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(stdout: std::process::ChildStdout) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// Waits for a line containing every needle; panics with what was seen after `timeout`.
    fn wait_for(&mut self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

#[test]
fn a_renewed_key_is_applied_live() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key_from_seed(&[3; 32]);
    std::fs::write(dir.path().join("vendor.pem"), public_key_to_pem(&key.verifying_key())).unwrap();
    let license = dir.path().join("license");
    std::fs::write(&license, token(&key, "pro")).unwrap();
    // No NO_COLOR and a pipe for stdout: the workload must not colour what `kubectl logs` shows.
    let mut child = Command::new(example_binary())
        .args([
            "--license-file",
            license.to_str().unwrap(),
            "--public-key",
            dir.path().join("vendor.pem").to_str().unwrap(),
        ])
        .args(["--product", "zizq", "--interval", "50ms", "--exit-after-changes", "1"])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .spawn()
        .expect("build the example with `cargo test` or `cargo build --examples`");
    let mut lines = Lines::of(child.stdout.take().unwrap());
    // The first key is read before the renewal is written, or the test would prove nothing.
    let first = lines.wait_for(&["license validated", "pro"], Duration::from_secs(30));
    // Replace the file atomically, as the kubelet does when it swaps its ..data symlink.
    let staged = dir.path().join(".license.new");
    std::fs::write(&staged, token(&key, "enterprise")).unwrap();
    std::fs::rename(&staged, &license).unwrap();
    lines.wait_for(&["license key file changed, updating license"], Duration::from_secs(10));
    lines.wait_for(&["license validated", "enterprise"], Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example did not exit after the change it was told to stop at");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(
        !first.contains('\x1b') && lines.seen.iter().all(|l| !l.contains('\x1b')),
        "no ANSI colour: {:?}",
        lines.seen
    );
}
