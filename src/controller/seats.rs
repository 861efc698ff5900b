//! Measuring seat usage: running Pods matching a selector, or a usage report the workload writes
//! into a ConfigMap as a JSON object with `seats_used` and any other integer counters.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::core::Selector;
use kube::{Api, Client, ResourceExt};

use super::finding::{Finding, reasons};
use super::rollout::{self, Targets};
use crate::api::v1alpha1::{ConfigMapKeyRef, License};

reasons! {
    /// Why seat usage could not be measured.
    pub enum SeatReason {
        InvalidSpec,
        SeatsReportMissing,
        SeatsReportInvalid,
    }
}

/// Seat usage as measured, or why it could not be.
#[derive(Debug, Clone, PartialEq)]
pub enum SeatUsage {
    Measured {
        used: u64,
        breakdown: BTreeMap<String, i64>,
    },
    Unavailable(Finding<SeatReason>),
}

/// Reports above this size are refused rather than parsed.
const MAX_REPORT_BYTES: usize = 64 * 1024;

fn unavailable(reason: SeatReason, message: String) -> SeatUsage {
    SeatUsage::Unavailable(Finding::new(reason, message))
}

/// `{"seats_used": 12, "api_keys_active": 8, ...}` → 12 and the rest of the integer fields.
pub fn parse_usage_report(text: &str) -> Result<(u64, BTreeMap<String, i64>), String> {
    if text.len() > MAX_REPORT_BYTES {
        return Err(format!(
            "the report is {} bytes, over the {MAX_REPORT_BYTES}-byte limit",
            text.len()
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("the report is not JSON: {e}"))?;
    let object = value.as_object().ok_or("the report is not a JSON object")?;
    let used = object
        .get("seats_used")
        .ok_or("the report has no \"seats_used\"")?
        .as_u64()
        .ok_or("\"seats_used\" is not a non-negative integer")?;
    let breakdown = object
        .iter()
        .filter(|(k, _)| k.as_str() != "seats_used")
        .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
        .collect();
    Ok((used, breakdown))
}

/// Measures usage for a License with `spec.seats`; `None` without it. API errors are returned for
/// a retry; everything about the spec or the report becomes a [`SeatReason`].
pub async fn measure(client: &Client, license: &License, targets: &Targets) -> Result<Option<SeatUsage>, kube::Error> {
    let Some(spec) = &license.spec.seats else {
        return Ok(None);
    };
    let own = license.namespace().unwrap_or_default();
    Ok(Some(match (&spec.pod_selector, &spec.reported_by) {
        (Some(_), Some(_)) | (None, None) => unavailable(
            SeatReason::InvalidSpec,
            "spec.seats needs exactly one of podSelector and reportedBy".into(),
        ),
        (Some(selector), None) => {
            let selector = match Selector::try_from(selector.clone()) {
                Ok(s) => s.to_string(),
                Err(e) => {
                    return Ok(Some(unavailable(
                        SeatReason::InvalidSpec,
                        format!("spec.seats.podSelector: {e}"),
                    )));
                }
            };
            let namespaces = match targets {
                Ok(t) if t.is_empty() => vec![own],
                Ok(t) => rollout::namespaces(t),
                Err(e) => return Ok(Some(unavailable(SeatReason::InvalidSpec, e.message.clone()))),
            };
            SeatUsage::Measured {
                used: count_running_pods(client, &namespaces, &selector).await?,
                breakdown: BTreeMap::new(),
            }
        }
        (None, Some(report)) => read_report(client, &own, &report.config_map_ref).await?,
    }))
}

async fn count_running_pods(client: &Client, namespaces: &[String], selector: &str) -> Result<u64, kube::Error> {
    let mut used = 0;
    for ns in namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        used += pods
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count() as u64;
    }
    Ok(used)
}

async fn read_report(client: &Client, namespace: &str, r: &ConfigMapKeyRef) -> Result<SeatUsage, kube::Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = config_maps.get_opt(&r.name).await? else {
        return Ok(unavailable(
            SeatReason::SeatsReportMissing,
            format!("ConfigMap {:?} does not exist in this namespace", r.name),
        ));
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(&r.key)) else {
        return Ok(unavailable(
            SeatReason::SeatsReportMissing,
            format!("ConfigMap {:?} has no key {:?}", r.name, r.key),
        ));
    };
    Ok(match parse_usage_report(text) {
        Ok((used, breakdown)) => SeatUsage::Measured { used, breakdown },
        Err(e) => unavailable(
            SeatReason::SeatsReportInvalid,
            format!("ConfigMap {:?} key {:?}: {e}", r.name, r.key),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_zero_shaped_reports() {
        let (used, breakdown) = parse_usage_report(
            r#"{"seats_used": 12, "api_keys_active": 8, "dashboard_users": 3, "scout_agents": 1, "note": "x"}"#,
        )
        .unwrap();
        assert_eq!(used, 12);
        assert_eq!(
            breakdown,
            BTreeMap::from([
                ("api_keys_active".into(), 8),
                ("dashboard_users".into(), 3),
                ("scout_agents".into(), 1)
            ])
        );
    }

    #[test]
    fn malformed_reports_say_what_is_wrong() {
        for (text, needle) in [
            ("", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{}", "no \"seats_used\""),
            (r#"{"seats_used": -1}"#, "non-negative integer"),
            (r#"{"seats_used": "12"}"#, "non-negative integer"),
            (r#"{"seats_used": 1.5}"#, "non-negative integer"),
        ] {
            let err = parse_usage_report(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(
            parse_usage_report(&" ".repeat(MAX_REPORT_BYTES + 1))
                .unwrap_err()
                .contains("limit")
        );
    }
}
