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

/// Every schema node says what it is. An object with properties but no `type: object`, or a
/// `nullable` node (published in OpenAPI v2 with no type at all), is what made `kubectl explain
/// license.spec.rollout` list no fields.
#[test]
fn every_schema_node_is_typed_and_none_is_nullable() {
    fn walk(path: &str, node: &serde_json::Value, problems: &mut Vec<String>) {
        let Some(map) = node.as_object() else { return };
        if map.contains_key("nullable") {
            problems.push(format!("{path}: nullable"));
        }
        let typed = map.contains_key("type")
            || map.contains_key("x-kubernetes-int-or-string")
            || map.contains_key("x-kubernetes-preserve-unknown-fields");
        if !typed {
            problems.push(format!("{path}: no type"));
        }
        if (map.contains_key("properties") || map.contains_key("additionalProperties"))
            && map.get("type").and_then(|t| t.as_str()) != Some("object")
        {
            problems.push(format!("{path}: properties without type: object"));
        }
        for (name, child) in map.get("properties").and_then(|p| p.as_object()).into_iter().flatten() {
            walk(&format!("{path}.{name}"), child, problems);
        }
        if let Some(items) = map.get("items") {
            walk(&format!("{path}[]"), items, problems);
        }
        if let Some(extra) = map.get("additionalProperties").filter(|a| a.is_object()) {
            walk(&format!("{path}{{}}"), extra, problems);
        }
    }
    let crd = serde_json::to_value(keyward::api::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    walk("", schema, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}
