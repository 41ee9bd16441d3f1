//! DaskJob: the shell around [`decide`], which holds the job's whole life (attempts, deadlines,
//! suspension, clean-up; see [`crate::decisions::job`]). A reconcile observes (the job's status, the
//! cluster it runs on, the runner pods it owns), calls `decide`, and carries out the decision in an
//! order that keeps every step crash-safe: the job's own cluster is applied, then the status is
//! written (an attempt's identity before its pod exists, a terminal status before anything is
//! stopped or deleted), then the actions run, each idempotent.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::conditions::{self, HasConditions};
use super::{
    Context, RESYNC, Touched, apply, delete, owned_by, patch_status, remove_kopf_leftovers,
    requeue, serve,
};
use crate::crd::cluster::phase;
use crate::crd::job::job_status;
use crate::crd::{DaskCluster, DaskJob};
use crate::decisions::job::{
    self as life, Act, ClusterSeen, Decision, Observed, decide, is_terminal,
};
use crate::error::{Error, Result};
use crate::resources::job as build;
use crate::resources::labels::{CLUSTER_NAME, COMPONENT, component};

pub(super) async fn controller(
    ctx: &Arc<Context>,
    jobs: ReflectHandle<DaskJob>,
    clusters: Touched<DaskCluster>,
    runners: Touched<Pod>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let store = ctx.stores.jobs.clone();
    // A cluster wakes the job that owns it and every job that runs on it (`clusterRef`): a job waits
    // for its cluster's status (`waitForScheduler`, an existing cluster to be Running).
    let jobs_of_cluster = move |cluster: DaskCluster| {
        let (name, namespace) = (cluster.name_any(), cluster.namespace());
        let owners = cluster
            .owner_references()
            .iter()
            .filter(|o| o.controller == Some(true) && o.kind == "DaskJob")
            .map(|o| ObjectRef::new(&o.name).within(namespace.as_deref().unwrap_or_default()))
            .collect::<Vec<_>>();
        let referring = store
            .state()
            .into_iter()
            .filter(|j| {
                j.namespace() == namespace
                    && j.spec.cluster_ref.as_ref().is_some_and(|r| r.name == name)
            })
            .map(|j| ObjectRef::from_obj(j.as_ref()));
        owners.into_iter().chain(referring).collect::<Vec<_>>()
    };
    let controller = Controller::for_shared_stream(jobs, ctx.stores.jobs.clone())
        .watches_stream(clusters, jobs_of_cluster)
        .owns_stream(runners);
    serve(controller, ctx, config, shutdown, reconcile).await
}

async fn reconcile(job: Arc<DaskJob>, ctx: Arc<Context>) -> Result<Action> {
    remove_kopf_leftovers(&ctx, job.as_ref()).await?;
    if job.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = job.uid().unwrap_or_default();
    let status = ctx.current_status(job.as_ref()).unwrap_or_default();
    let now = conditions::now();
    let done = is_terminal(&status);

    let (cluster, observed_cluster) = observe_cluster(&ctx, &job, &uid, done).await?;
    let runners = observe_runners(&ctx, &job, &uid, &status).await?;
    let startup_causes = if life::startup_deadline_passed(&job, &status, &now) {
        startup_causes(&ctx, &job, &runners).await?
    } else {
        Vec::new()
    };
    let restart_limit = job
        .spec
        .job
        .restart_limit
        .unwrap_or(ctx.settings.runner_restart_limit);
    let observed = Observed {
        job: &job,
        status: status.clone(),
        now,
        restart_limit,
        cluster,
        runners: runners.iter().collect(),
        startup_causes,
    };
    let decision = decide(&observed);
    if let Some(why) = decision.blocked {
        return Err(Error::Unusable(why));
    }
    carry_out(&ctx, &job, observed_cluster.as_ref(), &status, decision).await
}

/// The cluster the job runs on, as [`ClusterSeen`], and the job's own cluster as stored (to apply
/// against). The cache may not show a cluster created moments ago (by this job or by a user), so a
/// miss of the job's own is checked with the API server, unless the job has ended.
async fn observe_cluster(
    ctx: &Context,
    job: &DaskJob,
    uid: &str,
    done: bool,
) -> Result<(ClusterSeen, Option<DaskCluster>)> {
    let namespace = job.namespace().unwrap_or_default();
    let name = build::cluster_name(job);
    let own = job.spec.cluster_ref.is_none();
    let cached = ctx
        .stores
        .clusters
        .get(&ObjectRef::new(&name).within(&namespace))
        .map(|c| (*c).clone());
    let cluster = match cached {
        Some(c) => Some(c),
        None if own && !done => ctx
            .api::<DaskCluster>(&namespace)
            .get_opt(&name)
            .await
            .map_err(Error::api(format!("get DaskCluster {namespace}/{name}")))?,
        None => None,
    };
    let Some(cluster) = cluster else {
        return Ok((ClusterSeen::Absent, None));
    };
    if own && !owned_by(&cluster, uid) {
        let going_away = going_away(&cluster, &name);
        return Ok((ClusterSeen::Foreign { going_away }, None));
    }
    let status = cluster.status.as_ref();
    let seen = ClusterSeen::Present {
        running: status.and_then(|s| s.phase.as_deref()) == Some(phase::RUNNING),
        available: status
            .is_some_and(|s| conditions::is_true(s.conditions(), conditions::types::AVAILABLE)),
        deleting: cluster.meta().deletion_timestamp.is_some(),
    };
    Ok((seen, own.then_some(cluster)))
}

/// Every runner pod the job owns. The cache may not show the current attempt's pod created moments
/// ago: it is asked of the API server before the job concludes it is gone. A pod of that name that is
/// not the job's (an earlier same-named job's, upstream #829) is waited for, never taken as its runner.
async fn observe_runners(
    ctx: &Context,
    job: &DaskJob,
    uid: &str,
    status: &crate::crd::DaskJobStatus,
) -> Result<Vec<Pod>> {
    let namespace = job.namespace().unwrap_or_default();
    let mut runners: Vec<Pod> = ctx
        .stores
        .runners
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(&namespace) && owned_by(p.as_ref(), uid))
        .map(|p| (*p).clone())
        .collect();
    let current = status.job_runner_pod_name.as_deref();
    if let Some(current) = current.filter(|_| !is_terminal(status))
        && !runners.iter().any(|p| p.name_any() == current)
        && let Some(pod) = ctx
            .api::<Pod>(&namespace)
            .get_opt(current)
            .await
            .map_err(Error::api(format!("get pod {namespace}/{current}")))?
    {
        runners.push(own_runner(pod, uid)?);
    }
    for pod in &runners {
        remove_kopf_leftovers(ctx, pod).await?; // kopf watched runner pods
    }
    Ok(runners)
}

/// Why the job is not running, for a startup deadline that passed: what its runner pods and its
/// cluster's scheduler pods say ([`life::pod_problems`]).
async fn startup_causes(ctx: &Context, job: &DaskJob, runners: &[Pod]) -> Result<Vec<String>> {
    let namespace = job.namespace().unwrap_or_default();
    let cluster = build::cluster_name(job);
    let selector = format!(
        "{CLUSTER_NAME}={cluster},{COMPONENT}={}",
        component::SCHEDULER
    );
    let schedulers = ctx
        .api::<Pod>(&namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(format!(
            "list scheduler pods of {namespace}/{cluster}"
        )))?;
    Ok(runners
        .iter()
        .chain(schedulers.items.iter())
        .flat_map(life::pod_problems)
        .collect())
}

/// Applies the job's own cluster, writes the status, then carries out the actions and publishes the
/// events: the order that keeps every step crash-safe (see [`crate::decisions::job`]).
async fn carry_out(
    ctx: &Context,
    job: &DaskJob,
    observed_cluster: Option<&DaskCluster>,
    before: &crate::crd::DaskJobStatus,
    decision: Decision,
) -> Result<Action> {
    let (name, namespace) = (job.name_any(), job.namespace().unwrap_or_default());
    if decision.apply_cluster
        && let Some(cluster) = build::job_cluster(job)
    {
        apply(ctx, cluster, observed_cluster, "job DaskCluster").await?;
    }
    let status = &decision.status;
    let wrote = patch_status(ctx, job, status).await?;
    if wrote && status.job_status != before.job_status {
        let job_status = status.job_status.as_deref().unwrap_or_default();
        let reason = status.reason.as_deref().unwrap_or_default();
        // Upstream's log lines, which its test suite (our conformance run) looks for.
        match job_status {
            job_status::JOB_CREATED => info!(%namespace, %name, "A DaskJob has been created"),
            job_status::RUNNING => info!(%namespace, %name, "Job now in running"),
            job_status::SUCCESSFUL => {
                info!(%namespace, %name, "Job succeeded, deleting Dask cluster.")
            }
            job_status::FAILED => {
                info!(%namespace, %name, %reason, "Job failed, deleting Dask cluster.")
            }
            _ => info!(%namespace, %name, %job_status, "DaskJob status changed"),
        }
        if is_terminal(status)
            && let (Some(start), Some(end)) = (&status.start_time, &status.end_time)
        {
            let seconds = end.0.as_second() - start.0.as_second();
            ctx.metrics.job_finished(job_status, seconds as f64);
        }
    }
    for note in decision.events {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(job, type_, note.reason, note.message).await;
    }
    for act in decision.actions {
        match act {
            Act::CreateRunner(pod) => create_runner(ctx, job, &pod).await?,
            Act::StopRunner(pod) => {
                stop_runner(ctx, &namespace, &pod).await?;
                info!(%namespace, %name, %pod, "stopped a runner of the job");
            }
            Act::DeleteRunner(pod) => delete::<Pod>(ctx, &namespace, &pod, "runner pod").await?,
            Act::DeleteCluster => {
                let cluster = build::cluster_name(job);
                delete::<DaskCluster>(ctx, &namespace, &cluster, "job DaskCluster").await?;
                info!(%namespace, %name, "deleted the job's DaskCluster");
            }
            Act::DeleteJob => {
                delete::<DaskJob>(ctx, &namespace, &name, "DaskJob").await?;
                info!(%namespace, %name, "deleted the DaskJob: ttlSecondsAfterFinished passed");
                return Ok(Action::await_change());
            }
        }
    }
    Ok(match decision.wake {
        Some(after) => Action::requeue(after.min(RESYNC)),
        None if is_terminal(status) => Action::await_change(),
        None => requeue(),
    })
}

/// Whether `cluster`, which is not this job's, is on its way out: being deleted, or controlled by an
/// earlier DaskJob named `job` (gone, as names are unique: the garbage collector deletes it next).
fn going_away(cluster: &DaskCluster, job: &str) -> bool {
    cluster.meta().deletion_timestamp.is_some()
        || cluster
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.kind == "DaskJob" && o.name == job)
}

/// `pod` if it is a runner of the job with `uid`; an error (retried) if it is a pod of the same name
/// that is not, such as an earlier DaskJob's that the garbage collector has not deleted yet.
fn own_runner(pod: Pod, uid: &str) -> Result<Pod> {
    if owned_by(&pod, uid) {
        return Ok(pod);
    }
    Err(Error::Unusable(format!(
        "pod {} is not this DaskJob's runner (an earlier DaskJob's of the same name, still being \
         deleted?); waiting for it to go",
        pod.name_any()
    )))
}

/// Creates the runner pod `name` unless the job already has it (a crash after the create and before
/// the next status write).
async fn create_runner(ctx: &Context, job: &DaskJob, name: &str) -> Result<()> {
    let pod = build::runner_pod(job, name);
    let namespace = job.namespace().unwrap_or_default();
    let api = ctx.api::<Pod>(&namespace);
    let params = PostParams {
        field_manager: Some(super::MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &pod).await {
        Ok(_) => {
            let message = format!("Created runner pod {name}");
            ctx.event(
                job,
                EventType::Normal,
                life::reasons::RUNNER_CREATED,
                message,
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api
                .get(name)
                .await
                .map_err(Error::api(format!("get pod {namespace}/{name}")))?;
            own_runner(existing, job.uid().as_deref().unwrap_or_default()).map(|_| ())
        }
        Err(e) => Err(Error::api(format!("create runner pod {namespace}/{name}"))(
            e,
        )),
    }
}

/// Stops a runner that would otherwise restart forever under `restartPolicy: OnFailure`, keeping the
/// pod (and its logs): a short active deadline makes the kubelet end it.
async fn stop_runner(ctx: &Context, namespace: &str, name: &str) -> Result<()> {
    let patch = json!({"spec": {"activeDeadlineSeconds": 1}});
    match ctx
        .api::<Pod>(namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(Error::api(format!("stop runner pod {namespace}/{name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owned(uid: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.owner_references = Some(vec![OwnerReference {
            uid: uid.into(),
            ..Default::default()
        }]);
        pod
    }

    #[test]
    fn a_pod_not_owned_by_the_job_is_never_its_runner() {
        assert!(own_runner(owned("job"), "job").is_ok());
        assert!(own_runner(owned("earlier"), "job").is_err());
        assert!(own_runner(Pod::default(), "job").is_err());
    }

    #[test]
    fn only_a_cluster_on_its_way_out_is_waited_for() {
        let owner = |kind: &str, name: &str| OwnerReference {
            kind: kind.into(),
            name: name.into(),
            uid: "earlier".into(),
            controller: Some(true),
            ..Default::default()
        };
        let mut cluster = DaskCluster::new("foo", Default::default());
        assert!(!going_away(&cluster, "foo"), "a user's cluster");
        cluster.metadata.owner_references = Some(vec![owner("DaskJob", "foo")]);
        assert!(
            going_away(&cluster, "foo"),
            "an earlier job's of the same name"
        );
        cluster.metadata.owner_references = Some(vec![owner("Application", "foo")]);
        assert!(!going_away(&cluster, "foo"), "someone else's");
        cluster.metadata.deletion_timestamp = Some(conditions::now());
        assert!(going_away(&cluster, "foo"), "being deleted");
    }
}
