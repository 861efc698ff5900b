//! The Argo CD health check (`integrations/argocd/…/keyward.dev/License/health.lua`) run by a
//! real Lua 5.1 interpreter (Debian's `lua5.1`, the dialect of Argo CD's gopher-lua) against every
//! fixture listed in its `health_test.yaml`, the file Argo CD's own test harness reads.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("integrations/argocd/resource_customizations/keyward.dev/License")
}

fn run_health(resource: &serde_json::Value) -> (String, String) {
    let mut child = Command::new("lua5.1")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/argocd-health.lua"))
        .arg(dir().join("health.lua"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 (Debian's lua5.1 and lua-cjson; `make tools` installs them)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(resource.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.trim_end_matches('\n').split_once('\t').unwrap();
    (status.to_string(), message.to_string())
}

#[test]
fn every_fixture_gets_its_documented_health() {
    let tests: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir().join("health_test.yaml")).unwrap()).unwrap();
    let tests = tests["tests"].as_array().unwrap();
    let mut statuses = std::collections::BTreeSet::new();
    for case in tests {
        let path = case["inputPath"].as_str().unwrap();
        let resource: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(dir().join(path)).unwrap()).unwrap();
        let got = run_health(&resource);
        let want = (
            case["healthStatus"]["status"].as_str().unwrap().to_string(),
            case["healthStatus"]["message"].as_str().unwrap().to_string(),
        );
        assert_eq!(got, want, "{path}");
        statuses.insert(got.0);
    }
    // Every state of a License has a fixture, and the mapping uses each verdict it documents.
    let fixtures: std::collections::BTreeSet<String> = tests
        .iter()
        .filter_map(|c| {
            let text = std::fs::read_to_string(dir().join(c["inputPath"].as_str()?)).ok()?;
            let v: serde_json::Value = serde_yaml_ng::from_str(&text).ok()?;
            v["status"]["state"].as_str().map(str::to_string)
        })
        .collect();
    for state in keyward::api::LicenseState::ALL {
        assert!(fixtures.contains(state.as_str()), "no fixture for {state}");
    }
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["Degraded", "Healthy", "Progressing"]
    );
}

#[test]
fn the_harness_can_tell_a_wrong_verdict() {
    // The check can fail: an Active License made Invalid changes the verdict.
    let mut resource: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir().join("testdata/active.yaml")).unwrap()).unwrap();
    assert_eq!(run_health(&resource).0, "Healthy");
    resource["status"]["state"] = "Invalid".into();
    assert_eq!(run_health(&resource).0, "Degraded");
}
