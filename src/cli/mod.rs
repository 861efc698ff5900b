//! The `keyward` command line: one module per subcommand, each a thin layer over the library.

mod cluster;
mod controller;
mod crd;
mod inspect;
mod issue;
mod keygen;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps software license keys valid, visible and rolled out on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an Ed25519 signing key pair for issuing licenses.
    Keygen(keygen::Args),
    /// Sign a license key (prints the token on stdout).
    Issue(Box<issue::Args>),
    /// Decode a license key and, given public keys, verify it.
    Inspect(inspect::Args),
    /// Run the License controller (the operator).
    Controller(Box<controller::Args>),
    /// Print the License CustomResourceDefinition.
    Crd(crd::Args),
    /// Show a License's state, timeline, conditions, rollout and events.
    Status(status::Args),
}

/// An error in how keyward was called or what it was given to read: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(#[from] pub anyhow::Error);

pub fn usage(err: impl Into<anyhow::Error>) -> anyhow::Error {
    UsageError(err.into()).into()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Issue(args) => issue::run(*args),
        Command::Inspect(args) => inspect::run(args),
        Command::Controller(args) => controller::run(*args),
        Command::Crd(args) => crd::run(args),
        Command::Status(args) => status::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("keyward: error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Parses an RFC 3339 instant for clap.
fn parse_timestamp(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse()
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z ({e})"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
