//! The License controller end to end, on a real API server, with the real binary.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::License;
use keyward::license::Format;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use common::operator::*;
use common::{TestNamespace, client, kubectl};

/// Reasons and counts of the events recorded for a License.
async fn event_reasons(client: &Client, namespace: &str, license: &str) -> BTreeMap<String, usize> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut reasons = BTreeMap::new();
    for e in events.list(&ListParams::default()).await.unwrap() {
        if e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(license) {
            // A repeated event is one object with a series count: count every occurrence.
            let n = e.series.as_ref().map_or(1, |s| s.count as usize);
            *reasons.entry(e.reason.unwrap_or_default()).or_default() += n;
        }
    }
    reasons
}

async fn setup(prefix: &str) -> (Client, TestNamespace, Vendor) {
    let client = client().await;
    install_crd(&client).await;
    (client, TestNamespace::new(prefix).await, Vendor::new("vendor-2026"))
}

#[tokio::test]
async fn a_valid_key_becomes_active_with_every_status_field() {
    let (client, ns, vendor) = setup("active").await;
    let token = vendor.token("zizq");
    put_secret(&client, &ns.name, "acme-license", "license", token.as_bytes()).await;
    create_license(&client, &ns.name, "acme", "acme-license", "zizq").await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;

    let l = wait_license(&client, &ns.name, "acme", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    let s = l.status.clone().unwrap();
    assert_eq!(s.licensee.as_deref(), Some("Acme Corp"));
    assert_eq!(s.product.as_deref(), Some("zizq"));
    assert_eq!(s.tier.as_deref(), Some("pro"));
    assert_eq!(
        s.features.as_deref(),
        Some(&["queues".to_string(), "sso".to_string()][..])
    );
    assert_eq!(s.seats.as_ref().and_then(|s| s.entitled), Some(25));
    assert_eq!(s.key_id.as_deref(), Some("vendor-2026"));
    assert_eq!(s.license_id.as_deref(), Some("lic-test"));
    let fingerprint = s.key_fingerprint.clone().unwrap();
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 23,
        "{fingerprint}"
    );
    for field in [
        &s.issued_at,
        &s.expires_at,
        &s.grace_ends_at,
        &s.next_transition_at,
        &s.warning_at,
    ] {
        field.as_deref().unwrap().parse::<Timestamp>().expect("RFC 3339");
    }
    assert_eq!(s.observed_generation, l.metadata.generation);
    for (t, status) in [
        ("Ready", "True"),
        ("Valid", "True"),
        ("Expiring", "False"),
        ("InGrace", "False"),
        ("ReadOnly", "False"),
    ] {
        assert_eq!(condition(&l, t).unwrap().0, status, "{t}");
    }
    assert_eq!(s.last_good.as_ref().unwrap().key_fingerprint, fingerprint);
    assert!(
        l.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"keyward.dev/cleanup".to_string())
    );

    // kubectl shows the printer columns, EXPIRES as RFC 3339 text.
    let table = kubectl(&["get", "licenses", "-n", &ns.name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATE", "LICENSEE", "TIER", "EXPIRES", "AGE"],
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("acme")
            && row.contains("Active")
            && row.contains("Acme Corp")
            && row.contains(s.expires_at.as_deref().unwrap()),
        "{table}"
    );
    let wide = kubectl(&["get", "lic", "-n", &ns.name, "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[6..],
        ["FEATURES", "SEATS", "KEY-ID", "NEXT-KEY", "ROLLED-OUT"],
        "{wide}"
    );
    assert!(wide.contains("vendor-2026") && wide.contains("25"), "{wide}");
    let described = kubectl(&["describe", "license", "acme", "-n", &ns.name]);
    assert!(
        described.contains("Validated") && described.contains("Last Good"),
        "{described}"
    );

    // Metrics and Zizq-style logs.
    let metrics = operator.metrics();
    let labels = format!("namespace=\"{}\",name=\"acme\"", ns.name);
    assert!(
        metrics.contains(&format!("keyward_license_state{{{labels},state=\"Active\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("keyward_license_valid{{{labels}}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("keyward_license_expiry_timestamp_seconds{{{labels}}}")),
        "{metrics}"
    );
    let logs = operator.logs();
    assert!(
        logs.contains("license validated") && logs.contains("licensee=Acme Corp") && logs.contains("remaining="),
        "{logs}"
    );
    assert!(
        !logs.contains('\x1b'),
        "no ANSI colour in a log that is not a terminal: {logs}"
    );

    // With nothing changing, the operator does no work: no reconciles, no status writes. Three
    // seconds: a requeue or a self-triggered status write loop would recur well within that
    // (every reconcile of this License takes milliseconds, and error retries come after 5 s —
    // which is why the window is checked against the counter, not only the resourceVersion).
    let reconciles = operator.metric("keyward_reconcile_total").unwrap();
    let version = l.metadata.resource_version.clone();
    let again: Api<License> = Api::namespaced(client.clone(), &ns.name);
    common::holds_for("no work while idle", Duration::from_secs(3), || async {
        operator.metric("keyward_reconcile_total").unwrap() == reconciles
            && again.get("acme").await.unwrap().metadata.resource_version == version
    })
    .await;
    // An unrelated Secret changing wakes nothing either: its watch event arrives within
    // milliseconds, so a second shows whether it maps to this License.
    put_secret(&client, &ns.name, "unrelated", "x", b"y").await;
    common::holds_for("an unrelated Secret wakes nothing", Duration::from_secs(1), || async {
        operator.metric("keyward_reconcile_total").unwrap() == reconciles
    })
    .await;

    assert_eq!(
        event_reasons(&client, &ns.name, "acme").await.get("Validated"),
        Some(&1)
    );
}

#[tokio::test]
async fn states_flip_at_the_exact_instants() {
    let (client, ns, vendor) = setup("lifecycle").await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    // Expires in 8 s; warning window 4 s; grace 4 s: Warning at +4, Grace at +8, ReadOnly at +12.
    let mut claims = vendor.claims("zizq", Some(8));
    claims.warn = Some(4);
    claims.grace = Some(4);
    let exp = Timestamp::from_second(claims.exp.unwrap()).unwrap();
    put_secret(
        &client,
        &ns.name,
        "short",
        "license",
        vendor
            .sign(
                &claims,
                &Format::Prefixed {
                    prefix: "cz_ent_".into(),
                },
            )
            .as_bytes(),
    )
    .await;

    let licenses: Api<License> = Api::namespaced(client.clone(), &ns.name);
    let mut changes = watcher(licenses, watcher::Config::default().fields("metadata.name=short"))
        .applied_objects()
        .boxed();
    create_license(&client, &ns.name, "short", "short", "zizq").await;
    let expected = [
        ("Warning", exp - SignedDuration::from_secs(4)),
        ("Grace", exp),
        ("ReadOnly", exp + SignedDuration::from_secs(4)),
    ];
    let mut seen: Vec<(String, Timestamp)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < 3 {
            let l = changes.next().await.unwrap().unwrap();
            if let Some(s) = state(&l)
                && s != "Active"
                && seen.last().map(|(p, _)| p != &s).unwrap_or(true)
            {
                seen.push((s, Timestamp::now()));
            }
        }
    })
    .await
    .expect("three transitions within 30 s");
    for ((state, at), (want_state, want_at)) in seen.iter().zip(expected) {
        assert_eq!(state, want_state);
        let off = at.duration_since(want_at);
        assert!(
            off >= SignedDuration::ZERO && off <= SignedDuration::from_secs(1),
            "{state} observed {off:?} after its boundary"
        );
    }
    let l = Api::<License>::namespaced(client.clone(), &ns.name)
        .get("short")
        .await
        .unwrap();
    assert_eq!(
        condition(&l, "ReadOnly").unwrap(),
        ("True".into(), "GracePeriodOver".into())
    );
    assert_eq!(condition(&l, "Ready").unwrap().0, "False");
    assert_eq!(l.status.unwrap().next_transition_at, None);
    let reasons = event_reasons(&client, &ns.name, "short").await;
    for reason in ["ExpiresSoon", "InGracePeriod", "ReadOnly"] {
        assert_eq!(reasons.get(reason), Some(&1), "{reasons:?}");
    }
}

#[tokio::test]
async fn rotation_and_every_refusal_keep_the_last_good_key() {
    let (client, ns, vendor) = setup("refusals").await;
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license(&client, &ns.name, "acme", "lic", "zizq").await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    let first = wait_license(&client, &ns.name, "acme", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    let first_fp = first.status.unwrap().key_fingerprint.unwrap();

    // Rotation to another valid key.
    put_secret(
        &client,
        &ns.name,
        "lic",
        "license",
        vendor.renewed("zizq", "enterprise").as_bytes(),
    )
    .await;
    let rotated = wait_license(&client, &ns.name, "acme", "rotation", |l| {
        l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some("enterprise")
    })
    .await;
    let good_fp = rotated.status.as_ref().unwrap().key_fingerprint.clone().unwrap();
    assert_ne!(good_fp, first_fp);

    let good = vendor.token("zizq");
    let mut tampered = good.clone().into_bytes();
    let i = good.find('.').unwrap() + 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let hs256 = {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64(r#"{"sub":"Acme","aud":"zizq"}"#),
            b64("sig")
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("SignatureInvalid", tampered),
        ("UnsupportedAlgorithm", hs256.into_bytes()),
        ("ProductMismatch", vendor.token("other-product").into_bytes()),
        ("UnknownKeyId", Vendor::new("stranger").token("zizq").into_bytes()),
    ];
    for (reason, bytes) in cases {
        put_secret(&client, &ns.name, "lic", "license", &bytes).await;
        let l = wait_license(&client, &ns.name, "acme", reason, |l| {
            condition(l, "Valid").map(|c| c.1).as_deref() == Some(reason)
        })
        .await;
        let s = l.status.as_ref().unwrap();
        assert_eq!(state(&l).as_deref(), Some("Invalid"), "{reason}");
        assert_eq!(condition(&l, "Valid").unwrap().0, "False");
        assert_eq!(
            s.last_good.as_ref().unwrap().key_fingerprint,
            good_fp,
            "{reason}: last good kept"
        );
        assert_eq!(s.licensee, None, "{reason}: unverified claims not shown");
    }
    // The Secret deleted.
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .delete("lic", &DeleteParams::default())
        .await
        .unwrap();
    let l = wait_license(&client, &ns.name, "acme", "SecretNotFound", |l| {
        condition(l, "Valid").map(|c| c.1).as_deref() == Some("SecretNotFound")
    })
    .await;
    assert_eq!(l.status.unwrap().last_good.unwrap().key_fingerprint, good_fp);
    // The key under the wrong data key.
    put_secret(&client, &ns.name, "lic", "licence", good.as_bytes()).await;
    wait_license(&client, &ns.name, "acme", "KeyNotFound", |l| {
        condition(l, "Valid").map(|c| c.1).as_deref() == Some("KeyNotFound")
    })
    .await;
    // A valid key again: Active, and the refusal is cleared.
    put_secret(&client, &ns.name, "lic", "license", good.as_bytes()).await;
    wait_license(&client, &ns.name, "acme", "Active again", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;

    let once = [
        "KeyRotated",
        "SignatureInvalid",
        "UnsupportedAlgorithm",
        "ProductMismatch",
        "UnknownKeyId",
        "SecretNotFound",
        "KeyNotFound",
    ];
    let expected = |reasons: &BTreeMap<String, usize>| {
        once.iter().all(|r| reasons.get(*r) == Some(&1)) && reasons.get("Validated") == Some(&2)
    };
    common::eventually("every event once", Duration::from_secs(10), || async {
        expected(&event_reasons(&client, &ns.name, "acme").await).then_some(())
    })
    .await;
    // Events follow the status write within milliseconds: a repeat would show in two seconds.
    common::holds_for("no event repeated", Duration::from_secs(2), || async {
        expected(&event_reasons(&client, &ns.name, "acme").await)
    })
    .await;
    let logs = operator.logs();
    assert!(!logs.contains(&good), "the key never appears in logs");
}

#[tokio::test]
async fn trusted_keys_are_reloaded_without_restart() {
    let (client, ns, vendor) = setup("trust").await;
    let empty = tempfile::tempdir().unwrap();
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license(&client, &ns.name, "acme", "lic", "zizq").await;
    let operator = Operator::start(&ns.name, empty.path(), &[]);
    operator.wait_ready().await;
    wait_license(&client, &ns.name, "acme", "NoTrustedKeys", |l| {
        condition(l, "Valid").map(|c| c.1).as_deref() == Some("NoTrustedKeys")
    })
    .await;
    // The admin adds the vendor key (as a ConfigMap update would): the License turns Active.
    std::fs::copy(
        vendor.trust_dir.path().join("vendor-2026.pem"),
        empty.path().join("vendor-2026.pem"),
    )
    .unwrap();
    wait_license(&client, &ns.name, "acme", "Active after reload", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    assert_eq!(operator.metric("keyward_trusted_keys"), Some(1.0));
    // A broken key file does not take away the keys in force, and a valid key added beside it
    // is picked up: each is proven by a reconcile that needs it (a rotation of the License's key).
    std::fs::write(empty.path().join("broken.pem"), "not a key").unwrap();
    common::eventually("the broken file reported", Duration::from_secs(10), || async {
        (operator
            .metric("keyward_trusted_keys_reload_errors_total")
            .unwrap_or(0.0)
            >= 1.0)
            .then_some(())
    })
    .await;
    let other = Vendor::new("vendor-2027");
    std::fs::copy(
        other.trust_dir.path().join("vendor-2027.pem"),
        empty.path().join("vendor-2027.pem"),
    )
    .unwrap();
    common::eventually("the added key trusted", Duration::from_secs(10), || async {
        (operator.metric("keyward_trusted_keys") == Some(2.0)).then_some(())
    })
    .await;
    put_secret(&client, &ns.name, "lic", "license", other.token("zizq").as_bytes()).await;
    wait_license(&client, &ns.name, "acme", "verified by the added key", |l| {
        state(l).as_deref() == Some("Active")
            && l.status.as_ref().and_then(|s| s.key_id.as_deref()) == Some("vendor-2027")
    })
    .await;
    put_secret(
        &client,
        &ns.name,
        "lic",
        "license",
        vendor.renewed("zizq", "enterprise").as_bytes(),
    )
    .await;
    wait_license(
        &client,
        &ns.name,
        "acme",
        "verified by the key in force before the breakage",
        |l| {
            state(l).as_deref() == Some("Active")
                && l.status.as_ref().and_then(|s| s.key_id.as_deref()) == Some("vendor-2026")
                && l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some("enterprise")
        },
    )
    .await;
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_deletion_releases_the_license() {
    let (client, ns, vendor) = setup("shutdown").await;
    put_secret(&client, &ns.name, "lic", "license", vendor.token("zizq").as_bytes()).await;
    create_license(&client, &ns.name, "acme", "lic", "zizq").await;
    let mut operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    wait_license(&client, &ns.name, "acme", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    // Deleting the License goes through the finalizer and completes.
    let licenses: Api<License> = Api::namespaced(client.clone(), &ns.name);
    licenses.delete("acme", &DeleteParams::default()).await.unwrap();
    common::eventually("License gone", Duration::from_secs(20), || {
        let licenses = licenses.clone();
        async move { licenses.get_opt("acme").await.unwrap().is_none().then_some(()) }
    })
    .await;
    let status = operator.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", operator.logs());
    assert!(operator.logs().contains("controller stopped"));
}

/// `kubectl explain` lists the fields of every optional object. Broken before: optional objects
/// were `nullable`, which the API server publishes in OpenAPI v2 with no type and no properties,
/// so explain showed `spec.rollout` and `spec.seats` as empty.
#[tokio::test]
async fn kubectl_explain_lists_the_fields_of_optional_objects() {
    let client = client().await;
    install_crd(&client).await;
    let explain = |field: &str| {
        let out = std::process::Command::new(common::kubectl_bin())
            .args(common::kubeconfig_args())
            .args(["explain", field])
            .output()
            .expect("run kubectl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (field, wanted) in [
        ("license.spec.rollout", &["targets"][..]),
        (
            "license.spec.rollout.targets",
            &["namespace", "namespaceSelector", "podSelector", "secretName"][..],
        ),
        ("license.spec.seats", &["podSelector", "reportedBy"][..]),
        ("license.spec.seats.reportedBy", &["configMapRef"][..]),
        ("license.status.rollout", &["details", "summary", "upToDate"][..]),
    ] {
        // The OpenAPI document is republished a moment after the CRD is established.
        common::eventually(&format!("kubectl explain {field}"), Duration::from_secs(30), || async {
            let text = explain(field);
            wanted
                .iter()
                .all(|w| {
                    text.lines().any(|l| {
                        l.trim_start().starts_with(&format!("{w}\t")) || l.trim_start().starts_with(&format!("{w} "))
                    })
                })
                .then_some(())
        })
        .await;
    }
}

/// The daily expiry notice is not repeated by a restart: the status remembers the last one sent.
/// Broken, a new operator process would send the day's notice again on its first reconcile.
#[tokio::test]
async fn an_expiry_notice_is_not_repeated_across_restarts() {
    let (client, ns, vendor) = setup("notice-restart").await;
    // Ten days left: inside the last 14 days, one notice a day.
    let token = vendor.sign(&vendor.claims("zizq", Some(10 * 86_400)), &Format::Jwt);
    put_secret(&client, &ns.name, "lic", "license", token.as_bytes()).await;
    create_license(&client, &ns.name, "acme", "lic", "zizq").await;
    let notices = || async {
        event_reasons(&client, &ns.name, "acme")
            .await
            .get("ExpiryNotice")
            .copied()
            .unwrap_or(0)
    };
    let mut first = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    common::eventually("the day's notice", Duration::from_secs(30), || async {
        (notices().await == 1).then_some(())
    })
    .await;
    assert!(first.terminate().success());
    let second = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    second.wait_ready().await;
    // The new process has reconciled the License (its own counter says so) ...
    common::eventually("the restarted operator reconciled", Duration::from_secs(30), || async {
        (second.metric("keyward_reconcile_total").unwrap_or(0.0) >= 1.0).then_some(())
    })
    .await;
    // ... and events follow a reconcile's status write within milliseconds: two quiet seconds
    // show the notice was not sent again.
    common::holds_for("one notice only", Duration::from_secs(2), || async {
        notices().await == 1
    })
    .await;
    let l = Api::<License>::namespaced(client.clone(), &ns.name)
        .get("acme")
        .await
        .unwrap();
    assert_eq!(l.status.unwrap().last_notice.unwrap().days_left, 10);
}

fn keyward_status(kubeconfig: &[String], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("status")
        .args(args)
        .args(kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `keyward status -A` shows each License with its own events; a missing License is a usage
/// error; a user who may read Licenses but not events still sees the status, and is told why the
/// events are missing.
#[tokio::test]
async fn status_shows_each_license_with_its_own_events() {
    let (client, ns, vendor) = setup("status-cli").await;
    put_secret(&client, &ns.name, "good", "license", vendor.token("zizq").as_bytes()).await;
    put_secret(&client, &ns.name, "bad", "license", b"not-a-license").await;
    create_license(&client, &ns.name, "acme", "good", "zizq").await;
    create_license(&client, &ns.name, "broken", "bad", "zizq").await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    for (name, reason) in [("acme", "Validated"), ("broken", "Malformed")] {
        common::eventually(&format!("{name}'s {reason} event"), Duration::from_secs(30), || async {
            event_reasons(&client, &ns.name, name)
                .await
                .contains_key(reason)
                .then_some(())
        })
        .await;
    }

    let admin = common::kubeconfig_args();
    let (code, text, _) = keyward_status(&admin, &["-A"]);
    assert_eq!(code, 0, "{text}");
    // One block per License, each starting with its "License NS/NAME" line.
    let block = |name: &str| -> String {
        let header = format!("License {}/{name}\n", ns.name);
        let start = text.find(&header).unwrap_or_else(|| panic!("{header:?} in:\n{text}"));
        let rest = &text[start + header.len()..];
        rest[..rest.find("\nLicense ").unwrap_or(rest.len())].to_string()
    };
    let (acme_part, broken_part) = (block("acme"), block("broken"));
    assert!(
        acme_part.contains("Validated") && !acme_part.contains("Malformed"),
        "{acme_part}"
    );
    assert!(
        broken_part.contains("Malformed") && !broken_part.contains("Validated"),
        "{broken_part}"
    );

    let (code, json, _) = keyward_status(&admin, &["-A", "-o", "json"]);
    assert_eq!(code, 0, "{json}");
    let all: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ours = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["license"]["metadata"]["namespace"] == ns.name.as_str())
        .count();
    assert_eq!(ours, 2, "{json}");

    let (code, _, err) = keyward_status(&admin, &["missing", "-n", &ns.name]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("License \"missing\" not found in namespace"), "{err}");

    let Some(developer) = common::env().developer_kubeconfig.clone() else {
        common::skip(
            "status_shows_each_license_with_its_own_events (tenant part)",
            "no non-admin user on this cluster",
        );
        return;
    };
    common::grant_license_author(&client, &ns.name, &["secrets"]).await;
    let tenant = ["--kubeconfig".to_string(), developer.display().to_string()];
    let (code, text, err) = keyward_status(&tenant, &["acme", "-n", &ns.name]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains(&format!("License {}/acme", ns.name)) && !text.contains("Validated"),
        "{text}"
    );
    assert!(err.contains("could not list events in namespace"), "{err}");
}
