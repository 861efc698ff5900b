//! Reading a License's key from its Secret, on demand, and verifying it.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::status::{KeyOutcome, Refusal};
use crate::api::v1alpha1::LicenseSpec;
use crate::license::{Fingerprint, KeySet, VerifyError, VerifyOptions, verify};

/// Secret types a license key may live in. Anything else (a TLS or service-account Secret) is a
/// mistake worth saying so.
const ACCEPTED_SECRET_TYPES: &[&str] = &["Opaque", "keyward.dev/license"];

fn refusal(reason: &str, message: String) -> Refusal {
    Refusal {
        reason: reason.into(),
        message,
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
            "InvalidSpec",
            format!(
                "spec.secretRef.name {:?} is not a valid Secret name",
                spec.secret_ref.name
            ),
        ));
    }
    if spec.secret_ref.key.is_empty() {
        return Err(refusal("InvalidSpec", "spec.secretRef.key is empty".into()));
    }
    if spec.product.trim().is_empty() {
        return Err(refusal("InvalidSpec", "spec.product is empty".into()));
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
                "SecretNotFound",
                format!("Secret {name:?} does not exist in this namespace"),
            )));
        }
    };
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if !ACCEPTED_SECRET_TYPES.contains(&type_) {
        return Ok(Err(refusal(
            "SecretWrongType",
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
                "KeyNotFound",
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
            reason: e.reason().to_string(),
            message: e.to_string(),
            fingerprint: Some(Fingerprint::of(token).to_string()),
            not_before: match e {
                VerifyError::NotYetValid { not_before, .. } => Some(not_before),
                _ => None,
            },
        }),
    }
}
