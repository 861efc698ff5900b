//! `keyward status`: one License at a glance, like `cmctl status` — state, timeline, claims,
//! conditions, rollout and the latest events. Also works as `kubectl keyward status`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::v1alpha1::{License, LicenseState, LicenseStatus, SeatsStatus};
use crate::controller::finding::{ConditionType, Reason};
use crate::controller::rollout::RolloutReason;
use crate::controller::status::KeyStanding;
use crate::license::humanize::relative;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// License name; omit with -A to show every License.
    #[arg(value_name = "NAME", required_unless_present = "all_namespaces")]
    name: Option<String>,
    /// Namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// Every License in every namespace.
    #[arg(long, short = 'A', conflicts_with = "name")]
    all_namespaces: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// How many recent events to show.
    #[arg(long, default_value_t = 5)]
    events: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    // KUBECONFIG may list several files; the first is the one to read here.
    let kubeconfig = args.kubeconfig.as_ref().and_then(|p| std::env::split_paths(p).next());
    let client = super::cluster::client(kubeconfig.as_ref()).await?;
    let licenses = read_licenses(&client, &args).await?;
    let now = Timestamp::now();
    let colour = matches!(args.output, Output::Text)
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let mut events = NamespaceEvents::new(client);
    let mut reports = Vec::new();
    for license in &licenses {
        let events = latest_events(
            license,
            events.of(&license.namespace().unwrap_or_default()).await,
            args.events,
        );
        reports.push(match args.output {
            Output::Text => render(license, &events, now, colour),
            Output::Json => serde_json::to_string_pretty(&json!({"license": license, "events": events}))?,
        });
    }
    print_reports(&args, &reports)?;
    Ok(ExitCode::SUCCESS)
}

/// The License named, or with `-A` every License.
async fn read_licenses(client: &kube::Client, args: &Args) -> anyhow::Result<Vec<License>> {
    if args.all_namespaces {
        return Ok(Api::<License>::all(client.clone())
            .list(&ListParams::default())
            .await
            .context("listing Licenses")?
            .items);
    }
    let api: Api<License> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::default_namespaced(client.clone()),
    };
    let name = args.name.as_deref().expect("clap requires NAME without -A");
    match api.get_opt(name).await.context("reading the License")? {
        Some(l) => Ok(vec![l]),
        None => Err(super::usage(anyhow::anyhow!(
            "License {name:?} not found in namespace {:?}",
            api_namespace(args)
        ))),
    }
}

/// Each namespace's events, listed once however many of its Licenses are shown. Events are
/// extra: one that cannot be listed (say, no RBAC for them) is said on stderr, and the status
/// is shown without them.
struct NamespaceEvents {
    client: kube::Client,
    listed: std::collections::HashMap<String, Vec<Event>>,
}

impl NamespaceEvents {
    fn new(client: kube::Client) -> Self {
        Self {
            client,
            listed: Default::default(),
        }
    }

    async fn of(&mut self, namespace: &str) -> &[Event] {
        if !self.listed.contains_key(namespace) {
            let events = match Api::<Event>::namespaced(self.client.clone(), namespace)
                .list(&ListParams::default())
                .await
            {
                Ok(list) => list.items,
                Err(e) => {
                    eprintln!("keyward: could not list events in namespace {namespace:?}: {e}");
                    Vec::new()
                }
            };
            self.listed.insert(namespace.to_string(), events);
        }
        &self.listed[namespace]
    }
}

fn print_reports(args: &Args, reports: &[String]) -> anyhow::Result<()> {
    if matches!(args.output, Output::Json) && args.all_namespaces {
        let all: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| serde_json::from_str(r).expect("own JSON"))
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if reports.is_empty() {
        println!("No Licenses found.");
    } else {
        println!("{}", reports.join("\n"));
    }
    Ok(())
}

fn api_namespace(args: &Args) -> String {
    args.namespace.clone().unwrap_or_else(|| "<current context>".into())
}

fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
}

/// The License's events, newest first.
fn latest_events(license: &License, events: &[Event], keep: usize) -> Vec<Event> {
    let uid = license.uid();
    let mut mine: Vec<Event> = events
        .iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("License")
                    && r.name.as_deref() == license.metadata.name.as_deref()
                    && (r.uid.is_none() || r.uid == uid)
            })
        })
        .cloned()
        .collect();
    mine.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    mine.truncate(keep);
    mine
}

struct Paint(bool);

impl Paint {
    fn code(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.code("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.code("2", t)
    }
    fn state(&self, state: Option<LicenseState>) -> String {
        let text = state.map_or("Unknown".to_string(), |s| s.to_string());
        match state {
            Some(LicenseState::Active) => self.code("1;32", &text),
            Some(LicenseState::Warning | LicenseState::Pending) => self.code("1;33", &text),
            _ => self.code("1;31", &text),
        }
    }
    fn condition(&self, status: &str) -> String {
        match status {
            "True" => self.code("32", status),
            "False" => self.code("31", status),
            _ => self.code("33", status),
        }
    }
}

fn explain(state: Option<LicenseState>) -> &'static str {
    match state {
        Some(LicenseState::Pending) => "the key is not valid yet (or has not been evaluated)",
        Some(LicenseState::Invalid) => "the key was refused; workloads keep the last good key",
        Some(s @ (LicenseState::Active | LicenseState::Warning | LicenseState::Grace | LicenseState::ReadOnly)) => {
            let core = match s {
                LicenseState::Active => crate::license::State::Active,
                LicenseState::Warning => crate::license::State::Warning,
                LicenseState::Grace => crate::license::State::Grace,
                _ => crate::license::State::ReadOnly,
            };
            core.explanation()
        }
        None => "not reconciled yet: is the operator running?",
    }
}

/// Renders one License for a terminal.
pub(crate) fn render(license: &License, events: &[Event], now: Timestamp, colour: bool) -> String {
    let p = Paint(colour);
    let status = license.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    out.push(p.bold(&format!(
        "License {}/{}",
        license.namespace().unwrap_or_default(),
        license.name_any()
    )));
    out.push(format!(
        "  State:       {} - {}",
        p.state(status.state),
        explain(status.state)
    ));
    out.extend(claims_lines(license, &status));
    out.extend(key_lines(license, &status, &p));
    out.extend(keys_lines(&status, now, &p));
    out.extend(timeline_lines(&status, now, &p));
    out.extend(condition_lines(&status, &p));
    out.extend(rollout_lines(&status, &p));
    out.extend(event_lines(events, now, &p));
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn claims_lines(license: &License, status: &LicenseStatus) -> Vec<String> {
    let features = status.features.clone().unwrap_or_default();
    let mut lines = vec![
        format!("  Licensee:    {}", or_dash(&status.licensee)),
        format!(
            "  Product:     {}",
            status.product.clone().unwrap_or_else(|| license.spec.product.clone())
        ),
        format!("  Tier:        {}", or_dash(&status.tier)),
        format!(
            "  Features:    {}",
            if features.is_empty() {
                "-".into()
            } else {
                features.join(", ")
            }
        ),
    ];
    if let Some(seats) = &status.seats {
        lines.push(format!("  Seats:       {}", seats_text(seats)));
    }
    lines
}

/// `12/25 used`, `12 used, unlimited`, `25 entitled`, `unlimited`, then any report breakdown.
fn seats_text(seats: &SeatsStatus) -> String {
    let main = match (seats.used, seats.entitled) {
        (Some(used), Some(entitled)) => format!("{used}/{entitled} used"),
        (Some(used), None) => format!("{used} used, unlimited"),
        (None, Some(entitled)) => format!("{entitled} entitled"),
        (None, None) => "unlimited".into(),
    };
    let breakdown: Vec<String> = seats.breakdown.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if breakdown.is_empty() {
        main
    } else {
        format!("{main} ({})", breakdown.join(", "))
    }
}

fn key_lines(license: &License, status: &LicenseStatus, p: &Paint) -> Vec<String> {
    let license_id = status
        .license_id
        .as_ref()
        .map(|id| format!(" (license {id})"))
        .unwrap_or_default();
    // A refused key has a fingerprint but no key id: no dash in front of it.
    let key = match (&status.key_id, &status.key_fingerprint) {
        (Some(id), Some(fingerprint)) => format!("{id} {}", p.dim(fingerprint)),
        (None, Some(fingerprint)) => p.dim(fingerprint),
        (id, None) => or_dash(id),
    };
    let mut lines = vec![
        format!("  Key:         {key}{license_id}"),
        format!(
            "  Secret:      {} (key {:?})",
            license.spec.secret_ref.name, license.spec.secret_ref.key
        ),
    ];
    if let Some(good) = status
        .last_good
        .as_ref()
        .filter(|_| status.state == Some(LicenseState::Invalid))
    {
        lines.push(format!(
            "  Last good:   {} for {}, expires {}",
            good.key_fingerprint,
            good.licensee,
            good.expires_at.as_deref().unwrap_or("never")
        ));
    }
    lines
}

/// Every referenced key when there are several: the one in force, the ones waiting and why the
/// others are not in force.
fn keys_lines(status: &LicenseStatus, now: Timestamp, p: &Paint) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(next) = status.next_key_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()) {
        lines.push(format!("  Next key:    takes over at {next} ({})", relative(now, next)));
    }
    if status.keys.is_empty() {
        return lines;
    }
    lines.push("  Keys:".into());
    lines.extend(status.keys.iter().map(|k| {
        let mark = if k.in_force { p.code("32", "*") } else { " ".into() };
        let standing = |s: KeyStanding| k.reason == s.as_str();
        let reason = if k.in_force {
            p.code("32", &k.reason)
        } else if standing(KeyStanding::Waiting) || standing(KeyStanding::Superseded) {
            k.reason.clone()
        } else {
            p.code("31", &k.reason)
        };
        let span = match (&k.starts_at, &k.expires_at) {
            (Some(s), Some(e)) => format!("{s} .. {e}"),
            (Some(s), None) => format!("{s} .. never"),
            _ => "-".into(),
        };
        format!(
            "    {mark} {:<28} {reason:<18} {} {}  {span}",
            k.source,
            p.dim(k.fingerprint.as_deref().unwrap_or("-")),
            k.licensee.as_deref().unwrap_or("-")
        )
    }));
    lines
}

/// The milestones in time order, with now marked where it falls among them.
fn timeline_lines(status: &LicenseStatus, now: Timestamp, p: &Paint) -> Vec<String> {
    let parse = |v: &Option<String>| v.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let mut milestones: Vec<(Timestamp, &str)> = [
        ("issued", parse(&status.issued_at)),
        ("warning starts", parse(&status.warning_at)),
        ("expires", parse(&status.expires_at)),
        ("grace ends", parse(&status.grace_ends_at)),
    ]
    .into_iter()
    .filter_map(|(label, at)| at.map(|at| (at, label)))
    .collect();
    milestones.sort_by_key(|(at, _)| *at);
    let mut lines = Vec::new();
    if milestones.is_empty() {
        if status.licensee.is_some() {
            lines.push("  Timeline:    perpetual license, never expires".into());
        }
    } else {
        lines.push("  Timeline:".into());
        let now_line = format!(
            "    {} {:<15} {}",
            p.bold(">"),
            p.bold("now"),
            now.round(jiff::Unit::Second).unwrap_or(now)
        );
        let past = milestones.iter().take_while(|(at, _)| *at <= now).count();
        for (i, (at, label)) in milestones.iter().enumerate() {
            if i == past {
                lines.push(now_line.clone());
            }
            let mark = if *at <= now { "x" } else { "." };
            lines.push(format!("    {mark} {label:<15} {at}  ({})", relative(now, *at)));
        }
        if past == milestones.len() {
            lines.push(now_line);
        }
    }
    if let Some(next) = parse(&status.next_transition_at) {
        lines.push(format!("  Next change: {next} ({})", relative(now, next)));
    }
    lines
}

fn condition_lines(status: &LicenseStatus, p: &Paint) -> Vec<String> {
    if status.conditions.is_empty() {
        return Vec::new();
    }
    let mut lines = vec!["  Conditions:".to_string()];
    lines.extend(status.conditions.iter().map(|c| {
        format!(
            "    {:<13} {:<7} {:<18} {}",
            c.type_,
            p.condition(&c.status),
            c.reason,
            c.message
        )
    }));
    lines
}

/// What the targets hold. While the key is refused they keep the last good key, and saying "up to
/// date" would be false.
fn rollout_lines(status: &LicenseStatus, p: &Paint) -> Vec<String> {
    let Some(rollout) = &status.rollout else {
        return Vec::new();
    };
    let revision = rollout
        .revision
        .as_ref()
        .map(|r| format!(" (revision {r})"))
        .unwrap_or_default();
    let key_refused = status
        .condition(ConditionType::RolledOut.as_str())
        .is_some_and(|c| c.reason == RolloutReason::KeyNotValid.as_str());
    let mut lines = vec![if key_refused {
        let keep = match rollout.targets {
            1 => "1 target Secret keeps".to_string(),
            n => format!("{n} target Secrets keep"),
        };
        format!("  Rollout:     the current key is not rolled out; {keep} the last good key{revision}")
    } else {
        format!("  Rollout:     {} target Secrets up to date{revision}", rollout.summary)
    }];
    lines.extend(rollout.details.iter().map(|t| {
        let state = if t.up_to_date {
            p.code("32", "up to date")
        } else {
            p.code("31", t.reason.as_deref().unwrap_or("not up to date"))
        };
        let pods = t.pods.map(|n| format!(", {n} pods nudged")).unwrap_or_default();
        format!("    {}/{}  {state}{pods}", t.namespace, t.secret_name)
    }));
    if let Some(c) = &rollout.consumers {
        lines.push(if c.live + c.restart_required == 0 {
            "  Consumers:   no running Pod reads the target Secrets".to_string()
        } else {
            format!(
                "  Consumers:   {} live, {} need a restart to see the current key",
                c.live, c.restart_required
            )
        });
        lines.extend(c.pods.iter().map(|pod| {
            format!(
                "    {}/{}  {} (reads {} through {})",
                pod.namespace,
                pod.name,
                p.code("31", "restart required"),
                pod.secret_name,
                pod.reads.join(", ")
            )
        }));
    }
    lines
}

fn event_lines(events: &[Event], now: Timestamp, p: &Paint) -> Vec<String> {
    if events.is_empty() {
        return vec!["  Events:      none".into()];
    }
    let mut lines = vec!["  Events:".to_string()];
    lines.extend(events.iter().map(|e| {
        let when = event_time(e).map_or("-".to_string(), |t| relative(now, t));
        let kind = e.type_.clone().unwrap_or_default();
        let kind = if kind == "Warning" { p.code("33", &kind) } else { kind };
        format!(
            "    {when:<22} {kind:<8} {:<18} {}",
            e.reason.clone().unwrap_or_default(),
            e.note.clone().unwrap_or_default()
        )
    }));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(status: serde_json::Value) -> License {
        serde_json::from_value(json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "License",
            "metadata": {"name": "acme", "namespace": "prod", "uid": "u1"},
            "spec": {"secretRef": {"name": "acme-license"}, "product": "zizq"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn renders_state_timeline_with_now_marked_conditions_rollout_and_events() {
        let l = license(json!({
            "state": "Warning", "licensee": "Acme Corp", "product": "zizq", "tier": "pro",
            "features": ["sso"], "seats": {"entitled": 25, "used": 12, "summary": "12/25", "breakdown": {"api_keys_active": 8}}, "keyId": "vendor-2026",
            "keyFingerprint": "sha256:0123456789abcdef",
            "issuedAt": "2026-01-01T00:00:00Z", "warningAt": "2026-12-02T00:00:00Z",
            "expiresAt": "2027-01-01T00:00:00Z", "graceEndsAt": "2027-01-15T00:00:00Z",
            "nextTransitionAt": "2027-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "reason": "ExpiresSoon", "message": "renew it", "lastTransitionTime": "2026-12-02T00:00:00Z"}],
            "rollout": {"targets": 2, "upToDate": 1, "summary": "1/2", "details": [
                {"namespace": "a", "secretName": "s", "upToDate": true, "pods": 3},
                {"namespace": "b", "secretName": "s", "upToDate": false, "reason": "TargetConflict"}]}
        }));
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1"}, "eventTime": "2026-12-20T00:00:00.000000Z", "type": "Warning",
            "reason": "ExpiryNotice", "note": "expires in 12 days", "reportingController": "keyward", "reportingInstance": "x",
            "action": "Notify", "regarding": {"kind": "License", "name": "acme", "uid": "u1"}
        }))
        .unwrap();
        let now: Timestamp = "2026-12-20T00:00:00Z".parse().unwrap();
        let text = render(&l, &latest_events(&l, &[event], 5), now, false);
        assert!(text.contains("License prod/acme"), "{text}");
        assert!(text.contains("Seats:       12/25 used (api_keys_active 8)"), "{text}");
        assert!(
            text.contains("Key:         vendor-2026 sha256:0123456789abcdef\n"),
            "{text}"
        );
        assert!(
            text.contains("State:       Warning - the license expires soon"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle}: {text}"))
        };
        assert!(
            pos("x warning starts") < pos("> now") && pos("> now") < pos(". expires"),
            "{text}"
        );
        assert!(text.contains("(in 12days)"), "{text}");
        assert!(text.contains("Ready         True    ExpiresSoon"), "{text}");
        assert!(
            text.contains("a/s  up to date, 3 pods nudged") && text.contains("b/s  TargetConflict"),
            "{text}"
        );
        assert!(
            text.contains("ExpiryNotice") && text.contains("expires in 12 days"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour when not asked");
        assert!(render(&l, &[], now, true).contains("\x1b[1;33mWarning"));
    }

    #[test]
    fn invalid_license_shows_last_good_and_unreconciled_says_so() {
        let l = license(
            json!({"state": "Invalid", "keyFingerprint": "sha256:bb", "lastGood": {"keyFingerprint": "sha256:aa", "licensee": "Acme", "expiresAt": "2027-01-01T00:00:00Z"}}),
        );
        let text = render(&l, &[], Timestamp::UNIX_EPOCH, false);
        assert!(text.contains("Last good:   sha256:aa for Acme"), "{text}");
        assert!(
            text.contains("Key:         sha256:bb\n"),
            "a refused key has no key id: {text}"
        );
        let fresh = license(json!(null));
        let text = render(&fresh, &[], Timestamp::UNIX_EPOCH, false);
        assert!(text.contains("is the operator running?"), "{text}");
        assert!(text.contains("Key:         -\n"), "{text}");
    }

    #[test]
    fn the_timeline_is_in_time_order_even_when_issued_inside_the_warning_window() {
        // Issued 10 days before expiry with a 30-day warning window: the warning began before
        // the issue date and must be listed first.
        let l = license(json!({
            "state": "Warning", "licensee": "Acme",
            "issuedAt": "2026-12-20T00:00:00Z", "warningAt": "2026-11-30T00:00:00Z",
            "expiresAt": "2026-12-30T00:00:00Z", "graceEndsAt": "2027-01-13T00:00:00Z"
        }));
        let now: Timestamp = "2026-12-21T00:00:00Z".parse().unwrap();
        let text = render(&l, &[], now, false);
        let order: Vec<&str> = text
            .lines()
            .filter(|l| ["    x ", "    > ", "    . "].iter().any(|p| l.starts_with(p)))
            .filter_map(|l| {
                ["warning starts", "issued", "> now", "expires", "grace ends"]
                    .into_iter()
                    .find(|m| l.contains(m))
            })
            .collect();
        assert_eq!(
            order,
            ["warning starts", "issued", "> now", "expires", "grace ends"],
            "{text}"
        );
    }

    #[test]
    fn seats_read_naturally() {
        let text =
            |seats: serde_json::Value| render(&license(json!({"seats": seats})), &[], Timestamp::UNIX_EPOCH, false);
        assert!(text(json!({})).contains("Seats:       unlimited\n"));
        assert!(text(json!({"entitled": 25})).contains("Seats:       25 entitled\n"));
        assert!(text(json!({"used": 7})).contains("Seats:       7 used, unlimited\n"));
        assert!(text(json!({"used": 7, "entitled": 25})).contains("Seats:       7/25 used\n"));
    }

    #[test]
    fn a_refused_key_does_not_read_as_up_to_date() {
        let l = license(json!({
            "state": "Invalid",
            "conditions": [{"type": "RolledOut", "status": "False", "reason": "KeyNotValid", "message": "m", "lastTransitionTime": "2026-12-02T00:00:00Z"}],
            "rollout": {"targets": 1, "upToDate": 0, "summary": "0/1", "revision": "sha256:aa", "details": [
                {"namespace": "a", "secretName": "s", "upToDate": false, "reason": "KeyNotValid"}]}
        }));
        let text = render(&l, &[], Timestamp::UNIX_EPOCH, false);
        assert!(
            text.contains(
                "the current key is not rolled out; 1 target Secret keeps the last good key (revision sha256:aa)"
            ),
            "{text}"
        );
        assert!(!text.contains("up to date"), "{text}");
    }
}
