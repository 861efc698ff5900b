//! An auditor that proves no target Secret ever held an empty or unverifiable key.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::License;
use keyward::license::{KeySet, TrustedKey, VerifyOptions, verify};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::operator::Vendor;

/// Watches every Secret Keyward manages and records any content that is empty or does not verify.
pub struct TargetAuditor {
    bad: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl TargetAuditor {
    /// Audits the targets of one License (by its UID: other tests' targets are not ours to judge).
    pub fn start(client: &Client, vendor: &Vendor, product: &str, license: &License) -> Self {
        let selector = format!(
            "app.kubernetes.io/managed-by=keyward,keyward.dev/owner-uid={}",
            license.uid().unwrap()
        );
        Self::start_selecting(client, vendor, product, &selector)
    }

    /// Audits every Secret Keyward manages that matches `selector`.
    pub fn start_selecting(client: &Client, vendor: &Vendor, product: &str, selector: &str) -> Self {
        let selector = selector.to_string();
        let mut keys = KeySet::new();
        keys.insert(TrustedKey::new(Some(&vendor.kid), vendor.key.verifying_key()).unwrap())
            .unwrap();
        let (bad, seen) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let (bad_w, seen_w, product) = (bad.clone(), seen.clone(), product.to_string());
        let api: Api<Secret> = Api::all(client.clone());
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default().labels(&selector))
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(secret) = event else { continue }; // the watch breaks while the API server is down
                *seen_w.lock().unwrap() += 1;
                let token = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("license"))
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                let ok = !token.is_empty()
                    && verify(
                        &token,
                        &keys,
                        &VerifyOptions::at(Timestamp::now()).product(Some(product.as_str())),
                    )
                    .is_ok();
                if !ok {
                    bad_w.lock().unwrap().push(format!(
                        "{}/{}",
                        secret.namespace().unwrap_or_default(),
                        secret.name_any()
                    ));
                }
            }
        });
        Self { bad, seen, task }
    }

    /// How many target versions it has checked, and the ones that were bad.
    pub fn tally(&self) -> (usize, Vec<String>) {
        (*self.seen.lock().unwrap(), self.bad.lock().unwrap().clone())
    }

    pub fn assert_clean(self) {
        self.task.abort();
        assert!(*self.seen.lock().unwrap() > 0, "the auditor saw no target at all");
        let bad = self.bad.lock().unwrap();
        assert!(bad.is_empty(), "targets held an invalid or empty key: {bad:?}");
    }
}
