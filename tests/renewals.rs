//! Several keys per License: a renewal dated to start later takes over on its own, at its start;
//! an expired or tampered key never takes over. On a real API server, with the real binary.

mod common;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use keyward::api::License;
use keyward::license::{Fingerprint, Format};
use kube::{Api, Client};
use serde_json::json;

use common::operator::*;
use common::{TestNamespace, client, eventually};

async fn license_with_renewal(client: &Client, ns: &str, targets: bool) {
    let rollout = if targets {
        json!({"targets": [{"secretName": "zizq-license"}]})
    } else {
        json!(null)
    };
    create_license_from(
        client,
        ns,
        json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License", "metadata": {"name": "acme"},
            "spec": {"secretRef": {"name": "current"}, "product": "zizq",
                "additionalKeys": [{"name": "renewal"}], "rollout": rollout}
        }),
    )
    .await;
}

fn fingerprint(token: &str) -> String {
    Fingerprint::of(token.as_bytes()).to_string()
}

#[tokio::test]
async fn a_dated_renewal_takes_over_at_its_start_and_is_rolled_out() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("renewal-start").await;
    let vendor = Vendor::new("vendor-2026");
    // The current key expires in 5 s (its warning window has begun); the renewal starts in 5 s.
    let current_claims = vendor.claims("zizq", Some(5));
    let current = vendor.sign(&current_claims, &Format::Jwt);
    let starts = current_claims.exp.unwrap();
    let mut renewal_claims = vendor.claims("zizq", Some(365 * 86_400));
    renewal_claims.nbf = Some(starts);
    renewal_claims.tier = Some("enterprise".into());
    let renewal = vendor.sign(&renewal_claims, &Format::Jwt);
    put_secret(&client, &ns.name, "current", "license", current.as_bytes()).await;
    put_secret(&client, &ns.name, "renewal", "license", renewal.as_bytes()).await;
    license_with_renewal(&client, &ns.name, true).await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;

    let waiting = wait_license(
        &client,
        &ns.name,
        "acme",
        "current key in force, renewal waiting",
        |l| l.status.as_ref().is_some_and(|s| s.keys.len() == 2),
    )
    .await;
    let s = waiting.status.unwrap();
    assert_eq!(s.key_fingerprint.as_deref(), Some(fingerprint(&current).as_str()));
    assert_eq!(s.state.map(|st| st.to_string()).as_deref(), Some("Warning"));
    assert_eq!((s.keys[0].in_force, s.keys[0].reason.as_str()), (true, "InForce"));
    assert_eq!((s.keys[1].in_force, s.keys[1].reason.as_str()), (false, "Waiting"));
    let starts_at = Timestamp::from_second(starts).unwrap();
    assert_eq!(s.next_key_at.as_deref(), Some(starts_at.to_string().as_str()));
    assert_eq!(s.keys[1].starts_at.as_deref(), Some(starts_at.to_string().as_str()));
    eventually("the current key rolled out", Duration::from_secs(10), || async {
        (target_token(&client, &ns.name, "zizq-license").await.as_deref() == Some(current.as_str())).then_some(())
    })
    .await;

    // Polled every 50 ms: a switch before the start would be seen before it (the lower bound),
    // one more than a second late would miss the upper bound.
    let licenses: Api<License> = Api::namespaced(client.clone(), &ns.name);
    let deadline = Instant::now() + Duration::from_secs(20);
    let switched_at = loop {
        let l = licenses.get("acme").await.unwrap();
        if l.status.as_ref().and_then(|s| s.key_fingerprint.clone()) == Some(fingerprint(&renewal)) {
            break Timestamp::now();
        }
        assert!(Instant::now() < deadline, "the renewal never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let late = switched_at.duration_since(starts_at);
    assert!(
        late >= jiff::SignedDuration::ZERO,
        "took over {late:?} before its start"
    );
    assert!(
        late <= jiff::SignedDuration::from_secs(1),
        "took over {late:?} after its start"
    );

    let l = licenses.get("acme").await.unwrap();
    let s = l.status.unwrap();
    assert_eq!(s.state.map(|st| st.to_string()).as_deref(), Some("Active"));
    assert_eq!(s.tier.as_deref(), Some("enterprise"));
    assert_eq!(s.keys[1].reason, "InForce");
    assert_eq!(s.keys[0].reason, "Superseded");
    assert_eq!(s.next_key_at, None);
    eventually("the renewal rolled out", Duration::from_secs(5), || async {
        (target_token(&client, &ns.name, "zizq-license").await.as_deref() == Some(renewal.as_str())).then_some(())
    })
    .await;
    let reasons = eventually("a KeyRotated event", Duration::from_secs(5), || async {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns.name);
        let list = events.list(&Default::default()).await.unwrap();
        let reasons: Vec<String> = list.items.into_iter().filter_map(|e| e.reason).collect();
        reasons.iter().any(|r| r == "KeyRotated").then_some(reasons)
    })
    .await;
    assert_eq!(reasons.iter().filter(|r| *r == "KeyRotated").count(), 1, "{reasons:?}");
}

#[tokio::test]
async fn an_expired_key_never_wins_over_a_valid_one() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("renewal-expired").await;
    let vendor = Vendor::new("vendor-2026");
    // Listed first, signed, and read-only for weeks: it must not be the key in force.
    let mut expired_claims = vendor.claims("zizq", Some(-60 * 86_400));
    expired_claims.iat = Some(Timestamp::now().as_second() - 400 * 86_400);
    let expired = vendor.sign(&expired_claims, &Format::Jwt);
    let valid = vendor.token("zizq");
    put_secret(&client, &ns.name, "current", "license", expired.as_bytes()).await;
    put_secret(&client, &ns.name, "renewal", "license", valid.as_bytes()).await;
    license_with_renewal(&client, &ns.name, false).await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    let l = wait_license(&client, &ns.name, "acme", "the valid key in force", |l| {
        l.status.as_ref().is_some_and(|s| s.keys.len() == 2)
    })
    .await;
    let s = l.status.unwrap();
    assert_eq!(s.key_fingerprint.as_deref(), Some(fingerprint(&valid).as_str()));
    assert_eq!(s.state.map(|st| st.to_string()).as_deref(), Some("Active"));
    assert_eq!(s.keys[0].reason, "Superseded");
    assert_eq!(s.keys[1].reason, "InForce");
}

#[tokio::test]
async fn a_tampered_renewal_is_shown_refused_while_the_current_key_stays() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("renewal-tampered").await;
    let vendor = Vendor::new("vendor-2026");
    let current = vendor.token("zizq");
    let renewal = vendor.renewed("zizq", "enterprise");
    // One character of the signature changed.
    let mut tampered = renewal.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    put_secret(&client, &ns.name, "current", "license", current.as_bytes()).await;
    put_secret(&client, &ns.name, "renewal", "license", &tampered).await;
    license_with_renewal(&client, &ns.name, true).await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    let l = wait_license(&client, &ns.name, "acme", "the renewal refused", |l| {
        l.status.as_ref().is_some_and(|s| s.keys.len() == 2)
    })
    .await;
    let s = l.status.unwrap();
    assert_eq!(s.key_fingerprint.as_deref(), Some(fingerprint(&current).as_str()));
    assert_eq!(s.state.map(|st| st.to_string()).as_deref(), Some("Active"));
    assert_eq!(s.keys[0].reason, "InForce");
    assert_eq!(s.keys[1].reason, "SignatureInvalid");
    assert!(!s.keys[1].in_force);
    assert_eq!(s.next_key_at, None);
    eventually("the current key rolled out", Duration::from_secs(10), || async {
        (target_token(&client, &ns.name, "zizq-license").await.as_deref() == Some(current.as_str())).then_some(())
    })
    .await;
    // `keyward status` shows both keys and why the renewal is not in force.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["status", "acme", "-n", &ns.name])
        .args(common::kubeconfig_args())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("current/license") && text.contains("InForce"), "{text}");
    assert!(
        text.contains("renewal/license") && text.contains("SignatureInvalid"),
        "{text}"
    );
}
