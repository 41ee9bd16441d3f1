//! DaskAutoscaler: served and adopted by its DaskCluster (the scaling logic is a separate piece of work).

use std::sync::Arc;

use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Resource, ResourceExt};

use super::{Context, adopt, naming_cluster, remove_kopf_leftovers, serve};
use crate::crd::{DaskAutoscaler, DaskCluster};
use crate::error::{Error, Result};

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
    let namespace = autoscaler.namespace().unwrap_or_default();
    let Some(cluster) = ctx
        .stores
        .clusters
        .get(&ObjectRef::new(&autoscaler.spec.cluster).within(&namespace))
    else {
        let message = format!(
            "DaskCluster {:?} does not exist in namespace {namespace}",
            autoscaler.spec.cluster
        );
        ctx.event(
            autoscaler.as_ref(),
            EventType::Warning,
            "ClusterNotFound",
            message.clone(),
        )
        .await;
        return Err(Error::Unusable(message));
    };
    adopt(&ctx, autoscaler.as_ref(), &cluster).await?;
    Ok(Action::await_change())
}
