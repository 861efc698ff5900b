use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;

use crate::keyfiles;
use crate::license::humanize::{add_validity, parse_duration};
use crate::license::{Claims, ExtraClaims, Format, keys};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("expiry").required(true).args(["expires", "valid_for", "perpetual"])))]
pub struct Args {
    /// PKCS#8 PEM private key from `keyward keygen`.
    #[arg(long, value_name = "PATH")]
    signing_key: PathBuf,
    /// Who the license is for (claim `sub`).
    #[arg(long, value_name = "NAME")]
    licensee: String,
    /// Product the license is for (claim `aud`).
    #[arg(long, value_name = "NAME")]
    product: String,
    /// Expiry as an RFC 3339 time.
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_timestamp)]
    expires: Option<Timestamp>,
    /// Expiry relative to now: 365d, 1y, 6mo, 12h.
    #[arg(long, value_name = "DURATION")]
    valid_for: Option<String>,
    /// Never expires.
    #[arg(long)]
    perpetual: bool,
    #[arg(long, value_name = "TIER")]
    tier: Option<String>,
    /// Comma-separated feature names.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    features: Vec<String>,
    /// Licensed seats; omit for unlimited.
    #[arg(long, value_name = "N")]
    seats: Option<u64>,
    /// Not valid before this RFC 3339 time.
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_timestamp)]
    not_before: Option<Timestamp>,
    /// Warning window before expiry, signed into the key (default: the operator's, 30d).
    #[arg(long, value_name = "DURATION")]
    warn: Option<String>,
    /// Grace period after expiry, signed into the key (default: the operator's, 14d).
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// Key id to put in the header; default: derived from the public key.
    #[arg(long, value_name = "ID")]
    kid: Option<String>,
    #[arg(long, value_enum, default_value_t = FormatArg::Jwt)]
    format: FormatArg,
    /// Vendor prefix for --format prefixed (`cz_ent` and `cz_ent_` are the same).
    #[arg(long, value_name = "PREFIX", default_value = "cz_ent_")]
    prefix: String,
    /// Issuer (claim `iss`).
    #[arg(long, value_name = "NAME")]
    issuer: Option<String>,
    /// License id (claim `jti`); default: random.
    #[arg(long, value_name = "ID")]
    license_id: Option<String>,
    /// Extra entitlements as a JSON object, kept verbatim in the key: '{"max_queues":50}'.
    #[arg(long, value_name = "JSON")]
    extra: Option<String>,
    /// Issue time (default: now); for reproducible keys and tests.
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_timestamp, hide = true)]
    issued_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Jwt,
    Prefixed,
}

fn seconds(flag: &str, value: Option<&str>) -> anyhow::Result<Option<u64>> {
    value
        .map(|v| {
            let d = parse_duration(v).with_context(|| format!("--{flag}"))?;
            u64::try_from(d.as_secs()).with_context(|| format!("--{flag} is out of range"))
        })
        .transpose()
}

fn random_license_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    Ok(format!(
        "lic-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = keyfiles::read_signing_key(&args.signing_key).map_err(super::usage)?;
    // Claims hold whole seconds: truncate first so `exp - iat` is exactly the requested validity.
    let issued_at = args.issued_at.unwrap_or_else(Timestamp::now);
    let issued_at = Timestamp::from_second(issued_at.as_second()).context("issue time out of range")?;
    let expires = match (&args.expires, &args.valid_for) {
        (Some(at), _) => Some(*at),
        (None, Some(span)) => Some(
            add_validity(issued_at, span)
                .context("--valid-for")
                .map_err(super::usage)?,
        ),
        (None, None) => None,
    };
    let extra = match &args.extra {
        None => ExtraClaims::default(),
        Some(json) => serde_json::from_str(json)
            .context("--extra must be a JSON object with unique names")
            .map_err(super::usage)?,
    };
    let claims = Claims {
        sub: args.licensee,
        aud: args.product.into(),
        iss: args.issuer,
        iat: Some(issued_at.as_second()),
        nbf: args.not_before.map(|t| t.as_second()),
        exp: expires.map(|t| t.as_second()),
        jti: Some(match args.license_id {
            Some(id) => id,
            None => random_license_id()?,
        }),
        tier: args.tier,
        features: args
            .features
            .into_iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
        seats: args.seats,
        grace: seconds("grace", args.grace.as_deref()).map_err(super::usage)?,
        warn: seconds("warn", args.warn.as_deref()).map_err(super::usage)?,
        extra,
    };
    let format = match args.format {
        FormatArg::Jwt => Format::Jwt,
        FormatArg::Prefixed => Format::Prefixed {
            prefix: crate::license::token::normalize_prefix(&args.prefix),
        },
    };
    let kid = args.kid.unwrap_or_else(|| keys::derived_key_id(&key.verifying_key()));
    let token = crate::license::issue(&claims, &key, Some(&kid), &format).map_err(super::usage)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
