//! `dask-operator run`: the process around the controllers. Checks the CRDs, serves the HTTP
//! endpoint, takes the leader lease when asked to, runs one set of controllers per watched
//! namespace while it leads, and shuts down gracefully on SIGTERM.

mod crds;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::controller;
use crate::telemetry::lease::{Lease, LeaseConfig};
use crate::telemetry::{Metrics, Readiness, http, logging};

/// Why `run` stopped early; printed as the one line the process exits with.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[from] kube::Error),
    #[error("{0}")]
    Crds(String),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
}

type Signal = Shared<BoxFuture<'static, ()>>;

/// Resolves on SIGTERM or Ctrl-C.
fn termination() -> Signal {
    async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("termination signal: finishing reconciles in flight");
    }
    .boxed()
    .shared()
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    logging::init(args.log_format);
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Client(kube::Error::InferConfig(e)))?;
    let client = kube::Client::try_from(config.clone())?;
    // Schedulers' HTTP API: a proxy client without retries, so that a scheduler with no ready pod
    // answers at once (used only when the operator runs outside the cluster).
    let scheduler =
        controller::SchedulerAccess::new(crate::scheduler::Scheduler::proxy_client(config)?);
    crds::ensure(&client, args.upgrade_crds)
        .await
        .map_err(RunError::Crds)?;

    let shutdown = termination();
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let (addr, server) = http::bind(
        args.http_addr,
        metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| RunError::Http {
        addr: args.http_addr,
        source,
    })?;
    info!(%addr, "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(server);

    if args.leader_elect {
        let config = LeaseConfig {
            name: args.lease_name.clone(),
            namespace: lease_namespace(&args),
            identity: identity(),
            duration_seconds: args.lease_duration_seconds,
        };
        let mut lease = Lease::start(client.clone(), &config).await?;
        loop {
            // A follower is ready: it is healthy and waits, idle.
            readiness.set(true);
            metrics.set_leader(false);
            tokio::select! {
                _ = lease.acquired() => {}
                _ = shutdown.clone() => break,
            }
            info!(identity = %config.identity, "became the leader; starting the controllers");
            metrics.set_leader(true);
            readiness.set(false);
            let lost = tokio::select! {
                _ = controllers(&client, &scheduler, &args, &metrics, &readiness, shutdown.clone()) => false,
                // Dropping the controllers' future stops every reconcile at once: losing the lease
                // must never leave two replicas writing.
                _ = lease.lost() => true,
            };
            if !lost {
                break; // shut down
            }
            metrics.set_leader(false);
            error!(identity = %config.identity, "lost the leader lease; stopped reconciling");
        }
        metrics.set_leader(false);
        lease.release().await;
    } else {
        metrics.set_leader(true);
        controllers(
            &client,
            &scheduler,
            &args,
            &metrics,
            &readiness,
            shutdown.clone(),
        )
        .await;
    }
    let _ = server.await;
    info!("dask-operator exited");
    Ok(())
}

/// One set of controllers per watched namespace (or one for all), until `shutdown`. Ready once
/// every set's stores are synced.
async fn controllers(
    client: &kube::Client,
    scheduler: &controller::SchedulerAccess,
    args: &RunArgs,
    metrics: &Arc<Metrics>,
    readiness: &Arc<Readiness>,
    shutdown: Signal,
) {
    let namespaces: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::channel(namespaces.len());
    let sets = namespaces.into_iter().map(|ns| {
        let synced = synced_tx.clone();
        controller::run_with(
            client.clone(),
            controller::Settings {
                scheduler: Some(scheduler.clone()),
                ..args.settings(ns)
            },
            metrics.clone(),
            move || {
                let _ = synced.try_send(());
            },
            shutdown.clone(),
        )
        .boxed()
    });
    let all = futures::future::join_all(sets);
    let expected = args.namespaces.len().max(1);
    let ready = async {
        for _ in 0..expected {
            if synced_rx.recv().await.is_none() {
                return;
            }
        }
        readiness.set(true);
        info!("caches synced; ready");
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = all => {}
        _ = ready => {}
    }
}

/// The namespace of the lease: the flag, else the pod's own namespace.
fn lease_namespace(args: &RunArgs) -> String {
    if let Some(ns) = &args.lease_namespace {
        return ns.clone();
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.is_empty()
    {
        return ns;
    }
    match std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace") {
        Ok(ns) if !ns.trim().is_empty() => ns.trim().to_string(),
        _ => {
            warn!("no lease namespace given and not in a pod; using `default`");
            "default".into()
        }
    }
}

/// The lease holder identity: the pod name, else the host name plus the process id.
fn identity() -> String {
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.is_empty()
    {
        return name;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}-{}", std::process::id())
}
