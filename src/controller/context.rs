use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Reporter;

use super::consumers::ConsumerIndex;
use super::echoes::WriteEchoes;
use super::events::EventPublisher;
use super::key_secrets::KeySecrets;
use super::ref_index::RefIndex;
use super::rollout::{ManagedSecrets, RolloutSettings};
use super::trust::TrustStore;
use crate::license::Policy;
use crate::telemetry::Metrics;

/// Operator settings that reconciles read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Enforcement policy for keys that do not sign their own `warn`/`grace`.
    pub policy: Policy,
    pub rollout: RolloutSettings,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub trust: TrustStore,
    pub events: EventPublisher,
    pub metrics: Arc<Metrics>,
    pub secret_index: RefIndex,
    /// Key Secrets as last read, while the Secret watch shows them unchanged.
    pub key_secrets: KeySecrets,
    /// Usage-report ConfigMaps referenced by `spec.seats.reportedBy`.
    pub usage_index: RefIndex,
    /// Which Pods read which Secrets, and how.
    pub consumers: ConsumerIndex,
    /// The target writes whose watch events are still to come.
    pub target_echoes: WriteEchoes,
    /// Keyward's target Secrets as the Secret watch shows them.
    pub managed_targets: ManagedSecrets,
    /// The same for status writes.
    pub status_echoes: WriteEchoes,
    pub settings: Settings,
}

impl Context {
    pub fn new(client: Client, trust: TrustStore, instance: String, metrics: Arc<Metrics>, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: super::CONTROLLER_NAME.into(),
            instance: Some(instance),
        };
        Self {
            events: EventPublisher::new(client.clone(), reporter),
            client,
            trust,
            metrics,
            secret_index: RefIndex::default(),
            key_secrets: KeySecrets::default(),
            usage_index: RefIndex::default(),
            consumers: ConsumerIndex::default(),
            target_echoes: WriteEchoes::default(),
            managed_targets: ManagedSecrets::default(),
            status_echoes: WriteEchoes::default(),
            settings,
        }
    }

    /// Forgets what followed the previous controller's watches: a new controller's watches
    /// start from their own first list.
    pub fn forget_watched(&self) {
        self.target_echoes.clear();
        self.status_echoes.clear();
        self.managed_targets.clear();
        self.key_secrets.clear();
    }
}
