//! Ed25519 key material: PEM (PKCS#8 / SPKI), raw base64 and JWK forms, key ids, and trusted key
//! sets.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::jwk::{self, JwkKey};
use super::sha256_hex_prefix;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 public key: expected a PEM \"BEGIN PUBLIC KEY\" block or 32 bytes in base64 ({0})")]
    InvalidPublicKey(String),
    #[error("not an Ed25519 private key: expected a PKCS#8 PEM \"BEGIN PRIVATE KEY\" block ({0})")]
    InvalidPrivateKey(String),
    #[error("key id {0:?} is invalid: use 1-128 characters of [A-Za-z0-9._-]")]
    InvalidKeyId(String),
    #[error("key id {0:?} is used by two different public keys")]
    DuplicateKeyId(String),
    #[error("not a usable JSON Web Key: {0}")]
    InvalidJwk(String),
    #[error("the JWK{} is a private key (it has \"d\"): give only the public key", kid_hint(.kid))]
    PrivateJwk { kid: Option<String> },
    #[error("the JWK{} is an {what} key; only Ed25519 keys are supported", kid_hint(.kid))]
    UnsupportedJwk { kid: Option<String>, what: String },
    #[error("the JWK{} is not for verifying signatures (its \"use\" or \"key_ops\" exclude it)", kid_hint(.kid))]
    NotAVerificationKey { kid: Option<String> },
    #[error("the JWK Set has no Ed25519 verification key: {0}")]
    NoUsableJwk(String),
}

fn kid_hint(kid: &Option<String>) -> String {
    kid.as_ref().map(|k| format!(" {k:?}")).unwrap_or_default()
}

/// The default key id: a short hash of the public key, so it is stable and needs no bookkeeping.
pub fn derived_key_id(key: &VerifyingKey) -> String {
    sha256_hex_prefix(key.as_bytes(), 16)
}

pub fn validate_key_id(id: &str) -> Result<(), KeyError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidKeyId(id.to_string()))
    }
}

/// Builds a signing key from 32 bytes of entropy supplied by the caller (this module does no I/O).
pub fn signing_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

pub fn signing_key_to_pem(key: &SigningKey) -> Zeroizing<String> {
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes as PKCS#8")
}

pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| KeyError::InvalidPrivateKey(e.to_string()))
}

pub fn public_key_to_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes as SPKI")
}

/// Parses the public keys in a text: SPKI PEM or 32 raw bytes in base64 (one key, no id), or a JWK
/// or JWK Set (each key with the `kid` its JWK gives).
pub fn parse_public_keys(text: &str) -> Result<Vec<JwkKey>, KeyError> {
    if jwk::looks_like_jwk(text) {
        return jwk::parse(text);
    }
    Ok(vec![JwkKey {
        kid: None,
        key: parse_public_key(text)?,
    }])
}

/// Parses a public key given as SPKI PEM or as 32 raw bytes in base64 (standard or URL-safe).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text).map_err(|e| KeyError::InvalidPublicKey(e.to_string()));
    }
    let raw = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|e| KeyError::InvalidPublicKey(format!("bad base64: {e}")))?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::InvalidPublicKey(format!("{} bytes instead of 32", raw.len())))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
}

/// A vendor public key the installation trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedKey {
    id: String,
    derived_id: String,
    /// Loaded with an explicit id. A key loaded without one has no name a token could mismatch.
    named: bool,
    key: VerifyingKey,
}

impl TrustedKey {
    /// `id` is the name the vendor signs with; without one the key is known by its derived id only.
    pub fn new(id: Option<&str>, key: VerifyingKey) -> Result<Self, KeyError> {
        let derived_id = derived_key_id(&key);
        let named = id.is_some();
        let id = match id {
            Some(id) => {
                validate_key_id(id)?;
                id.to_string()
            }
            None => derived_id.clone(),
        };
        Ok(Self {
            id,
            derived_id,
            named,
            key,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether the key was given an id, rather than being known by its derived id only.
    pub fn is_named(&self) -> bool {
        self.named
    }

    /// A token's `kid` names this key by its given id or by the hash of the key itself.
    pub fn answers_to(&self, kid: &str) -> bool {
        self.id == kid || self.derived_id == kid
    }
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey")
            .field("id", &self.id)
            .field("derived_id", &self.derived_id)
            .finish()
    }
}

/// The set of vendor public keys an installation trusts. Several keys let a vendor rotate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<TrustedKey>,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; the same key twice is harmless, one id for two keys is refused.
    pub fn insert(&mut self, key: TrustedKey) -> Result<(), KeyError> {
        if let Some(existing) = self.keys.iter().find(|k| k.id == key.id) {
            return if existing.key == key.key {
                Ok(())
            } else {
                Err(KeyError::DuplicateKeyId(key.id))
            };
        }
        self.keys.push(key);
        self.keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter()
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Keys a token may be verified with: the one its `kid` names; failing that, keys loaded
    /// without an id (they have no name to mismatch); every key when the token names none.
    pub(crate) fn candidates<'a>(&'a self, kid: Option<&'a str>) -> Vec<&'a TrustedKey> {
        let Some(kid) = kid else {
            return self.keys.iter().collect();
        };
        let named: Vec<&TrustedKey> = self.keys.iter().filter(|k| k.answers_to(kid)).collect();
        if named.is_empty() {
            self.keys.iter().filter(|k| !k.named).collect()
        } else {
            named
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        signing_key_from_seed(&[seed; 32])
    }

    #[test]
    fn pem_round_trips() {
        let sk = key(1);
        let pem = signing_key_to_pem(&sk);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(signing_key_from_pem(&pem).unwrap().to_bytes(), sk.to_bytes());
        let public = public_key_to_pem(&sk.verifying_key());
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(parse_public_key(&public).unwrap(), sk.verifying_key());
    }

    #[test]
    fn raw_base64_public_keys() {
        let vk = key(2).verifying_key();
        let std = STANDARD.encode(vk.as_bytes());
        let url = URL_SAFE_NO_PAD.encode(vk.as_bytes());
        assert_eq!(parse_public_key(&std).unwrap(), vk);
        assert_eq!(parse_public_key(&format!("  {url}\n")).unwrap(), vk);
        assert!(
            parse_public_key(&STANDARD.encode([0u8; 31]))
                .unwrap_err()
                .to_string()
                .contains("31 bytes")
        );
        assert!(parse_public_key("not base64 !!").is_err());
    }

    #[test]
    fn rejects_private_key_as_public_and_garbage_pem() {
        let pem = signing_key_to_pem(&key(3));
        assert!(parse_public_key(&pem).is_err());
        assert!(parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(signing_key_from_pem(&public_key_to_pem(&key(3).verifying_key())).is_err());
    }

    #[test]
    fn key_ids() {
        assert!(validate_key_id("vendor-2026.a_1").is_ok());
        for bad in ["", "has space", "slash/", &"x".repeat(129)] {
            assert!(validate_key_id(bad).is_err(), "{bad}");
        }
        let vk = key(4).verifying_key();
        let k = TrustedKey::new(Some("v1"), vk).unwrap();
        assert!(k.answers_to("v1"));
        assert!(k.answers_to(&derived_key_id(&vk)));
        assert!(!k.answers_to("v2"));
        assert_eq!(derived_key_id(&vk).len(), 16);
    }

    #[test]
    fn keyset_refuses_one_id_for_two_keys() {
        let mut set = KeySet::new();
        set.insert(TrustedKey::new(Some("a"), key(5).verifying_key()).unwrap())
            .unwrap();
        set.insert(TrustedKey::new(Some("a"), key(5).verifying_key()).unwrap())
            .unwrap();
        assert_eq!(set.len(), 1);
        let err = set.insert(TrustedKey::new(Some("a"), key(6).verifying_key()).unwrap());
        assert_eq!(err, Err(KeyError::DuplicateKeyId("a".into())));
        assert_eq!(set.candidates(None).len(), 1);
        assert_eq!(set.candidates(Some("b")).len(), 0);
    }

    #[test]
    fn an_unnamed_key_may_verify_any_kid_but_a_named_match_wins() {
        let mut set = KeySet::new();
        set.insert(TrustedKey::new(None, key(8).verifying_key()).unwrap())
            .unwrap();
        assert_eq!(set.candidates(Some("vendor-2026")).len(), 1);
        set.insert(TrustedKey::new(Some("vendor-2026"), key(9).verifying_key()).unwrap())
            .unwrap();
        let c = set.candidates(Some("vendor-2026"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id(), "vendor-2026");
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        // Every way the bytes could be printed: a derived `Debug` prints them as a decimal list.
        let bytes = *key(7).verifying_key().as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let decimal = |bs: &[u8]| bs.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        for shown in [
            format!("{:?}", TrustedKey::new(None, key(7).verifying_key()).unwrap()),
            format!("{:#?}", TrustedKey::new(Some("k"), key(7).verifying_key()).unwrap()),
            format!("{:?}", {
                let mut set = KeySet::new();
                set.insert(TrustedKey::new(None, key(7).verifying_key()).unwrap())
                    .unwrap();
                set
            }),
        ] {
            assert!(!shown.contains(&STANDARD.encode(bytes)), "{shown}");
            assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(bytes)), "{shown}");
            assert!(!shown.contains(&hex[..16]) && !shown.contains(&hex[16..32]), "{shown}");
            for window in bytes.windows(4) {
                assert!(!shown.contains(&decimal(window)), "{shown}");
            }
        }
        // The check itself can fail: the key's own Debug does print its bytes.
        let raw = format!("{:?}", key(7).verifying_key());
        assert!(
            bytes.windows(4).any(|w| raw.contains(&decimal(w))) || raw.contains(&hex[..16]),
            "{raw}"
        );
    }
}
