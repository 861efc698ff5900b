//! Reading a License's key from its Secret, on demand, and verifying it. This module owns what
//! can be found about the key: [`KeyOutcome`], and [`KeyReason`] when it is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::finding::{Finding, reasons};
use super::key_secrets::{KeySecret, KeySecretReader};
use crate::api::v1alpha1::{LicenseSpec, SecretKeyRef};
use crate::license::selection::{self, Candidate, Selection};
use crate::license::{
    Claims, Fingerprint, KeySet, Policy, VerifiedLicense, VerifyError, VerifyOptions, decode_unverified, verify,
};

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
    let refs = std::iter::once(("spec.secretRef".to_string(), &spec.secret_ref)).chain(
        spec.additional_keys
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("spec.additionalKeys[{i}]"), r)),
    );
    for (field, r) in refs {
        if !dns_label(&r.name) {
            return Err(refusal(
                KeyReason::InvalidSpec,
                format!("{field}.name {:?} is not a valid Secret name", r.name),
            ));
        }
        if r.key.is_empty() {
            return Err(refusal(KeyReason::InvalidSpec, format!("{field}.key is empty")));
        }
    }
    if spec.product.trim().is_empty() {
        return Err(refusal(KeyReason::InvalidSpec, "spec.product is empty".into()));
    }
    Ok(())
}

/// One key a License references: where it comes from, its bytes, what verifying it found, and its
/// claims when they are known to be authentic (verified, or signed but not yet valid).
#[derive(Debug, Clone)]
pub struct KeyCandidate {
    /// `secret/dataKey`.
    pub source: String,
    pub token: Option<Vec<u8>>,
    pub outcome: KeyOutcome,
    pub claims: Option<Claims>,
}

/// The key in force among a License's candidates, or the refusal that explains why there is none.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub outcome: KeyOutcome,
    pub token: Option<Vec<u8>>,
    pub selection: Selection,
}

/// Reads and verifies every key the License references, the primary key first. Each Secret is
/// read once. API errors other than 404 are returned for a retry.
pub async fn read_candidates(
    secrets: &KeySecretReader,
    spec: &LicenseSpec,
    keys: &KeySet,
    now: Timestamp,
) -> Result<Vec<KeyCandidate>, kube::Error> {
    let refs: Vec<&SecretKeyRef> = std::iter::once(&spec.secret_ref).chain(&spec.additional_keys).collect();
    let mut fetched: BTreeMap<&str, Option<Arc<KeySecret>>> = BTreeMap::new();
    for r in &refs {
        if !fetched.contains_key(r.name.as_str()) {
            fetched.insert(&r.name, secrets.get(&r.name).await?);
        }
    }
    Ok(refs
        .iter()
        .map(|r| {
            let source = format!("{}/{}", r.name, r.key);
            match key_bytes(fetched[r.name.as_str()].as_deref(), r) {
                Ok(token) => {
                    let outcome = verify_key(&token, keys, &spec.product, now);
                    let claims = authentic_claims(&token, &outcome);
                    KeyCandidate {
                        source,
                        token: Some(token),
                        outcome,
                        claims,
                    }
                }
                Err(refusal) => KeyCandidate {
                    source,
                    token: None,
                    outcome: KeyOutcome::Refused(refusal),
                    claims: None,
                },
            }
        })
        .collect())
}

/// Claims to show: a verified key's, or a not-yet-valid key's (its signature and product were
/// checked before its start was).
fn authentic_claims(token: &[u8], outcome: &KeyOutcome) -> Option<Claims> {
    match outcome {
        KeyOutcome::Verified(l) => Some(l.claims.clone()),
        KeyOutcome::Refused(r) if r.reason() == KeyReason::NotYetValid => {
            decode_unverified(token).ok().map(|u| u.claims)
        }
        KeyOutcome::Refused(_) => None,
    }
}

/// Puts the best key valid now in force (see [`crate::license::selection`]). With none, the
/// outcome is the refusal of the key that starts first, else the primary key's.
pub fn choose(candidates: &[KeyCandidate], policy: &Policy, now: Timestamp) -> Chosen {
    let views: Vec<Candidate> = candidates
        .iter()
        .map(|c| match &c.outcome {
            KeyOutcome::Verified(l) => Candidate::Verified(l),
            KeyOutcome::Refused(r) => match r.not_before {
                Some(at) if r.reason() == KeyReason::NotYetValid => Candidate::StartsAt(at),
                _ => Candidate::Refused,
            },
        })
        .collect();
    let selection = selection::select(&views, policy, now);
    let explaining = selection.in_force.unwrap_or_else(|| {
        candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.outcome {
                KeyOutcome::Refused(r) if r.reason() == KeyReason::NotYetValid => r.not_before.map(|at| (at, i)),
                _ => None,
            })
            .min()
            .map_or(0, |(_, i)| i)
    });
    let chosen = &candidates[explaining];
    Chosen {
        outcome: chosen.outcome.clone(),
        token: chosen.token.clone().filter(|_| selection.in_force.is_some()),
        selection,
    }
}

/// The key bytes from a Secret already read, or why there are none.
fn key_bytes(secret: Option<&KeySecret>, r: &SecretKeyRef) -> Result<Vec<u8>, Refusal> {
    let name = &r.name;
    let Some(secret) = secret else {
        return Err(refusal(
            KeyReason::SecretNotFound,
            format!("Secret {name:?} does not exist in this namespace"),
        ));
    };
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if !ACCEPTED_SECRET_TYPES.contains(&type_) {
        return Err(refusal(
            KeyReason::SecretWrongType,
            format!("Secret {name:?} is of type {type_:?}; a license key lives in an Opaque Secret"),
        ));
    }
    let key = &r.key;
    if let Some(bytes) = secret.data.get(key) {
        return Ok(bytes.0.clone());
    }
    let present: Vec<&str> = secret.data.keys().map(String::as_str).collect();
    Err(refusal(
        KeyReason::KeyNotFound,
        format!(
            "Secret {name:?} has no data key {key:?} (it has: {})",
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            }
        ),
    ))
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
        for e in &crate::license::one_error_of_each_kind() {
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
