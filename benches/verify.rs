//! Verification throughput per format against a bare ed25519-dalek verify, and the cost of a
//! lifecycle evaluation. `make bench` runs it; figures go in the README.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signer;
use jiff::Timestamp;
use keyward::license::keys::signing_key_from_seed;
use keyward::license::{
    Claims, ExtraClaims, Format, KeySet, Policy, Timeline, TrustedKey, VerifyOptions, decode_unverified, issue, verify,
};

fn claims() -> Claims {
    Claims {
        sub: "Acme Corp".into(),
        aud: "zizq".into(),
        iss: Some("zizq.io".into()),
        iat: Some(1_800_000_000),
        nbf: None,
        exp: Some(1_831_536_000),
        jti: Some("lic-0001".into()),
        tier: Some("pro".into()),
        features: vec!["queues".into(), "sso".into(), "audit".into()],
        seats: Some(25),
        grace: None,
        warn: None,
        extra: ExtraClaims::default(),
    }
}

fn bench_verify(c: &mut Criterion) {
    let key = signing_key_from_seed(&[7; 32]);
    let mut keys = KeySet::new();
    // Several trusted keys, as after a rotation; the kid picks one.
    for seed in 1..=3u8 {
        let other = signing_key_from_seed(&[seed; 32]);
        keys.insert(TrustedKey::new(Some(&format!("old-{seed}")), other.verifying_key()).unwrap())
            .unwrap();
    }
    keys.insert(TrustedKey::new(Some("current"), key.verifying_key()).unwrap())
        .unwrap();
    let options = VerifyOptions::at(Timestamp::from_second(1_800_000_100).unwrap()).product(Some("zizq"));

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));

    let message = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJBY21lIENvcnAiLCJhdWQiOiJ6aXpxIn0";
    let signature = key.sign(message);
    let verifying = key.verifying_key();
    group.bench_function("bare_ed25519_dalek_verify_strict", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(message), black_box(&signature))
                .unwrap()
        })
    });

    for (name, format) in [
        ("jwt", Format::Jwt),
        (
            "prefixed",
            Format::Prefixed {
                prefix: "cz_ent_".into(),
            },
        ),
    ] {
        let token = issue(&claims(), &key, Some("current"), &format).unwrap();
        group.bench_function(format!("keyward_verify_{name}"), |b| {
            b.iter(|| verify(black_box(token.as_bytes()), &keys, &options).unwrap())
        });
        group.bench_function(format!("decode_only_{name}"), |b| {
            b.iter(|| decode_unverified(black_box(token.as_bytes())).unwrap())
        });
    }
    group.finish();
}

fn bench_lifecycle(c: &mut Criterion) {
    let claims = claims();
    let policy = Policy::default();
    let now = Timestamp::from_second(1_830_000_000).unwrap();
    c.bench_function("lifecycle_evaluate", |b| {
        b.iter(|| {
            let timeline = Timeline::new(black_box(&claims), &policy.for_claims(&claims));
            timeline.evaluate(black_box(now))
        })
    });
}

criterion_group!(benches, bench_verify, bench_lifecycle);
criterion_main!(benches);
