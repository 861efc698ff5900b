//! Publishing the events the status layer planned.
//!
//! kube-runtime's `Recorder` folds an event into an earlier one with the same reason into a series
//! for six minutes, keeping the first note. Keyward plans an event only when a fact changes (a new
//! state, a new key, a new revision), so a folded event would show the facts of the earlier one:
//! two rotations a minute apart would read as one `RolledOut` naming the first revision. Each
//! event is therefore published through a recorder of its own, as a distinct Event.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

use super::status::{EventKind, PlannedEvent};
use crate::api::v1alpha1::License;

#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    pub async fn publish(&self, license: &License, planned: &[PlannedEvent]) {
        let reference = license.object_ref(&());
        for p in planned {
            let event = Event {
                type_: match p.kind {
                    EventKind::Normal => EventType::Normal,
                    EventKind::Warning => EventType::Warning,
                },
                reason: p.reason.to_string(),
                note: Some(p.note.clone()),
                action: p.action.to_string(),
                secondary: None,
            };
            let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(error = %e, reason = %p.reason, "could not publish event");
            }
        }
    }
}
