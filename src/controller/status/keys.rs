//! `status.keys` and `status.nextKeyAt`: every key a License references and where it stands.

use super::rfc3339;
use crate::api::v1alpha1::{KeyStatus, LicenseStatus};
use crate::controller::finding::{Reason, reasons};
use crate::controller::key_source::{KeyCandidate, KeyOutcome};
use crate::license::selection::{Selection, Standing};

reasons! {
    /// Where a verified key stands among a License's keys (a refused key's reason is its
    /// [`crate::controller::key_source::KeyReason`]).
    pub enum KeyStanding {
        InForce,
        Waiting,
        Superseded,
    }
}

/// Adds the keys' standings to the status. Only a License with `additionalKeys` lists them; the
/// next start is shown whenever a key waits.
pub fn with_keys(status: &mut LicenseStatus, candidates: &[KeyCandidate], selection: &Selection) {
    let waiting = selection.standings.iter().filter_map(|s| match s {
        Standing::Waiting { starts_at } => Some(*starts_at),
        _ => None,
    });
    status.next_key_at = waiting.min().map(rfc3339);
    status.keys = if candidates.len() > 1 {
        candidates
            .iter()
            .zip(&selection.standings)
            .map(|(c, s)| key_status(c, *s))
            .collect()
    } else {
        Vec::new()
    };
}

fn key_status(c: &KeyCandidate, standing: Standing) -> KeyStatus {
    let (reason, message) = match (standing, &c.outcome) {
        (Standing::Refused, KeyOutcome::Refused(r)) => (r.reason().as_str(), r.message().to_string()),
        (Standing::InForce, _) => (KeyStanding::InForce.as_str(), "in force".to_string()),
        (Standing::Waiting { starts_at }, _) => (
            KeyStanding::Waiting.as_str(),
            format!("signed and trusted; takes over at {starts_at}"),
        ),
        _ => (
            KeyStanding::Superseded.as_str(),
            "valid, but another key stays in force longer".to_string(),
        ),
    };
    let fingerprint = match &c.outcome {
        KeyOutcome::Verified(l) => Some(l.fingerprint.to_string()),
        KeyOutcome::Refused(r) => r.fingerprint.clone(),
    };
    KeyStatus {
        source: c.source.clone(),
        in_force: standing == Standing::InForce,
        reason: reason.to_string(),
        message,
        fingerprint,
        licensee: c.claims.as_ref().map(|claims| claims.sub.clone()),
        starts_at: c.claims.as_ref().and_then(|claims| claims.valid_from()).map(rfc3339),
        expires_at: c.claims.as_ref().and_then(|claims| claims.expires_at()).map(rfc3339),
    }
}
