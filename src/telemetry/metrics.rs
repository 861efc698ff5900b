//! Prometheus metrics. Labels carry names only: never a key, token or Secret value.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::license_series::LicenseSeries;
use crate::api::v1alpha1::LicenseState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

pub struct Metrics {
    registry: Registry,
    licenses: Arc<LicenseSeries>,
    reconciles: Counter,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    trusted_keys: Gauge,
    trust_reload_errors: Counter,
    watch_resyncs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            licenses: Arc::default(),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            trusted_keys: Gauge::default(),
            trust_reload_errors: Counter::default(),
            watch_resyncs: Counter::default(),
            registry: Registry::default(),
        };
        registry.register_collector(Box::new(m.licenses.clone()));
        registry.register("keyward_reconcile", "License reconciliations", m.reconciles.clone());
        registry.register(
            "keyward_watch_resyncs",
            "Times the cluster's state went back in time (etcd restored) and every watch started over",
            m.watch_resyncs.clone(),
        );
        registry.register(
            "keyward_reconcile_errors",
            "License reconciliations that failed, by error",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "keyward_reconcile_duration_seconds",
            "Time to reconcile one License",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "keyward_trusted_keys",
            "Vendor public keys currently trusted",
            m.trusted_keys.clone(),
        );
        registry.register(
            "keyward_trusted_keys_reload_errors",
            "Failed re-reads of the trusted key directory",
            m.trust_reload_errors.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn reconcile_failed(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.to_string(),
            })
            .inc();
    }

    pub fn trusted_keys(&self, count: usize) {
        self.trusted_keys.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn trust_reload_failed(&self) {
        self.trust_reload_errors.inc();
    }

    pub fn license(&self, namespace: &str, name: &str, state: LicenseState, expires_at: Option<jiff::Timestamp>) {
        self.licenses.update(namespace, name, |s| {
            s.state = Some(state);
            s.expiry = expires_at.map(|t| t.as_second());
        });
    }

    /// `None` when the License has no rollout targets.
    pub fn rollout(&self, namespace: &str, name: &str, rolled_out: Option<bool>) {
        self.licenses.update(namespace, name, |s| s.rolled_out = rolled_out);
    }

    pub fn seats(&self, namespace: &str, name: &str, entitled: Option<u64>, used: Option<u64>) {
        self.licenses.update(namespace, name, |s| {
            s.seats_entitled = entitled;
            s.seats_used = used;
        });
    }

    /// Stale consumers of a License's targets; `None` removes the series (no targets).
    pub fn consumers(&self, namespace: &str, name: &str, restart_required: Option<u32>) {
        self.licenses
            .update(namespace, name, |s| s.consumers_restart_required = restart_required);
    }

    pub fn watch_resync(&self) {
        self.watch_resyncs.inc();
    }

    pub fn forget_license(&self, namespace: &str, name: &str) {
        self.licenses.forget(namespace, name);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_state_and_forgetting() {
        let m = Metrics::default();
        m.license(
            "ns",
            "acme",
            LicenseState::Warning,
            Some(jiff::Timestamp::from_second(2_000_000_000).unwrap()),
        );
        let text = m.encode();
        assert!(
            text.contains(r#"keyward_license_state{namespace="ns",name="acme",state="Warning"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"keyward_license_state{namespace="ns",name="acme",state="Active"} 0"#));
        assert!(text.contains(r#"keyward_license_expiry_timestamp_seconds{namespace="ns",name="acme"} 2000000000"#));
        assert!(text.contains(r#"keyward_license_valid{namespace="ns",name="acme"} 1"#));
        m.reconciled(Duration::from_millis(3));
        assert!(m.encode().contains("keyward_reconcile_total 1"));
        m.forget_license("ns", "acme");
        assert!(!m.encode().contains("acme"));
    }
}
