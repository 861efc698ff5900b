//! Conditions as the status layer decides them, merged so that `lastTransitionTime` moves only
//! when a condition's status changes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::v1alpha1::LicenseStatus;
use crate::controller::finding::{ConditionType, Reason};

/// A condition as decided, before it is merged with the previous one of its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub type_: ConditionType,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Desired {
    pub fn new(type_: ConditionType, status: bool, reason: impl Reason, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: if status { "True" } else { "False" },
            reason: reason.as_str(),
            message: message.into(),
        }
    }

    pub fn unknown(type_: ConditionType, reason: impl Reason, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "Unknown",
            reason: reason.as_str(),
            message: message.into(),
        }
    }
}

/// Conditions in the desired order; `lastTransitionTime` moves only when a status changes.
pub fn merge(prev: &[Condition], desired: Vec<Desired>, generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let type_ = d.type_.as_str();
            let since = prev
                .iter()
                .find(|c| c.type_ == type_ && c.status == d.status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(now.round(jiff::Unit::Second).unwrap_or(now)));
            Condition {
                type_: type_.to_string(),
                status: d.status.to_string(),
                reason: d.reason.to_string(),
                message: d.message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Puts one condition into `status` (replacing one of its type), keeping the previous
/// `lastTransitionTime` when its status has not changed.
pub fn set(status: &mut LicenseStatus, prev: Option<&LicenseStatus>, desired: Desired, now: Timestamp) {
    remove(status, desired.type_);
    let prev = prev.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let merged = merge(prev, vec![desired], status.observed_generation, now);
    status.conditions.extend(merged);
}

pub fn remove(status: &mut LicenseStatus, type_: ConditionType) {
    status.conditions.retain(|c| c.type_ != type_.as_str());
}

/// The previous condition of a type.
pub fn previous(prev: Option<&LicenseStatus>, type_: ConditionType) -> Option<&Condition> {
    prev.and_then(|s| s.condition(type_.as_str()))
}
