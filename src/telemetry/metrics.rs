//! Prometheus metrics. Labels carry names only: never a key, token or Secret value.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::v1alpha1::LicenseState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LicenseLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub namespace: String,
    pub name: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

pub struct Metrics {
    registry: Registry,
    expiry: Family<LicenseLabels, Gauge<f64, AtomicU64>>,
    state: Family<StateLabels, Gauge>,
    valid: Family<LicenseLabels, Gauge>,
    rolled_out: Family<LicenseLabels, Gauge>,
    seats_entitled: Family<LicenseLabels, Gauge>,
    seats_used: Family<LicenseLabels, Gauge>,
    consumers_restart_required: Family<LicenseLabels, Gauge>,
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
            expiry: Family::default(),
            state: Family::default(),
            valid: Family::default(),
            rolled_out: Family::default(),
            seats_entitled: Family::default(),
            seats_used: Family::default(),
            consumers_restart_required: Family::default(),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            trusted_keys: Gauge::default(),
            trust_reload_errors: Counter::default(),
            watch_resyncs: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "keyward_license_expiry_timestamp_seconds",
            "License expiry as a Unix time (absent for perpetual licenses)",
            m.expiry.clone(),
        );
        registry.register(
            "keyward_license_state",
            "License lifecycle state, one-hot",
            m.state.clone(),
        );
        registry.register(
            "keyward_license_valid",
            "1 when the license key verifies, else 0",
            m.valid.clone(),
        );
        registry.register(
            "keyward_license_rolled_out",
            "1 when every rollout target holds the current key, else 0 (absent without targets)",
            m.rolled_out.clone(),
        );
        registry.register(
            "keyward_license_seats_entitled",
            "Seats the license grants (absent when unlimited)",
            m.seats_entitled.clone(),
        );
        registry.register(
            "keyward_license_seats_used",
            "Seats in use, when measured",
            m.seats_used.clone(),
        );
        registry.register(
            "keyward_license_consumers_restart_required",
            "Running Pods that read a target Secret through subPath or environment variables and hold an older key than the one rolled out",
            m.consumers_restart_required.clone(),
        );
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

fn labels(namespace: &str, name: &str) -> LicenseLabels {
    LicenseLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
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
        let l = labels(namespace, name);
        match expires_at {
            Some(t) => {
                self.expiry.get_or_create(&l).set(t.as_second() as f64);
            }
            None => {
                self.expiry.remove(&l);
            }
        }
        let valid = !matches!(state, LicenseState::Invalid | LicenseState::Pending);
        self.valid.get_or_create(&l).set(i64::from(valid));
        for s in LicenseState::ALL {
            let sl = StateLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
                state: s.to_string(),
            };
            self.state.get_or_create(&sl).set(i64::from(s == state));
        }
    }

    /// `None` when the License has no rollout targets.
    pub fn rollout(&self, namespace: &str, name: &str, rolled_out: Option<bool>) {
        let l = labels(namespace, name);
        match rolled_out {
            Some(ok) => {
                self.rolled_out.get_or_create(&l).set(i64::from(ok));
            }
            None => {
                self.rolled_out.remove(&l);
            }
        }
    }

    pub fn seats(&self, namespace: &str, name: &str, entitled: Option<u64>, used: Option<u64>) {
        let l = labels(namespace, name);
        for (family, value) in [(&self.seats_entitled, entitled), (&self.seats_used, used)] {
            match value {
                Some(v) => {
                    family.get_or_create(&l).set(i64::try_from(v).unwrap_or(i64::MAX));
                }
                None => {
                    family.remove(&l);
                }
            }
        }
    }

    /// Stale consumers of a License's targets; `None` removes the series (no targets).
    pub fn consumers(&self, namespace: &str, name: &str, restart_required: Option<u32>) {
        let l = labels(namespace, name);
        match restart_required {
            Some(n) => {
                self.consumers_restart_required.get_or_create(&l).set(i64::from(n));
            }
            None => {
                self.consumers_restart_required.remove(&l);
            }
        }
    }

    pub fn watch_resync(&self) {
        self.watch_resyncs.inc();
    }

    pub fn forget_license(&self, namespace: &str, name: &str) {
        let l = labels(namespace, name);
        self.consumers_restart_required.remove(&l);
        self.seats_entitled.remove(&l);
        self.seats_used.remove(&l);
        self.rolled_out.remove(&l);
        self.expiry.remove(&l);
        self.valid.remove(&l);
        for s in LicenseState::ALL {
            self.state.remove(&StateLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
                state: s.to_string(),
            });
        }
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
