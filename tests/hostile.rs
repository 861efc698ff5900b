//! Hostile input refused, nobody gains entitlements they were not signed for, and secrets never
//! leak: on a real API server, with the real binary, and the test environment's non-admin user.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::Signer;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::License;
use keyward::license::keys::public_key_to_pem;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sha2::Sha256;

use common::operator::*;
use common::{TestNamespace, client};

fn b64(s: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// A JWT with any header and claims, signed by `sign` over the signing input.
fn jwt(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig)).into_bytes()
}

fn reason(l: &License) -> Option<String> {
    condition(l, "Valid").map(|c| c.1)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_tokens_and_secrets_are_refused_and_never_rolled_out() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("hostile").await;
    let vendor = Vendor::new("vendor-2026");
    let signed = |header: &str, claims: &str| jwt(header, claims, |m| vendor.key.sign(m).to_bytes().to_vec());
    let now = jiff::Timestamp::now().as_second();
    let good_claims = format!(r#"{{"sub":"Acme","aud":"zizq","iat":{now},"exp":{}}}"#, now + 86_400);
    let public_pem = public_key_to_pem(&vendor.key.verifying_key());
    let hs256 = jwt(
        r#"{"alg":"HS256","typ":"JWT","kid":"vendor-2026"}"#,
        &good_claims,
        |m| {
            let mut mac = Hmac::<Sha256>::new_from_slice(public_pem.as_bytes()).unwrap();
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        },
    );
    let mut junk = vec![0u8; 4096];
    getrandom::fill(&mut junk).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "alg none",
            jwt(r#"{"alg":"none"}"#, &good_claims, |_| vec![]),
            "UnsupportedAlgorithm",
        ),
        ("HS256 with the public key as secret", hs256, "UnsupportedAlgorithm"),
        (
            "RS256",
            jwt(r#"{"alg":"RS256","kid":"vendor-2026"}"#, &good_claims, |_| vec![1; 256]),
            "UnsupportedAlgorithm",
        ),
        (
            "wrong kid",
            signed(r#"{"alg":"EdDSA","kid":"vendor-1999"}"#, &good_claims),
            "UnknownKeyId",
        ),
        (
            "duplicated JSON keys",
            signed(
                r#"{"alg":"EdDSA","kid":"vendor-2026"}"#,
                &format!(r#"{{"sub":"Acme","aud":"zizq","exp":{},"exp":99999999999}}"#, now + 60),
            ),
            "Malformed",
        ),
        (
            "huge numbers",
            signed(
                r#"{"alg":"EdDSA","kid":"vendor-2026"}"#,
                r#"{"sub":"Acme","aud":"zizq","exp":1e300,"seats":184467440737095516160}"#,
            ),
            "Malformed",
        ),
        (
            "negative exp",
            signed(
                r#"{"alg":"EdDSA","kid":"vendor-2026"}"#,
                r#"{"sub":"Acme","aud":"zizq","exp":-1}"#,
            ),
            "Malformed",
        ),
        ("a 1 MiB value", vec![b'a'; 1000 * 1024], "TooLarge"),
        ("binary junk", junk, "Malformed"),
    ];

    put_secret(&client, &ns.name, "lic", "license", b"placeholder").await;
    create_license_from(&client, &ns.name, json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "License", "metadata": {"name": "zizq"},
        "spec": {"secretRef": {"name": "lic"}, "product": "zizq", "rollout": {"targets": [{"secretName": "zizq-license"}]}}
    }))
    .await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    operator.wait_ready().await;
    for (what, bytes, expected) in &cases {
        put_secret(&client, &ns.name, "lic", "license", bytes).await;
        let l = wait_license(&client, &ns.name, "zizq", what, |l| {
            reason(l).as_deref() == Some(expected)
        })
        .await;
        assert_eq!(state(&l).as_deref(), Some("Invalid"), "{what}");
        assert!(
            l.status.as_ref().unwrap().licensee.is_none(),
            "{what}: nothing unverified is shown as fact"
        );
    }
    // The key under the wrong data key, then a Secret of the wrong type.
    put_secret(&client, &ns.name, "lic", "licence", vendor.token("zizq").as_bytes()).await;
    wait_license(&client, &ns.name, "zizq", "KeyNotFound", |l| {
        reason(l).as_deref() == Some("KeyNotFound")
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    secrets.delete("lic", &DeleteParams::default()).await.unwrap();
    let tls: Secret = serde_json::from_value(json!({
        "metadata": {"name": "lic"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": STANDARD.encode("x"), "tls.key": STANDARD.encode("y"), "license": STANDARD.encode(vendor.token("zizq"))}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &tls).await.unwrap();
    wait_license(&client, &ns.name, "zizq", "SecretWrongType", |l| {
        reason(l).as_deref() == Some("SecretWrongType")
    })
    .await;

    // Every refusal above was reconciled (its status seen) before this point; a rollout would
    // have followed within the same reconcile, so a two-second quiet window covers it.
    common::holds_for("nothing rolled out", Duration::from_secs(2), || async {
        secrets.get_opt("zizq-license").await.unwrap().is_none()
    })
    .await;
    assert!(!operator.logs().contains("panicked"));
    let peak = rss_kib(operator.pid());
    assert!(peak > 0 && peak < 128 * 1024, "operator peak RSS {peak} KiB");
}

/// The non-admin user may create Licenses and Secrets in one namespace, and nothing else.
async fn developer_namespace(admin: &Client) -> TestNamespace {
    let ns = TestNamespace::new("dev").await;
    common::grant_license_author(admin, &ns.name, &["secrets"]).await;
    ns
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test]
async fn a_non_admin_cannot_widen_what_keyward_does_for_them() {
    let Some(developer) = common::developer_client_or_skip("a_non_admin_cannot_widen_what_keyward_does_for_them").await
    else {
        return;
    };
    let admin = client().await;
    install_crd(&admin).await;
    let run = run_id();
    let operator_ns = TestNamespace::new("keyward-op").await;
    let victim = TestNamespace::new("victim").await;
    let dev = developer_namespace(&admin).await;
    let vendor = Vendor::new("vendor-2026");
    let selector = format!("keyward-test/run={run}");
    let _operator = Operator::start_cluster_wide(
        vendor.trust_dir.path(),
        &[
            "--license-selector",
            &selector,
            "--operator-namespace",
            &operator_ns.name,
        ],
    );

    // Sanity: the developer can write here, and not in the victim's namespace.
    let dev_secrets: Api<Secret> = Api::namespaced(developer.clone(), &dev.name);
    let mut claims = vendor.claims("zizq", Some(365 * 86_400));
    claims.grace = Some(86_400);
    let token = vendor.sign(&claims, &keyward::license::Format::Jwt);
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "lic"}, "stringData": {"license": token}})).unwrap();
    dev_secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("developer writes Secrets in their namespace");
    let stolen: Secret =
        serde_json::from_value(json!({"metadata": {"name": "stolen"}, "stringData": {"x": "y"}})).unwrap();
    assert!(forbidden(
        Api::<Secret>::namespaced(developer.clone(), &victim.name)
            .create(&PostParams::default(), &stolen)
            .await
    ));

    // 1. Keyward will not write into a namespace the developer cannot write to.
    // 2. A License cannot name its own trusted key, nor 3. lengthen the grace period: the API
    //    server prunes fields the schema does not have, and trust and policy come from elsewhere.
    let dev_licenses: Api<License> = Api::namespaced(developer.clone(), &dev.name);
    let license: License = serde_json::from_value(json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
        "metadata": {"name": "zizq", "labels": {"keyward-test/run": run}},
        "spec": {"secretRef": {"name": "lic"}, "product": "zizq",
            "publicKey": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAattackerattackerattackerattackerattack=\n-----END PUBLIC KEY-----",
            "grace": "3650d", "policy": {"grace": 315360000},
            "rollout": {"targets": [{"namespace": victim.name, "secretName": "stolen"}, {"secretName": "mine"}]}}
    }))
    .unwrap();
    dev_licenses
        .create(&PostParams::default(), &license)
        .await
        .expect("developer creates a License");
    let stored = serde_json::to_value(dev_licenses.get("zizq").await.unwrap()).unwrap();
    for pruned in ["publicKey", "grace", "policy"] {
        assert!(
            stored["spec"].get(pruned).is_none(),
            "spec.{pruned} must not be stored: {stored}"
        );
    }
    let l = wait_license(&admin, &dev.name, "zizq", "rollout reported", |l| {
        l.status.as_ref().and_then(|s| s.rollout.as_ref()).is_some()
    })
    .await;
    let s = l.status.as_ref().unwrap();
    let details = &s.rollout.as_ref().unwrap().details;
    assert_eq!(
        details
            .iter()
            .find(|d| d.secret_name == "stolen")
            .unwrap()
            .reason
            .as_deref(),
        Some("TargetNotAllowed")
    );
    assert!(
        Api::<Secret>::namespaced(admin.clone(), &victim.name)
            .get_opt("stolen")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<Secret>::namespaced(admin.clone(), &dev.name)
            .get_opt("mine")
            .await
            .unwrap()
            .is_some()
    );
    // The grace period is the one the vendor signed (1 day), not the developer's ten years.
    let exp: jiff::Timestamp = s.expires_at.as_deref().unwrap().parse().unwrap();
    let grace_ends: jiff::Timestamp = s.grace_ends_at.as_deref().unwrap().parse().unwrap();
    assert_eq!(grace_ends.duration_since(exp).as_secs(), 86_400);
    // That the installation's trusted keys are out of a tenant's reach is tested on the chart's
    // own ConfigMap and RBAC, in tests/helm.rs.

    // A key the developer signed themselves is refused: only the installation's keys count.
    let attacker = Vendor::new("vendor-2026");
    let forged = attacker.sign(
        &attacker.claims("zizq", Some(3650 * 86_400)),
        &keyward::license::Format::Jwt,
    );
    let forged_secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "lic"}, "stringData": {"license": forged}})).unwrap();
    dev_secrets
        .replace("lic", &PostParams::default(), &forged_secret)
        .await
        .unwrap();
    wait_license(&admin, &dev.name, "zizq", "forged key refused", |l| {
        condition(l, "Valid").is_some_and(|c| c.1 == "SignatureInvalid")
    })
    .await;
    let mine = Api::<Secret>::namespaced(admin.clone(), &dev.name)
        .get("mine")
        .await
        .unwrap();
    assert_eq!(
        mine.data.unwrap()["license"].0,
        token.as_bytes(),
        "the forged key was never rolled out"
    );
}

#[tokio::test]
async fn keys_never_appear_in_logs_events_status_or_metrics() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("no-leaks").await;
    let vendor = Vendor::new("vendor-2026");
    let first = vendor.token("zizq");
    let mut renewed_claims = vendor.claims("zizq", Some(730 * 86_400));
    renewed_claims.tier = Some("enterprise".into());
    let renewed = vendor.sign(
        &renewed_claims,
        &keyward::license::Format::Prefixed {
            prefix: "cz_ent_".into(),
        },
    );
    let mut tampered = renewed.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    put_secret(&client, &ns.name, "lic", "license", first.as_bytes()).await;
    create_license_from(&client, &ns.name, json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "License", "metadata": {"name": "zizq"},
        "spec": {"secretRef": {"name": "lic"}, "product": "zizq", "rollout": {"targets": [{"secretName": "zizq-license"}]}}
    }))
    .await;
    let operator = Operator::start(&ns.name, vendor.trust_dir.path(), &[]);
    wait_license(&client, &ns.name, "zizq", "Active", |l| {
        state(l).as_deref() == Some("Active")
    })
    .await;
    put_secret(&client, &ns.name, "lic", "license", renewed.as_bytes()).await;
    wait_license(&client, &ns.name, "zizq", "renewed", |l| {
        l.status.as_ref().and_then(|s| s.tier.as_deref()) == Some("enterprise")
    })
    .await;
    put_secret(&client, &ns.name, "lic", "license", &tampered).await;
    wait_license(&client, &ns.name, "zizq", "tampered", |l| {
        state(l).as_deref() == Some("Invalid")
    })
    .await;

    let events: Vec<String> = Api::<Event>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let status = serde_json::to_string(
        &Api::<License>::namespaced(client.clone(), &ns.name)
            .get("zizq")
            .await
            .unwrap()
            .status,
    )
    .unwrap();
    let places = [
        ("operator logs", operator.logs()),
        ("events", events.join("\n")),
        ("License status", status),
        ("metrics", operator.metrics()),
    ];
    let tampered = String::from_utf8(tampered).unwrap();
    for token in [&first, &renewed, &tampered] {
        // Any 24-character piece of a key would be a leak, not just the whole key.
        let pieces: Vec<&str> = (0..token.len().saturating_sub(24))
            .step_by(12)
            .map(|i| &token[i..i + 24])
            .collect();
        for (place, text) in &places {
            assert!(!text.is_empty(), "{place} is empty: nothing was checked");
            for piece in &pieces {
                assert!(
                    !text.contains(piece),
                    "a piece of a key appears in the {place}: {piece}"
                );
            }
        }
    }
}
