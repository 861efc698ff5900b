//! `/healthz` fails only when a restart could help: the API server answers but the caches never
//! sync. An unreachable API server, however long, never makes the operator unhealthy (every
//! replica would restart in a loop for nothing).
//!
//! Its own test binary: it stops this binary's API server.

mod common;

use std::time::Duration;

use common::operator::{Operator, Vendor, http_get, install_crd};

/// Short, so that the test sees the verdict; the default is five minutes.
const DEADLINE: &str = "2s";

fn healthz(operator: &Operator) -> Option<(u16, String)> {
    http_get(operator.health_addr, "/healthz")
}

#[tokio::test]
async fn unhealthy_only_when_the_api_answers_but_the_caches_never_sync() {
    let client = common::client().await;
    install_crd(&client).await;
    let Some(developer) = common::env().developer_kubeconfig.clone() else {
        common::skip(
            "unhealthy_only_when_the_api_answers_but_the_caches_never_sync",
            "no non-admin user on this cluster",
        );
        return;
    };
    let vendor = Vendor::new("vendor-2026");
    let deadline = ["--recovery-deadline", DEADLINE];

    // The non-admin user may not list Licenses cluster-wide: the API server answers (403) and the
    // cache can never sync. A new process would not fare better, but a restart loop is how the
    // Deployment shows it (CrashLoopBackOff), where a silent operator would not.
    let forbidden = Operator::start_as(&developer, vendor.trust_dir.path(), &deadline);
    let (code, body) = common::eventually(
        "/healthz failing for the forbidden operator",
        Duration::from_secs(30),
        || async { healthz(&forbidden).filter(|(code, _)| *code == 503) },
    )
    .await;
    assert_eq!(code, 503);
    assert!(
        body.contains("have not synced") && body.contains("the API server answers"),
        "{body}"
    );
    assert_eq!(http_get(forbidden.health_addr, "/readyz").map(|r| r.0), Some(503));

    // A healthy operator, then the API server gone for several deadlines: it stays live, and so
    // does one that starts during the outage and can never sync.
    let mut healthy = Operator::start_cluster_wide(vendor.trust_dir.path(), &deadline);
    healthy.wait_ready().await;
    if !common::control_plane("stop-apiserver") {
        common::skip(
            "unhealthy_only_when_the_api_answers_but_the_caches_never_sync (outage part)",
            "the control plane is not this run's to stop",
        );
        return;
    }
    let mut started_in_outage = Operator::start_cluster_wide(vendor.trust_dir.path(), &deadline);
    common::eventually(
        "the operator started in the outage serves /healthz",
        Duration::from_secs(10),
        || async { healthz(&started_in_outage).map(|_| ()) },
    )
    .await;
    // Several deadlines: long enough for the forbidden case's verdict above to have come.
    common::holds_for(
        "both operators live through the outage",
        Duration::from_secs(8),
        || async {
            healthz(&healthy).is_some_and(|r| r.0 == 200) && healthz(&started_in_outage).is_some_and(|r| r.0 == 200)
        },
    )
    .await;
    assert!(common::control_plane("start-apiserver"));
    started_in_outage.wait_ready().await;
    assert_eq!(healthz(&started_in_outage).map(|r| r.0), Some(200));
    healthy.assert_running();
    started_in_outage.assert_running();
}
