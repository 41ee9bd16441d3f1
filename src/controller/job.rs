//! DaskJob: the DaskCluster `<job>`, the runner Pod `<job>-runner`, and `status.jobStatus`
//! JobCreated → ClusterCreated → Running → Successful | Failed.
//!
//! Crash safety: every step is idempotent (deterministic names, create-if-absent), the terminal
//! status is written before the cluster is deleted (upstream #975 wedged jobs by doing the reverse),
//! and a job whose status is terminal is never started again.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::conditions::{self, HasConditions, Want};
use super::{
    Context, Touched, apply, delete, owned_by, patch_status, remove_kopf_leftovers, requeue, serve,
};
use crate::crd::job::job_status;
use crate::crd::{DaskCluster, DaskJob, DaskJobStatus};
use crate::error::{Error, Result};
use crate::resources::{job as build, names};

pub(super) async fn controller(
    ctx: &Arc<Context>,
    jobs: ReflectHandle<DaskJob>,
    clusters: Touched<DaskCluster>,
    runners: Touched<Pod>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::for_shared_stream(jobs, ctx.stores.jobs.clone())
        .owns_stream(clusters)
        .owns_stream(runners)
        // A job's runner waits for its cluster to be `Available`: the cluster's status update wakes
        // the job (owned).
;
    serve(controller, ctx, config, shutdown, reconcile).await
}

/// What the runner pod tells about the job.
#[derive(Debug, PartialEq)]
enum Runner {
    /// Not created yet, or not scheduled/started.
    Waiting,
    Running,
    Succeeded,
    Failed(String),
    /// Restarted more often than allowed: the job fails and the pod is stopped.
    RestartLimitExceeded(i32),
    /// The pod is gone before the job ended.
    Deleted,
}

fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp"))
}

async fn reconcile(job: Arc<DaskJob>, ctx: Arc<Context>) -> Result<Action> {
    remove_kopf_leftovers(&ctx, job.as_ref()).await?;
    if job.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (name, namespace) = (job.name_any(), job.namespace().unwrap_or_default());
    let uid = job.uid().unwrap_or_default();
    let mut status = ctx.current_status(job.as_ref()).unwrap_or_default();
    status.observed_generation = job.meta().generation;
    let cluster_ref = ObjectRef::<DaskCluster>::new(&name).within(&namespace);
    let runner_name = names::runner(&name);

    // A finished job only makes sure its runner is stopped and its cluster is gone. Both are checked
    // on every reconcile, not done once: the operator may have crashed right after the terminal status
    // write, and an `OnFailure` runner left alone would restart forever (the runner's own update wakes
    // this job again until the stop holds).
    if matches!(
        status.job_status.as_deref(),
        Some(job_status::SUCCESSFUL | job_status::FAILED)
    ) {
        let runner = ctx
            .stores
            .runners
            .get(&ObjectRef::new(&runner_name).within(&namespace));
        stop_if_running(&ctx, runner.as_deref(), &uid).await?;
        delete_cluster(&ctx, &job, &uid).await?;
        return Ok(Action::await_change());
    }

    // A name that cannot be its cluster's (the CRD's CEL rule rejects it on create; this is a job
    // stored before that rule): failed at once, nothing created.
    if let Err(invalid) = names::validate_cluster_name(&name) {
        return fail_at_once(&ctx, &job, status, "InvalidName", invalid.to_string()).await;
    }

    // Record the job before creating anything.
    if status.job_status.is_none() {
        status.job_status = Some(job_status::JOB_CREATED.into());
        patch_status(&ctx, job.as_ref(), &status).await?;
        info!(%namespace, %name, "A DaskJob has been created");
    }

    // The job's DaskCluster `<job>`, unless a cluster of that name is not the job's: a user's own
    // cluster is never overwritten, adopted or deleted (upstream gets a conflict on create). The cache
    // may not show a cluster created moments ago (by this job or by a user), so a miss is checked with
    // the API server; what remains is a user creating the cluster in the milliseconds between that
    // read and the apply.
    let observed_cluster = match ctx.stores.clusters.get(&cluster_ref) {
        Some(cluster) => Some((*cluster).clone()),
        None => ctx
            .api::<DaskCluster>(&namespace)
            .get_opt(&name)
            .await
            .map_err(Error::api(format!("get DaskCluster {namespace}/{name}")))?,
    };
    if let Some(cluster) = &observed_cluster
        && !owned_by(cluster, &uid)
    {
        if going_away(cluster, &name) {
            // Being deleted, or an earlier DaskJob's of the same name that the garbage collector
            // deletes next (upstream #829): wait for it rather than fail this job.
            return Err(Error::Unusable(format!(
                "DaskCluster {name} is not this job's and is being deleted"
            )));
        }
        return fail_at_once(
            &ctx,
            &job,
            status,
            "ClusterNameTaken",
            cluster_name_taken(&job),
        )
        .await;
    }
    let cluster = apply(
        &ctx,
        build::job_cluster(&job),
        observed_cluster.as_ref(),
        "job DaskCluster",
    )
    .await?;

    // A pod of the runner's name that is not the job's, such as a runner of an earlier DaskJob with the
    // same name (upstream #829): wait for the garbage collector rather than adopt a pod that ran
    // someone else's job.
    let mut runner = ctx
        .stores
        .runners
        .get(&ObjectRef::new(&runner_name).within(&namespace))
        .map(|p| own_runner((*p).clone(), &uid))
        .transpose()?;
    if let Some(pod) = &runner {
        remove_kopf_leftovers(&ctx, pod).await?; // kopf watched runner pods
    }
    if status.job_status.as_deref() == Some(job_status::JOB_CREATED) {
        status.job_status = Some(job_status::CLUSTER_CREATED.into());
        status.cluster_name = Some(name.clone());
        status.job_runner_pod_name = Some(runner_name.clone());
        patch_status(&ctx, job.as_ref(), &status).await?;
        ctx.event(
            job.as_ref(),
            EventType::Normal,
            "ClusterCreated",
            format!("Created DaskCluster {name}"),
        )
        .await;
    }

    // With `waitForScheduler`, the runner starts once the scheduler is ready, so its client never times
    // out waiting for a scheduler that is still starting: once the cluster is `Available` (its status
    // update wakes this reconcile).
    let not_started = status.job_status.as_deref() == Some(job_status::CLUSTER_CREATED);
    if runner.is_none() && not_started {
        if job.spec.job.wait_for_scheduler && !cluster_available(&cluster) {
            return Ok(requeue());
        }
        runner = Some(create_runner(&ctx, &job).await?);
        ctx.event(
            job.as_ref(),
            EventType::Normal,
            "RunnerCreated",
            format!("Created runner pod {runner_name}"),
        )
        .await;
    }

    // The cache may not show a runner created moments ago: ask the API server before concluding it is
    // gone. A pod of that name that is not the job's is never taken for its runner.
    if runner.is_none() {
        runner = ctx
            .api::<Pod>(&namespace)
            .get_opt(&runner_name)
            .await
            .map_err(Error::api(format!("get pod {namespace}/{runner_name}")))?
            .map(|pod| own_runner(pod, &uid))
            .transpose()?;
    }
    let limit = job
        .spec
        .job
        .restart_limit
        .unwrap_or(ctx.settings.runner_restart_limit);
    let observed = observe_runner(runner.as_ref(), limit);

    match observed {
        Runner::Waiting => {}
        Runner::Running => {
            if status.job_status.as_deref() != Some(job_status::RUNNING) {
                status.job_status = Some(job_status::RUNNING.into());
                if status.start_time.is_none() {
                    status.start_time =
                        Some(runner_time(runner.as_ref(), false).unwrap_or_else(now));
                }
                patch_status(&ctx, job.as_ref(), &status).await?;
                info!(%namespace, %name, "Job now in running");
            }
        }
        ended => {
            let (outcome, reason, message) = match ended {
                Runner::Succeeded => (
                    job_status::SUCCESSFUL,
                    "RunnerSucceeded",
                    format!("runner pod {runner_name} succeeded"),
                ),
                Runner::Failed(why) => (
                    job_status::FAILED,
                    "RunnerFailed",
                    format!("runner pod {runner_name} failed: {why}"),
                ),
                Runner::RestartLimitExceeded(restarts) => (
                    job_status::FAILED,
                    "RestartLimitExceeded",
                    format!(
                        "runner pod {runner_name} restarted {restarts} times, more than the limit of {limit}"
                    ),
                ),
                Runner::Deleted => (
                    job_status::FAILED,
                    "RunnerDeleted",
                    format!("runner pod {runner_name} was deleted before it finished"),
                ),
                Runner::Waiting | Runner::Running => unreachable!(),
            };
            let end = runner_time(runner.as_ref(), true).unwrap_or_else(now);
            let generation = job.meta().generation;
            set_terminal(&mut status, outcome, reason, &message, end, generation);
            // The terminal status first: once it is stored, nothing can wedge the job (upstream #975).
            if patch_status(&ctx, job.as_ref(), &status).await?
                && let (Some(start), Some(end)) = (&status.start_time, &status.end_time)
            {
                let seconds = end.0.as_second() - start.0.as_second();
                ctx.metrics.job_finished(outcome, seconds as f64);
            }
            if outcome == job_status::SUCCESSFUL {
                info!(%namespace, %name, "Job succeeded, deleting Dask cluster.");
                ctx.event(job.as_ref(), EventType::Normal, reason, message)
                    .await;
            } else {
                info!(%namespace, %name, %reason, "Job failed, deleting Dask cluster.");
                ctx.event(job.as_ref(), EventType::Warning, reason, message)
                    .await;
            }
            // A runner past its restart limit still runs: stop it (a crash before this is made good by
            // the terminal branch above).
            stop_if_running(&ctx, runner.as_ref(), &uid).await?;
            delete_cluster(&ctx, &job, &uid).await?;
            return Ok(Action::await_change());
        }
    }
    Ok(requeue())
}

/// Makes `status` terminal: `outcome` (Successful or Failed) at `end`, with its reason, message and
/// condition (`Complete` or `Failed`, which replaces any other).
fn set_terminal(
    status: &mut DaskJobStatus,
    outcome: &str,
    reason: &'static str,
    message: &str,
    end: Time,
    generation: Option<i64>,
) {
    status.job_status = Some(outcome.into());
    status.end_time = Some(end.clone());
    status.reason = Some(reason.into());
    status.message = Some(message.into());
    let condition = if outcome == job_status::SUCCESSFUL {
        "Complete"
    } else {
        "Failed"
    };
    let want = Want::new(condition, true, reason, message.into());
    let current = status.conditions().to_vec();
    status.set_conditions(conditions::merge(&current, &[want], generation, &end));
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

/// The message of a job that fails because a DaskCluster named like it exists and is not its own.
fn cluster_name_taken(job: &DaskJob) -> String {
    let (name, namespace) = (job.name_any(), job.namespace().unwrap_or_default());
    format!(
        "DaskCluster {name} already exists in namespace {namespace} and does not belong to this \
         DaskJob; a DaskJob's cluster takes the job's name, so rename the job or the cluster"
    )
}

/// Fails the job at once, for `reason` (`ClusterNameTaken`, `InvalidName`): nothing a retry could
/// change. Creates and touches nothing else (the terminal branch deletes only a cluster the job owns).
async fn fail_at_once(
    ctx: &Context,
    job: &DaskJob,
    mut status: DaskJobStatus,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let (name, namespace) = (job.name_any(), job.namespace().unwrap_or_default());
    set_terminal(
        &mut status,
        job_status::FAILED,
        reason,
        &message,
        now(),
        job.meta().generation,
    );
    patch_status(ctx, job, &status).await?;
    info!(%namespace, %name, %reason, %message, "Job failed");
    ctx.event(job, EventType::Warning, reason, message).await;
    Ok(Action::await_change())
}

/// `pod` if it is the runner of the job with `uid`; an error (retried) if it is a pod of the same name
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

/// When the runner's first container started (`finished: false`) or last finished (`true`), as the
/// kubelet reported it; so the times are right even when the operator was down at the time.
fn runner_time(pod: Option<&Pod>, finished: bool) -> Option<Time> {
    let statuses = pod?.status.as_ref()?.container_statuses.as_ref()?;
    let times = statuses.iter().filter_map(|c| {
        let state = c.state.as_ref()?;
        if finished {
            state
                .terminated
                .as_ref()
                .and_then(|t| t.finished_at.clone())
        } else {
            state.running.as_ref().and_then(|r| r.started_at.clone())
        }
    });
    if finished {
        times.max_by_key(|t| t.0)
    } else {
        times.min_by_key(|t| t.0)
    }
}

fn observe_runner(pod: Option<&Pod>, restart_limit: i32) -> Runner {
    let Some(pod) = pod else {
        return Runner::Deleted;
    };
    let Some(status) = pod.status.as_ref() else {
        return Runner::Waiting;
    };
    match status.phase.as_deref() {
        Some("Succeeded") => return Runner::Succeeded,
        Some("Failed") => {
            let why = status
                .reason
                .clone()
                .or_else(|| status.message.clone())
                .unwrap_or_else(|| "pod phase Failed".into());
            return Runner::Failed(why);
        }
        _ => {}
    }
    let restarts: i32 = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum();
    if restarts > restart_limit {
        return Runner::RestartLimitExceeded(restarts);
    }
    match status.phase.as_deref() {
        Some("Running") => Runner::Running,
        _ => Runner::Waiting,
    }
}

/// Whether the job's DaskCluster (as cached, or as just applied) says it is `Available`: its scheduler
/// has a ready pod.
fn cluster_available(cluster: &DaskCluster) -> bool {
    cluster
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(s.conditions(), conditions::types::AVAILABLE))
}

/// Creates the runner pod unless it exists (a crash after the create and before the status write).
async fn create_runner(ctx: &Context, job: &DaskJob) -> Result<Pod> {
    let pod = build::runner_pod(job);
    let (name, namespace) = (pod.name_any(), pod.namespace().unwrap_or_default());
    let api = ctx.api::<Pod>(&namespace);
    match api
        .create(
            &PostParams {
                field_manager: Some(super::MANAGER.into()),
                ..Default::default()
            },
            &pod,
        )
        .await
    {
        Ok(pod) => Ok(pod),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api
                .get(&name)
                .await
                .map_err(Error::api(format!("get pod {namespace}/{name}")))?;
            own_runner(existing, job.uid().as_deref().unwrap_or_default())
        }
        Err(e) => Err(Error::api(format!("create runner pod {namespace}/{name}"))(
            e,
        )),
    }
}

/// Whether `pod` is this job's runner (owned by the job's `uid`) and still has to be stopped: not
/// ended, not being deleted, and without an active deadline of at most one second yet.
fn needs_stop(pod: &Pod, uid: &str) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    owned_by(pod, uid)
        && pod.meta().deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && deadline.is_none_or(|d| d > 1)
}

/// Stops the job's runner if [`needs_stop`] says so.
async fn stop_if_running(ctx: &Context, runner: Option<&Pod>, uid: &str) -> Result<()> {
    match runner {
        Some(pod) if needs_stop(pod, uid) => {
            let (name, namespace) = (pod.name_any(), pod.namespace().unwrap_or_default());
            stop_runner(ctx, &namespace, &name).await?;
            info!(%namespace, %name, "stopped the runner of a finished job");
            Ok(())
        }
        _ => Ok(()),
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

/// Deletes the job's DaskCluster if it is the job's own (not a same-named cluster of someone else).
async fn delete_cluster(ctx: &Context, job: &DaskJob, uid: &str) -> Result<()> {
    let (name, namespace) = (job.name_any(), job.namespace().unwrap_or_default());
    let Some(cluster) = ctx
        .stores
        .clusters
        .get(&ObjectRef::new(&name).within(&namespace))
    else {
        return Ok(());
    };
    if cluster.meta().deletion_timestamp.is_some() || !owned_by(cluster.as_ref(), uid) {
        return Ok(());
    }
    delete::<DaskCluster>(ctx, &namespace, &name, "job DaskCluster").await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn pod(phase: &str, restarts: i32) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn runner_phases_map_to_job_outcomes() {
        assert_eq!(observe_runner(None, 6), Runner::Deleted);
        assert_eq!(observe_runner(Some(&Pod::default()), 6), Runner::Waiting);
        assert_eq!(observe_runner(Some(&pod("Pending", 0)), 6), Runner::Waiting);
        assert_eq!(observe_runner(Some(&pod("Running", 6)), 6), Runner::Running);
        assert_eq!(
            observe_runner(Some(&pod("Running", 7)), 6),
            Runner::RestartLimitExceeded(7)
        );
        assert_eq!(
            observe_runner(Some(&pod("Succeeded", 9)), 6),
            Runner::Succeeded
        );
        assert!(matches!(
            observe_runner(Some(&pod("Failed", 0)), 6),
            Runner::Failed(_)
        ));
    }

    fn owned(mut pod: Pod, uid: &str) -> Pod {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            uid: uid.into(),
            ..Default::default()
        }]);
        pod
    }

    #[test]
    fn only_a_running_runner_of_this_job_without_a_deadline_is_stopped() {
        assert!(needs_stop(&owned(pod("Running", 0), "job"), "job"));
        assert!(needs_stop(&owned(pod("Pending", 0), "job"), "job"));
        assert!(needs_stop(&owned(Pod::default(), "job"), "job"));
        assert!(!needs_stop(&pod("Running", 0), "job"), "not the job's");
        assert!(!needs_stop(&owned(pod("Running", 0), "other"), "job"));
        assert!(!needs_stop(&owned(pod("Succeeded", 0), "job"), "job"));
        assert!(!needs_stop(&owned(pod("Failed", 3), "job"), "job"));
        let mut stopped = owned(pod("Running", 7), "job");
        stopped.spec = Some(PodSpec {
            active_deadline_seconds: Some(1),
            ..Default::default()
        });
        assert!(!needs_stop(&stopped, "job"), "the stop holds");
        stopped.spec.as_mut().unwrap().active_deadline_seconds = Some(3600);
        assert!(
            needs_stop(&stopped, "job"),
            "a user's longer deadline is shortened"
        );
        let mut deleting = owned(pod("Running", 0), "job");
        deleting.metadata.deletion_timestamp = Some(now());
        assert!(!needs_stop(&deleting, "job"));
    }

    #[test]
    fn a_pod_not_owned_by_the_job_is_never_its_runner() {
        assert!(own_runner(owned(pod("Running", 0), "job"), "job").is_ok());
        assert!(own_runner(owned(pod("Running", 0), "earlier"), "job").is_err());
        assert!(own_runner(pod("Running", 0), "job").is_err());
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
        cluster.metadata.deletion_timestamp = Some(now());
        assert!(going_away(&cluster, "foo"), "being deleted");
    }

    #[test]
    fn times_have_whole_seconds_like_upstream() {
        let text = serde_json::to_string(&now()).unwrap();
        assert!(
            text.ends_with("Z\"") && text.len() == "\"2026-01-01T00:00:00Z\"".len(),
            "{text}"
        );
    }
}
