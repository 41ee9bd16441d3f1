//! DaskAutoscaler: served and adopted by its DaskCluster (the scaling logic is a separate piece of work).

use std::sync::Arc;

use kube::Resource;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ReflectHandle;

use super::context::ClusterOf;
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
    Ok(Action::await_change())
}
