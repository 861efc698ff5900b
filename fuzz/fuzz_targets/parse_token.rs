//! Both token parsers, the verifier and the lifecycle on arbitrary bytes: nothing may panic.
#![no_main]

use std::sync::OnceLock;

use jiff::Timestamp;
use keyward::license::keys::signing_key_from_seed;
use keyward::license::{KeySet, Policy, Timeline, TrustedKey, VerifyOptions, decode_unverified, verify};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut set = KeySet::new();
        set.insert(TrustedKey::new(Some("fuzz"), signing_key_from_seed(&[1; 32]).verifying_key()).unwrap()).unwrap();
        set
    })
}

fuzz_target!(|data: &[u8]| {
    let options = VerifyOptions::at(Timestamp::from_second(1_800_000_000).unwrap()).product(Some("zizq"));
    let _ = verify(data, keys(), &options);
    // Also with a "cz_ent_" prefix, so the prefixed parser sees arbitrary payloads.
    let mut prefixed = b"cz_ent_".to_vec();
    prefixed.extend_from_slice(data);
    let _ = verify(&prefixed, keys(), &options);
    for input in [data, prefixed.as_slice()] {
        if let Ok(license) = decode_unverified(input) {
            let timeline = Timeline::new(&license.claims, &Policy::default().for_claims(&license.claims));
            let _ = timeline.evaluate(options.now);
        }
    }
});
