//! DaskWorkerGroup: adopted by its DaskCluster, and one worker Deployment per replica.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ReflectHandle;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::conditions::{self, HasConditions, reasons};
use super::context::ClusterOf;
use super::{
    Context, Touched, adopt, apply, delete, naming_cluster, owned_by, patch_status,
    remove_kopf_leftovers, requeue, serve,
};
use crate::crd::{DaskCluster, DaskWorkerGroup, DaskWorkerGroupStatus};
use crate::decisions::autoscale::{WorkerSeen, fallback_victims, retired_victims};
use crate::error::{Error, Result};
use crate::resources::labels::{self, WORKERGROUP_NAME};
use crate::resources::{names, workers as build};
use crate::scheduler::Retire;

pub(super) async fn controller(
    ctx: &Arc<Context>,
    groups: ReflectHandle<DaskWorkerGroup>,
    deployments: Touched<Deployment>,
    clusters: ReflectHandle<DaskCluster>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // A group naming a cluster that does not exist yet is reconciled again when the cluster appears.
    let by_cluster = naming_cluster(ctx.stores.groups.clone(), |g: &DaskWorkerGroup| {
        &g.spec.cluster
    });
    let controller = Controller::for_shared_stream(groups, ctx.stores.groups.clone())
        .owns_stream(deployments)
        .watches_shared_stream(clusters, by_cluster);
    serve(controller, ctx, config, shutdown, reconcile).await
}

async fn reconcile(group: Arc<DaskWorkerGroup>, ctx: Arc<Context>) -> Result<Action> {
    remove_kopf_leftovers(&ctx, group.as_ref()).await?;
    if group.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (name, namespace) = (group.name_any(), group.namespace().unwrap_or_default());
    let uid = group.uid().unwrap_or_default();
    let selector = labels::selector_string(&build::group_selector(&group));
    let current = ctx.current_status(group.as_ref());
    let current_conditions = current.as_ref().map(|s| s.conditions()).unwrap_or_default();
    let generation = group.meta().generation;
    let now = conditions::now();

    // A name or cluster reference no worker could be labelled with (the CRD's CEL rules reject them
    // on create; this is a group stored before them): reported once, not retried, as nothing but a
    // spec edit can fix it.
    if let Err(invalid) = names::validate_worker_group_name(&name)
        .and_then(|()| names::validate_cluster_reference(&group.spec.cluster))
    {
        let message = invalid.to_string();
        let status = DaskWorkerGroupStatus {
            message: Some(message.clone()),
            selector: Some(selector),
            observed_generation: group.meta().generation,
            ..current.unwrap_or_default()
        };
        if patch_status(&ctx, group.as_ref(), &status).await? {
            ctx.event(group.as_ref(), EventType::Warning, "InvalidName", message)
                .await;
        }
        return Ok(Action::await_change());
    }

    let cluster = match ctx.cluster_of(group.as_ref(), &group.spec.cluster) {
        ClusterOf::Found(cluster) => cluster,
        ClusterOf::Gone => return Ok(Action::await_change()),
        ClusterOf::Missing(message) => {
            let wanted = conditions::unusable(reasons::CLUSTER_NOT_FOUND, &message);
            let conditions = conditions::merge(current_conditions, &wanted, generation, &now);
            let status = DaskWorkerGroupStatus {
                message: Some(message.clone()),
                selector: Some(selector),
                observed_generation: generation,
                conditions: Some(conditions),
                ..current.unwrap_or_default()
            };
            if patch_status(&ctx, group.as_ref(), &status).await? {
                ctx.event(
                    group.as_ref(),
                    EventType::Warning,
                    "ClusterNotFound",
                    message.clone(),
                )
                .await;
            }
            return Err(Error::Unusable(message));
        }
    };
    adopt(&ctx, group.as_ref(), &cluster).await?;

    // This group's workers, as cached. Deployments being deleted still hold their names.
    let workers: Vec<Arc<Deployment>> = ctx.stores.deployments.state_filter(|d| {
        d.namespace().as_deref() == Some(namespace.as_str())
            && d.labels().get(WORKERGROUP_NAME) == Some(&name)
            && owned_by(d, &uid)
    });
    let live: Vec<&Arc<Deployment>> = workers
        .iter()
        .filter(|d| d.meta().deletion_timestamp.is_none())
        .collect();
    let wanted = group.spec.worker.replicas.max(0) as usize;
    let cluster_labels = cluster.labels().clone();

    // Existing workers follow spec edits (the hash makes an unchanged worker free).
    for worker in &live {
        let desired = build::worker_deployment(
            &group,
            &worker.name_any(),
            &cluster_labels,
            Some(worker.as_ref()),
        );
        apply(&ctx, desired, Some(worker.as_ref()), "worker Deployment").await?;
    }

    let mut count = live.len();
    if count < wanted {
        let taken = |n: &str| workers.iter().any(|w| w.name_any() == n);
        let mut slot = 0;
        while count < wanted {
            let worker = names::worker_deployment(&name, &uid, slot);
            slot += 1;
            if taken(&worker) {
                continue;
            }
            apply(
                &ctx,
                build::worker_deployment(&group, &worker, &cluster_labels, None),
                None,
                "worker Deployment",
            )
            .await?;
            count += 1;
        }
        info!(%namespace, %name, workers = count, "scaled worker group up");
    } else if count > wanted {
        count = scale_down(&ctx, &group, &namespace, wanted).await?;
        info!(%namespace, %name, workers = count, "scaled worker group down");
    }

    let observed: Vec<&Deployment> = workers.iter().map(AsRef::as_ref).collect();
    let wanted_conditions = conditions::worker_group(&observed, wanted);
    let status = DaskWorkerGroupStatus {
        replicas: Some(count as i32),
        selector: Some(selector),
        message: None,
        observed_generation: generation,
        conditions: Some(conditions::merge(
            current_conditions,
            &wanted_conditions,
            generation,
            &now,
        )),
    };
    patch_status(&ctx, group.as_ref(), &status).await?;
    if count > wanted {
        // The scheduler kept workers whose data had nowhere to go: ask again soon.
        return Ok(Action::requeue(std::time::Duration::from_secs(10)));
    }
    Ok(requeue())
}

/// Deletes workers until `wanted` are left, gracefully, and returns how many are left. Reads the
/// workers from the API server, not the cache, so a stale cache can never remove one worker too many.
///
/// Workers whose pod is not ready go first: they hold no results. For the rest the scheduler is asked
/// which to retire (`retire_workers`, which returns once their data has moved to the workers that
/// stay), and exactly those are deleted; workers it keeps (their data has nowhere to go) stay until
/// the next try. When the scheduler cannot be asked, the newest go, with a Warning event saying so.
async fn scale_down(
    ctx: &Context,
    group: &DaskWorkerGroup,
    namespace: &str,
    wanted: usize,
) -> Result<usize> {
    let (name, uid) = (group.name_any(), group.uid().unwrap_or_default());
    let params = ListParams::default().labels(&format!("{WORKERGROUP_NAME}={name}"));
    let live: Vec<Deployment> = ctx
        .api::<Deployment>(namespace)
        .list(&params)
        .await
        .map_err(Error::api(format!("list workers of {namespace}/{name}")))?
        .items
        .into_iter()
        .filter(|d| d.meta().deletion_timestamp.is_none() && owned_by(d, &uid))
        .collect();
    let seen: Vec<WorkerSeen> = live
        .iter()
        .map(|d| WorkerSeen {
            name: d.name_any(),
            ready: d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                > 0,
            created: d.creation_timestamp().map(|t| t.0),
            deleting: false,
        })
        .collect();
    let excess = seen.len().saturating_sub(wanted);
    let mut victims: Vec<String> = fallback_victims(&seen, wanted)
        .into_iter()
        .filter(|n| seen.iter().any(|w| &w.name == n && !w.ready))
        .collect();
    let more = excess - victims.len();
    if more > 0 {
        let ready: Vec<WorkerSeen> = seen.iter().filter(|w| w.ready).cloned().collect();
        let scheduler = ctx.scheduler.of(&group.spec.cluster, namespace);
        match scheduler.retire_workers(Retire::Count(more as u32)).await {
            Ok(retired) => {
                let names: Vec<String> = retired.into_iter().map(|w| w.name).collect();
                let chosen = retired_victims(&ready, &names);
                if !chosen.unknown.is_empty() {
                    info!(%namespace, %name, unknown = ?chosen.unknown, "the scheduler retired workers that are not this group's");
                }
                victims.extend(chosen.delete.into_iter().take(more));
            }
            Err(e) => {
                let fallback = fallback_victims(&ready, ready.len() - more);
                let message = format!(
                    "could not ask the scheduler which workers to retire ({e}); deleting the newest \
                     instead: {}",
                    fallback.join(", ")
                );
                ctx.event(
                    group,
                    EventType::Warning,
                    "ScaleDownWithoutScheduler",
                    message,
                )
                .await;
                victims.extend(fallback);
            }
        }
    }
    for worker in &victims {
        delete::<Deployment>(ctx, namespace, worker, "worker Deployment").await?;
    }
    Ok(seen.len() - victims.len())
}
