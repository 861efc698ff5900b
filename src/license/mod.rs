//! The pure core: license key formats, trusted key sets, offline verification and the lifecycle
//! state machine. No Kubernetes, no I/O, no clock reads: time is always a parameter.

pub mod claims;
mod error;
mod fingerprint;
pub mod humanize;
mod issue;
pub mod jwk;
pub mod keys;
pub mod lifecycle;
pub mod selection;
pub mod token;
mod verify;

pub use claims::{Audience, Claims, ExtraClaims, Header, MAX_POLICY_SECONDS, REGISTERED_CLAIMS};
pub use error::VerifyError;
#[cfg(test)]
pub(crate) use error::one_of_each as one_error_of_each_kind;
pub use fingerprint::{Fingerprint, sha256_hex_prefix};
pub use issue::{IssueError, issue};
pub use keys::{KeyError, KeySet, TrustedKey};
pub use lifecycle::{Evaluation, Policy, State, Timeline};
pub use token::{Format, MAX_TOKEN_BYTES};
pub use verify::{
    DEFAULT_LEEWAY, ED25519_ALGORITHMS, UnverifiedLicense, VerifiedLicense, VerifyOptions, decode_unverified, verify,
};

#[cfg(test)]
mod tests;
