//! Runtime wiring: one shared watch per kind, the four controllers on them, per-reconcile
//! bookkeeping (metrics, backoff), and the entry points that run it all.

use std::fmt::Debug;
use std::future::ready;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{
    Bookkeeping, Context, MANAGER, Settings, Stores, autoscaler, bookkeeping, cluster, job,
    workergroup,
};
use crate::crd::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};
use crate::error::{Error, Result, backoff};
use crate::resources::labels::{COMPONENT, component};
use crate::telemetry::Metrics;

/// Objects a watch touched (applied or deleted), in the order the store saw them.
pub(crate) type Touched<K> = futures::channel::mpsc::Receiver<Result<K, watcher::Error>>;

/// For a DaskCluster that changed, the objects in `store` that name it in their spec (`cluster_of`):
/// a worker group or autoscaler whose cluster appears later is reconciled again then.
pub(crate) fn naming_cluster<K>(
    store: Store<K>,
    cluster_of: fn(&K) -> &str,
) -> impl Fn(Arc<DaskCluster>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    move |cluster| {
        let (name, namespace) = (cluster.name_any(), cluster.namespace());
        store
            .state()
            .into_iter()
            .filter(|o| cluster_of(o) == name && o.namespace() == namespace)
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

/// Runs `reconcile` once every store holds its first complete list, and resets the object's failure
/// count when it succeeds; a persistent error shows in the object's status ([`super::errors`]).
///
/// Waiting here rather than before starting the controllers keeps the watches flowing (a controller
/// that is not polled would stall the shared stores it subscribes to). Every object of the kind gets
/// an event from the first list, so each one is reconciled — against complete stores — once they are
/// synced: a reconcile never mistakes a child or a cluster that is merely not listed yet for one that
/// does not exist (no duplicate children, no "cluster does not exist", no write at all on a restart
/// with nothing changed).
pub(crate) async fn tracked<K, Fut>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) -> Result<Action>
where
    K: super::errors::Reportable,
    Fut: std::future::Future<Output = Result<Action>>,
{
    // Only fails if the sender is gone, which happens only when the operator stops.
    let _ = ctx.synced.clone().wait_for(|synced| *synced).await;
    let started = std::time::Instant::now();
    let result = reconcile(obj.clone(), ctx.clone()).await;
    let kind = match K::kind(&()).as_ref() {
        "DaskCluster" => "DaskCluster",
        "DaskWorkerGroup" => "DaskWorkerGroup",
        "DaskJob" => "DaskJob",
        "DaskAutoscaler" => "DaskAutoscaler",
        _ => "other",
    };
    ctx.metrics.reconciled(
        kind,
        started.elapsed(),
        result.as_ref().err().map(Error::kind),
    );
    super::errors::report(obj.as_ref(), &ctx, result.as_ref().map(|_| ())).await;
    if result.is_ok() {
        ctx.record_success(obj.as_ref());
    }
    result
}

/// Per-object exponential backoff; the count is reset by the next successful reconcile.
pub(crate) fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let failures = ctx.record_failure(obj.as_ref());
    let delay = backoff(failures);
    warn!(
        kind = %K::kind(&()),
        namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
        name = obj.meta().name.as_deref().unwrap_or_default(),
        error = %error,
        error_kind = error.kind(),
        failures,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// One watch of a kind, shared by every controller that needs it: a store, `subscribers` streams of
/// the objects the watch applied (for a controller's own kind), and `children` streams of every object
/// the watch touched, deletions included (for the owners of a child: a deleted child must wake its
/// owner). Every stream sees an event only after the store has it, so a reconcile it triggers reads
/// the store as at least that new.
struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    subscribers: Vec<ReflectHandle<K>>,
    children: Vec<Touched<K>>,
}

/// For one of the four kinds, `book` is the bookkeeping to drop a deleted object's entries from.
fn shared<K>(
    api: Api<K>,
    wc: watcher::Config,
    subscribers: usize,
    children: usize,
    book: Option<Arc<Bookkeeping>>,
) -> (Shared<K>, impl std::future::Future<Output = ()> + Send)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(1024);
    let handles = (0..subscribers)
        .map(|_| writer.subscribe().expect("shared store"))
        .collect();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..children)
        .map(|_| futures::channel::mpsc::channel(256))
        .unzip();
    let kind = K::kind(&()).to_string();
    let reader = store.clone();
    let driver = watcher(api, wc)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect_shared(writer)
        .for_each(move |event| {
            // A deleted object's bookkeeping goes with it: on its Delete, and after each complete list
            // (the store holds it by now) for what a re-list no longer has (see `bookkeeping`).
            if let Some(book) = &book {
                match &event {
                    Ok(watcher::Event::Delete(o)) => book.forget(&o.uid().unwrap_or_default()),
                    Ok(watcher::Event::InitDone) => book.retain(&kind, &bookkeeping::uids(&reader)),
                    _ => {}
                }
            }
            let mut senders = senders.clone();
            let kind = kind.clone();
            async move {
                let touched = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => o,
                    Ok(_) => return,
                    Err(e) => return warn!(kind = %kind, error = %e, "watch error; retrying with backoff"),
                };
                for sender in &mut senders {
                    // A closed receiver means its controller stopped: nothing to wake.
                    let _ = futures::SinkExt::send(sender, Ok(touched.clone())).await;
                }
            }
        });
    (
        Shared {
            store,
            subscribers: handles,
            children: receivers,
        },
        driver,
    )
}

fn api_for<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs `controller` the way every kind runs: at most `config`'s reconciles at once, until
/// `shutdown`; each reconcile [`tracked`], failures backed off per object ([`error_policy`]), and a
/// reconcile that could not run logged.
pub(crate) async fn serve<K, Fut>(
    controller: Controller<K>,
    ctx: &Arc<Context>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) where
    K: super::errors::Reportable + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::Status: Send + Sync,
    Fut: std::future::Future<Output = Result<Action>> + Send + 'static,
{
    let kind = K::kind(&()).to_string();
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(
            move |obj, ctx| tracked(obj, ctx, reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                debug!(kind = %kind, error = ?e, "reconcile not run");
            }
            ready(())
        })
        .await
}

/// Runs the four controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_with(client, settings, Arc::new(Metrics::new()), || {}, shutdown).await
}

/// [`run`], keeping the controllers' per-object memory in `bookkeeping` (tests read
/// [`Bookkeeping::tracked_objects`]).
pub async fn run_with_bookkeeping(
    client: Client,
    settings: Settings,
    bookkeeping: Arc<Bookkeeping>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let metrics = Arc::new(Metrics::new());
    run_inner(client, settings, metrics, bookkeeping, || {}, shutdown).await
}

/// [`run`], recording into `metrics`, and calling `synced` once every store holds its first
/// complete list.
pub async fn run_with(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    synced: impl FnOnce() + Send,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_inner(client, settings, metrics, Arc::default(), synced, shutdown).await
}

async fn run_inner(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    bookkeeping: Arc<Bookkeeping>,
    synced: impl FnOnce() + Send,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = &settings.namespace;
    let dask_children = watcher::Config::default().labels(&format!(
        "{COMPONENT} in ({},{})",
        component::SCHEDULER,
        component::WORKER
    ));
    let scheduler_services =
        watcher::Config::default().labels(&format!("{COMPONENT}={}", component::SCHEDULER));
    let job_runners =
        watcher::Config::default().labels(&format!("{COMPONENT}={}", component::JOB_RUNNER));
    // Who reads what: clusters (cluster controller; owner triggers for jobs; lookups by groups and
    // autoscalers), groups (group controller; owner triggers for clusters), deployments (owner triggers
    // for clusters and groups), services (clusters), runner pods (jobs); a job waits for its cluster's status.
    let book = Some(bookkeeping.clone());
    let (mut clusters, clusters_driver) = shared(
        api_for::<DaskCluster>(&client, ns),
        Default::default(),
        3,
        1,
        book.clone(),
    );
    let (mut groups, groups_driver) = shared(
        api_for::<DaskWorkerGroup>(&client, ns),
        Default::default(),
        1,
        1,
        book.clone(),
    );
    let (mut jobs, jobs_driver) = shared(
        api_for::<DaskJob>(&client, ns),
        Default::default(),
        1,
        0,
        book.clone(),
    );
    let (mut autoscalers, autoscalers_driver) = shared(
        api_for::<DaskAutoscaler>(&client, ns),
        Default::default(),
        1,
        0,
        book,
    );
    let (mut deployments, deployments_driver) = shared(
        api_for::<Deployment>(&client, ns),
        dask_children,
        0,
        2,
        None,
    );
    let (mut services, services_driver) = shared(
        api_for::<Service>(&client, ns),
        scheduler_services,
        0,
        1,
        None,
    );
    let (mut runners, runners_driver) =
        shared(api_for::<Pod>(&client, ns), job_runners, 0, 1, None);
    let stores = Stores {
        clusters: clusters.store.clone(),
        groups: groups.store.clone(),
        jobs: jobs.store.clone(),
        autoscalers: autoscalers.store.clone(),
        deployments: deployments.store.clone(),
        services: services.store.clone(),
        runners: runners.store.clone(),
    };
    let _counted = metrics.watch_jobs(stores.jobs.clone());
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let ready = {
        let s = stores.clone();
        async move {
            let _ = futures::join!(
                s.clusters.wait_until_ready(),
                s.groups.wait_until_ready(),
                s.jobs.wait_until_ready(),
                s.autoscalers.wait_until_ready(),
                s.deployments.wait_until_ready(),
                s.services.wait_until_ready(),
                s.runners.wait_until_ready(),
            );
            synced_tx.send_replace(true);
            synced();
            std::future::pending::<()>().await
        }
    };
    let scheduler = settings
        .scheduler
        .clone()
        .unwrap_or_else(|| super::SchedulerAccess::new(client.clone()));
    let ctx = Arc::new(Context {
        scheduler,
        recorder: Recorder::new(client.clone(), Reporter::from(MANAGER)),
        metrics,
        client,
        settings: settings.clone(),
        stores,
        bookkeeping,
        synced: synced_rx,
    });
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let config = kube::runtime::controller::Config::default().concurrency(settings.concurrency);

    // Boxed: the controllers' futures are large, and unboxed they overflow a 2 MiB test-thread stack.
    let controllers = futures::future::join4(
        Box::pin(cluster::controller(
            &ctx,
            clusters.subscribers.pop().unwrap(),
            deployments.children.pop().unwrap(),
            services.children.pop().unwrap(),
            groups.children.pop().unwrap(),
            config.clone(),
            shutdown.clone(),
        )),
        Box::pin(workergroup::controller(
            &ctx,
            groups.subscribers.pop().unwrap(),
            deployments.children.pop().unwrap(),
            clusters.subscribers.pop().unwrap(),
            config.clone(),
            shutdown.clone(),
        )),
        Box::pin(job::controller(
            &ctx,
            jobs.subscribers.pop().unwrap(),
            clusters.children.pop().unwrap(),
            runners.children.pop().unwrap(),
            config.clone(),
            shutdown.clone(),
        )),
        Box::pin(autoscaler::controller(
            &ctx,
            autoscalers.subscribers.pop().unwrap(),
            clusters.subscribers.pop().unwrap(),
            config,
            shutdown.clone(),
        )),
    );
    let drivers = futures::future::join(
        futures::future::join4(
            Box::pin(clusters_driver),
            Box::pin(groups_driver),
            Box::pin(jobs_driver),
            Box::pin(autoscalers_driver),
        ),
        futures::future::join3(
            Box::pin(deployments_driver),
            Box::pin(services_driver),
            Box::pin(runners_driver),
        ),
    );
    info!(
        namespace = ns.as_deref().unwrap_or("<all>"),
        "dask-operator running"
    );
    // The drivers never end on their own; the controllers end on shutdown.
    tokio::select! {
        _ = controllers => {}
        _ = drivers => {}
        _ = ready => {}
    }
    info!("dask-operator stopped");
}
