//! `licenses.keyward.dev/v1alpha1`: the License custom resource.
//!
//! The schema avoids CEL (`x-kubernetes-validations`) so the CRD applies on Kubernetes 1.20;
//! the controller validates instead.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A software license key, held in a Secret, that Keyward verifies and tracks.
// Each printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "keyward.dev",
    version = "v1alpha1",
    kind = "License",
    plural = "licenses",
    shortname = "lic",
    category = "keyward",
    namespaced,
    status = "LicenseStatus",
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Lifecycle state"
    ),
    printcolumn(name = "Licensee", type_ = "string", json_path = ".status.licensee"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".status.tier"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "Expiry (RFC 3339)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Features", type_ = "string", json_path = ".status.features", priority = "1"),
    printcolumn(
        name = "Seats",
        type_ = "string",
        json_path = ".status.seats.summary",
        priority = "1"
    ),
    printcolumn(name = "Key-ID", type_ = "string", json_path = ".status.keyId", priority = "1"),
    printcolumn(
        name = "Next-Key",
        type_ = "string",
        json_path = ".status.nextKeyAt",
        description = "When a waiting key takes over",
        priority = "1"
    ),
    printcolumn(
        name = "Rolled-Out",
        type_ = "string",
        json_path = ".status.rollout.summary",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LicenseSpec {
    /// The Secret, in the License's namespace, that holds the license key.
    pub secret_ref: SecretKeyRef,
    /// More keys for the same product, such as a renewal dated to start when the current term
    /// ends. Keyward verifies every key and puts in force the best one valid now: among the keys
    /// whose validity has started, the one that stays in force longest. A waiting key takes over
    /// at the instant it starts; a refused key never takes over. `status.keys` shows each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_keys: Vec<SecretKeyRef>,
    /// The product the key must be issued for (its `aud` claim).
    pub product: String,
    /// Where to deliver the verified key so workloads can mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    /// How seat usage is measured against the key's `seats` entitlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<SeatsSpec>,
}

/// One of `podSelector` or `reportedBy`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatsSpec {
    /// Each running Pod matching counts one seat, across the rollout target namespaces (or the
    /// License's own namespace when it has no targets): for agents or nodes licensed per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// The workload reports its own usage as a JSON object in a ConfigMap: `seats_used` (required)
    /// and any other integer counters, e.g. `{"seats_used": 12, "api_keys_active": 8}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<SeatReport>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatReport {
    pub config_map_ref: ConfigMapKeyRef,
}

/// A key of a ConfigMap in the License's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    pub name: String,
    #[serde(default = "default_usage_key")]
    pub key: String,
}

pub fn default_usage_key() -> String {
    "usage.json".to_string()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default)]
    pub targets: Vec<RolloutTarget>,
}

/// A Secret Keyward keeps in one or more namespaces, holding `license` and `license.json`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    /// One namespace. With neither this nor `namespaceSelector`, the License's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Every namespace whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Name of the Secret to create and keep up to date.
    pub secret_name: String,
    /// Running Pods to nudge (by annotation) so the kubelet refreshes their mounted Secret promptly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Data key within the Secret.
    #[serde(default = "default_secret_key")]
    pub key: String,
}

pub fn default_secret_key() -> String {
    "license".to_string()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum LicenseState {
    /// Not evaluated yet, or valid only from a later instant.
    Pending,
    Active,
    Warning,
    Grace,
    ReadOnly,
    /// The key was refused; see the Valid condition.
    Invalid,
}

impl LicenseState {
    pub const ALL: [LicenseState; 6] = [
        LicenseState::Pending,
        LicenseState::Active,
        LicenseState::Warning,
        LicenseState::Grace,
        LicenseState::ReadOnly,
        LicenseState::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LicenseState::Pending => "Pending",
            LicenseState::Active => "Active",
            LicenseState::Warning => "Warning",
            LicenseState::Grace => "Grace",
            LicenseState::ReadOnly => "ReadOnly",
            LicenseState::Invalid => "Invalid",
        }
    }
}

impl From<crate::license::State> for LicenseState {
    fn from(s: crate::license::State) -> Self {
        use crate::license::State;
        match s {
            State::Active => LicenseState::Active,
            State::Warning => LicenseState::Warning,
            State::Grace => LicenseState::Grace,
            State::ReadOnly => LicenseState::ReadOnly,
        }
    }
}

impl std::fmt::Display for LicenseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a License. Times are RFC 3339 strings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LicenseState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<SeatsStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    /// Id of the trusted vendor key that verified the license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Short SHA-256 of the key: identifies it without revealing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ends_at: Option<String>,
    /// When the state changes next, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last license that verified, kept while the current key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<LastGood>,
    /// The last daily expiry notice sent, so restarts do not repeat it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notice: Option<LastNotice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Every key the License references, when it has `additionalKeys`: which is in force, which
    /// wait, and why the others are not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,
    /// When the next waiting key takes over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key_at: Option<String>,
}

/// One referenced key and where it stands.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// `secret/dataKey`.
    pub source: String,
    pub in_force: bool,
    /// `InForce`, `Waiting`, `Superseded`, or why the key was refused (`SignatureInvalid`, …).
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Target Secrets wanted (namespaces × targets).
    pub targets: u32,
    /// Target Secrets holding the current key and state.
    pub up_to_date: u32,
    /// `upToDate/targets` for display.
    pub summary: String,
    /// Revision (content fingerprint) of what was rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When this revision was first written to the targets: a Pod that reads them in a way frozen
    /// at start and started before it holds an older key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_since: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<TargetStatus>,
    /// Who reads the target Secrets, and whether they see the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<ConsumersStatus>,
}

/// Pods that read a target Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumersStatus {
    /// Pods that see the current key: a whole-volume mount, or started after the rollout.
    pub live: u32,
    /// Pods reading through `subPath`, `env` or `envFrom` that started before the current key was
    /// rolled out: they need a restart to see it.
    pub restart_required: u32,
    /// The first of those Pods (at most 20), with how each reads the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<StaleConsumer>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaleConsumer {
    pub namespace: String,
    pub name: String,
    pub secret_name: String,
    /// `subPath`, `env`, `envFrom`.
    pub reads: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub namespace: String,
    pub secret_name: String,
    pub up_to_date: bool,
    /// Why not, when not: `TargetConflict`, `TargetNotAllowed`, `KeyNotValid`, `WriteFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Running Pods annotated with the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatsStatus {
    /// Seats the key grants; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitled: Option<u64>,
    /// Seats in use, when `spec.seats` says how to measure them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// The rest of a usage report (`api_keys_active`, `dashboard_users`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakdown: BTreeMap<String, i64>,
    /// When `used` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<String>,
    /// `used/entitled` for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastGood {
    pub key_fingerprint: String,
    pub licensee: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastNotice {
    pub key_fingerprint: String,
    pub days_left: i64,
    pub sent_at: String,
}

impl License {
    pub fn status_condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.condition(type_)
    }
}

impl LicenseStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
