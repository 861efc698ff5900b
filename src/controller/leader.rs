//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! reconciles. A leader that loses its Lease stops reconciling at once and exits, as client-go's
//! leader election does: a fresh process is simpler to reason about than a demoted one.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::info;

pub const LEASE_NAME: &str = "keyward-leader";
/// A dead leader's Lease expires after this long; the standby then takes over.
const LEASE_SECONDS: u64 = 10;
/// The leader renews this long before expiry.
const RENEW_BEFORE_SECONDS: u64 = 3;

#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for; the Lease has been released for a quick handover.
    Shutdown,
    /// Another replica holds the Lease now.
    LeadershipLost,
}

/// Waits for leadership, then runs `lead` until `shutdown` flips to true or leadership is lost.
/// `lead` gets a receiver that turns true when it must stop.
pub async fn run<F, Fut>(
    client: Client,
    namespace: &str,
    identity: &str,
    mut shutdown: watch::Receiver<bool>,
    lead: F,
) -> anyhow::Result<Ended>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_BEFORE_SECONDS)
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    info!(lease = LEASE_NAME, namespace, identity, "waiting to become the leader");
    let became_leader = tokio::select! {
        r = leading.wait_for(|is_leader| *is_leader) => r.is_ok(),
        _ = shutdown.wait_for(|stop| *stop) => false,
    };
    if !became_leader {
        drop(leading);
        let _ = lease_task.await;
        return Ok(Ended::Shutdown);
    }
    info!(identity, "became the leader; reconciling");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut lost_watch = leading.clone();
    let mut shutdown_watch = shutdown.clone();
    let ended = {
        let stopper = async {
            tokio::select! {
                _ = lost_watch.wait_for(|is_leader| !*is_leader) => Ended::LeadershipLost,
                _ = shutdown_watch.wait_for(|stop| *stop) => Ended::Shutdown,
            }
        };
        let leading_work = lead(stop_rx);
        tokio::pin!(leading_work);
        tokio::select! {
            ended = stopper => {
                // Stop reconciling before the Lease is released or taken: never two writers.
                let _ = stop_tx.send(true);
                leading_work.await;
                ended
            }
            () = &mut leading_work => Ended::Shutdown,
        }
    };
    drop(lost_watch);
    drop(leading);
    // Dropping every receiver makes the lease task release the Lease before it ends.
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!(identity, "released the leader Lease"),
        Ok(Ok(Err(e))) => tracing::warn!(identity, error = %e, "could not release the leader Lease"),
        Ok(Err(e)) => tracing::warn!(identity, error = %e, "the Lease task failed"),
        Err(_) => tracing::warn!(identity, "timed out releasing the leader Lease"),
    }
    Ok(ended)
}
