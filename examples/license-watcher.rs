//! A workload that uses a license rolled out by Keyward, the way Zizq does with
//! `--license-key @file`: it verifies the mounted key at start, watches the file, and when the
//! kubelet swaps in a renewed key it logs `license key file changed, updating license` and then
//! `license validated …` — without restarting.
//!
//!     cargo run --example license-watcher -- --license-file /etc/zizq/license \
//!         --public-key /etc/zizq/vendor.pem --product zizq
//!
//! The Secret must be mounted as a volume (not with `subPath`, not as an environment variable):
//! only a whole-volume mount is updated in place by the kubelet.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jiff::Timestamp;
use keyward::keyfiles;
use keyward::license::humanize::friendly_between;
use keyward::license::{Fingerprint, KeySet, Policy, Timeline, VerifyOptions, verify};

#[derive(Parser)]
struct Args {
    /// The mounted license file (the `license` key of the rolled-out Secret).
    #[arg(long)]
    license_file: PathBuf,
    /// The vendor's public key, shipped with the product.
    #[arg(long)]
    public_key: PathBuf,
    #[arg(long)]
    product: String,
    /// How often to look at the file.
    #[arg(long, default_value = "1s", value_parser = keyward::license::humanize::parse_duration)]
    interval: jiff::SignedDuration,
    /// Stop after this many changes have been applied (for tests); default: run forever.
    #[arg(long)]
    exit_after_changes: Option<usize>,
}

fn check(bytes: &[u8], keys: &KeySet, product: &str) {
    let now = Timestamp::now();
    match verify(bytes, keys, &VerifyOptions::at(now).product(Some(product))) {
        Ok(license) => {
            let c = &license.claims;
            let state = Timeline::new(c, &Policy::default().for_claims(c)).evaluate(now).state;
            let remaining = c.expires_at().map_or("perpetual".into(), |e| friendly_between(now, e));
            let expires_at = c.expires_at().map_or("never".into(), |e| e.to_string());
            let tier = c.tier.as_deref().unwrap_or("-");
            tracing::info!(licensee = %c.sub, tier, %expires_at, %remaining, %state, "license validated");
        }
        // The previous license stays in force: a bad file never downgrades a running workload.
        Err(e) => tracing::warn!(reason = e.reason(), error = %e, "license key refused; keeping the current license"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // Colour only on a terminal: under Kubernetes stdout is a log file read by `kubectl logs`.
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let args = Args::parse();
    let mut keys = KeySet::new();
    for key in keyfiles::read_public_keys(&args.public_key, keyfiles::Naming::default())? {
        keys.insert(key)?;
    }
    let mut current = std::fs::read(&args.license_file)?;
    check(&current, &keys, &args.product);
    let mut changes = 0;
    let mut tick = tokio::time::interval(args.interval.unsigned_abs().max(Duration::from_millis(50)));
    loop {
        tick.tick().await;
        // Compare contents, not mtimes: the kubelet replaces the file by swapping a symlink.
        let Ok(now) = std::fs::read(&args.license_file) else {
            continue;
        };
        if Fingerprint::of(&now) == Fingerprint::of(&current) {
            continue;
        }
        tracing::info!("license key file changed, updating license");
        check(&now, &keys, &args.product);
        current = now;
        changes += 1;
        if args.exit_after_changes == Some(changes) {
            return Ok(());
        }
    }
}
