//! The committed CRD is exactly what the Rust types generate, and applies without CEL.

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/licenses.keyward.dev.yaml")).unwrap();
    assert!(
        committed == keyward::api::crd_yaml(),
        "crds/licenses.keyward.dev.yaml is stale: run `cargo run -- crd > crds/licenses.keyward.dev.yaml`"
    );
}

#[test]
fn crd_has_no_cel_rules_so_kubernetes_1_20_accepts_it() {
    assert!(!keyward::api::crd_yaml().contains("x-kubernetes-validations"));
}

#[test]
fn the_chart_ships_the_same_crd() {
    let root = env!("CARGO_MANIFEST_DIR");
    let top = std::fs::read_to_string(format!("{root}/crds/licenses.keyward.dev.yaml")).unwrap();
    let chart = std::fs::read_to_string(format!("{root}/charts/keyward/crds/licenses.keyward.dev.yaml")).unwrap();
    assert!(
        top == chart,
        "charts/keyward/crds/ differs from crds/: copy crds/licenses.keyward.dev.yaml over it"
    );
}
