//! Metrics, health endpoints and logging.

pub mod http;
mod license_series;
pub mod liveness;
pub mod logging;
pub mod metrics;

pub use http::Readiness;
pub use liveness::Liveness;
pub use metrics::Metrics;
