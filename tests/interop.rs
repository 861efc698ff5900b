//! Interop with an independent, maintained JOSE implementation: joserfc (Python, from PyPI,
//! installed by `hack/envtest.sh jose-python`). Its tokens verify with Keyward, in every standard
//! shape (`alg` EdDSA and Ed25519, `aud` string and array, with and without `kid` and `typ`), with
//! its public key as PEM, JWK and JWK Set; and Keyward's tokens verify with it.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use jiff::Timestamp;
use keyward::keyfiles::{self, Naming};
use keyward::license::{KeySet, VerifyError, VerifyOptions, verify};
use serde_json::Value;

fn jose_python() -> PathBuf {
    let out = Command::new(common::repo_root().join("hack/envtest.sh"))
        .arg("jose-python")
        .output()
        .expect("run hack/envtest.sh jose-python");
    assert!(
        out.status.success(),
        "could not install joserfc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn jose(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(jose_python())
        .arg(common::repo_root().join("hack/jose_interop.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn keys_from(path: &Path) -> KeySet {
    let mut set = KeySet::new();
    for key in keyfiles::read_public_keys(path, Naming::default()).unwrap() {
        set.insert(key).unwrap();
    }
    set
}

fn keyward(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn tokens_minted_by_joserfc_verify_with_keyward() {
    let dir = tempfile::tempdir().unwrap();
    jose(&["mint", dir.path().to_str().unwrap()], "");
    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.path().join("tokens.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 16, "2 algs x 2 auds x kid x typ");
    let now: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
    for file in ["key.pem", "key.jwk", "keys.jwks"] {
        let keys = keys_from(&dir.path().join(file));
        // The set's RSA key is skipped; only the Ed25519 key is trusted, under its JWK kid.
        assert_eq!(keys.len(), 1, "{file}");
        for case in &cases {
            let token = case["token"].as_str().unwrap();
            let what = format!("{file} {case}");
            let verified = verify(token.as_bytes(), &keys, &VerifyOptions::at(now).product(Some("zizq")))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(verified.claims.sub, "Acme Corp", "{what}");
            assert_eq!(verified.claims.seats, Some(25), "{what}");
            // Named by the JWK; a bare PEM key reports the token's kid, or its own derived id.
            if file != "key.pem" || case["kid"] == true {
                assert_eq!(verified.key_id, "vendor-jose", "{what}");
            }
            let other = verify(token.as_bytes(), &keys, &VerifyOptions::at(now).product(Some("other")));
            assert!(matches!(other, Err(VerifyError::ProductMismatch { .. })), "{what}");
        }
    }
    // The same through the CLI, and from a trusted-keys directory holding the JWK Set.
    let trust = dir.path().join("trust");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(dir.path().join("keys.jwks"), trust.join("vendor.json")).unwrap();
    assert_eq!(keyfiles::load_trust_dir(&trust).unwrap().ids(), ["vendor-jose"]);
    for case in &cases {
        let out = keyward(
            &[
                "inspect",
                case["token"].as_str().unwrap(),
                "--public-key",
                "trust",
                "--product",
                "zizq",
                "-o",
                "json",
            ],
            dir.path(),
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["valid"], true, "{case}: {report}");
    }
}

#[test]
fn keyward_tokens_verify_with_joserfc() {
    let dir = tempfile::tempdir().unwrap();
    for (format, file) in [("pem", "vendor.pub"), ("jwk", "vendor.jwk")] {
        let out = keyward(
            &[
                "keygen",
                "--private-key",
                &format!("{format}.key"),
                "--public-key",
                file,
                "--public-key-format",
                format,
                "--kid",
                "vendor-2026",
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let issued = keyward(
            &[
                "issue",
                "--signing-key",
                &format!("{format}.key"),
                "--kid",
                "vendor-2026",
                "--licensee",
                "Acme Corp",
                "--product",
                "zizq",
                "--valid-for",
                "30d",
                "--seats",
                "25",
            ],
            dir.path(),
        );
        assert!(issued.status.success());
        let token = String::from_utf8(issued.stdout).unwrap();
        let results = jose(&["verify", dir.path().join(file).to_str().unwrap()], &token);
        let result: Value = serde_json::from_str(results.trim()).unwrap();
        assert_eq!(result["ok"], true, "{format}: {result}");
        assert_eq!(result["header"]["alg"], "EdDSA");
        assert_eq!(result["header"]["kid"], "vendor-2026");
        assert_eq!(result["claims"]["aud"], "zizq", "keyward issue writes aud as a string");
        assert_eq!(result["claims"]["seats"], 25);
        // And a token it has never seen the key of is refused: the check can fail.
        let stranger = keyward(
            &["keygen", "--private-key", "s.key", "--public-key", "s.pub", "--force"],
            dir.path(),
        );
        assert!(stranger.status.success());
        let refused = jose(&["verify", dir.path().join("s.pub").to_str().unwrap()], &token);
        assert_eq!(serde_json::from_str::<Value>(refused.trim()).unwrap()["ok"], false);
    }
}
