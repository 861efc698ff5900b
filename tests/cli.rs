//! The `keyward` command-line contract: keygen, issue, inspect, exit codes, JSON output.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn keyward(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn keygen(dir: &Path, name: &str, kid: Option<&str>) -> String {
    let private = format!("{name}.key");
    let public = format!("{name}.pub");
    let mut args = vec!["keygen", "--private-key", &private, "--public-key", &public];
    if let Some(kid) = kid {
        args.extend(["--kid", kid]);
    }
    let out = keyward(&args, dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stdout(&out).trim().to_string()
}

fn issue(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "issue",
        "--signing-key",
        "vendor.key",
        "--licensee",
        "Acme Corp",
        "--product",
        "zizq",
    ];
    args.extend(extra);
    let out = keyward(&args, dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stdout(&out).trim().to_string()
}

fn inspect_json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["inspect"];
    all.extend(args);
    all.extend(["-o", "json"]);
    let out = keyward(&all, dir);
    (out.status.code().unwrap(), serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn keygen_writes_an_owner_only_private_key_and_prints_the_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let kid = keygen(dir.path(), "vendor", None);
    assert_eq!(kid.len(), 16);
    assert!(kid.bytes().all(|b| b.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("vendor.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let private = std::fs::read_to_string(dir.path().join("vendor.key")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    let public = std::fs::read_to_string(dir.path().join("vendor.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    // Never overwrites an existing key by accident.
    let again = keyward(
        &["keygen", "--private-key", "vendor.key", "--public-key", "x.pub"],
        dir.path(),
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("vendor.key"));
    assert_eq!(keygen(dir.path(), "named", Some("vendor-2026")), "vendor-2026");
}

#[test]
fn issue_then_inspect_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let kid = keygen(dir.path(), "vendor", None);
    for format in ["jwt", "prefixed"] {
        let token = issue(
            dir.path(),
            &[
                "--issued-at",
                "2026-01-01T00:00:00Z",
                "--valid-for",
                "365d",
                "--tier",
                "pro",
                "--features",
                "queues,sso",
                "--seats",
                "25",
                "--format",
                format,
                "--grace",
                "7d",
                "--extra",
                r#"{"max_queues":50}"#,
            ],
        );
        if format == "prefixed" {
            assert!(token.starts_with("cz_ent_"));
        } else {
            assert_eq!(token.split('.').count(), 3);
        }
        let (code, json) = inspect_json(
            dir.path(),
            &[
                &token,
                "--public-key",
                "vendor.pub",
                "--product",
                "zizq",
                "--at",
                "2026-01-01T00:00:00Z",
            ],
        );
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["valid"], true);
        assert_eq!(json["state"], "Active");
        assert_eq!(json["licensee"], "Acme Corp");
        assert_eq!(json["product"], "zizq");
        assert_eq!(json["tier"], "pro");
        assert_eq!(json["features"], serde_json::json!(["queues", "sso"]));
        assert_eq!(json["seats"], 25);
        assert_eq!(json["keyId"], kid.as_str());
        assert_eq!(json["extra"]["max_queues"], 50);
        assert_eq!(json["remaining"], "1year");
        let issued: jiff::Timestamp = json["issuedAt"].as_str().unwrap().parse().unwrap();
        let expires: jiff::Timestamp = json["expiresAt"].as_str().unwrap().parse().unwrap();
        let grace_ends: jiff::Timestamp = json["graceEndsAt"].as_str().unwrap().parse().unwrap();
        assert_eq!(expires.duration_since(issued).as_hours(), 365 * 24);
        assert_eq!(
            grace_ends.duration_since(expires).as_hours(),
            7 * 24,
            "signed grace wins"
        );
        assert_eq!(
            json["nextTransitionAt"].as_str().unwrap(),
            json["warningAt"].as_str().unwrap()
        );
        assert!(json.get("error").is_none());
    }
}

#[test]
fn inspect_reads_files_and_stdin_and_evaluates_at_an_instant() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    let token = issue(
        dir.path(),
        &[
            "--expires",
            "2027-01-31T00:00:00Z",
            "--issued-at",
            "2026-01-01T00:00:00Z",
        ],
    );
    std::fs::write(dir.path().join("lic.txt"), format!("{token}\n")).unwrap();
    let cases = [
        ("2026-06-01T00:00:00Z", "Active"),
        ("2027-01-10T00:00:00Z", "Warning"),
        ("2027-02-01T00:00:00Z", "Grace"),
        ("2027-03-01T00:00:00Z", "ReadOnly"),
    ];
    for (at, state) in cases {
        let (code, json) = inspect_json(dir.path(), &["@lic.txt", "--public-key", "vendor.pub", "--at", at]);
        assert_eq!((code, json["state"].as_str().unwrap()), (0, state), "{at}");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["inspect", "-", "--public-key", "vendor.pub"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("licensee:    Acme Corp") && text.contains("verified:    yes"),
        "{text}"
    );
}

#[test]
fn invalid_keys_exit_1_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    keygen(dir.path(), "other", None);
    let token = issue(dir.path(), &["--valid-for", "30d"]);
    // An unnamed key is tried whatever the kid says: the signature decides.
    let (code, json) = inspect_json(dir.path(), &[&token, "--public-key", "other.pub"]);
    assert_eq!((code, json["valid"].clone()), (1, Value::Bool(false)));
    assert_eq!(json["error"]["reason"], "SignatureInvalid");
    assert_eq!(json["state"], "Invalid");
    // A key given an id that the token's kid does not name is never tried.
    let (code, json) = inspect_json(dir.path(), &[&token, "--public-key", "other-2026=other.pub"]);
    assert_eq!((code, json["error"]["reason"].as_str().unwrap()), (1, "UnknownKeyId"));
    let (code, json) = inspect_json(
        dir.path(),
        &[&token, "--public-key", "vendor.pub", "--product", "other"],
    );
    assert_eq!(
        (code, json["error"]["reason"].as_str().unwrap()),
        (1, "ProductMismatch")
    );
    let mut flipped = token.clone();
    flipped.replace_range(20..21, if &token[20..21] == "A" { "B" } else { "A" });
    let (code, json) = inspect_json(dir.path(), &[&flipped, "--public-key", "vendor.pub"]);
    assert_eq!(code, 1);
    assert!(
        ["SignatureInvalid", "Malformed"].contains(&json["error"]["reason"].as_str().unwrap()),
        "{json}"
    );
    let future = issue(
        dir.path(),
        &[
            "--expires",
            "2100-01-01T00:00:00Z",
            "--not-before",
            "2099-01-01T00:00:00Z",
        ],
    );
    let (_, json) = inspect_json(dir.path(), &[&future, "--public-key", "vendor.pub"]);
    assert_eq!(json["error"]["reason"], "NotYetValid");
    let (code, json) = inspect_json(dir.path(), &["x".repeat(70_000).as_str(), "--public-key", "vendor.pub"]);
    assert_eq!((code, json["error"]["reason"].as_str().unwrap()), (1, "TooLarge"));
}

#[test]
fn a_key_named_at_keygen_verifies_with_the_plain_public_key_file() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", Some("vendor-2026"));
    let token = issue(dir.path(), &["--valid-for", "30d", "--kid", "vendor-2026"]);
    let (code, json) = inspect_json(dir.path(), &[&token, "--public-key", "vendor.pub"]);
    assert_eq!(code, 0, "{json}");
    let (code, json) = inspect_json(dir.path(), &[&token, "--public-key", "vendor-2026=vendor.pub"]);
    assert_eq!((code, json["keyId"].as_str().unwrap()), (0, "vendor-2026"));
}

#[test]
fn without_public_keys_nothing_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    let token = issue(dir.path(), &["--perpetual"]);
    let (code, json) = inspect_json(dir.path(), &[&token]);
    assert_eq!(code, 1);
    assert_eq!(json["valid"], false);
    assert_eq!(json["error"]["reason"], "NotVerified");
    assert_eq!(json["licensee"], "Acme Corp");
    assert_eq!(json["expiresAt"], Value::Null);
    let text = stdout(&keyward(&["inspect", &token], dir.path()));
    assert!(text.contains("NO - no --public-key given"), "{text}");
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    let cases: &[(&[&str], &str)] = &[
        (&["inspect", "@missing.txt"], "missing.txt"),
        (&["inspect", "x", "--public-key", "nope.pem"], "nope.pem"),
        (
            &[
                "issue",
                "--signing-key",
                "vendor.key",
                "--licensee",
                "a",
                "--product",
                "b",
            ],
            "required",
        ),
        (
            &[
                "issue",
                "--signing-key",
                "vendor.key",
                "--licensee",
                "a",
                "--product",
                "b",
                "--valid-for",
                "soon",
            ],
            "not a duration",
        ),
        (
            &[
                "issue",
                "--signing-key",
                "vendor.pub",
                "--licensee",
                "a",
                "--product",
                "b",
                "--perpetual",
            ],
            "PRIVATE KEY",
        ),
        (
            &[
                "issue",
                "--signing-key",
                "vendor.key",
                "--licensee",
                "a",
                "--product",
                "b",
                "--perpetual",
                "--format",
                "prefixed",
                "--prefix",
                "CZ",
            ],
            "prefix",
        ),
        (
            &[
                "issue",
                "--signing-key",
                "vendor.key",
                "--licensee",
                "a",
                "--product",
                "b",
                "--perpetual",
                "--extra",
                "[1]",
            ],
            "JSON object",
        ),
        (&["inspect", "x", "--at", "yesterday"], "RFC 3339"),
    ];
    for (args, needle) in cases {
        let out = keyward(args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn secrets_never_reach_the_terminal_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    let private = std::fs::read_to_string(dir.path().join("vendor.key")).unwrap();
    let body: String = private.lines().nth(1).unwrap().to_string();
    let out = keyward(&["inspect", "x", "--public-key", "vendor.key"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(&body), "private key material leaked: {all}");
}

/// Each cause of an error is printed once. Broken before: an I/O or key error was both in the
/// message and its `source`, so `keyward: error:` lines repeated "No such file or directory".
#[test]
fn errors_state_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    std::fs::write(dir.path().join("garbage.pem"), "not a key").unwrap();
    std::fs::write(dir.path().join("binary.key"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    std::fs::create_dir(dir.path().join("trust")).unwrap();
    std::fs::write(dir.path().join("trust/broken.pem"), "not a key").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["controller", "--trusted-keys", "/nonexistent-keyward-dir"],
            "No such file or directory",
        ),
        (&["controller", "--trusted-keys", "trust"], "not an Ed25519 public key"),
        (
            &["inspect", "x", "--public-key", "nope.pem"],
            "No such file or directory",
        ),
        (
            &["inspect", "x", "--public-key", "garbage.pem"],
            "not an Ed25519 public key",
        ),
        (
            &[
                "issue",
                "--signing-key",
                "binary.key",
                "--licensee",
                "a",
                "--product",
                "b",
                "--perpetual",
            ],
            "not UTF-8 text",
        ),
    ];
    for (args, cause) in cases {
        let out = keyward(args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.matches(cause).count(), 1, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    // A non-text private key is not reported as a public key.
    let out = keyward(cases[4].0, dir.path());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("public key"));
}

/// An expired key says how long ago it expired, not a negative "remaining".
#[test]
fn inspect_says_when_a_key_expired() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    let token = issue(dir.path(), &["--valid-for", "30d"]);
    std::fs::write(dir.path().join("lic.txt"), &token).unwrap();
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(52 * 24)).to_string();
    let out = keyward(
        &["inspect", "@lic.txt", "--public-key", "vendor.pub", "--at", &later],
        dir.path(),
    );
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("expired:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("22days") && line.ends_with(" ago"), "{line}");
    // The license id is random hex, which may itself hold "-22": leave it out of the search.
    let durations: String = text.lines().filter(|l| !l.starts_with("license id:")).collect();
    assert!(
        !durations.contains("remaining:") && !durations.contains("-22"),
        "{text}"
    );
}

/// `--prefix cz_ent` and `--prefix cz_ent_` mean the same prefix.
#[test]
fn a_prefix_may_be_given_with_or_without_its_final_underscore() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", None);
    for prefix in ["cz_ent", "cz_ent_"] {
        let token = issue(dir.path(), &["--perpetual", "--format", "prefixed", "--prefix", prefix]);
        assert!(
            token.starts_with("cz_ent_") && !token.starts_with("cz_ent__"),
            "{prefix}: {token}"
        );
        let (code, json) = inspect_json(dir.path(), &[&token, "--public-key", "vendor.pub"]);
        assert_eq!((code, json["format"].as_str()), (0, Some("cz_ent_")), "{json}");
    }
}

/// `inspect`'s text, line by line: a verified key, a refused one (its claims marked unverified,
/// no state but Invalid), and one decoded without a public key.
#[test]
fn inspect_text_reads_the_same_way_for_every_verdict() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "vendor", Some("vendor-2026"));
    // Relative to now (a fixed date would become an issue date in the past or an expiry before
    // it): looked at 22 days before expiry, inside the 30-day warning window.
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap();
    let expires = (now + jiff::SignedDuration::from_hours(40 * 24)).to_string();
    let at = (now + jiff::SignedDuration::from_hours(18 * 24)).to_string();
    let token = issue(
        dir.path(),
        &[
            "--kid",
            "vendor-2026",
            "--tier",
            "pro",
            "--features",
            "sso,audit",
            "--seats",
            "25",
            "--expires",
            &expires,
        ],
    );
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let text = |token: &str, key: &[&str]| {
        let mut args = vec!["inspect", token, "--at", &at];
        args.extend(key);
        stdout(&keyward(&args, dir.path()))
    };
    let labels = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.get(..13).unwrap_or(l).trim().to_string())
            .collect()
    };
    let claims = [
        "format:",
        "licensee:",
        "product:",
        "tier:",
        "features:",
        "seats:",
        "license id:",
    ];
    let timeline = [
        "issued:",
        "warning at:",
        "expires:",
        "grace ends:",
        "remaining:",
        "state:",
    ];
    let expect = |head: &[&str], kid: bool, tail: &[&str]| -> Vec<String> {
        let kid: &[&str] = if kid { &["key id:"] } else { &[] };
        [head, &claims, kid, &timeline, tail]
            .concat()
            .into_iter()
            .map(String::from)
            .collect()
    };

    let verified = text(&token, &["--public-key", "vendor.pub"]);
    assert_eq!(
        labels(&verified),
        expect(&["verified:", "fingerprint:"], false, &["next:"]),
        "{verified}"
    );
    for line in [
        "verified:    yes, signed by trusted key \"vendor-2026\"\n".to_string(),
        "features:    sso, audit\n".into(),
        "seats:       25\n".into(),
        "remaining:   22days\n".into(),
        format!("state:       Warning at {at} - the license expires soon"),
        format!("next:        Grace at {expires} (in 22days)\n"),
    ] {
        assert!(verified.contains(&line), "{line:?} in:\n{verified}");
    }

    let refused = text(&tampered, &["--public-key", "vendor.pub"]);
    assert_eq!(
        labels(&refused),
        expect(&["INVALID:", "fingerprint:", ""], true, &[]),
        "{refused}"
    );
    assert!(
        refused.contains("(claims below are as decoded, unverified)"),
        "{refused}"
    );
    assert!(
        refused.contains("state:       Invalid - the key was refused"),
        "{refused}"
    );

    let decoded = text(&token, &[]);
    assert_eq!(
        labels(&decoded),
        expect(&["verified:", "fingerprint:"], true, &["next:"]),
        "{decoded}"
    );
    assert!(decoded.contains("state:       Warning (unverified) at"), "{decoded}");
}
