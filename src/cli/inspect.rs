use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::keyfiles;
use crate::license::humanize::{friendly_between, relative};
use crate::license::{
    Claims, Evaluation, Fingerprint, Format, KeySet, MAX_TOKEN_BYTES, Policy, Timeline, VerifyError, VerifyOptions,
    decode_unverified, verify,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The license key, `@FILE` to read it from a file, or `-` for standard input.
    #[arg(value_name = "TOKEN|@FILE|-")]
    token: String,
    /// Trusted public key (SPKI PEM or raw base64) as `[KID=]PATH`, or a directory of them; repeatable.
    #[arg(long = "public-key", value_name = "[KID=]PATH")]
    public_keys: Vec<String>,
    /// Product the key must be for.
    #[arg(long, value_name = "NAME")]
    product: Option<String>,
    /// Evaluate the state at this instant instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_timestamp)]
    at: Option<Timestamp>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

fn read_token(arg: &str) -> anyhow::Result<Vec<u8>> {
    // Read one byte past the limit so an oversized key is reported as such, not truncated.
    let limit = MAX_TOKEN_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if arg == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("reading {path}"))?;
    } else {
        bytes = arg.as_bytes().to_vec();
    }
    Ok(bytes)
}

fn load_keys(specs: &[String]) -> anyhow::Result<KeySet> {
    let mut set = KeySet::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, path)) => (Some(id), PathBuf::from(path)),
            None => (None, PathBuf::from(spec)),
        };
        if path.is_dir() {
            for key in keyfiles::load_trust_dir(&path)?.iter() {
                set.insert(key.clone())?;
            }
        } else {
            let naming = keyfiles::Naming {
                explicit: id,
                fallback: None,
            };
            for key in keyfiles::read_public_keys(&path, naming)? {
                set.insert(key)?;
            }
        }
    }
    Ok(set)
}

/// What the command found, shared by the text and JSON renderings.
struct Report {
    at: Timestamp,
    verdict: Result<String, VerifyError>,
    decoded: Option<(Format, Claims, Option<String>)>,
    fingerprint: Fingerprint,
    evaluation: Option<(Timeline, Evaluation)>,
    verified: bool,
}

impl Report {
    fn valid(&self) -> bool {
        self.verified && self.verdict.is_ok()
    }

    fn state(&self) -> String {
        // Decoded (verified, or shown as decoded when no key was given): the lifecycle state.
        match (&self.verdict, &self.evaluation) {
            (Ok(_), Some((_, e))) => e.state.to_string(),
            _ => "Invalid".to_string(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = read_token(&args.token).map_err(super::usage)?;
    let keys = load_keys(&args.public_keys)
        .context("loading --public-key")
        .map_err(super::usage)?;
    // Whole seconds: claims are in seconds, and "remaining" should not read 23h 59m 59s.
    let at = args.at.unwrap_or_else(|| {
        Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| Timestamp::now())
    });
    let verified = !args.public_keys.is_empty();
    let options = VerifyOptions::at(at).product(args.product.clone());
    let (verdict, decoded) = if verified {
        match verify(&token, &keys, &options) {
            Ok(v) => (Ok(v.key_id), Some((v.format, v.claims, None))),
            Err(e) => (
                Err(e),
                decode_unverified(&token).ok().map(|u| (u.format, u.claims, u.key_id)),
            ),
        }
    } else {
        match decode_unverified(&token) {
            Ok(u) => (Ok(String::new()), Some((u.format, u.claims, u.key_id))),
            Err(e) => (Err(e), None),
        }
    };
    let evaluation = decoded.as_ref().map(|(_, claims, _)| {
        let timeline = Timeline::new(claims, &Policy::default().for_claims(claims));
        (timeline, timeline.evaluate(at))
    });
    let report = Report {
        at,
        verdict,
        decoded,
        fingerprint: Fingerprint::of(&token),
        evaluation,
        verified,
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&report))?),
        Output::Text => print!("{}", to_text(&report)),
    }
    Ok(if report.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rfc3339(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn to_json(r: &Report) -> Value {
    let claims = r.decoded.as_ref().map(|(_, c, _)| c);
    let expiry = r.evaluation.and_then(|(t, _)| t.expiry);
    let eval = r.evaluation.map(|(_, e)| e);
    let key_id = match (&r.verdict, &r.decoded) {
        (Ok(id), _) if r.verified => Some(id.clone()),
        (_, Some((_, _, kid))) => kid.clone(),
        _ => None,
    };
    let error = match (&r.verdict, r.verified) {
        (Err(e), _) => json!({"reason": e.reason(), "message": e.to_string()}),
        (Ok(_), false) => {
            json!({"reason": "NotVerified", "message": "no --public-key given: the key was decoded but not verified"})
        }
        (Ok(_), true) => Value::Null,
    };
    let mut out = json!({
        "valid": r.valid(),
        "verified": r.verified && r.verdict.is_ok(),
        "state": r.state(),
        "format": r.decoded.as_ref().map(|(f, _, _)| format_name(f)),
        "fingerprint": r.fingerprint.as_str(),
        "licensee": claims.map(|c| c.sub.clone()),
        "product": claims.map(|c| c.aud.to_string()),
        "tier": claims.and_then(|c| c.tier.clone()),
        "features": claims.map(|c| c.features.clone()),
        "seats": claims.and_then(|c| c.seats),
        "licenseId": claims.and_then(|c| c.jti.clone()),
        "issuer": claims.and_then(|c| c.iss.clone()),
        "keyId": key_id,
        "issuedAt": rfc3339(claims.and_then(Claims::issued_at)),
        "notBefore": rfc3339(claims.and_then(Claims::not_before)),
        "warningAt": rfc3339(expiry.map(|e| e.warning_at)),
        "expiresAt": rfc3339(expiry.map(|e| e.expires_at)),
        "graceEndsAt": rfc3339(expiry.map(|e| e.grace_ends_at)),
        "nextState": eval.and_then(|e| e.next_transition).map(|t| t.state.to_string()),
        "nextTransitionAt": rfc3339(eval.and_then(|e| e.next_transition).map(|t| t.at)),
        "remaining": expiry.map(|e| friendly_between(r.at, e.expires_at)),
        "evaluatedAt": r.at.to_string(),
        "extra": claims.map(|c| serde_json::to_value(&c.extra).unwrap_or(Value::Null)),
    });
    if !error.is_null() {
        out["error"] = error;
    }
    out
}

fn to_text(r: &Report) -> String {
    let mut out = Text::default();
    verdict_lines(r, &mut out);
    out.line("fingerprint:", r.fingerprint.to_string());
    let Some((format, claims, header_kid)) = &r.decoded else {
        return out.0;
    };
    if !r.valid() && r.verified {
        out.line("", "(claims below are as decoded, unverified)".into());
    }
    out.line("format:", format.to_string());
    claims_lines(claims, header_kid.as_deref(), &mut out);
    if let Some((timeline, eval)) = &r.evaluation {
        lifecycle_lines(r, timeline, eval, &mut out);
    }
    if !claims.extra.0.is_empty() {
        out.line("extra:", serde_json::to_string(&claims.extra).unwrap_or_default());
    }
    out.0
}

/// `inspect`'s text: one aligned "label value" line at a time.
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, label: &str, value: String) {
        self.0.push_str(&format!("{label:<13}{value}\n"));
    }
}

fn verdict_lines(r: &Report, out: &mut Text) {
    match (&r.verdict, r.verified) {
        (Ok(kid), true) => out.line("verified:", format!("yes, signed by trusted key {kid:?}")),
        (Ok(_), false) => out.line(
            "verified:",
            "NO - no --public-key given; decoded only, nothing below is trusted".into(),
        ),
        (Err(e), _) => out.line("INVALID:", format!("{e} ({})", e.reason())),
    }
}

fn claims_lines(claims: &Claims, header_kid: Option<&str>, out: &mut Text) {
    out.line("licensee:", claims.sub.clone());
    out.line("product:", claims.aud.to_string());
    out.line("tier:", claims.tier.clone().unwrap_or_else(|| "-".into()));
    let features = if claims.features.is_empty() {
        "-".into()
    } else {
        claims.features.join(", ")
    };
    out.line("features:", features);
    out.line("seats:", claims.seats.map_or("unlimited".into(), |s| s.to_string()));
    if let Some(jti) = &claims.jti {
        out.line("license id:", jti.clone());
    }
    if let Some(iss) = &claims.iss {
        out.line("issuer:", iss.clone());
    }
    if let Some(kid) = header_kid {
        out.line("key id:", kid.to_string());
    }
    let show = |t: Option<Timestamp>| t.map_or("-".to_string(), |t| t.to_string());
    out.line("issued:", show(claims.issued_at()));
    if claims.nbf.is_some() {
        out.line("not before:", show(claims.not_before()));
    }
}

fn lifecycle_lines(r: &Report, timeline: &Timeline, eval: &Evaluation, out: &mut Text) {
    match timeline.expiry {
        None => out.line("expires:", "never (perpetual)".into()),
        Some(e) => {
            out.line("warning at:", e.warning_at.to_string());
            out.line("expires:", e.expires_at.to_string());
            out.line("grace ends:", e.grace_ends_at.to_string());
            if e.expires_at >= r.at {
                out.line("remaining:", friendly_between(r.at, e.expires_at));
            } else {
                out.line("expired:", relative(r.at, e.expires_at));
            }
        }
    }
    if r.verified && !r.valid() {
        out.line("state:", "Invalid - the key was refused, so it grants nothing".into());
        return;
    }
    let unverified = if r.verified { "" } else { " (unverified)" };
    out.line(
        "state:",
        format!("{}{unverified} at {} - {}", eval.state, r.at, eval.state.explanation()),
    );
    if let Some(t) = eval.next_transition {
        out.line(
            "next:",
            format!("{} at {} (in {})", t.state, t.at, friendly_between(r.at, t.at)),
        );
    }
}

fn format_name(format: &Format) -> String {
    match format {
        Format::Jwt => "jwt".to_string(),
        Format::Prefixed { prefix } => prefix.clone(),
    }
}
