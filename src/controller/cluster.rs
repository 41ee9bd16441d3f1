//! DaskCluster: scheduler Deployment + Service `<c>-scheduler` and the default worker group
//! `<c>-default`; `status.phase` Running as soon as the scheduler Service exists.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Resource, ResourceExt};

use super::conditions::{self, HasConditions, reasons};
use super::{Context, Touched, apply, delete, patch_status, remove_kopf_leftovers, requeue, serve};
use crate::crd::cluster::phase;
use crate::crd::{DaskCluster, DaskClusterStatus, DaskWorkerGroup};
use crate::error::Result;
use crate::resources::{cluster as build, names};

pub(super) async fn controller(
    ctx: &Arc<Context>,
    clusters: ReflectHandle<DaskCluster>,
    deployments: Touched<Deployment>,
    services: Touched<Service>,
    groups: Touched<DaskWorkerGroup>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::for_shared_stream(clusters, ctx.stores.clusters.clone())
        .owns_stream(deployments)
        .owns_stream(services)
        .owns_stream(groups);
    serve(controller, ctx, config, shutdown, reconcile).await
}

async fn reconcile(cluster: Arc<DaskCluster>, ctx: Arc<Context>) -> Result<Action> {
    remove_kopf_leftovers(&ctx, cluster.as_ref()).await?;
    if cluster.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (name, namespace) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    let current = ctx.current_status(cluster.as_ref());
    let current_conditions = current.as_ref().map(|s| s.conditions()).unwrap_or_default();
    let generation = cluster.meta().generation;
    let now = conditions::now();

    if let Err(message) = names::validate_cluster_name(&name).map_err(|e| e.to_string()) {
        let wanted = conditions::unusable(reasons::INVALID_NAME, &message);
        let status = DaskClusterStatus {
            phase: Some(phase::ERROR.into()),
            message: Some(message.clone()),
            observed_generation: generation,
            conditions: Some(conditions::merge(
                current_conditions,
                &wanted,
                generation,
                &now,
            )),
            ..Default::default()
        };
        if patch_status(&ctx, cluster.as_ref(), &status).await? {
            ctx.event(cluster.as_ref(), EventType::Warning, "InvalidName", message)
                .await;
        }
        // Names are immutable: nothing will make this cluster valid.
        return Ok(Action::await_change());
    }

    let scheduler = names::scheduler(&name);
    let observed_deployment = ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&scheduler).within(&namespace));
    let observed_service = ctx
        .stores
        .services
        .get(&ObjectRef::new(&scheduler).within(&namespace));
    let group_name = names::default_worker_group(&name);
    let observed_group = ctx
        .stores
        .groups
        .get(&ObjectRef::new(&group_name).within(&namespace));

    let deployment = build::scheduler_deployment(&cluster, observed_deployment.as_deref());
    let deployment = apply(
        &ctx,
        deployment,
        observed_deployment.as_deref(),
        "scheduler Deployment",
    )
    .await?;
    if let Some(service) = &observed_service {
        remove_kopf_leftovers(&ctx, service.as_ref()).await?; // kopf watched scheduler Services
    }
    let service = apply(
        &ctx,
        build::scheduler_service(&cluster),
        observed_service.as_deref(),
        "scheduler Service",
    )
    .await?;
    let group = apply(
        &ctx,
        build::default_worker_group(&cluster),
        observed_group.as_deref(),
        "default DaskWorkerGroup",
    )
    .await?;

    let wanted = conditions::cluster(&deployment, &group, cluster.spec.worker.replicas);
    let group_status = group.status.unwrap_or_default();
    let status = DaskClusterStatus {
        phase: Some(service_phase(&service).into()),
        message: None,
        replicas: group_status.replicas,
        selector: group_status.selector,
        observed_generation: generation,
        conditions: Some(conditions::merge(
            current_conditions,
            &wanted,
            generation,
            &now,
        )),
    };
    if patch_status(&ctx, cluster.as_ref(), &status).await?
        && current.as_ref().and_then(|s| s.phase.as_deref()) != status.phase.as_deref()
    {
        tracing::info!(%namespace, %name, phase = status.phase.as_deref(), "DaskCluster phase");
    }
    if cluster.spec.idle_timeout > 0 {
        return idle(
            &ctx,
            &cluster,
            conditions::is_true(status.conditions(), conditions::types::AVAILABLE),
        )
        .await;
    }
    Ok(requeue())
}

/// `idleTimeout`: the cluster is deleted once its scheduler says it has been idle that long
/// (`check_idle`, asked while the scheduler is ready, at most every 30 s). A scheduler that cannot
/// be asked keeps the cluster.
async fn idle(ctx: &Context, cluster: &DaskCluster, available: bool) -> Result<Action> {
    let timeout = cluster.spec.idle_timeout;
    let poll = Duration::from_secs(timeout.clamp(1, 30) as u64);
    if !available {
        return Ok(Action::requeue(poll));
    }
    let (name, namespace) = (cluster.name_any(), cluster.namespace().unwrap_or_default());
    match ctx.scheduler.of(&name, &namespace).check_idle().await {
        Ok(Some(since)) => {
            let idle = Timestamp::now().as_second() - since.as_second();
            if idle >= timeout {
                let message = format!(
                    "the scheduler has been idle for {idle}s, longer than idleTimeout ({timeout}s): \
                     deleting the cluster"
                );
                tracing::info!(%namespace, %name, idle, timeout, "idle cluster deleted");
                ctx.event(cluster, EventType::Normal, "IdleTimeout", message)
                    .await;
                delete::<DaskCluster>(ctx, &namespace, &name, "idle DaskCluster").await?;
                return Ok(Action::await_change());
            }
            let left = Duration::from_secs((timeout - idle).max(1) as u64);
            Ok(Action::requeue(left.min(poll)))
        }
        Ok(None) => Ok(Action::requeue(poll)),
        Err(e) => {
            tracing::debug!(%namespace, %name, error = %e, "could not ask the scheduler whether it is idle");
            Ok(Action::requeue(poll))
        }
    }
}

/// Upstream's rule: Running once the scheduler Service exists, except a LoadBalancer Service without
/// an ingress address, which is Pending.
fn service_phase(service: &Service) -> &'static str {
    let load_balancer =
        service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if load_balancer && !ingress {
        phase::PENDING
    } else {
        phase::RUNNING
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };

    use super::*;

    #[test]
    fn phase_follows_the_service() {
        let mut svc = Service {
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(service_phase(&svc), "Running");
        svc.spec.as_mut().unwrap().type_ = Some("LoadBalancer".into());
        assert_eq!(service_phase(&svc), "Pending");
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("127.0.0.1".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        assert_eq!(service_phase(&svc), "Running");
    }
}
