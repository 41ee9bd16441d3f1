//! The controllers, one module per kind, and what they share: the watched stores, the apply and
//! status helpers, events and per-object backoff.
//!
//! Every kind is watched once (shared reflectors, narrowed by label selectors where the kind is not
//! ours) and every controller reads its children from those stores. A reconcile observes, builds the
//! desired children with the pure builders in [`crate::resources`], applies only what differs
//! (server-side apply, one field manager), then patches status only if it changed.

mod autoscaler;
mod bookkeeping;
mod cluster;
mod job;
mod workergroup;

use std::fmt::Debug;
use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

/// Objects a watch touched (applied or deleted), in the order the store saw them.
pub(crate) type Touched<K> = futures::channel::mpsc::Receiver<Result<K, watcher::Error>>;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

pub use bookkeeping::Bookkeeping;

use crate::crd::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};
use crate::error::{Error, Result, backoff};
use crate::resources::labels::{self, COMPONENT, SPEC_HASH, component};
use crate::telemetry::Metrics;

/// The field manager of every write.
pub const MANAGER: &str = "dask-operator";

/// Safety-net requeue for objects that are not finished: a missed event is noticed within this time.
const RESYNC: Duration = Duration::from_secs(300);

/// Operator settings (see `dask-operator run --help`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconciles running at once, per kind.
    pub concurrency: u16,
    /// Container restarts of a DaskJob runner before the job is Failed, unless the job sets its own.
    pub runner_restart_limit: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            concurrency: 16,
            runner_restart_limit: 6,
        }
    }
}

/// Everything the operator watches, each kind once.
#[derive(Clone)]
pub struct Stores {
    pub clusters: Store<DaskCluster>,
    pub groups: Store<DaskWorkerGroup>,
    pub jobs: Store<DaskJob>,
    pub autoscalers: Store<DaskAutoscaler>,
    /// Scheduler and worker Deployments (`dask.org/component in (scheduler,worker)`).
    pub deployments: Store<Deployment>,
    /// Scheduler Services (`dask.org/component=scheduler`).
    pub services: Store<Service>,
    /// Job runner Pods (`dask.org/component=job-runner`).
    pub runners: Store<Pod>,
}

pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub stores: Stores,
    recorder: Recorder,
    /// Failure counts and last written statuses, per object UID.
    bookkeeping: Arc<Bookkeeping>,
}

impl Context {
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Publishes an Event about `obj`. Events are best effort: a failure is logged, never returned.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// The result of [`apply`]: the object as stored, and whether a write was needed.
pub struct Applied<K> {
    pub object: K,
    pub written: bool,
}

/// A hash of what we want a child to be; kept in its [`SPEC_HASH`] annotation.
fn spec_hash<K: Serialize>(desired: &K) -> String {
    let bytes = serde_json::to_vec(desired).expect("objects serialize");
    hex::encode(Sha256::digest(&bytes))[..16].to_string()
}

/// Server-side applies `desired` unless `observed` was made from the same desired state (same spec
/// hash), so an unchanged child costs no API call. `what` names the step in errors.
///
/// Takeover rule: a child without our hash annotation was written by someone else — the Python
/// operator, whose children have none. If it already holds everything we want (`desired` is
/// contained in it, see [`contains`]) it is taken over as it is, without a write: an apply would
/// only add the annotation, and a new annotation on a Deployment bumps its generation. Such a child
/// is compared again on each reconcile (no API call) until its parent's spec changes what we want;
/// then it is applied and carries our hash from there on. An apply over a child we did not write
/// could not remove the fields its writer owns either, so skipping it loses nothing.
pub async fn apply<K>(
    ctx: &Context,
    mut desired: K,
    observed: Option<&K>,
    what: &str,
) -> Result<Applied<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let hash = spec_hash(&desired);
    if let Some(current) = observed {
        let same = current.annotations().get(SPEC_HASH) == Some(&hash);
        // Taken over as it is (see above): written by someone else, and already what we want.
        let taken_over = || {
            !current.annotations().contains_key(SPEC_HASH)
                && contains(
                    &serde_json::to_value(current).expect("objects serialize"),
                    &serde_json::to_value(&desired).expect("objects serialize"),
                )
        };
        let unchanged = same || taken_over();
        if unchanged && current.meta().deletion_timestamp.is_none() {
            return Ok(Applied {
                object: current.clone(),
                written: false,
            });
        }
    }
    desired.annotations_mut().insert(SPEC_HASH.into(), hash);
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let mut body = serde_json::to_value(&desired).expect("objects serialize");
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    let api: Api<K> = ctx.api(&namespace);
    let object = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::api(format!("apply {what} {namespace}/{name}")))?;
    debug!(%namespace, %name, what, "applied");
    Ok(Applied {
        object,
        written: true,
    })
}

/// Whether `observed` holds everything `desired` has: every key of an object with a contained value
/// (other keys, such as the API server's defaults, may be there too), arrays of the same length with
/// contained elements in the same order, equal scalars. A `null` in `desired` (a field it leaves
/// unset) is contained in anything.
fn contains(observed: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(o), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| o.get(k).is_some_and(|ov| contains(ov, dv)) || dv.is_null()),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| contains(ov, dv))
        }
        (o, d) => o == d,
    }
}

/// Server-side applies `status` to the status subresource of `obj` unless it is the status `obj`
/// already has (see [`Context::current_status`]). Returns whether it wrote.
pub async fn patch_status<K>(ctx: &Context, obj: &K, status: &K::Status) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus
        + Clone
        + Debug
        + DeserializeOwned,
    K::Status: Serialize + DeserializeOwned + PartialEq + Clone,
{
    if ctx.current_status(obj).as_ref() == Some(status) {
        return Ok(false);
    }
    let name = obj.name_any();
    let namespace = obj.namespace().unwrap_or_default();
    let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    ctx.api::<K>(&namespace)
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::api(format!(
            "patch {} status {namespace}/{name}",
            K::kind(&())
        )))?;
    ctx.record_written(
        obj,
        serde_json::to_value(status).expect("status serializes"),
    );
    Ok(true)
}

/// Deletes `name`; NotFound counts as done.
pub async fn delete<K>(ctx: &Context, namespace: &str, name: &str, what: &str) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    match ctx
        .api::<K>(namespace)
        .delete(name, &Default::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(Error::api(format!("delete {what} {namespace}/{name}"))(e)),
    }
}

/// Removes what the Python operator (kopf) left on an object it handled: its finalizer, so that
/// deleting the object does not hang now that kopf is gone, and its annotations (`kopf.zalando.org/…`:
/// `last-handled-configuration`, handler progress), which nothing reads any more. Metadata only: no
/// Deployment or Pod is rolled out by it. See [`kopf_leftovers_patch`].
pub async fn remove_kopf_leftovers<K>(ctx: &Context, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let Some(patch) = kopf_leftovers_patch(obj.meta()) else {
        return Ok(());
    };
    let (kind, name) = (K::kind(&()), obj.name_any());
    let namespace = obj.namespace().unwrap_or_default();
    ctx.api::<K>(&namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api(format!(
            "remove kopf's finalizer and annotations from {kind} {namespace}/{name}"
        )))?;
    info!(%kind, %namespace, %name, "removed kopf's finalizer and annotations");
    Ok(())
}

/// The merge patch that removes kopf's finalizer and `kopf.zalando.org/` annotations, for objects
/// kopf handled (its finalizer or its `last-handled-configuration` annotation is there; a user's own
/// `kopf.zalando.org/…` annotation on an object kopf never saw stays); `None` when there is nothing
/// to remove. Optimistic: it carries the resourceVersion the object was read at, so a concurrent
/// change makes it fail (and the reconcile is retried) rather than drop someone else's finalizer.
fn kopf_leftovers_patch(meta: &ObjectMeta) -> Option<serde_json::Value> {
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    let annotations = meta.annotations.as_ref();
    let has_finalizer = finalizers.iter().any(|f| f == labels::KOPF_FINALIZER);
    let handled = annotations.is_some_and(|a| a.contains_key(labels::KOPF_LAST_HANDLED));
    if !has_finalizer && !handled {
        return None;
    }
    let mut metadata = json!({"resourceVersion": meta.resource_version});
    if has_finalizer {
        let kept: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != labels::KOPF_FINALIZER)
            .collect();
        metadata["finalizers"] = json!(kept);
    }
    let kopf: serde_json::Map<String, serde_json::Value> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(labels::KOPF_ANNOTATION_PREFIX))
        .map(|(k, _)| (k.clone(), serde_json::Value::Null))
        .collect();
    if !kopf.is_empty() {
        metadata["annotations"] = serde_json::Value::Object(kopf);
    }
    Some(json!({ "metadata": metadata }))
}

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

/// Makes `obj` a child of its DaskCluster (cascade deletion), as upstream does for user-created
/// worker groups and autoscalers, without labelling it. Uses its own field manager so it never drops
/// fields that the main one owns.
pub async fn adopt<K>(ctx: &Context, obj: &K, cluster: &DaskCluster) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let cluster_uid = cluster.uid().unwrap_or_default();
    let owners = obj.owner_references();
    if owners.iter().any(|o| o.uid == cluster_uid) {
        return Ok(());
    }
    let mut owner = cluster
        .controller_owner_ref(&())
        .expect("cluster has a name and uid");
    if owners.iter().any(|o| o.controller == Some(true)) {
        owner.controller = Some(false); // only one controller reference is allowed
    }
    let (name, namespace) = (obj.name_any(), obj.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
    });
    ctx.api::<K>(&namespace)
        .patch(
            &name,
            &PatchParams::apply(&format!("{MANAGER}/adopt")).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::api(format!(
            "adopt {} {namespace}/{name}",
            K::kind(&())
        )))?;
    info!(kind = %K::kind(&()), %namespace, %name, cluster = %cluster.name_any(), "adopted by its cluster");
    Ok(())
}

/// What a reconcile that did not fail returns for an object still in progress.
fn requeue() -> Action {
    Action::requeue(RESYNC)
}

/// Runs `reconcile` and resets the object's failure count when it succeeds.
async fn tracked<K, Fut>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    Fut: std::future::Future<Output = Result<Action>>,
{
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
    if result.is_ok() {
        ctx.record_success(obj.as_ref());
    }
    result
}

/// Per-object exponential backoff; the count is reset by the next successful reconcile.
fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
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

/// Logs the outcome of each reconcile the way every controller does.
fn drain<S, T, E>(stream: S, kind: &'static str) -> impl std::future::Future<Output = ()>
where
    S: Stream<Item = Result<T, E>>,
    T: Debug,
    E: Debug,
{
    stream.for_each(move |res| {
        if let Err(e) = res {
            debug!(kind, error = ?e, "reconcile not run");
        }
        ready(())
    })
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
    // for clusters and groups; a job waits for its scheduler's), services (clusters), runner pods (jobs).
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
        3,
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
            synced();
            std::future::pending::<()>().await
        }
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), Reporter::from(MANAGER)),
        metrics,
        client,
        settings: settings.clone(),
        stores,
        bookkeeping,
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
            deployments.children.pop().unwrap(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(finalizers: &[&str], annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some("42".into()),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn kopf_finalizer_and_annotations_are_removed_optimistically() {
        let m = meta(
            &[labels::KOPF_FINALIZER, "example.com/keep"],
            &[
                (labels::KOPF_LAST_HANDLED, "{}"),
                ("kopf.zalando.org/daskcluster_create", "{}"),
                ("user", "keep"),
            ],
        );
        assert_eq!(
            kopf_leftovers_patch(&m),
            Some(json!({"metadata": {
                "resourceVersion": "42",
                "finalizers": ["example.com/keep"],
                "annotations": {
                    "kopf.zalando.org/daskcluster_create": null,
                    "kopf.zalando.org/last-handled-configuration": null,
                },
            }}))
        );
        // Annotations only (kopf puts no finalizer on DaskJobs and DaskWorkerGroups).
        let m = meta(&[], &[(labels::KOPF_LAST_HANDLED, "{}")]);
        assert_eq!(
            kopf_leftovers_patch(&m),
            Some(json!({"metadata": {
                "resourceVersion": "42",
                "annotations": {"kopf.zalando.org/last-handled-configuration": null},
            }}))
        );
    }

    #[test]
    fn containment_allows_defaults_but_not_changes() {
        let observed = json!({
            "metadata": {"name": "w", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"spec": {"containers": [
                {"name": "worker", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                 "terminationMessagePath": "/dev/termination-log"}
            ]}}},
        });
        let desired = json!({
            "metadata": {"name": "w", "labels": {"a": "1", "b": "2"}, "annotations": null},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "worker", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
            ]}}},
        });
        assert!(contains(&observed, &desired));
        let mut changed = desired.clone();
        changed["metadata"]["labels"]["c"] = json!("3");
        assert!(!contains(&observed, &changed), "a new label");
        let mut changed = desired.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]);
        assert!(!contains(&observed, &changed), "env in another order");
        let mut changed = desired.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "X", "value": "1"}]);
        assert!(!contains(&observed, &changed), "one env var fewer");
        let mut changed = desired;
        changed["spec"]["strategy"] = json!({"type": "Recreate"});
        assert!(!contains(&observed, &changed), "a field that is not there");
    }

    #[test]
    fn objects_kopf_never_handled_are_left_alone() {
        assert_eq!(kopf_leftovers_patch(&ObjectMeta::default()), None);
        let m = meta(
            &["example.com/keep"],
            &[("kopf.zalando.org/foobar", "user's")],
        );
        assert_eq!(kopf_leftovers_patch(&m), None);
    }
}
