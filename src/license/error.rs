use jiff::Timestamp;

/// Why a license key was refused. Each variant has a stable CamelCase [`reason`](Self::reason)
/// (used in status conditions, JSON output and metrics) and a one-line human message.
///
/// Messages never contain the token itself: at most lengths, positions and claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("license key is malformed: {0}")]
    Malformed(String),
    #[error("license key is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("license key is signed with {alg:?}; only Ed25519 keys are supported (alg \"EdDSA\" or \"Ed25519\")")]
    UnsupportedAlgorithm { alg: String },
    #[error("license key was signed by key id {kid:?}, which is not among the trusted keys ({known})")]
    UnknownKeyId { kid: String, known: String },
    #[error("no trusted public keys are configured, so no license key can be verified")]
    NoTrustedKeys,
    #[error("license key signature does not verify against the trusted key{}", key_hint(.key_id))]
    SignatureInvalid { key_id: Option<String> },
    #[error("license key is for product {actual:?}, but this installation expects {expected:?}")]
    ProductMismatch { expected: String, actual: String },
    #[error("license key is not valid before {not_before} (now {now}, leeway {leeway_seconds}s)")]
    NotYetValid {
        not_before: Timestamp,
        now: Timestamp,
        leeway_seconds: i64,
    },
}

fn key_hint(key_id: &Option<String>) -> String {
    match key_id {
        Some(id) => format!(" {id:?}"),
        None => "s".to_string(),
    }
}

impl VerifyError {
    /// Stable machine-readable reason, in the CamelCase form Kubernetes uses for condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "Malformed",
            Self::TooLarge { .. } => "TooLarge",
            Self::UnsupportedAlgorithm { .. } => "UnsupportedAlgorithm",
            Self::UnknownKeyId { .. } => "UnknownKeyId",
            Self::NoTrustedKeys => "NoTrustedKeys",
            Self::SignatureInvalid { .. } => "SignatureInvalid",
            Self::ProductMismatch { .. } => "ProductMismatch",
            Self::NotYetValid { .. } => "NotYetValid",
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed(detail.into())
    }
}

/// One error of every kind, for tests here and in the layers that map them.
#[cfg(test)]
pub(crate) fn one_of_each() -> Vec<VerifyError> {
    vec![
        VerifyError::malformed("bad base64"),
        VerifyError::TooLarge { len: 70000, max: 65536 },
        VerifyError::UnsupportedAlgorithm { alg: "none".into() },
        VerifyError::UnknownKeyId {
            kid: "x".into(),
            known: "a, b".into(),
        },
        VerifyError::NoTrustedKeys,
        VerifyError::SignatureInvalid {
            key_id: Some("k".into()),
        },
        VerifyError::SignatureInvalid { key_id: None },
        VerifyError::ProductMismatch {
            expected: "a".into(),
            actual: "b".into(),
        },
        VerifyError::NotYetValid {
            not_before: Timestamp::UNIX_EPOCH,
            now: Timestamp::UNIX_EPOCH,
            leeway_seconds: 60,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_single_lines() {
        for e in one_of_each() {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(!e.reason().is_empty());
        }
    }
}
