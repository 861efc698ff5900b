//! One reconcile of one License: read its key, verify it, decide the status, resolve the targets,
//! measure seats, roll out, write the status, publish events, and sleep until the next instant
//! anything can change.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::context::Context;
use super::error::Error;
use super::finding::Reason;
use super::key_source::{Chosen, KeyCandidate, KeyOutcome, choose, read_candidates, validate_spec};
use super::rollout::{self, RolloutSummary, Targets, content::content};
use super::seats::{self, SeatUsage};
use super::status::{self, Outcome, WAKE_MARGIN};
use crate::api::v1alpha1::{License, LicenseState, LicenseStatus};
use crate::license::humanize::friendly_between;

pub const FINALIZER: &str = "keyward.dev/cleanup";

/// When to look again at a License whose cached copy predates its latest status write.
const ECHO_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

pub async fn reconcile(license: Arc<License>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = license.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<License> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, license, |event| async {
        match event {
            finalizer::Event::Apply(license) => apply(&license, &namespace, &ctx).await,
            finalizer::Event::Cleanup(license) => cleanup(&license, &namespace, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(started.elapsed());
    result
}

pub fn error_policy(_license: Arc<License>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    warn!(error = %error, "reconcile failed; retrying");
    Action::requeue(std::time::Duration::from_secs(5))
}

async fn apply(license: &License, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    if ctx.status_echoes.awaiting(&license.metadata, Instant::now()) {
        // Woken (by a key Secret, a Pod, a target) between this License's status write and the
        // cache receiving it: decide once the cache has caught up.
        return Ok(Action::requeue(ECHO_RETRY));
    }
    let name = license.name_any();
    remember_references(license, namespace, &name, ctx);
    let now = Timestamp::now();
    let (candidates, chosen) = read_and_choose(license, namespace, ctx, now).await?;
    let key = &chosen.outcome;
    let prev = license.status.as_ref();
    let mut outcome = status::evaluate(prev, key, &ctx.settings.policy, license.meta().generation, now);
    status::with_keys(&mut outcome.status, &candidates, &chosen.selection);
    outcome.wake_at = earliest(outcome.wake_at, chosen.selection.next_start);
    log_outcome(namespace, &name, prev, &outcome, key, now);

    let step = Step {
        license,
        namespace,
        name: &name,
        ctx,
        now,
    };
    let targets = rollout::resolve(&ctx.client, license, &ctx.settings.rollout).await?;
    let usage = step.measure_seats(&targets, &mut outcome).await?;
    let summary = step
        .roll_out(&targets, key, chosen.token.as_deref(), &mut outcome)
        .await?;
    step.assess_consumers(&targets, &mut outcome);
    status::with_kstatus(&mut outcome.status, prev, key, summary.as_ref(), usage.as_ref(), now);

    if prev != Some(&outcome.status) {
        write_status(license, namespace, prev, &outcome.status, ctx).await?;
    }
    // Events only after the status that records them is written, so a retry cannot repeat them.
    ctx.events.publish(license, &outcome.events).await;

    let state = outcome.status.state.unwrap_or(LicenseState::Pending);
    let expires = outcome.status.expires_at.as_deref().and_then(|t| t.parse().ok());
    ctx.metrics.license(namespace, &name, state, expires);
    Ok(sleep_until(outcome.wake_at))
}

/// The watch triggers find this License from its key Secret and usage report through these.
fn remember_references(license: &License, namespace: &str, name: &str, ctx: &Context) {
    ctx.secret_index.set(namespace, name, &license.spec.secret_ref.name);
    match license.spec.seats.as_ref().and_then(|s| s.reported_by.as_ref()) {
        Some(report) => ctx.usage_index.set(namespace, name, &report.config_map_ref.name),
        None => ctx.usage_index.remove(namespace, name),
    }
}

/// Every referenced key, read and verified, and the one put in force.
async fn read_and_choose(
    license: &License,
    namespace: &str,
    ctx: &Context,
    now: Timestamp,
) -> Result<(Vec<KeyCandidate>, Chosen), Error> {
    let candidates = match validate_spec(&license.spec) {
        Err(refusal) => vec![KeyCandidate {
            source: format!("{}/{}", license.spec.secret_ref.name, license.spec.secret_ref.key),
            token: None,
            outcome: KeyOutcome::Refused(refusal),
            claims: None,
        }],
        Ok(()) => {
            let secrets = ctx
                .key_secrets
                .reader(Api::namespaced(ctx.client.clone(), namespace), namespace);
            read_candidates(&secrets, &license.spec, &ctx.trust.current(), now).await?
        }
    };
    let chosen = choose(&candidates, &ctx.settings.policy, now);
    Ok((candidates, chosen))
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The License being reconciled, for the steps after the decision on its key.
struct Step<'a> {
    license: &'a License,
    namespace: &'a str,
    name: &'a str,
    ctx: &'a Context,
    now: Timestamp,
}

impl Step<'_> {
    fn prev(&self) -> Option<&LicenseStatus> {
        self.license.status.as_ref()
    }

    async fn measure_seats(&self, targets: &Targets, outcome: &mut Outcome) -> Result<Option<SeatUsage>, Error> {
        let usage = seats::measure(&self.ctx.client, self.license, targets).await?;
        let events = status::with_seats(&mut outcome.status, self.prev(), usage.as_ref(), self.now);
        outcome.events.extend(events);
        let seats = outcome.status.seats.as_ref();
        let (entitled, used) = (seats.and_then(|s| s.entitled), seats.and_then(|s| s.used));
        self.ctx.metrics.seats(self.namespace, self.name, entitled, used);
        Ok(usage)
    }

    async fn roll_out(
        &self,
        targets: &Targets,
        key: &KeyOutcome,
        token: Option<&[u8]>,
        outcome: &mut Outcome,
    ) -> Result<Option<RolloutSummary>, Error> {
        // Only a verified key is ever rolled out; without one, targets keep the last good content.
        let rolled = match (key, token) {
            (KeyOutcome::Verified(verified), Some(token)) => Some(content(token, verified, &outcome.status)),
            _ => None,
        };
        let settings = &self.ctx.settings.rollout;
        let summary = rollout::roll_out(
            &self.ctx.client,
            &self.ctx.target_echoes,
            &self.ctx.managed_targets,
            self.license,
            targets,
            rolled.as_ref(),
            settings,
        )
        .await?;
        let rolled_out = summary.as_ref().map(|r| r.rolled_out());
        self.ctx.metrics.rollout(self.namespace, self.name, rolled_out);
        let events = status::with_rollout(&mut outcome.status, self.prev(), summary.as_ref(), self.now);
        outcome.events.extend(events);
        Ok(summary)
    }

    /// Who reads the targets, from the Pod index: no API call.
    fn assess_consumers(&self, targets: &Targets, outcome: &mut Outcome) {
        let rollout = outcome.status.rollout.as_ref();
        let since = rollout
            .and_then(|r| r.revision_since.as_deref())
            .and_then(|t| t.parse().ok());
        let report = match targets {
            Ok(t) if !t.is_empty() && rollout.is_some() => self.ctx.consumers.assess(t, since),
            _ => None,
        };
        let events = status::with_consumers(&mut outcome.status, self.prev(), report.as_ref(), self.now);
        outcome.events.extend(events);
        let rollout = outcome.status.rollout.as_ref();
        let restart_required = rollout.and_then(|r| r.consumers.as_ref()).map(|c| c.restart_required);
        self.ctx.metrics.consumers(self.namespace, self.name, restart_required);
    }
}

/// Writes the status as a JSON merge patch that sets every field of the new status and removes,
/// with an explicit `null`, every field the previous one had and the new one has not.
///
/// Not server-side apply, measured: on Kubernetes 1.20 (the API server the tests run on), an apply
/// to the status subresource of a custom resource that leaves out a field it applied before does
/// not remove the field but sets it to `null`, which the schema then rejects (`status.seats: Invalid
/// value: "null"`, reproduced with `kubectl apply --server-side --subresource=status`). A merge
/// patch removes the field on every version.
async fn write_status(
    license: &License,
    namespace: &str,
    prev: Option<&LicenseStatus>,
    status: &LicenseStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<License> = Api::namespaced(ctx.client.clone(), namespace);
    let written = api
        .patch_status(
            &license.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status_patch(prev, status)),
        )
        .await?;
    ctx.status_echoes.record(&written.metadata);
    Ok(())
}

fn status_patch(prev: Option<&LicenseStatus>, new: &LicenseStatus) -> Value {
    let mut status = serde_json::to_value(new).expect("status serializes");
    if let Some(old) = prev.map(|p| serde_json::to_value(p).expect("status serializes")) {
        null_removed_fields(&old, &mut status);
    }
    json!({ "status": status })
}

/// Adds `null` for each field of `old` that `new` lacks, in nested objects too (a merge patch
/// merges objects, so a field left out would otherwise survive).
fn null_removed_fields(old: &Value, new: &mut Value) {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return;
    };
    for (key, old_value) in old {
        match new.get_mut(key) {
            None => {
                new.insert(key.clone(), Value::Null);
            }
            Some(new_value) => null_removed_fields(old_value, new_value),
        }
    }
}

/// Every License is looked at again within about an hour even when nothing is due, so an event
/// missed for any reason can never leave it stale for good. Jittered by up to a tenth, so the
/// Licenses of a large installation do not all come due together. An unchanged License costs
/// reads only: its status is not rewritten.
const SAFETY_RESYNC: std::time::Duration = std::time::Duration::from_secs(3600);

fn safety_resync() -> std::time::Duration {
    let mut byte = [0u8; 1];
    let fraction = getrandom::fill(&mut byte).map_or(0.5, |()| f64::from(byte[0]) / 255.0);
    SAFETY_RESYNC.mul_f64(0.9 + fraction / 5.0)
}

fn sleep_until(wake_at: Option<Timestamp>) -> Action {
    Action::requeue(next_look(wake_at, Timestamp::now(), safety_resync()))
}

/// How long until the next reconcile: the next instant anything is due, at most `resync`.
fn next_look(wake_at: Option<Timestamp>, now: Timestamp, resync: std::time::Duration) -> std::time::Duration {
    let due = wake_at.map(|at| {
        at.duration_since(now)
            .checked_add(WAKE_MARGIN)
            .unwrap_or(WAKE_MARGIN)
            .unsigned_abs()
    });
    due.map_or(resync, |d| d.min(resync))
}

async fn cleanup(license: &License, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    let name = license.name_any();
    rollout::remove_all(&ctx.client, license, &ctx.settings.rollout).await?;
    ctx.secret_index.remove(namespace, &name);
    ctx.usage_index.remove(namespace, &name);
    ctx.metrics.forget_license(namespace, &name);
    info!(namespace, license = %name, "license deleted");
    Ok(Action::await_change())
}

fn log_outcome(
    namespace: &str,
    name: &str,
    prev: Option<&LicenseStatus>,
    outcome: &Outcome,
    key: &KeyOutcome,
    now: Timestamp,
) {
    let new = &outcome.status;
    let changed = prev.map(|p| (&p.state, &p.key_fingerprint)) != Some((&new.state, &new.key_fingerprint));
    let state = new.state.map(|s| s.to_string()).unwrap_or_default();
    match key {
        KeyOutcome::Verified(license) => {
            let c = &license.claims;
            let remaining = c
                .expires_at()
                .map_or("perpetual".to_string(), |e| friendly_between(now, e));
            if !changed {
                return debug!(namespace, license = name, state, remaining, "license unchanged");
            }
            let expires_at = c.expires_at().map_or("never".to_string(), |e| e.to_string());
            let tier = c.tier.as_deref().unwrap_or("-");
            info!(namespace, license = name, licensee = %c.sub, tier, expires_at, remaining, state,
                fingerprint = %license.fingerprint, "license validated");
        }
        KeyOutcome::Refused(r) if changed => {
            let fingerprint = r.fingerprint.as_deref().unwrap_or("-");
            warn!(
                namespace,
                license = name,
                reason = r.reason().as_str(),
                message = r.message(),
                fingerprint,
                "license key refused"
            );
        }
        KeyOutcome::Refused(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_removes_fields_the_new_status_lacks_at_every_depth() {
        let old: LicenseStatus = serde_json::from_value(json!({
            "state": "Active", "licensee": "Acme",
            "seats": {"entitled": 5, "used": 3, "summary": "3/5"},
        }))
        .unwrap();
        let new: LicenseStatus = serde_json::from_value(json!({
            "state": "Invalid", "seats": {"entitled": 5, "summary": "5"},
        }))
        .unwrap();
        assert_eq!(
            status_patch(Some(&old), &new),
            json!({"status": {
                "state": "Invalid", "licensee": null,
                "seats": {"entitled": 5, "used": null, "summary": "5"},
            }})
        );
        assert_eq!(
            status_patch(None, &new),
            json!({"status": serde_json::to_value(&new).unwrap()})
        );
    }

    #[test]
    fn every_license_is_looked_at_again_within_about_an_hour() {
        let (low, high) = (SAFETY_RESYNC.mul_f64(0.9), SAFETY_RESYNC.mul_f64(1.1));
        let now = Timestamp::now();
        for _ in 0..50 {
            let resync = safety_resync();
            assert!(resync >= low && resync <= high, "{resync:?}");
            assert_eq!(next_look(None, now, resync), resync, "nothing due: the safety resync");
            let far = now + jiff::SignedDuration::from_hours(30 * 24);
            assert_eq!(next_look(Some(far), now, resync), resync, "a transition a month away");
        }
        // A transition due sooner wins, just after its instant.
        let soon = now + jiff::SignedDuration::from_secs(60);
        assert_eq!(
            next_look(Some(soon), now, SAFETY_RESYNC),
            std::time::Duration::from_millis(60_100)
        );
    }
}
