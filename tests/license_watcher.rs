//! The example workload picks up a renewed key without restarting.

use std::process::{Command, Stdio};
use std::time::Duration;

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

#[test]
fn a_renewed_key_is_applied_live() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key_from_seed(&[3; 32]);
    std::fs::write(dir.path().join("vendor.pem"), public_key_to_pem(&key.verifying_key())).unwrap();
    let license = dir.path().join("license");
    std::fs::write(&license, token(&key, "pro")).unwrap();
    let child = Command::new(example_binary())
        .args([
            "--license-file",
            license.to_str().unwrap(),
            "--public-key",
            dir.path().join("vendor.pem").to_str().unwrap(),
        ])
        .args(["--product", "zizq", "--interval", "50ms", "--exit-after-changes", "1"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("build the example with `cargo test` or `cargo build --examples`");
    std::thread::sleep(Duration::from_millis(500));
    // Replace the file atomically, as the kubelet does when it swaps its ..data symlink.
    let staged = dir.path().join(".license.new");
    std::fs::write(&staged, token(&key, "enterprise")).unwrap();
    std::fs::rename(&staged, &license).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8(out.stdout).unwrap();
    let first = log.find("license validated").expect(&log);
    let changed = log.find("license key file changed, updating license").expect(&log);
    let second = log.rfind("license validated").unwrap();
    assert!(first < changed && changed < second, "{log}");
    assert!(log[second..].contains("enterprise"), "{log}");
}
