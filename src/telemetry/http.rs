//! `/healthz` and `/readyz` on the health address, `/metrics` on the metrics address.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::{Liveness, Metrics};

/// Ready once the License cache has synced. A standby replica is ready too: it can take over.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What `/healthz` judges: the controller's progress, against how long a sync may take.
#[derive(Clone)]
pub struct Health {
    pub liveness: Liveness,
    pub recovery_deadline: std::time::Duration,
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    match health.liveness.check(health.recovery_deadline) {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(stuck) => {
            tracing::error!(error = %stuck, "reporting unhealthy");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{stuck}\n"))
        }
    }
}

async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    if ready.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

pub async fn serve_health(listener: TcpListener, ready: Readiness, health: Health) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
        .route("/readyz", get(readyz))
        .with_state(ready);
    axum::serve(listener, app).await
}

pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(self::metrics)).with_state(metrics);
    axum::serve(listener, app).await
}
