//! Keyward: a Kubernetes operator that keeps software license keys valid, visible and rolled out.
//!
//! Layers: [`license`] is the pure core (formats, verification, lifecycle); [`keyfiles`] reads key
//! material from disk; [`cli`] holds one module per subcommand.

pub mod api;
pub mod cli;
pub mod controller;
pub mod keyfiles;
pub mod license;
pub mod telemetry;
