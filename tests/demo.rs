//! `make demo` (hack/demo.sh) runs end to end on its own control plane and node: the workload
//! Pod's log shows the renewal live, the tampered key is refused, and nothing is left behind.

mod common;

use std::process::Command;

#[test]
fn demo_shows_a_live_renewal_in_the_workload_pod() {
    if let Err(reason) = common::node::can_run() {
        common::skip("demo_shows_a_live_renewal_in_the_workload_pod", &reason);
        return;
    }
    let out = Command::new(common::repo_root().join("hack/demo.sh"))
        .env("KEYWARD_BIN", env!("CARGO_BIN_EXE_keyward"))
        .env("KEYWARD_IMAGES_DIR", common::node::images_dir())
        .output()
        .expect("run hack/demo.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the demo failed:\n{text}");
    let renewal = text.find("== Renewal").expect("the renewal step");
    let tampered = text.find("== A bad key").expect("the tampered-key step");
    let renewal_step = &text[renewal..tampered];
    for line in [
        "the running Pod read the renewed key",
        "license key file changed, updating license",
        "tier=\"enterprise\"",
        "same Pods, RESTARTS 0",
    ] {
        assert!(
            renewal_step.contains(line),
            "the renewal step shows {line:?}:\n{renewal_step}"
        );
    }
    let tampered_step = &text[tampered..];
    for line in [
        "SignatureInvalid",
        "no new log line; still running on the last good key",
        "Demo complete",
    ] {
        assert!(
            tampered_step.contains(line),
            "the tampered-key step shows {line:?}:\n{tampered_step}"
        );
    }
    // Nothing of the demo's node is left: no mount, no process.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains("/keyward-demo."), "the demo left mounts:\n{mounts}");
    let ps = Command::new("pgrep").args(["-af", "keyward-demo[.]"]).output().unwrap();
    assert!(
        ps.stdout.is_empty(),
        "the demo left processes:\n{}",
        String::from_utf8_lossy(&ps.stdout)
    );
}
