use ed25519_dalek::{Signer, SigningKey};

use super::claims::{Claims, Header, REGISTERED_CLAIMS};
use super::error::VerifyError;
use super::keys::{KeyError, validate_key_id};
use super::token::{self, Format, PREFIXED_TYP};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("the claims are invalid: {0}")]
    InvalidClaims(VerifyError),
    #[error("extra claim {0:?} clashes with a registered claim; set it through its own option")]
    ReservedClaim(String),
    #[error("prefix {0:?} is invalid: it must look like cz_ent_ (lowercase [a-z][a-z0-9]*_[a-z0-9]+_)")]
    InvalidPrefix(String),
    #[error("{0}")]
    InvalidKeyId(KeyError),
    #[error("the token header would be {0} bytes, over the 65535-byte limit of the prefixed format")]
    HeaderTooLarge(usize),
    #[error("the token would be {0} bytes, over the {max}-byte limit", max = token::MAX_TOKEN_BYTES)]
    TooLarge(usize),
}

/// Signs `claims` into a token of the given format. `kid` goes into the header so verifiers can
/// pick the right key among several.
pub fn issue(claims: &Claims, key: &SigningKey, kid: Option<&str>, format: &Format) -> Result<String, IssueError> {
    claims.validate().map_err(IssueError::InvalidClaims)?;
    if let Some(name) = claims.extra.0.keys().find(|k| REGISTERED_CLAIMS.contains(&k.as_str())) {
        return Err(IssueError::ReservedClaim(name.clone()));
    }
    if let Some(kid) = kid {
        validate_key_id(kid).map_err(IssueError::InvalidKeyId)?;
    }
    let claims_json = serde_json::to_vec(claims).expect("claims always serialize");
    let token = match format {
        Format::Jwt => {
            let header = Header {
                alg: "EdDSA".into(),
                typ: Some("JWT".into()),
                kid: kid.map(Into::into),
                crit: None,
            };
            let header_json = serde_json::to_vec(&header).expect("header always serializes");
            let signing_input = format!(
                "{}.{}",
                token::encode_b64(&header_json),
                token::encode_b64(&claims_json)
            );
            let signature = key.sign(signing_input.as_bytes());
            format!("{signing_input}.{}", token::encode_b64(&signature.to_bytes()))
        }
        Format::Prefixed { prefix } => {
            if !token::is_valid_prefix(prefix) {
                return Err(IssueError::InvalidPrefix(prefix.clone()));
            }
            let header = Header {
                alg: "EdDSA".into(),
                typ: Some(PREFIXED_TYP.into()),
                kid: kid.map(Into::into),
                crit: None,
            };
            let header_json = serde_json::to_vec(&header).expect("header always serializes");
            let mut payload =
                token::prefixed_unsigned_payload(&header_json, &claims_json).map_err(IssueError::HeaderTooLarge)?;
            let signature = key.sign(&token::prefixed_signed_message(prefix, &payload));
            payload.extend_from_slice(&signature.to_bytes());
            format!("{prefix}{}", token::encode_b64(&payload))
        }
    };
    if token.len() > token::MAX_TOKEN_BYTES {
        return Err(IssueError::TooLarge(token.len()));
    }
    Ok(token)
}
