//! One reconcile of one License: read its key, verify it, write the status, publish events,
//! and sleep until the next instant anything can change.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::context::Context;
use super::error::Error;
use super::key_source::{read_key, validate_spec, verify_key};
use super::rollout::{self, content::content};
use super::seats;
use super::status::{self, EventKind, KeyOutcome, Outcome, WAKE_MARGIN};
use crate::api::v1alpha1::{License, LicenseStatus};
use crate::license::humanize::friendly_between;

pub const FINALIZER: &str = "keyward.dev/cleanup";

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
    let name = license.name_any();
    ctx.secret_index.set(namespace, &name, &license.spec.secret_ref.name);
    match license.spec.seats.as_ref().and_then(|s| s.reported_by.as_ref()) {
        Some(report) => ctx.usage_index.set(namespace, &name, &report.config_map_ref.name),
        None => ctx.usage_index.remove(namespace, &name),
    }
    let now = Timestamp::now();
    let (key, token) = match validate_spec(&license.spec) {
        Err(refusal) => (KeyOutcome::Refused(refusal), None),
        Ok(()) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            match read_key(&secrets, &license.spec).await? {
                Ok(token) => (
                    verify_key(&token, &ctx.trust.current(), &license.spec.product, now),
                    Some(token),
                ),
                Err(refusal) => (KeyOutcome::Refused(refusal), None),
            }
        }
    };
    let prev = license.status.as_ref();
    let mut outcome = status::evaluate(prev, &key, &ctx.settings.policy, license.meta().generation, now);
    log_outcome(namespace, &name, prev, &outcome, &key, now);

    let targets = rollout::resolve(&ctx.client, license, &ctx.settings.rollout).await?;
    let usage = seats::measure(&ctx.client, license, &targets).await?;
    let seat_events = status::with_seats(&mut outcome.status, prev, usage, now);
    outcome.events.extend(seat_events);
    let seats = outcome.status.seats.as_ref();
    ctx.metrics.seats(
        namespace,
        &name,
        seats.and_then(|s| s.entitled),
        seats.and_then(|s| s.used),
    );

    // Only a verified key is ever rolled out; without one, targets keep the last good content.
    let rolled = match (&key, &token) {
        (KeyOutcome::Verified(verified), Some(token)) => Some(content(token, verified, &outcome.status)),
        _ => None,
    };
    let rollout = rollout::roll_out(&ctx.client, license, &targets, rolled.as_ref(), &ctx.settings.rollout).await?;
    ctx.metrics
        .rollout(namespace, &name, rollout.as_ref().map(|r| r.rolled_out));
    let rollout_events = status::with_rollout(&mut outcome.status, prev, rollout, now);
    outcome.events.extend(rollout_events);

    if prev != Some(&outcome.status) {
        let api: Api<License> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = status_patch(prev, &outcome.status);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    // Events only after the status that records them is written, so a retry cannot repeat them.
    publish_events(license, &outcome, ctx).await;

    let state = outcome
        .status
        .state
        .unwrap_or(crate::api::v1alpha1::LicenseState::Pending);
    let expires = outcome.status.expires_at.as_deref().and_then(|t| t.parse().ok());
    ctx.metrics.license(namespace, &name, state, expires);

    Ok(match outcome.wake_at {
        Some(at) => Action::requeue(
            at.duration_since(Timestamp::now())
                .checked_add(WAKE_MARGIN)
                .unwrap_or(WAKE_MARGIN)
                .unsigned_abs(),
        ),
        None => Action::await_change(),
    })
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

/// A merge patch that sets the new status and explicitly removes fields it no longer has.
fn status_patch(prev: Option<&LicenseStatus>, new: &LicenseStatus) -> Value {
    let mut status = serde_json::to_value(new).expect("status serializes");
    if let (Some(prev), Value::Object(map)) = (prev.map(serde_json::to_value), &mut status)
        && let Ok(Value::Object(old)) = prev
    {
        for key in old.keys() {
            map.entry(key.clone()).or_insert(Value::Null);
        }
    }
    json!({ "status": status })
}

fn log_outcome(
    namespace: &str,
    name: &str,
    prev: Option<&LicenseStatus>,
    outcome: &Outcome,
    key: &KeyOutcome,
    now: Timestamp,
) {
    let changed =
        prev.map(|p| (&p.state, &p.key_fingerprint)) != Some((&outcome.status.state, &outcome.status.key_fingerprint));
    match key {
        KeyOutcome::Verified(license) => {
            let c = &license.claims;
            let remaining = c
                .expires_at()
                .map_or("perpetual".to_string(), |e| friendly_between(now, e));
            let expires_at = c.expires_at().map_or("never".to_string(), |e| e.to_string());
            let state = outcome.status.state.map(|s| s.to_string()).unwrap_or_default();
            if changed {
                info!(namespace, license = name, licensee = %c.sub, tier = c.tier.as_deref().unwrap_or("-"), expires_at, remaining, state, fingerprint = %license.fingerprint, "license validated");
            } else {
                debug!(namespace, license = name, state, remaining, "license unchanged");
            }
        }
        KeyOutcome::Refused(r) => {
            if changed {
                warn!(namespace, license = name, reason = %r.reason, message = %r.message, fingerprint = r.fingerprint.as_deref().unwrap_or("-"), "license key refused");
            }
        }
    }
}

async fn publish_events(license: &License, outcome: &Outcome, ctx: &Context) {
    let reference = license.object_ref(&());
    for planned in &outcome.events {
        let event = Event {
            type_: match planned.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: planned.reason.clone(),
            note: Some(planned.note.clone()),
            action: planned.action.to_string(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, reason = %planned.reason, "could not publish event");
        }
    }
}
