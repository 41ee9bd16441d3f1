//! Leader election on a `coordination.k8s.io` Lease, with `kube-lease-manager`: only the holder
//! reconciles; the others wait, ready but idle.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Where the lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// The holder identity: the pod name in a cluster.
    pub identity: String,
    pub duration_seconds: u64,
}

/// A running lease manager: [`Lease::acquired`] and [`Lease::lost`] follow its state; dropping
/// the receiver (in [`Lease::release`]) makes it release the lease.
pub struct Lease {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Lease {
    pub async fn start(client: Client, config: &LeaseConfig) -> Result<Lease, LeaseManagerError> {
        // Renew a third of the duration before it expires (at least 2 s), as client-go does.
        let grace = (config.duration_seconds / 3).max(2);
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration_seconds)
            .with_grace(grace)
            .with_field_manager(format!("dask-operator/{}", config.identity))
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "waiting for the leader lease");
        Ok(Lease { state, task })
    }

    /// Resolves once this replica holds the lease.
    pub async fn acquired(&mut self) {
        if self.state.wait_for(|leader| *leader).await.is_err() {
            // The manager task ended (it only does on errors it cannot retry): never leader again.
            warn!("the lease manager stopped; this replica stays a follower");
            std::future::pending::<()>().await;
        }
    }

    /// Resolves as soon as this replica no longer holds the lease.
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leader| !*leader).await;
    }

    /// Gives the lease up (a successor need not wait for it to expire).
    pub async fn release(self) {
        let Lease { state, task } = self;
        drop(state);
        match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => info!("released the leader lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "could not release the leader lease"),
            Ok(Err(e)) => warn!(error = %e, "lease manager task failed"),
            Err(_) => warn!("releasing the leader lease timed out"),
        }
    }
}
