//! DaskAutoscaler: adopted by its DaskCluster; every few seconds it asks the cluster's scheduler for
//! its adaptive target (its HTTP API, [`crate::scheduler`]), and [`decide`] turns that, the bounds and
//! the recent targets into the replicas of the cluster's default worker group (no flapping: a
//! scale-down waits for a stabilization window). The group's controller then retires exactly the
//! workers the scheduler names.

use std::sync::Arc;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::context::ClusterOf;
use super::{
    Context, adopt, conditions, naming_cluster, patch_status, remove_kopf_leftovers, serve,
};
use crate::crd::{DaskAutoscaler, DaskAutoscalerStatus, DaskCluster, DaskWorkerGroup};
use crate::decisions::autoscale::{self, Observed, Target, decide};
use crate::error::{Error, Result};
use crate::resources::names;

/// How often an autoscaler asks its scheduler for the adaptive target.
pub const POLL: Duration = Duration::from_secs(5);

pub(super) async fn controller(
    ctx: &Arc<Context>,
    autoscalers: ReflectHandle<DaskAutoscaler>,
    clusters: ReflectHandle<DaskCluster>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let by_cluster = naming_cluster(ctx.stores.autoscalers.clone(), |a: &DaskAutoscaler| {
        &a.spec.cluster
    });
    let controller = Controller::for_shared_stream(autoscalers, ctx.stores.autoscalers.clone())
        .watches_shared_stream(clusters, by_cluster);
    serve(controller, ctx, config, shutdown, reconcile).await
}

async fn reconcile(autoscaler: Arc<DaskAutoscaler>, ctx: Arc<Context>) -> Result<Action> {
    remove_kopf_leftovers(&ctx, autoscaler.as_ref()).await?;
    if autoscaler.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let cluster = match ctx.cluster_of(autoscaler.as_ref(), &autoscaler.spec.cluster) {
        ClusterOf::Found(cluster) => cluster,
        ClusterOf::Gone => return Ok(Action::await_change()),
        ClusterOf::Missing(message) => {
            let note = message.clone();
            ctx.event(
                autoscaler.as_ref(),
                EventType::Warning,
                "ClusterNotFound",
                note,
            )
            .await;
            return Err(Error::Unusable(message));
        }
    };
    adopt(&ctx, autoscaler.as_ref(), &cluster).await?;

    let (cluster, namespace) = (
        cluster.name_any(),
        autoscaler.namespace().unwrap_or_default(),
    );
    let group_name = names::default_worker_group(&cluster);
    let Some(group) = ctx
        .stores
        .groups
        .get(&ObjectRef::new(&group_name).within(&namespace))
    else {
        // The cluster makes its default group; the group's creation does not wake the autoscaler.
        return Ok(Action::requeue(POLL));
    };
    let target = match ctx
        .scheduler
        .of(&cluster, &namespace)
        .adaptive_target()
        .await
    {
        Ok(n) => Target::Workers(n),
        Err(e) => Target::Unreachable(e.to_string()),
    };
    let current = ctx.current_status(autoscaler.as_ref()).unwrap_or_default();
    let now = Timestamp::now();
    let samples = ctx.autoscaler_samples(autoscaler.as_ref());
    let decision = decide(&Observed {
        target,
        current: group.spec.worker.replicas,
        minimum: autoscaler.spec.minimum,
        maximum: autoscaler.spec.maximum,
        last_change: current.last_scale_time.as_ref().map(|t| t.0),
        recent: &samples,
        now,
        settings: autoscale::Settings::default(),
    });
    ctx.record_autoscaler_samples(autoscaler.as_ref(), decision.recent.clone());

    let mut status = DaskAutoscalerStatus {
        target: decision.target.or(current.target),
        workers: Some(group.spec.worker.replicas),
        reason: Some(decision.reason.into()),
        message: Some(decision.message.clone()),
        ..current.clone()
    };
    if let Some(replicas) = decision.replicas
        && replicas != group.spec.worker.replicas
    {
        // As upstream's autoscaler (and `KubeCluster.scale()`): the group's `spec.worker.replicas`.
        let patch = json!({"spec": {"worker": {"replicas": replicas}}});
        ctx.api::<DaskWorkerGroup>(&namespace)
            .patch(&group_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!(
                "scale DaskWorkerGroup {namespace}/{group_name}"
            )))?;
        let from = group.spec.worker.replicas;
        info!(%namespace, name = %autoscaler.name_any(), from, to = replicas, "autoscaled");
        status.workers = Some(replicas);
        status.last_scale_time = Some(conditions::now());
        let message = format!(
            "{group_name}: {from} → {replicas} workers: {}",
            decision.message
        );
        ctx.event(autoscaler.as_ref(), EventType::Normal, "Scaled", message)
            .await;
    }
    let changed_reason = current.reason.as_deref() != Some(decision.reason);
    // A countdown in the message (cooldown, stabilization window) is no reason to write the status
    // every poll: the message is written with a new decision, target or worker count.
    if !changed_reason && status.target == current.target && status.workers == current.workers {
        status.message = current.message.clone();
    }
    if patch_status(&ctx, autoscaler.as_ref(), &status).await? && decision.warning && changed_reason
    {
        ctx.event(
            autoscaler.as_ref(),
            EventType::Warning,
            decision.reason,
            decision.message.clone(),
        )
        .await;
    }
    Ok(Action::requeue(decision.wake.map_or(POLL, |w| w.min(POLL))))
}
