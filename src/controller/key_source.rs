//! Reading a License's key from its Secret, on demand, and verifying it. This module owns what
//! can be found about the key: [`KeyOutcome`], and [`KeyReason`] when it is refused.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::finding::{Finding, reasons};
use crate::api::v1alpha1::LicenseSpec;
use crate::license::{Fingerprint, KeySet, VerifiedLicense, VerifyError, VerifyOptions, verify};

reasons! {
    /// Why a License has no key in force.
    pub enum KeyReason {
        InvalidSpec,
        SecretNotFound,
        SecretWrongType,
        KeyNotFound,
        Malformed,
        TooLarge,
        UnsupportedAlgorithm,
        UnknownKeyId,
        NoTrustedKeys,
        SignatureInvalid,
        ProductMismatch,
        /// Signed and trusted, but valid only from a later instant.
        NotYetValid,
    }
}

impl From<&VerifyError> for KeyReason {
    fn from(e: &VerifyError) -> Self {
        match e {
            VerifyError::Malformed(_) => Self::Malformed,
            VerifyError::TooLarge { .. } => Self::TooLarge,
            VerifyError::UnsupportedAlgorithm { .. } => Self::UnsupportedAlgorithm,
            VerifyError::UnknownKeyId { .. } => Self::UnknownKeyId,
            VerifyError::NoTrustedKeys => Self::NoTrustedKeys,
            VerifyError::SignatureInvalid { .. } => Self::SignatureInvalid,
            VerifyError::ProductMismatch { .. } => Self::ProductMismatch,
            VerifyError::NotYetValid { .. } => Self::NotYetValid,
        }
    }
}

/// What reading and verifying the referenced key produced.
#[derive(Debug, Clone)]
pub enum KeyOutcome {
    Verified(Box<VerifiedLicense>),
    Refused(Refusal),
}

/// A key that is not in force, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub finding: Finding<KeyReason>,
    /// Fingerprint of the refused key, when there was one.
    pub fingerprint: Option<String>,
    /// For [`KeyReason::NotYetValid`]: when the key starts to be valid.
    pub not_before: Option<Timestamp>,
}

impl Refusal {
    pub fn reason(&self) -> KeyReason {
        self.finding.reason
    }

    pub fn message(&self) -> &str {
        &self.finding.message
    }
}

/// Secret types a license key may live in. Anything else (a TLS or service-account Secret) is a
/// mistake worth saying so.
const ACCEPTED_SECRET_TYPES: &[&str] = &["Opaque", "keyward.dev/license"];

fn refusal(reason: KeyReason, message: String) -> Refusal {
    Refusal {
        finding: Finding::new(reason, message),
        fingerprint: None,
        not_before: None,
    }
}

/// Checks what the CRD schema cannot on Kubernetes 1.20 (no CEL).
pub fn validate_spec(spec: &LicenseSpec) -> Result<(), Refusal> {
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !dns_label(&spec.secret_ref.name) {
        return Err(refusal(
            KeyReason::InvalidSpec,
            format!(
                "spec.secretRef.name {:?} is not a valid Secret name",
                spec.secret_ref.name
            ),
        ));
    }
    if spec.secret_ref.key.is_empty() {
        return Err(refusal(KeyReason::InvalidSpec, "spec.secretRef.key is empty".into()));
    }
    if spec.product.trim().is_empty() {
        return Err(refusal(KeyReason::InvalidSpec, "spec.product is empty".into()));
    }
    Ok(())
}

/// The key bytes, or why there are none. API errors other than 404 are returned for a retry.
pub async fn read_key(secrets: &Api<Secret>, spec: &LicenseSpec) -> Result<Result<Vec<u8>, Refusal>, kube::Error> {
    let name = &spec.secret_ref.name;
    let secret = match secrets.get_opt(name).await? {
        Some(s) => s,
        None => {
            return Ok(Err(refusal(
                KeyReason::SecretNotFound,
                format!("Secret {name:?} does not exist in this namespace"),
            )));
        }
    };
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if !ACCEPTED_SECRET_TYPES.contains(&type_) {
        return Ok(Err(refusal(
            KeyReason::SecretWrongType,
            format!("Secret {name:?} is of type {type_:?}; a license key lives in an Opaque Secret"),
        )));
    }
    let key = &spec.secret_ref.key;
    let data = secret.data.unwrap_or_default();
    match data.get(key) {
        Some(bytes) => Ok(Ok(bytes.0.clone())),
        None => {
            let present: Vec<&str> = data.keys().map(String::as_str).collect();
            Ok(Err(refusal(
                KeyReason::KeyNotFound,
                format!(
                    "Secret {name:?} has no data key {key:?} (it has: {})",
                    if present.is_empty() {
                        "none".to_string()
                    } else {
                        present.join(", ")
                    }
                ),
            )))
        }
    }
}

pub fn verify_key(token: &[u8], keys: &KeySet, product: &str, now: Timestamp) -> KeyOutcome {
    match verify(token, keys, &VerifyOptions::at(now).product(Some(product))) {
        Ok(license) => KeyOutcome::Verified(Box::new(license)),
        Err(e) => KeyOutcome::Refused(Refusal {
            finding: Finding::new(KeyReason::from(&e), e.to_string()),
            fingerprint: Some(Fingerprint::of(token).to_string()),
            not_before: match e {
                VerifyError::NotYetValid { not_before, .. } => Some(not_before),
                _ => None,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::finding::Reason;

    #[test]
    fn verification_reasons_keep_the_core_names() {
        let errors = [
            VerifyError::Malformed("x".into()),
            VerifyError::TooLarge { len: 1, max: 0 },
            VerifyError::UnsupportedAlgorithm { alg: "none".into() },
            VerifyError::UnknownKeyId {
                kid: "a".into(),
                known: "b".into(),
            },
            VerifyError::NoTrustedKeys,
            VerifyError::SignatureInvalid { key_id: None },
            VerifyError::ProductMismatch {
                expected: "a".into(),
                actual: "b".into(),
            },
            VerifyError::NotYetValid {
                not_before: Timestamp::UNIX_EPOCH,
                now: Timestamp::UNIX_EPOCH,
                leeway_seconds: 0,
            },
        ];
        for e in &errors {
            assert_eq!(KeyReason::from(e).as_str(), e.reason());
        }
    }

    #[test]
    fn reasons_serialise_to_the_api_strings() {
        let names: Vec<&str> = KeyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "InvalidSpec",
                "SecretNotFound",
                "SecretWrongType",
                "KeyNotFound",
                "Malformed",
                "TooLarge",
                "UnsupportedAlgorithm",
                "UnknownKeyId",
                "NoTrustedKeys",
                "SignatureInvalid",
                "ProductMismatch",
                "NotYetValid"
            ]
        );
    }
}
