//! Ed25519 public keys written as a JSON Web Key (RFC 7517, OKP keys of RFC 8037) or a JWK Set,
//! the way vendors publish them.
//!
//! The model reads only the members Keyward needs. The RustCrypto `jose-jwk` crate (0.1.2) was
//! considered and not used: its `alg` type knows no `Ed25519` (RFC 9864), so it refuses the
//! JWKs current issuers write, and it refuses a whole set for one member of a kind it does not
//! model. Serde errors are reduced to their position: a private key's `d` must never be echoed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::keys::KeyError;
use super::verify::ED25519_ALGORITHMS;

/// A public key read from a JWK, with the `kid` the JWK gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkKey {
    pub kid: Option<String>,
    pub key: VerifyingKey,
}

#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    /// Only whether it is there: a private key is refused, and its value never read.
    d: Option<IgnoredAny>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    kid: Option<String>,
    alg: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// Whether text is JSON rather than PEM or base64.
pub fn looks_like_jwk(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Reads a JWK (one key) or a JWK Set (`{"keys": [...]}`).
///
/// A single JWK that is not an Ed25519 verification key is an error that says what it is. In a
/// set, keys for other algorithms or for other uses are skipped (a vendor's set may hold keys for
/// other purposes); a set with none left is an error listing what was skipped. A private key is
/// an error wherever it appears.
pub fn parse(text: &str) -> Result<Vec<JwkKey>, KeyError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(json_error)?;
    if value.get("keys").is_some() {
        let set: JwkSet = serde_json::from_value(value).map_err(json_error)?;
        return parse_set(set);
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(json_error)?;
    Ok(vec![ed25519(jwk)?])
}

fn parse_set(set: JwkSet) -> Result<Vec<JwkKey>, KeyError> {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, member) in set.keys.into_iter().enumerate() {
        let jwk: Jwk =
            serde_json::from_value(member).map_err(|e| KeyError::InvalidJwk(format!("keys[{i}]: {}", position(&e))))?;
        match ed25519(jwk) {
            Ok(key) => keys.push(key),
            Err(e @ (KeyError::UnsupportedJwk { .. } | KeyError::NotAVerificationKey { .. })) => {
                skipped.push(format!("keys[{i}]: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    if keys.is_empty() {
        return Err(KeyError::NoUsableJwk(if skipped.is_empty() {
            "the set is empty".into()
        } else {
            skipped.join("; ")
        }));
    }
    Ok(keys)
}

fn ed25519(jwk: Jwk) -> Result<JwkKey, KeyError> {
    let kid = jwk.kid.clone();
    if jwk.d.is_some() {
        return Err(KeyError::PrivateJwk { kid });
    }
    let kty = jwk
        .kty
        .as_deref()
        .ok_or_else(|| KeyError::InvalidJwk("no \"kty\"".into()))?;
    let crv = jwk.crv.as_deref();
    if kty != "OKP" || crv != Some("Ed25519") {
        let what = match (kty, crv) {
            (kty, Some(crv)) => format!("{kty} {crv}"),
            (kty, None) => kty.to_string(),
        };
        return Err(KeyError::UnsupportedJwk { kid, what });
    }
    if let Some(alg) = jwk.alg.as_deref().filter(|a| !ED25519_ALGORITHMS.contains(a)) {
        return Err(KeyError::UnsupportedJwk {
            kid,
            what: format!("OKP Ed25519 for alg {alg:?}"),
        });
    }
    let signs = jwk.use_.as_deref().is_none_or(|u| u == "sig");
    let verifies = jwk
        .key_ops
        .as_ref()
        .is_none_or(|ops| ops.iter().any(|op| op == "verify"));
    if !signs || !verifies {
        return Err(KeyError::NotAVerificationKey { kid });
    }
    let x = jwk
        .x
        .as_deref()
        .ok_or_else(|| KeyError::InvalidJwk("no \"x\"".into()))?;
    let raw = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(|e| KeyError::InvalidJwk(format!("\"x\" is not base64url: {e}")))?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::InvalidJwk(format!("\"x\" is {} bytes instead of 32", raw.len())))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::InvalidJwk(format!("\"x\": {e}")))?;
    Ok(JwkKey { kid, key })
}

/// The public key as a JWK, the form vendors publish.
pub fn to_jwk(key: &VerifyingKey, kid: Option<&str>) -> String {
    let mut jwk = serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
        "use": "sig",
    });
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
    }
    let mut text = serde_json::to_string_pretty(&jwk).expect("a JWK serializes");
    text.push('\n');
    text
}

fn json_error(e: serde_json::Error) -> KeyError {
    KeyError::InvalidJwk(position(&e))
}

/// What kind of JSON error, and where, without the text around it.
fn position(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
        serde_json::error::Category::Data => "a member has the wrong type",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::keys::signing_key_from_seed;

    fn x(seed: u8) -> String {
        URL_SAFE_NO_PAD.encode(signing_key_from_seed(&[seed; 32]).verifying_key().as_bytes())
    }

    #[test]
    fn a_jwk_round_trips_with_its_kid() {
        let key = signing_key_from_seed(&[1; 32]).verifying_key();
        let parsed = parse(&to_jwk(&key, Some("vendor-2026"))).unwrap();
        assert_eq!(
            parsed,
            [JwkKey {
                kid: Some("vendor-2026".into()),
                key
            }]
        );
        assert_eq!(parse(&to_jwk(&key, None)).unwrap()[0].kid, None);
    }

    #[test]
    fn both_algorithm_names_and_verification_uses_are_accepted() {
        for extra in [
            r#""alg":"EdDSA""#,
            r#""alg":"Ed25519""#,
            r#""use":"sig""#,
            r#""key_ops":["verify"]"#,
            r#""key_ops":["sign","verify"]"#,
            r#""x5t":"ignored""#,
        ] {
            let text = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}",{extra}}}"#, x(1));
            assert!(parse(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn a_private_jwk_is_refused_without_echoing_it() {
        let secret = URL_SAFE_NO_PAD.encode([7u8; 32]);
        for text in [
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","d":"{secret}","kid":"k"}}"#,
                x(1)
            ),
            format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","d":"{secret}"}}]}}"#,
                x(1)
            ),
            // Even where `d` has the wrong type, the error names a position, not the value.
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":7,"d":"{secret}"}}"#),
        ] {
            let e = parse(&text).unwrap_err();
            let message = e.to_string();
            assert!(!message.contains(&secret[..12]), "{message}");
            if !text.contains(r#""x":7"#) {
                assert!(matches!(e, KeyError::PrivateJwk { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn other_keys_are_refused_by_name() {
        for (text, needle) in [
            (r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#, "RSA"),
            (r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#, "EC P-256"),
            (r#"{"kty":"OKP","crv":"Ed448","x":"AA"}"#, "OKP Ed448"),
            (r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#, "OKP X25519"),
            (r#"{"kty":"oct","k":"AA"}"#, "oct"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(matches!(e, KeyError::UnsupportedJwk { .. }), "{text}: {e:?}");
            assert!(
                e.to_string().contains(needle) && e.to_string().contains("only Ed25519"),
                "{e}"
            );
        }
        let e = parse(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","alg":"ES256"}}"#,
            x(1)
        ))
        .unwrap_err();
        assert!(e.to_string().contains("ES256"), "{e}");
    }

    #[test]
    fn keys_not_for_verification_are_refused_alone_and_skipped_in_a_set() {
        for extra in [r#""use":"enc""#, r#""key_ops":["sign"]"#, r#""key_ops":[]"#] {
            let one = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}",{extra}}}"#, x(1));
            assert!(
                matches!(parse(&one), Err(KeyError::NotAVerificationKey { .. })),
                "{one}"
            );
        }
        let set = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"web","n":"AQAB","e":"AQAB"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"{}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"v1","x":"{}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"v2","alg":"Ed25519","x":"{}"}}
            ]}}"#,
            x(1),
            x(2),
            x(3)
        );
        let kids: Vec<Option<String>> = parse(&set).unwrap().into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [Some("v1".into()), Some("v2".into())]);
        let e = parse(r#"{"keys":[{"kty":"RSA","kid":"web","n":"AQAB","e":"AQAB"}]}"#).unwrap_err();
        assert!(e.to_string().contains("RSA") && e.to_string().contains("web"), "{e}");
        assert!(matches!(parse(r#"{"keys":[]}"#), Err(KeyError::NoUsableJwk(_))));
    }

    #[test]
    fn malformed_jwks_say_what_is_wrong() {
        for (text, needle) in [
            (r#"{"kty":"OKP","crv":"Ed25519"}"#, "no \"x\""),
            (r#"{"kty":"OKP","crv":"Ed25519","x":"!!"}"#, "base64url"),
            (r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#, "3 bytes"),
            (r#"{"crv":"Ed25519","x":"AAAA"}"#, "no \"kty\""),
            (r#"{"kty":"OKP","#, "not valid JSON"),
            (r#"{"keys":"none"}"#, "wrong type"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
