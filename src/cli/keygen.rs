use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::keyfiles;
use crate::license::{jwk, keys};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the PKCS#8 PEM private key (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    private_key: PathBuf,
    /// Where to write the public key to hand to customers.
    #[arg(long, value_name = "PATH")]
    public_key: PathBuf,
    /// How to write the public key: SPKI PEM, or a JWK (RFC 8037) carrying the key id.
    #[arg(long, value_enum, default_value_t = PublicKeyFormat::Pem)]
    public_key_format: PublicKeyFormat,
    /// Key id to sign with; default: derived from the public key's SHA-256.
    #[arg(long, value_name = "ID")]
    kid: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PublicKeyFormat {
    Pem,
    Jwk,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(kid) = &args.kid {
        keys::validate_key_id(kid).map_err(super::usage)?;
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    let signing = keys::signing_key_from_seed(&seed);
    let verifying = signing.verifying_key();
    let kid = args.kid.unwrap_or_else(|| keys::derived_key_id(&verifying));
    let public = match args.public_key_format {
        PublicKeyFormat::Pem => keys::public_key_to_pem(&verifying),
        PublicKeyFormat::Jwk => jwk::to_jwk(&verifying, Some(&kid)),
    };
    keyfiles::write_private(
        &args.private_key,
        keys::signing_key_to_pem(&signing).as_bytes(),
        args.force,
    )
    .context("writing the private key")
    .map_err(super::usage)?;
    keyfiles::write_public(&args.public_key, public.as_bytes(), args.force)
        .context("writing the public key")
        .map_err(super::usage)?;
    eprintln!(
        "wrote {} (keep it secret) and {}",
        args.private_key.display(),
        args.public_key.display()
    );
    println!("{kid}");
    Ok(ExitCode::SUCCESS)
}
