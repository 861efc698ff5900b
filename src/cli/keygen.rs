use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::keyfiles;
use crate::license::keys;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the PKCS#8 PEM private key (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    private_key: PathBuf,
    /// Where to write the SPKI PEM public key to hand to customers.
    #[arg(long, value_name = "PATH")]
    public_key: PathBuf,
    /// Key id to sign with; default: derived from the public key's SHA-256.
    #[arg(long, value_name = "ID")]
    kid: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(kid) = &args.kid {
        keys::validate_key_id(kid).map_err(super::usage)?;
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    let signing = keys::signing_key_from_seed(&seed);
    let public_pem = keys::public_key_to_pem(&signing.verifying_key());
    keyfiles::write_private(
        &args.private_key,
        keys::signing_key_to_pem(&signing).as_bytes(),
        args.force,
    )
    .context("writing the private key")
    .map_err(super::usage)?;
    keyfiles::write_public(&args.public_key, public_pem.as_bytes(), args.force)
        .context("writing the public key")
        .map_err(super::usage)?;
    let kid = args
        .kid
        .unwrap_or_else(|| keys::derived_key_id(&signing.verifying_key()));
    eprintln!(
        "wrote {} (keep it secret) and {}",
        args.private_key.display(),
        args.public_key.display()
    );
    println!("{kid}");
    Ok(ExitCode::SUCCESS)
}
