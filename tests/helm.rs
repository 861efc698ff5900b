//! The Helm chart: lint, rendered policy (least privilege, hardening, HA), and a real install.

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_yaml_ng::Value;

use common::{chart, helm};

fn template(sets: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "kw", chart.as_str(), "--namespace", "keyward"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, text) = helm(&args);
    assert!(ok, "helm template {sets:?} failed:\n{text}");
    // Every document must parse: one dropped silently could make a `find` below pass vacuously.
    text.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|doc| serde_yaml_ng::from_str::<Value>(doc).unwrap_or_else(|e| panic!("unparsable document: {e}\n{doc}")))
        .filter(|v| !v.is_null())
        .inspect(|v| assert!(v.get("kind").is_some(), "a rendered document without a kind: {v:?}"))
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter().map(|d| d["kind"].as_str().unwrap().to_string()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn lint_is_clean() {
    let (ok, text) = helm(&["lint", &chart(), "--strict", "--set-string", "trustedKeys.vendor=x"]);
    assert!(ok, "{text}");
    assert!(text.contains("0 chart(s) failed"), "{text}");
    assert!(!text.contains("[WARNING]") && !text.contains("[ERROR]"), "{text}");
}

#[test]
fn default_render_is_hardened_and_least_privilege() {
    let docs = template(&[]);
    let mut k = kinds(&docs);
    k.sort();
    assert_eq!(
        k,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for role in find(&docs, "ClusterRole").into_iter().chain(find(&docs, "Role")) {
        for rule in role["rules"].as_sequence().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_sequence().unwrap();
                assert!(
                    !values.iter().any(|v| v.as_str() == Some("*")),
                    "wildcard in {field}: {rule:?}"
                );
            }
        }
    }
    let deployment = find(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(
        container["resources"]["requests"]["memory"].is_string()
            && container["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"controller") && args.contains(&"--trusted-keys=/etc/keyward/trusted-keys"));
    assert!(!args.contains(&"--leader-elect"), "one replica: no election");
    assert!(!args.iter().any(|a| a.starts_with("--namespace")));
}

#[test]
fn two_replicas_elect_a_leader_and_watch_namespace_scopes_rbac() {
    let docs = template(&["replicaCount=2"]);
    let args = &find(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_sequence().unwrap().iter().any(|a| a == "--leader-elect"));

    let docs = template(&["watchNamespace=team-a"]);
    assert!(find(&docs, "ClusterRole").is_empty() && find(&docs, "ClusterRoleBinding").is_empty());
    let roles = find(&docs, "Role");
    assert!(roles.iter().any(|r| r["metadata"]["namespace"] == "team-a"));
    assert!(
        roles
            .iter()
            .any(|r| r["metadata"]["namespace"] == "keyward" && r["rules"][0]["resources"][0] == "leases")
    );
    let args = &find(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_sequence().unwrap().iter().any(|a| a == "--namespace=team-a"));
}

#[test]
fn a_disruption_budget_and_spread_render_on_request() {
    let pdb = |sets: &[&str]| {
        let docs = template(sets);
        let deployment = find(&docs, "Deployment")[0].clone();
        let budgets: Vec<Value> = find(&docs, "PodDisruptionBudget").into_iter().cloned().collect();
        (deployment, budgets)
    };
    assert!(pdb(&["replicaCount=2"]).1.is_empty(), "no budget unless asked for");

    let (deployment, budgets) = pdb(&["replicaCount=2", "podDisruptionBudget.enabled=true"]);
    assert_eq!(budgets.len(), 1);
    let spec = &budgets[0]["spec"];
    assert_eq!(spec["maxUnavailable"], Value::from(1));
    assert!(spec.get("minAvailable").is_none());
    assert_eq!(
        spec["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
        "the budget covers exactly the operator Pods"
    );

    let (_, budgets) = pdb(&[
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.minAvailable=50%",
    ]);
    assert_eq!(budgets[0]["spec"]["minAvailable"], "50%");
    assert!(budgets[0]["spec"].get("maxUnavailable").is_none());

    let chart = chart();
    let refused = |flags: &[&str]| {
        let mut args = vec![
            "template",
            "kw",
            chart.as_str(),
            "--set",
            "podDisruptionBudget.enabled=true",
        ];
        args.extend(flags);
        let (ok, text) = helm(&args);
        assert!(!ok, "helm template {flags:?} rendered:\n{text}");
        text
    };
    let both = refused(&[
        "--set",
        "podDisruptionBudget.minAvailable=1",
        "--set",
        "podDisruptionBudget.maxUnavailable=1",
    ]);
    assert!(both.contains("set minAvailable or maxUnavailable, not both"), "{both}");
    for (flags, why) in [
        (
            &["--set", "podDisruptionBudget.minAvailable=1"][..],
            "minAvailable 1 with replicaCount 1",
        ),
        (
            &["--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=2"][..],
            "minAvailable 2 with replicaCount 2",
        ),
        (
            &["--set", "podDisruptionBudget.maxUnavailable=0"][..],
            "maxUnavailable 0",
        ),
        (
            &["--set-string", "podDisruptionBudget.maxUnavailable=0%"][..],
            "maxUnavailable 0",
        ),
    ] {
        let text = refused(flags);
        assert!(
            text.contains(why) && text.contains("would block every node drain"),
            "{text}"
        );
    }
    let (_, budgets) = pdb(&[
        "replicaCount=3",
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.minAvailable=2",
    ]);
    assert_eq!(budgets[0]["spec"]["minAvailable"], Value::from(2));
    for bad in [
        "podDisruptionBudget.maxUnavailable=one",
        "podDisruptionBudget.minAvailable=-1",
    ] {
        let text = refused(&["--set", bad]);
        assert!(
            text.contains("don't meet the specifications of the schema"),
            "{bad}: {text}"
        );
    }

    let (deployment, _) = pdb(&[
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    ]);
    let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
}

#[test]
fn monitoring_objects_and_trusted_keys_render_on_request() {
    let docs = template(&[
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "trustedKeys.vendor-2026=MCowBQYDK2VwAyEA",
    ]);
    assert_eq!(find(&docs, "ServiceMonitor").len(), 1);
    let rule = find(&docs, "PrometheusRule")[0];
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        alerts,
        [
            "KeywardLicenseExpiring",
            "KeywardLicenseInGrace",
            "KeywardLicenseReadOnly",
            "KeywardLicenseInvalid",
            "KeywardLicenseNotRolledOut",
            "KeywardLicenseConsumersNeedRestart"
        ]
    );
    assert_eq!(
        find(&docs, "ConfigMap")[0]["data"]["vendor-2026.pem"]
            .as_str()
            .map(str::trim),
        Some("MCowBQYDK2VwAyEA")
    );
    let docs = template(&["existingTrustedKeysConfigMap=my-keys"]);
    assert!(find(&docs, "ConfigMap").is_empty());
    let volumes = &find(&docs, "Deployment")[0]["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes[0]["configMap"]["name"], "my-keys");
}

#[test]
fn values_are_checked_against_the_schema() {
    // Each must fail for the schema's reason, naming the value: a template error would fail too.
    for (bad, field) in [
        ("replicaCount=0", "replicaCount"),
        ("logFormat=xml", "logFormat"),
        ("defaultGrace=two weeks", "defaultGrace"),
        ("nosuchvalue=1", "nosuchvalue"),
    ] {
        let (ok, text) = helm(&["template", "kw", &chart(), "--set", bad]);
        assert!(!ok, "{bad} accepted:\n{text}");
        assert!(
            text.contains("values don't meet the specifications of the schema") && text.contains(field),
            "{bad} refused for another reason:\n{text}"
        );
    }
}

#[tokio::test]
async fn install_and_uninstall_on_a_real_api_server() {
    let client = common::client().await;
    let ns = common::TestNamespace::new("helm").await;
    let release = format!("kw-{}", common::operator::run_id());
    let chart = chart();
    let mut args = vec![
        "install",
        release.as_str(),
        chart.as_str(),
        "--namespace",
        ns.name.as_str(),
    ];
    let kubeconfig = common::kubeconfig_args();
    args.extend(kubeconfig.iter().map(String::as_str));
    args.extend([
        "--set-string",
        "trustedKeys.vendor=MCowBQYDK2VwAyEA",
        "--set",
        "replicaCount=2",
        "--set",
        "podDisruptionBudget.enabled=true",
    ]);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_existed = crds.get_opt("licenses.keyward.dev").await.unwrap().is_some();
    let (ok, text) = helm(&args);
    assert!(ok, "helm install failed:\n{text}");
    assert!(
        text.contains("kubectl get licenses -A"),
        "NOTES tell the user what to do next:\n{text}"
    );

    // The chart installs the CRD itself: nothing else applies it in this test binary.
    if crd_existed {
        common::skip(
            "install_and_uninstall_on_a_real_api_server (CRD part)",
            "the CRD existed before the install, so the chart's own CRD install cannot be observed",
        );
    } else {
        let established = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            await_condition(crds.clone(), "licenses.keyward.dev", conditions::is_crd_established()),
        )
        .await
        .expect("the chart's CRD established in time")
        .expect("watch the CRD");
        let crd = established.expect("the chart installed the CRD");
        // The API server fills in defaults (listKind, conversion): compare what the code decides.
        let generated = keyward::api::crd();
        let (installed, wanted) = (&crd.spec.versions[0], &generated.spec.versions[0]);
        assert!(
            installed.schema == wanted.schema
                && installed.additional_printer_columns == wanted.additional_printer_columns
                && crd.spec.names.plural == generated.spec.names.plural,
            "the chart's CRD differs from the one the code generates"
        );
    }
    let name = format!("{release}-keyward");
    let n = ns.name.as_str();
    Api::<Deployment>::namespaced(client.clone(), n)
        .get(&name)
        .await
        .expect("Deployment");
    Api::<ServiceAccount>::namespaced(client.clone(), n)
        .get(&name)
        .await
        .expect("ServiceAccount");
    Api::<Service>::namespaced(client.clone(), n)
        .get(&format!("{name}-metrics"))
        .await
        .expect("Service");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), n)
        .get(&format!("{name}-trusted-keys"))
        .await
        .expect("ConfigMap");
    assert!(cm.data.as_ref().unwrap().contains_key("vendor.pem"));
    tenant_cannot_touch_the_trusted_keys(&client, n, &cm, &name).await;
    Api::<ClusterRole>::all(client.clone())
        .get(&name)
        .await
        .expect("ClusterRole");
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&name)
        .await
        .expect("ClusterRoleBinding");
    Api::<Role>::namespaced(client.clone(), n)
        .get(&format!("{name}-leader-election"))
        .await
        .expect("Role");
    Api::<RoleBinding>::namespaced(client.clone(), n)
        .get(&format!("{name}-leader-election"))
        .await
        .expect("RoleBinding");
    // The API server takes the chart's PodDisruptionBudget in whichever policy version it serves
    // (1.20 serves only policy/v1beta1, which k8s-openapi no longer has: kubectl reads it).
    let pdb = common::kubectl(&["get", "pdb", &name, "-n", n, "-o", "jsonpath={.spec.maxUnavailable}"]);
    assert_eq!(pdb.trim(), "1", "one operator Pod at a time may be evicted");

    let mut args = vec!["uninstall", release.as_str(), "--namespace", n];
    args.extend(kubeconfig.iter().map(String::as_str));
    let (ok, text) = helm(&args);
    assert!(ok, "helm uninstall failed:\n{text}");
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<Deployment>::namespaced(client.clone(), n)
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
}

/// The chart's trusted-keys ConfigMap, in the operator's namespace, is out of reach of a tenant
/// who may author Licenses and Secrets in their own namespace, and of the operator itself (it
/// only reads the mounted file): trust comes from the installation alone.
async fn tenant_cannot_touch_the_trusted_keys(admin: &kube::Client, operator_ns: &str, cm: &ConfigMap, release: &str) {
    let Some(developer) =
        common::developer_client_or_skip("install_and_uninstall_on_a_real_api_server (tenant part)").await
    else {
        return;
    };
    let tenant = common::TestNamespace::new("tenant").await;
    common::grant_license_author(admin, &tenant.name, &["secrets", "configmaps"]).await;
    // The tenant's rights are real where they were granted: the denials below are about the
    // operator's namespace, not a user who can do nothing at all.
    let own: Api<ConfigMap> = Api::namespaced(developer.clone(), &tenant.name);
    common::eventually(
        "the tenant's Role in force",
        std::time::Duration::from_secs(10),
        || async { own.list(&Default::default()).await.ok().map(|_| ()) },
    )
    .await;
    let forbidden = |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    let theirs: Api<ConfigMap> = Api::namespaced(developer, operator_ns);
    let cm_name = cm.metadata.name.clone().unwrap();
    assert!(forbidden(theirs.get(&cm_name).await.map(|_| ())));
    assert!(forbidden(
        theirs.replace(&cm_name, &PostParams::default(), cm).await.map(|_| ())
    ));
    assert!(forbidden(
        theirs.delete(&cm_name, &DeleteParams::default()).await.map(|_| ())
    ));
    // What the chart's RBAC grants the operator, evaluated by the API server's authorizer.
    let sa = format!("system:serviceaccount:{operator_ns}:{release}");
    for verb in ["create", "update", "patch", "delete"] {
        let answer = std::process::Command::new(common::kubectl_bin())
            .args(common::kubeconfig_args())
            .args(["auth", "can-i", verb, "configmaps", "-n", operator_ns, "--as", &sa])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer.stdout).trim(),
            "no",
            "the operator may {verb} ConfigMaps in its own namespace"
        );
    }
}

/// A vendor's JWK Set given as a `trustedKeys` value lands in the ConfigMap as a `.jwk` entry,
/// verbatim, for the operator to read by content.
#[test]
fn trusted_keys_take_a_jwk_set() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "vendor-2027", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let file = dir.path().join("vendor.jwks");
    std::fs::write(&file, jwks).unwrap();
    let (ok, text) = helm(&[
        "template",
        "kw",
        &chart(),
        "--set-file",
        &format!("trustedKeys.vendor={}", file.display()),
    ]);
    assert!(ok, "{text}");
    let cm = text
        .split("\n---")
        .filter_map(|d| serde_yaml_ng::from_str::<Value>(d).ok())
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the trusted keys ConfigMap");
    assert_eq!(cm["data"]["vendor.jwk"].as_str().map(str::trim), Some(jwks));
    assert!(cm["data"].get("vendor.pem").is_none());
}
