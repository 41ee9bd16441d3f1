//! What every reconcile gets: the client, the shared stores, settings, metrics, events.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use tracing::warn;

use super::{Bookkeeping, Settings};
use crate::crd::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};
use crate::scheduler::{Route, Scheduler, route_from_environment};
use crate::telemetry::Metrics;

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

/// How the controllers reach a scheduler's HTTP API: straight over the pod network when the
/// operator runs in the cluster, else through the API server's service proxy with `client` (best one
/// without kube's retries: [`Scheduler::proxy_client`]).
#[derive(Clone)]
pub struct SchedulerAccess {
    pub route: Route,
    pub client: Client,
}

impl std::fmt::Debug for SchedulerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerAccess")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl SchedulerAccess {
    /// The route this process's environment calls for ([`route_from_environment`]), with `client`.
    pub fn new(client: Client) -> Self {
        SchedulerAccess {
            route: route_from_environment(),
            client,
        }
    }

    /// The scheduler of DaskCluster `cluster` in `namespace`.
    pub fn of(&self, cluster: &str, namespace: &str) -> Scheduler {
        Scheduler::for_cluster(self.route, &self.client, cluster, namespace)
    }
}

pub struct Context {
    pub client: Client,
    /// The schedulers' HTTP API (autoscaling, graceful scale-down, idle clusters).
    pub scheduler: SchedulerAccess,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub stores: Stores,
    pub(super) recorder: Recorder,
    /// Failure counts and last written statuses, per object UID.
    pub(super) bookkeeping: Arc<Bookkeeping>,
    /// True once every store holds its first complete list; reconciles wait for it.
    pub(super) synced: tokio::sync::watch::Receiver<bool>,
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

    /// The DaskCluster named `cluster` that `obj` (a worker group or an autoscaler) belongs to, from
    /// the store (complete: reconciles run on synced stores). See [`ClusterOf`].
    pub fn cluster_of<K: Resource<DynamicType = ()>>(&self, obj: &K, cluster: &str) -> ClusterOf {
        let namespace = obj.meta().namespace.clone().unwrap_or_default();
        if let Some(found) = self
            .stores
            .clusters
            .get(&ObjectRef::new(cluster).within(&namespace))
        {
            return ClusterOf::Found(found);
        }
        let adopted = obj
            .meta()
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "DaskCluster" && o.name == cluster);
        if adopted {
            return ClusterOf::Gone;
        }
        ClusterOf::Missing(format!(
            "DaskCluster {cluster:?} does not exist in namespace {namespace}"
        ))
    }
}

/// What [`Context::cluster_of`] found.
pub enum ClusterOf {
    Found(Arc<DaskCluster>),
    /// The cluster that owned the object is gone: the garbage collector deletes the object next, so
    /// there is nothing to report or retry.
    Gone,
    /// No such cluster, and the object was never one's: reported (status, Warning Event) and retried,
    /// as the cluster may still be created. The message says so.
    Missing(String),
}
