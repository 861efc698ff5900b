//! The two wire formats of a license key. See `docs/key-format.md` for the exact envelopes.
//!
//! Decoding here only splits a token into what was signed, the signature, the header and the
//! claim bytes; nothing is trusted until [`super::verify`] has checked the signature.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::VerifyError;
use super::claims::{Header, from_json};

/// Tokens above this size are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Domain-separation tag that starts every prefixed token's signed message. It contains bytes a
/// JWT signing input (base64url and '.') can never hold, so neither format's signature verifies as
/// the other's.
pub const PREFIXED_SIGNING_TAG: &[u8] = b"keyward-prefixed-license-v1\0";

/// The `typ` a prefixed token's header carries.
pub const PREFIXED_TYP: &str = "license+prefixed";

const SIGNATURE_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Compact JWS: `b64(header).b64(claims).b64(signature)`.
    Jwt,
    /// `<prefix><b64(payload)>`, the prefix matching `[a-z][a-z0-9]*_[a-z0-9]+_`.
    Prefixed { prefix: String },
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Jwt => f.write_str("jwt"),
            Format::Prefixed { prefix } => write!(f, "prefixed ({prefix})"),
        }
    }
}

/// A token split into its parts, not yet verified.
#[derive(Debug)]
pub struct Decoded {
    pub format: Format,
    pub header: Header,
    pub signed_message: Vec<u8>,
    /// Raw signature bytes; their length is checked only once the header's algorithm is known to
    /// be EdDSA, so an HS256 or RS256 token is reported as such rather than as malformed.
    pub signature: Vec<u8>,
    pub claims_json: Vec<u8>,
}

/// Whitespace around a key (a trailing newline in a file or Secret) is not part of it.
pub fn trim(token: &[u8]) -> &[u8] {
    token.trim_ascii()
}

pub fn decode(token: &[u8]) -> Result<Decoded, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let text = std::str::from_utf8(trim(token))
        .map_err(|e| VerifyError::malformed(format!("not UTF-8 text (invalid byte at offset {})", e.valid_up_to())))?;
    if text.is_empty() {
        return Err(VerifyError::malformed("empty"));
    }
    if text.contains('.') {
        decode_jwt(text)
    } else if let Some(prefix_len) = prefix_len(text) {
        decode_prefixed(&text[..prefix_len], &text[prefix_len..])
    } else {
        Err(VerifyError::malformed(
            "neither a JWT (three dot-separated parts) nor a prefixed token such as cz_ent_…",
        ))
    }
}

/// Length of a leading `[a-z][a-z0-9]*_[a-z0-9]+_`, if the text starts with one.
pub fn prefix_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let first = bytes.iter().position(|&b| b == b'_')?;
    if first == 0 || !bytes[0].is_ascii_lowercase() || !bytes[..first].iter().all(lower_alnum) {
        return None;
    }
    let rest = &bytes[first + 1..];
    let second = rest.iter().position(|&b| b == b'_')?;
    if second == 0 || !rest[..second].iter().all(lower_alnum) {
        return None;
    }
    Some(first + 1 + second + 1)
}

/// A prefix as people write it, `cz_ent` or `cz_ent_`, in the form tokens carry: `cz_ent_`.
pub fn normalize_prefix(prefix: &str) -> String {
    if prefix.ends_with('_') {
        prefix.to_string()
    } else {
        format!("{prefix}_")
    }
}

pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix_len(prefix) == Some(prefix.len())
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| VerifyError::malformed(format!("{what} is not unpadded base64url: {e}")))
}

impl Decoded {
    pub fn ed25519_signature(&self) -> Result<[u8; SIGNATURE_LEN], VerifyError> {
        self.signature.as_slice().try_into().map_err(|_| {
            VerifyError::malformed(format!(
                "signature is {} bytes, not {SIGNATURE_LEN}",
                self.signature.len()
            ))
        })
    }
}

fn decode_jwt(text: &str) -> Result<Decoded, VerifyError> {
    let parts: Vec<&str> = text.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(VerifyError::malformed(format!(
            "a JWT has 3 dot-separated parts, this has {}",
            parts.len()
        )));
    };
    let header: Header = from_json("JWT header", &b64(header_b64, "JWT header")?)?;
    let claims_json = b64(claims_b64, "JWT claims")?;
    let signature = b64(signature_b64, "JWT signature")?;
    let signed_len = header_b64.len() + 1 + claims_b64.len();
    Ok(Decoded {
        format: Format::Jwt,
        header,
        signed_message: text.as_bytes()[..signed_len].to_vec(),
        signature,
        claims_json,
    })
}

fn decode_prefixed(prefix: &str, payload_b64: &str) -> Result<Decoded, VerifyError> {
    let payload = b64(payload_b64, "token payload")?;
    let Some((header_len, rest)) = payload.split_first_chunk::<2>() else {
        return Err(VerifyError::malformed("token payload is too short"));
    };
    let header_len = usize::from(u16::from_be_bytes(*header_len));
    if rest.len() < header_len {
        return Err(VerifyError::malformed(format!(
            "token payload is {} bytes, too short for its {header_len}-byte header",
            payload.len()
        )));
    }
    let (header_json, rest) = rest.split_at(header_len);
    let header: Header = from_json("token header", header_json)?;
    if header.typ.as_deref() != Some(PREFIXED_TYP) {
        return Err(VerifyError::malformed(format!(
            "token header typ is not {PREFIXED_TYP:?}"
        )));
    }
    // The signature is the tail; its length is known only for EdDSA, which the header must name.
    let signature_len = if header.alg == "EdDSA" { SIGNATURE_LEN } else { 0 };
    if rest.len() < signature_len {
        return Err(VerifyError::malformed("token payload is too short to hold a signature"));
    }
    let (claims_json, signature) = rest.split_at(rest.len() - signature_len);
    Ok(Decoded {
        format: Format::Prefixed {
            prefix: prefix.to_string(),
        },
        header,
        signed_message: prefixed_signed_message(prefix, &payload[..payload.len() - signature_len]),
        signature: signature.to_vec(),
        claims_json: claims_json.to_vec(),
    })
}

/// The exact bytes a prefixed token's signature covers: tag, prefix, NUL, then the payload up to
/// the signature.
pub fn prefixed_signed_message(prefix: &str, unsigned_payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(PREFIXED_SIGNING_TAG.len() + prefix.len() + 1 + unsigned_payload.len());
    message.extend_from_slice(PREFIXED_SIGNING_TAG);
    message.extend_from_slice(prefix.as_bytes());
    message.push(0);
    message.extend_from_slice(unsigned_payload);
    message
}

/// Builds the unsigned part of a prefixed payload: header length, header, claims.
/// The prefixed format's payload before its signature; the error is a header length over the u16
/// length field.
pub fn prefixed_unsigned_payload(header_json: &[u8], claims_json: &[u8]) -> Result<Vec<u8>, usize> {
    let header_len = u16::try_from(header_json.len()).map_err(|_| header_json.len())?;
    let mut payload = Vec::with_capacity(2 + header_json.len() + claims_json.len() + SIGNATURE_LEN);
    payload.extend_from_slice(&header_len.to_be_bytes());
    payload.extend_from_slice(header_json);
    payload.extend_from_slice(claims_json);
    Ok(payload)
}

pub fn encode_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(prefix_len("cz_ent_AAAA"), Some(7));
        assert_eq!(prefix_len("cz_ent_AA_b"), Some(7));
        assert_eq!(prefix_len("a1_b2_"), Some(6));
        for bad in [
            "Cz_ent_x",
            "1z_ent_x",
            "_ent_x",
            "cz__x",
            "cz_Ent_x",
            "czent",
            "cz_ent",
            "c-z_ent_x",
        ] {
            assert_eq!(prefix_len(bad), None, "{bad}");
        }
        assert!(is_valid_prefix("cz_ent_"));
        assert!(!is_valid_prefix("cz_ent"));
        assert!(!is_valid_prefix("cz_ent_x"));
    }

    #[test]
    fn structural_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   \n", "empty"),
            (b"a.b", "3 dot-separated parts, this has 2"),
            (b"a.b.c.d", "this has 4"),
            (b"!!!.e30.AAAA", "not unpadded base64url"),
            (b"e30=.e30.AAAA", "not unpadded base64url"),
            (b"\xff\xfe.a.b", "not UTF-8"),
            (b"cz_ent_", "too short"),
            (b"cz_ent_AAAA", "token header is not valid JSON"),
            (b"hello", "neither a JWT"),
        ];
        for (input, expected) in cases {
            let err = decode(input).unwrap_err();
            assert_eq!(err.reason(), "Malformed");
            assert!(
                err.to_string().contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversized() {
        let big = vec![b'a'; MAX_TOKEN_BYTES + 1];
        assert_eq!(
            decode(&big).unwrap_err(),
            VerifyError::TooLarge {
                len: MAX_TOKEN_BYTES + 1,
                max: MAX_TOKEN_BYTES
            }
        );
    }

    #[test]
    fn signed_messages_of_the_two_formats_never_collide() {
        let prefixed = prefixed_signed_message("cz_ent_", b"{}");
        assert!(prefixed.contains(&0));
        assert!(
            !prefixed
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' || *b == b'.')
        );
    }
}
