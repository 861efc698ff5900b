//! What a target Secret holds. Pure: the same inputs give byte-identical content, so an unchanged
//! License never rewrites its targets.

use std::collections::BTreeMap;

use serde_json::json;

use crate::api::v1alpha1::LicenseStatus;
use crate::license::{VerifiedLicense, sha256_hex_prefix, token};

pub const LICENSE_FILE: &str = "license";
pub const LICENSE_JSON_FILE: &str = "license.json";

#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub data: BTreeMap<String, Vec<u8>>,
    /// Fingerprint of the whole content: changes on rotation and on every state change.
    pub revision: String,
}

/// `license` is the token exactly as issued; `license.json` the verified claims and the state,
/// for workloads that cannot verify signatures themselves.
pub fn content(raw_token: &[u8], license: &VerifiedLicense, status: &LicenseStatus) -> Content {
    let token = token::trim(raw_token).to_vec();
    let c = &license.claims;
    let claims = json!({
        "licensee": c.sub,
        "product": c.aud,
        "issuer": c.iss,
        "licenseId": c.jti,
        "tier": c.tier,
        "features": c.features,
        "seats": c.seats,
        "keyId": license.key_id,
        "fingerprint": license.fingerprint.as_str(),
        "state": status.state.map(|s| s.as_str()),
        "issuedAt": status.issued_at,
        "warningAt": status.warning_at,
        "expiresAt": status.expires_at,
        "graceEndsAt": status.grace_ends_at,
        "nextTransitionAt": status.next_transition_at,
        "entitlements": c.extra,
        "seatsEntitled": status.seats.as_ref().and_then(|s| s.entitled),
        "seatsUsed": status.seats.as_ref().and_then(|s| s.used),
    });
    let mut json = serde_json::to_vec_pretty(&claims).expect("claims serialize");
    json.push(b'\n');
    let mut digest_input = token.clone();
    digest_input.push(0);
    digest_input.extend_from_slice(&json);
    let revision = format!("sha256:{}", sha256_hex_prefix(&digest_input, 16));
    Content {
        data: BTreeMap::from([(LICENSE_FILE.into(), token), (LICENSE_JSON_FILE.into(), json)]),
        revision,
    }
}
