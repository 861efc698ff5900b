//! End-to-end tests of the pure core: issue → verify round trips, tampering, hostile tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use sha2::Sha256;

use super::keys::{public_key_to_pem, signing_key_from_seed};
use super::*;

const NOW: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn key(seed: u8) -> SigningKey {
    signing_key_from_seed(&[seed; 32])
}

fn keyset(keys: &[(&str, &SigningKey)]) -> KeySet {
    let mut set = KeySet::new();
    for (id, k) in keys {
        set.insert(TrustedKey::new(Some(id), k.verifying_key()).unwrap())
            .unwrap();
    }
    set
}

fn claims() -> Claims {
    Claims {
        sub: "Acme Corp".into(),
        aud: "zizq".into(),
        iss: Some("zizq.io".into()),
        iat: Some(NOW - 3600),
        nbf: None,
        exp: Some(NOW + 365 * 86_400),
        jti: Some("lic-0001".into()),
        tier: Some("pro".into()),
        features: vec!["queues".into(), "sso".into()],
        seats: Some(25),
        grace: None,
        warn: None,
        extra: ExtraClaims::default(),
    }
}

fn prefixed() -> Format {
    Format::Prefixed {
        prefix: "cz_ent_".into(),
    }
}

fn opts() -> VerifyOptions {
    VerifyOptions::at(now())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with an arbitrary header and claims, signed by `sign` over the JWS signing input.
fn forge_jwt(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn ed25519(key: &SigningKey) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |m| key.sign(m).to_bytes().to_vec()
}

#[test]
fn round_trip_both_formats() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    for format in [Format::Jwt, prefixed()] {
        let token = issue(&claims(), &k, Some("v1"), &format).unwrap();
        let verified = verify(token.as_bytes(), &set, &opts().product(Some("zizq"))).unwrap();
        assert_eq!(verified.claims, claims());
        assert_eq!(verified.key_id, "v1");
        assert_eq!(verified.format, format);
        assert_eq!(verified.fingerprint, Fingerprint::of(token.as_bytes()));
    }
}

#[test]
fn prefixed_token_shape() {
    let token = issue(&claims(), &key(1), None, &prefixed()).unwrap();
    assert!(token.starts_with("cz_ent_"));
    assert!(!token.contains('.'));
    assert!(
        token["cz_ent_".len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[test]
fn trailing_newline_from_a_file_is_ignored() {
    let k = key(1);
    let token = issue(&claims(), &k, None, &Format::Jwt).unwrap();
    let set = keyset(&[("v1", &k)]);
    assert!(verify(format!("  {token}\r\n").as_bytes(), &set, &opts()).is_ok());
}

#[test]
fn kid_selects_the_key_and_rotation_works() {
    let (old, new) = (key(1), key(2));
    let set = keyset(&[("2025", &old), ("2026", &new)]);
    let t_old = issue(&claims(), &old, Some("2025"), &Format::Jwt).unwrap();
    let t_new = issue(&claims(), &new, Some("2026"), &prefixed()).unwrap();
    assert_eq!(verify(t_old.as_bytes(), &set, &opts()).unwrap().key_id, "2025");
    assert_eq!(verify(t_new.as_bytes(), &set, &opts()).unwrap().key_id, "2026");
    // A kid naming the wrong key of the set is a bad signature, not a fallback to the other key.
    let mislabelled = issue(&claims(), &new, Some("2025"), &Format::Jwt).unwrap();
    assert!(matches!(
        verify(mislabelled.as_bytes(), &set, &opts()),
        Err(VerifyError::SignatureInvalid { .. })
    ));
}

#[test]
fn no_kid_tries_every_key() {
    let (a, b) = (key(1), key(2));
    let set = keyset(&[("a", &a), ("b", &b)]);
    let token = issue(&claims(), &b, None, &Format::Jwt).unwrap();
    assert_eq!(verify(token.as_bytes(), &set, &opts()).unwrap().key_id, "b");
    let stranger = issue(&claims(), &key(3), None, &Format::Jwt).unwrap();
    assert_eq!(
        verify(stranger.as_bytes(), &set, &opts()).unwrap_err(),
        VerifyError::SignatureInvalid { key_id: None }
    );
}

#[test]
fn derived_kid_matches_a_key_loaded_without_a_name() {
    let k = key(1);
    let mut set = KeySet::new();
    set.insert(TrustedKey::new(None, k.verifying_key()).unwrap()).unwrap();
    let kid = keys::derived_key_id(&k.verifying_key());
    let token = issue(&claims(), &k, Some(&kid), &Format::Jwt).unwrap();
    assert_eq!(verify(token.as_bytes(), &set, &opts()).unwrap().key_id, kid);
}

#[test]
fn unknown_key_id() {
    let k = key(1);
    let token = issue(&claims(), &k, Some("nope"), &Format::Jwt).unwrap();
    let err = verify(token.as_bytes(), &keyset(&[("v1", &k)]), &opts()).unwrap_err();
    assert_eq!(err.reason(), "UnknownKeyId");
    assert!(err.to_string().contains("\"nope\""));
}

#[test]
fn empty_keyset() {
    let token = issue(&claims(), &key(1), None, &Format::Jwt).unwrap();
    assert_eq!(
        verify(token.as_bytes(), &KeySet::new(), &opts()).unwrap_err(),
        VerifyError::NoTrustedKeys
    );
}

#[test]
fn product_mismatch() {
    let k = key(1);
    let token = issue(&claims(), &k, None, &Format::Jwt).unwrap();
    let err = verify(
        token.as_bytes(),
        &keyset(&[("v1", &k)]),
        &opts().product(Some("controlzero")),
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::ProductMismatch {
            expected: "controlzero".into(),
            actual: "zizq".into()
        }
    );
}

#[test]
fn not_yet_valid_beyond_leeway_only() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    for (nbf, ok) in [(NOW + 60, true), (NOW + 61, false), (NOW - 10, true)] {
        let c = Claims {
            nbf: Some(nbf),
            ..claims()
        };
        let token = issue(&c, &k, None, &prefixed()).unwrap();
        let result = verify(token.as_bytes(), &set, &opts());
        assert_eq!(result.is_ok(), ok, "nbf={nbf}: {result:?}");
        if !ok {
            assert_eq!(result.unwrap_err().reason(), "NotYetValid");
        }
    }
    // Without nbf, an iat in the future counts the same way.
    let c = Claims {
        iat: Some(NOW + 3600),
        ..claims()
    };
    let token = issue(&c, &k, None, &Format::Jwt).unwrap();
    assert_eq!(
        verify(token.as_bytes(), &set, &opts()).unwrap_err().reason(),
        "NotYetValid"
    );
}

#[test]
fn expired_keys_verify_expiry_is_a_state() {
    let k = key(1);
    let c = Claims {
        iat: Some(NOW - 1000),
        exp: Some(NOW - 10),
        ..claims()
    };
    let token = issue(&c, &k, None, &Format::Jwt).unwrap();
    let verified = verify(token.as_bytes(), &keyset(&[("v1", &k)]), &opts()).unwrap();
    let timeline = Timeline::new(&verified.claims, &Policy::default().for_claims(&verified.claims));
    assert_eq!(timeline.state_at(now()), State::Grace);
}

#[test]
fn alg_none_is_refused() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    let claims_json = serde_json::to_string(&claims()).unwrap();
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"alg":""}"#] {
        let token = forge_jwt(header, &claims_json, |_| vec![]);
        let token = token.trim_end_matches('.').to_string() + ".";
        let err = verify(token.as_bytes(), &set, &opts()).unwrap_err();
        assert_eq!(err.reason(), "UnsupportedAlgorithm", "{header}");
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    let claims_json = serde_json::to_string(&claims()).unwrap();
    let public_pem = public_key_to_pem(&k.verifying_key());
    for secret in [public_pem.as_bytes(), k.verifying_key().as_bytes().as_slice()] {
        let token = forge_jwt(r#"{"alg":"HS256","typ":"JWT","kid":"v1"}"#, &claims_json, |m| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        });
        let err = verify(token.as_bytes(), &set, &opts()).unwrap_err();
        assert_eq!(err, VerifyError::UnsupportedAlgorithm { alg: "HS256".into() });
    }
}

#[test]
fn rs256_and_other_algorithms_are_refused() {
    let set = keyset(&[("v1", &key(1))]);
    for alg in [
        "RS256", "ES256", "PS256", "HS512", "Ed448", "eddsa", "ed25519", "none", "",
    ] {
        let token = forge_jwt(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"sub":"a","aud":"b"}"#, |_| {
            vec![7; 256]
        });
        assert_eq!(
            verify(token.as_bytes(), &set, &opts()).unwrap_err().reason(),
            "UnsupportedAlgorithm",
            "{alg}"
        );
    }
}

#[test]
fn both_names_of_the_ed25519_signature_verify() {
    // RFC 8037's `EdDSA` and RFC 9864's fully specified `Ed25519` are the same signature.
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    for alg in ["EdDSA", "Ed25519"] {
        let token = forge_jwt(
            &format!(r#"{{"alg":"{alg}","kid":"v1"}}"#),
            r#"{"sub":"a","aud":["other","zizq"]}"#,
            ed25519(&k),
        );
        let verified = verify(token.as_bytes(), &set, &opts().product(Some("zizq"))).unwrap();
        assert_eq!(verified.key_id, "v1", "{alg}");
    }
    let ed448 = forge_jwt(r#"{"alg":"Ed448"}"#, r#"{"sub":"a","aud":"b"}"#, |_| vec![7; 114]);
    let message = verify(ed448.as_bytes(), &set, &opts()).unwrap_err().to_string();
    assert!(message.contains("only Ed25519 keys are supported"), "{message}");
}

#[test]
fn an_unnamed_key_reports_the_kid_it_verified() {
    let k = key(1);
    let mut set = KeySet::new();
    set.insert(TrustedKey::new(None, k.verifying_key()).unwrap()).unwrap();
    let named = forge_jwt(
        r#"{"alg":"EdDSA","kid":"vendor-2026"}"#,
        r#"{"sub":"a","aud":"b"}"#,
        ed25519(&k),
    );
    assert_eq!(verify(named.as_bytes(), &set, &opts()).unwrap().key_id, "vendor-2026");
    let unnamed = forge_jwt(r#"{"alg":"EdDSA"}"#, r#"{"sub":"a","aud":"b"}"#, ed25519(&k));
    assert_eq!(
        verify(unnamed.as_bytes(), &set, &opts()).unwrap().key_id,
        keys::derived_key_id(&k.verifying_key())
    );
}

#[test]
fn an_array_aud_matches_any_entry_and_nothing_else() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    let token = forge_jwt(
        r#"{"alg":"EdDSA"}"#,
        r#"{"sub":"a","aud":["zizq","zizq-cloud"]}"#,
        ed25519(&k),
    );
    for product in ["zizq", "zizq-cloud"] {
        assert!(verify(token.as_bytes(), &set, &opts().product(Some(product))).is_ok());
    }
    let err = verify(token.as_bytes(), &set, &opts().product(Some("zi"))).unwrap_err();
    assert_eq!(
        err,
        VerifyError::ProductMismatch {
            expected: "zi".into(),
            actual: "zizq, zizq-cloud".into()
        }
    );
}

#[test]
fn critical_header_extensions_are_refused() {
    let k = key(1);
    let token = forge_jwt(
        r#"{"alg":"EdDSA","crit":["b64"],"b64":false}"#,
        r#"{"sub":"a","aud":"b"}"#,
        ed25519(&k),
    );
    assert_eq!(
        verify(token.as_bytes(), &keyset(&[("v1", &k)]), &opts())
            .unwrap_err()
            .reason(),
        "Malformed"
    );
}

#[test]
fn duplicate_claims_are_refused_even_when_signed() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    let claims = format!(
        r#"{{"sub":"a","aud":"zizq","exp":{},"exp":{}}}"#,
        NOW + 10,
        NOW + 999_999
    );
    let token = forge_jwt(r#"{"alg":"EdDSA"}"#, &claims, ed25519(&k));
    let err = verify(token.as_bytes(), &set, &opts()).unwrap_err();
    assert_eq!(err.reason(), "Malformed");
    assert!(err.to_string().contains("duplicate"), "{err}");
    let header = r#"{"alg":"EdDSA","alg":"none"}"#;
    let token = forge_jwt(header, r#"{"sub":"a","aud":"zizq"}"#, ed25519(&k));
    assert_eq!(
        verify(token.as_bytes(), &set, &opts()).unwrap_err().reason(),
        "Malformed"
    );
}

#[test]
fn signed_but_nonsensical_claims_are_malformed() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    let huge_value = format!(r#"{{"sub":"a","aud":"zizq","blob":"{}"}}"#, "x".repeat(60_000));
    for claims in [
        r#"{"sub":"a","aud":"zizq","exp":-5}"#,
        r#"{"sub":"a","aud":"zizq","exp":253402300799}"#,
        r#"{"sub":"a","aud":"zizq","exp":1e999}"#,
        r#"{"sub":"a","aud":"zizq","seats":99999999999999999999999}"#,
        r#"{"sub":"a","aud":"zizq","features":"all"}"#,
        r#"{"sub":"a"}"#,
        "not json",
        "",
    ] {
        let token = forge_jwt(r#"{"alg":"EdDSA"}"#, claims, ed25519(&k));
        assert_eq!(
            verify(token.as_bytes(), &set, &opts()).unwrap_err().reason(),
            "Malformed",
            "{claims}"
        );
    }
    let token = forge_jwt(r#"{"alg":"EdDSA"}"#, &huge_value, ed25519(&k));
    assert_eq!(
        verify(token.as_bytes(), &set, &opts()).unwrap_err().reason(),
        "TooLarge"
    );
}

#[test]
fn one_mebibyte_of_anything_is_too_large() {
    let set = keyset(&[("v1", &key(1))]);
    for junk in [
        vec![b'A'; 1 << 20],
        vec![0u8; 1 << 20],
        (0..1u32 << 20).map(|i| i as u8).collect(),
    ] {
        assert_eq!(verify(&junk, &set, &opts()).unwrap_err().reason(), "TooLarge");
    }
}

#[test]
fn binary_junk_is_malformed() {
    let set = keyset(&[("v1", &key(1))]);
    for junk in [
        &b"\x00\x01\x02"[..],
        b"\xff\xff",
        b"\x89PNG\r\n\x1a\n",
        b"....",
        b"cz_ent_!!!!",
    ] {
        assert_eq!(
            verify(junk, &set, &opts()).unwrap_err().reason(),
            "Malformed",
            "{junk:?}"
        );
    }
}

#[test]
fn a_jwt_signature_cannot_be_replayed_as_a_prefixed_token_or_back() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    // Re-wrap a JWT's header, claims and signature in the prefixed envelope.
    let jwt = issue(&claims(), &k, None, &Format::Jwt).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
    let claims_json = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    let header_p = br#"{"alg":"EdDSA","typ":"license+prefixed"}"#;
    let mut payload = token::prefixed_unsigned_payload(header_p, &claims_json).unwrap();
    payload.extend_from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap());
    let replayed = format!("cz_ent_{}", b64(&payload));
    assert_eq!(
        verify(replayed.as_bytes(), &set, &opts()).unwrap_err().reason(),
        "SignatureInvalid"
    );
    // And a prefixed signature moved into a JWT.
    let prefixed_token = issue(&claims(), &k, None, &prefixed()).unwrap();
    let payload = URL_SAFE_NO_PAD.decode(&prefixed_token["cz_ent_".len()..]).unwrap();
    let sig = &payload[payload.len() - 64..];
    let forged = format!("{}.{}.{}", b64(&header), b64(&claims_json), b64(sig));
    assert_eq!(
        verify(forged.as_bytes(), &set, &opts()).unwrap_err().reason(),
        "SignatureInvalid"
    );
    // And a prefixed token moved under another vendor prefix.
    let moved = prefixed_token.replacen("cz_ent_", "cz_dev_", 1);
    assert_eq!(
        verify(moved.as_bytes(), &set, &opts()).unwrap_err().reason(),
        "SignatureInvalid"
    );
}

/// No 12-character piece of a token, anywhere in it, appears in an error's message or `Debug`.
fn assert_no_piece_of(token: &str, shown: &str) {
    let chars: Vec<char> = token.chars().collect();
    for window in chars.windows(12) {
        let piece: String = window.iter().collect();
        assert!(!shown.contains(&piece), "{piece:?} of the token shown: {shown}");
    }
}

#[test]
fn errors_never_contain_the_token() {
    let k = key(1);
    let mut future = claims();
    future.nbf = Some(4_000_000_000);
    future.exp = Some(4_100_000_000);
    for format in [Format::Jwt, prefixed()] {
        let token = issue(&claims(), &k, Some("v1"), &format).unwrap();
        let later = issue(&future, &k, Some("v1"), &format).unwrap();
        let cases: Vec<(String, KeySet, VerifyOptions, &str)> = vec![
            (token.clone(), keyset(&[("other", &key(9))]), opts(), "UnknownKeyId"),
            (token.clone(), keyset(&[("v1", &key(9))]), opts(), "SignatureInvalid"),
            (
                token.clone(),
                keyset(&[("v1", &k)]),
                opts().product(Some("other")),
                "ProductMismatch",
            ),
            (later, keyset(&[("v1", &k)]), opts(), "NotYetValid"),
            (
                format!("{}!{}", &token[..30], &token[30..]),
                keyset(&[("v1", &k)]),
                opts(),
                "Malformed",
            ),
            (format!("{token}AA"), keyset(&[("v1", &k)]), opts(), ""),
            (token.clone(), KeySet::new(), opts(), "NoTrustedKeys"),
        ];
        for (input, set, options, reason) in cases {
            let err = verify(input.as_bytes(), &set, &options).unwrap_err();
            if !reason.is_empty() {
                assert_eq!(err.reason(), reason, "{err}");
            }
            assert_no_piece_of(&input, &format!("{err} {err:?}"));
        }
    }
}

#[test]
fn every_single_bit_flip_of_both_formats_is_rejected() {
    let k = key(1);
    let set = keyset(&[("v1", &k)]);
    for format in [Format::Jwt, prefixed()] {
        let token = issue(&claims(), &k, Some("v1"), &format).unwrap().into_bytes();
        assert!(verify(&token, &set, &opts()).is_ok());
        for bit in 0..token.len() * 8 {
            let mut flipped = token.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verify(&flipped, &set, &opts()).is_err(),
                "{format}: flipping bit {bit} was accepted"
            );
        }
    }
}

#[test]
fn issue_refuses_bad_input() {
    let k = key(1);
    let mut c = claims();
    c.extra.0.insert("exp".into(), serde_json::json!(1));
    assert_eq!(
        issue(&c, &k, None, &Format::Jwt),
        Err(IssueError::ReservedClaim("exp".into()))
    );
    assert!(matches!(
        issue(&claims(), &k, None, &Format::Prefixed { prefix: "CZ_".into() }),
        Err(IssueError::InvalidPrefix(_))
    ));
    assert!(matches!(
        issue(&claims(), &k, Some("bad kid"), &Format::Jwt),
        Err(IssueError::InvalidKeyId(_))
    ));
    let c = Claims {
        exp: Some(NOW - 7200),
        ..claims()
    };
    assert!(matches!(
        issue(&c, &k, None, &Format::Jwt),
        Err(IssueError::InvalidClaims(_))
    ));
}

// ---- property tests ----------------------------------------------------------------------------

fn arb_text() -> impl Strategy<Value = String> {
    "[ -~]{1,24}".prop_filter("non-blank", |s| !s.trim().is_empty())
}

prop_compose! {
    fn arb_claims()(
        sub in arb_text(),
        aud in prop_oneof![
            arb_text().prop_map(Audience::One),
            proptest::collection::vec(arb_text(), 1..4).prop_map(Audience::Many),
        ],
        iss in proptest::option::of(arb_text()),
        iat in proptest::option::of(1i64..2_000_000_000),
        lifetime in proptest::option::of(1i64..1_000_000_000),
        jti in proptest::option::of("[a-z0-9-]{1,16}"),
        tier in proptest::option::of("[a-z]{1,10}"),
        features in proptest::collection::vec("[a-z_]{1,12}", 0..6),
        seats in proptest::option::of(any::<u64>()),
        grace in proptest::option::of(0u64..=MAX_POLICY_SECONDS),
        warn in proptest::option::of(0u64..=MAX_POLICY_SECONDS),
        extra in proptest::collection::btree_map("x_[a-z]{1,8}", any::<i64>().prop_map(serde_json::Value::from), 0..4),
    ) -> Claims {
        Claims {
            sub, aud, iss, iat, nbf: None,
            exp: lifetime.map(|l| iat.unwrap_or(1) + l),
            jti, tier, features, seats, grace, warn,
            extra: ExtraClaims(extra),
        }
    }
}

fn arb_format() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::Jwt),
        "[a-z][a-z0-9]{0,5}_[a-z0-9]{1,6}_".prop_map(|prefix| Format::Prefixed { prefix }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn issue_then_verify_round_trips(c in arb_claims(), format in arb_format(), seed in any::<[u8; 32]>(), kid in proptest::option::of("[a-z0-9]{1,12}")) {
        let k = signing_key_from_seed(&seed);
        let token = issue(&c, &k, kid.as_deref(), &format).unwrap();
        let mut set = KeySet::new();
        set.insert(TrustedKey::new(kid.as_deref(), k.verifying_key()).unwrap()).unwrap();
        let far_future = Timestamp::MAX;
        let verified = verify(token.as_bytes(), &set, &VerifyOptions::at(far_future).product(Some(c.aud.entries()[0].clone()))).unwrap();
        prop_assert_eq!(verified.claims, c);
        prop_assert_eq!(verified.format, format);
    }

    #[test]
    fn any_single_bit_flip_is_rejected(format in arb_format(), bit in any::<prop::sample::Index>()) {
        let k = key(1);
        let set = keyset(&[("v1", &k)]);
        let token = issue(&claims(), &k, Some("v1"), &format).unwrap().into_bytes();
        let i = bit.index(token.len() * 8);
        let mut flipped = token.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        prop_assert!(verify(&flipped, &set, &opts()).is_err(), "flip of bit {} accepted", i);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let set = keyset(&[("v1", &key(1))]);
        let _ = verify(&bytes, &set, &opts());
    }

    #[test]
    fn arbitrary_text_in_token_shape_never_panics(a in "[A-Za-z0-9_-]{0,40}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,90}") {
        let set = keyset(&[("v1", &key(1))]);
        let _ = verify(format!("{a}.{b}.{c}").as_bytes(), &set, &opts());
        let _ = verify(format!("cz_ent_{b}{c}").as_bytes(), &set, &opts());
    }

    #[test]
    fn evaluation_is_consistent(c in arb_claims(), at in 1i64..253_402_207_200) {
        let timeline = Timeline::new(&c, &Policy::default().for_claims(&c));
        let now = Timestamp::from_second(at).unwrap();
        let e = timeline.evaluate(now);
        prop_assert_eq!(e.state, timeline.state_at(now));
        if let Some(t) = e.next_transition {
            prop_assert!(t.at > now);
            prop_assert_eq!(timeline.state_at(t.at), t.state);
            prop_assert_ne!(t.state, e.state);
            // Nothing changes strictly between now and the transition.
            prop_assert_eq!(timeline.state_at(t.at - SignedDuration::from_nanos(1)), e.state);
        }
        if let Some(since) = e.since {
            prop_assert!(since <= now || e.state == State::Active);
        }
    }
}
