use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::token::trim;

/// A short SHA-256 of a license key: safe to log, show and store where the key itself must not be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Whitespace around the key does not change its fingerprint.
    pub fn of(token: &[u8]) -> Self {
        Fingerprint(format!("sha256:{}", sha256_hex_prefix(trim(token), 16)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first `chars` lowercase hex digits of SHA-256(`bytes`).
pub fn sha256_hex_prefix(bytes: &[u8], chars: usize) -> String {
    Sha256::digest(bytes)
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(chars)
        .map(|n| char::from_digit(n.into(), 16).expect("a nibble is a hex digit"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_short_and_whitespace_blind() {
        let a = Fingerprint::of(b"cz_ent_abc");
        assert_eq!(a, Fingerprint::of(b"cz_ent_abc\n"));
        assert_ne!(a, Fingerprint::of(b"cz_ent_abd"));
        assert_eq!(a.as_str().len(), "sha256:".len() + 16);
        assert!(!a.as_str().contains("abc"));
    }
}
