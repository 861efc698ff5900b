use ed25519_dalek::Signature;
use jiff::{SignedDuration, Timestamp};

use super::claims::{Claims, from_json};
use super::keys::KeySet;
use super::token::{self, Format};
use super::{Fingerprint, VerifyError};

/// The `alg` values of an Ed25519 signature: `EdDSA` (RFC 8037) and the fully specified `Ed25519`
/// (RFC 9864, which deprecates the polymorphic `EdDSA`). Both name the same signature.
pub const ED25519_ALGORITHMS: [&str; 2] = ["EdDSA", "Ed25519"];

/// Clock skew tolerated on `nbf`/`iat` between the vendor's and the customer's clocks.
pub const DEFAULT_LEEWAY: SignedDuration = SignedDuration::from_secs(60);

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// When set, the key's `aud` must name it (one of its entries, when it is an array).
    pub expected_product: Option<String>,
    pub now: Timestamp,
    pub leeway: SignedDuration,
}

impl VerifyOptions {
    pub fn at(now: Timestamp) -> Self {
        Self {
            expected_product: None,
            now,
            leeway: DEFAULT_LEEWAY,
        }
    }

    pub fn product(mut self, product: Option<impl Into<String>>) -> Self {
        self.expected_product = product.map(Into::into);
        self
    }
}

/// A license key whose signature checked out against a trusted key.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedLicense {
    pub format: Format,
    /// The id of the trusted key that verified it.
    pub key_id: String,
    pub claims: Claims,
    pub fingerprint: Fingerprint,
}

/// Verifies a license key offline. Expiry is not an error: it is a lifecycle state, see
/// [`super::lifecycle`].
pub fn verify(token: &[u8], keys: &KeySet, options: &VerifyOptions) -> Result<VerifiedLicense, VerifyError> {
    let decoded = token::decode(token)?;
    check_header(&decoded.header)?;
    let key_id = check_signature(&decoded, keys)?;
    let claims: Claims = from_json("claims", &decoded.claims_json)?;
    claims.validate()?;
    if let Some(expected) = &options.expected_product
        && !claims.aud.contains(expected)
    {
        return Err(VerifyError::ProductMismatch {
            expected: expected.clone(),
            actual: claims.aud.to_string(),
        });
    }
    if let Some(not_before) = claims.valid_from()
        && not_before.duration_since(options.now) > options.leeway
    {
        return Err(VerifyError::NotYetValid {
            not_before,
            now: options.now,
            leeway_seconds: options.leeway.as_secs(),
        });
    }
    Ok(VerifiedLicense {
        format: decoded.format,
        key_id,
        claims,
        fingerprint: Fingerprint::of(token),
    })
}

fn check_header(header: &super::claims::Header) -> Result<(), VerifyError> {
    // Checked before any key is touched: this is what stops `none`, and HS256 made with the public
    // key as the HMAC secret.
    if !ED25519_ALGORITHMS.contains(&header.alg.as_str()) {
        return Err(VerifyError::UnsupportedAlgorithm {
            alg: header.alg.clone(),
        });
    }
    if header.crit.is_some() {
        return Err(VerifyError::malformed(
            "header lists critical extensions (\"crit\"), none of which are supported",
        ));
    }
    Ok(())
}

fn check_signature(decoded: &token::Decoded, keys: &KeySet) -> Result<String, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoTrustedKeys);
    }
    let kid = decoded.header.kid.as_deref();
    let signature = Signature::from_bytes(&decoded.ed25519_signature()?);
    let mut tried = 0;
    for key in keys.candidates(kid) {
        tried += 1;
        // verify_strict also refuses weak keys and non-canonical signatures.
        if key.key().verify_strict(&decoded.signed_message, &signature).is_ok() {
            // An unnamed key that verifies a token naming its key answers to that name: the kid
            // is in the signed header, and it is the name the vendor uses.
            return Ok(match kid {
                Some(kid) if !key.is_named() => kid.to_string(),
                _ => key.id().to_string(),
            });
        }
    }
    match kid {
        Some(kid) if tried == 0 => Err(VerifyError::UnknownKeyId {
            kid: kid.to_string(),
            known: keys.ids().join(", "),
        }),
        _ => Err(VerifyError::SignatureInvalid {
            key_id: kid.map(str::to_string),
        }),
    }
}

/// A license key decoded without checking its signature: for display only, never for decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedLicense {
    pub format: Format,
    pub key_id: Option<String>,
    pub algorithm: String,
    pub claims: Claims,
    pub fingerprint: Fingerprint,
}

/// Decodes a license key to show what it claims. Nothing here is trusted: use [`verify`].
pub fn decode_unverified(token: &[u8]) -> Result<UnverifiedLicense, VerifyError> {
    let decoded = token::decode(token)?;
    let claims: Claims = from_json("claims", &decoded.claims_json)?;
    claims.validate()?;
    Ok(UnverifiedLicense {
        format: decoded.format,
        key_id: decoded.header.kid,
        algorithm: decoded.header.alg,
        claims,
        fingerprint: Fingerprint::of(token),
    })
}
