//! A DaskJob's life as one pure function: [`decide`] turns what a reconcile observed ([`Observed`])
//! into the next status and the actions that carry it out ([`Decision`]). The controller
//! (`controller::job`) is the shell around it: it observes, calls `decide`, applies the job's cluster,
//! writes the status, then carries out the actions, each idempotent.
//!
//! ```text
//! (none) ─► JobCreated ─► ClusterCreated ─► Running ─► Successful
//!              ▲   │            │              │  ╲
//!   resume ────┘   │ suspend    │  attempt failed, retries left: next attempt (same cluster)
//!                  ▼            ▼              ▼
//!              Suspended   deadline / backoffLimit / lost runner ─► Failed
//! ```
//!
//! Crash safety comes from the order the shell keeps and from deciding only on what is stored:
//! - an attempt's identity (`attempts`, `jobRunnerPodName`) is in the status before its pod is
//!   created, and the pod's name is derived from it: a repeated create finds the same pod;
//! - the pod's UID is recorded once seen (`runnerUid`): a pod that is then missing or replaced is a
//!   lost attempt, never a success, and a pod not yet recorded is created (again) under its name;
//! - a terminal status is written before anything is stopped or deleted, and a terminal job decides,
//!   on every reconcile, to stop any runner still running and to delete its own cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::conditions::{self, HasConditions, Want};
use crate::crd::job::{ClusterCleanup, job_status};
use crate::crd::{DaskJob, DaskJobStatus};
use crate::resources::names;

/// Earlier attempts' runner pods kept (with their logs) besides the current one; older ones go.
pub const KEPT_ATTEMPTS: usize = 3;
/// `status.result` is at most this many bytes (the kubelet's own limit for a termination message).
pub const RESULT_LIMIT: usize = 4096;
/// How long `KeepOnFailure` keeps a failed job's cluster unless `keepForSeconds` says otherwise.
pub const DEFAULT_KEEP_SECONDS: i64 = 3600;

/// DaskJob condition types (besides `Degraded`, which the controller's error reporting owns).
pub mod types {
    pub const SUSPENDED: &str = "Suspended";
    pub const CLUSTER_READY: &str = "ClusterReady";
    pub const COMPLETE: &str = "Complete";
    pub const FAILED: &str = "Failed";
}

/// Reasons, in conditions, `status.reason` and events.
pub mod reasons {
    pub const RUNNER_SUCCEEDED: &str = "RunnerSucceeded";
    pub const RUNNER_FAILED: &str = "RunnerFailed";
    pub const RESTART_LIMIT_EXCEEDED: &str = "RestartLimitExceeded";
    pub const RUNNER_DELETED: &str = "RunnerDeleted";
    pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    pub const STARTUP_DEADLINE_EXCEEDED: &str = "StartupDeadlineExceeded";
    pub const CLUSTER_NAME_TAKEN: &str = "ClusterNameTaken";
    pub const INVALID_NAME: &str = "InvalidName";
    pub const CLUSTER_CREATED: &str = "ClusterCreated";
    pub const RUNNER_CREATED: &str = "RunnerCreated";
    pub const RUNNING: &str = "Running";
    pub const ATTEMPT_FAILED: &str = "AttemptFailed";
    pub const RETRYING: &str = "Retrying";
    pub const SUSPENDED: &str = "Suspended";
    pub const RESUMED: &str = "Resumed";
    pub const CLUSTER_AVAILABLE: &str = "ClusterAvailable";
    pub const CLUSTER_STARTING: &str = "ClusterStarting";
    pub const CLUSTER_DELETING: &str = "ClusterDeleting";
    pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
    pub const CLUSTER_KEPT: &str = "ClusterKept";
    pub const JOB_FINISHED: &str = "JobFinished";
    pub const TTL_EXPIRED: &str = "TTLExpired";
}

/// What a reconcile observed about one DaskJob.
pub struct Observed<'a> {
    pub job: &'a DaskJob,
    /// The job's status as last stored (or last written by this operator).
    pub status: DaskJobStatus,
    pub now: Time,
    /// Container restarts allowed in one runner pod (the job's `restartLimit`, else the operator's).
    pub restart_limit: i32,
    /// The cluster the job runs on.
    pub cluster: ClusterSeen,
    /// Every runner pod the job owns, including the current attempt's if it exists.
    pub runners: Vec<&'a Pod>,
    /// Why the job is not running yet (pods that cannot be scheduled, images that cannot be pulled,
    /// a scheduler crash-looping), looked up by the shell when [`startup_deadline_passed`].
    pub startup_causes: Vec<String>,
}

/// The cluster a job runs on, as observed.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterSeen {
    Absent,
    /// The job's own cluster (controlled by the job), or the existing one `clusterRef` names.
    Present {
        /// `status.phase` is `Running` (its scheduler Service exists).
        running: bool,
        /// Condition `Available`: its scheduler has a ready pod.
        available: bool,
        deleting: bool,
    },
    /// A cluster of the job's name that is not the job's own; `going_away` when it is being deleted
    /// or is an earlier same-named job's, which the garbage collector deletes next.
    Foreign {
        going_away: bool,
    },
}

/// What to do, in order, after the status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    /// Create the current attempt's runner pod (a pod of that name that the job owns is fine).
    CreateRunner(String),
    /// Stop a runner that would otherwise keep restarting, keeping the pod and its logs.
    StopRunner(String),
    /// Delete a runner pod (a suspended attempt's, or an attempt older than [`KEPT_ATTEMPTS`]).
    DeleteRunner(String),
    /// Delete the job's own cluster.
    DeleteCluster,
    /// Delete the DaskJob itself (its TTL after finishing passed); what it owns goes with it.
    DeleteJob,
}

/// An Event to publish once the status is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: DaskJobStatus,
    /// Create or update the job's own cluster (server-side apply), before the status is written.
    pub apply_cluster: bool,
    pub actions: Vec<Act>,
    pub events: Vec<Note>,
    /// Look again after this long even if nothing changes (a deadline, a TTL); `None`: on a change.
    pub wake: Option<Duration>,
    /// Nothing can be done until something outside the job changes (an earlier job's cluster of the
    /// same name is still being deleted): the shell reports it as a retried error.
    pub blocked: Option<String>,
}

impl Decision {
    fn wake_in(&mut self, seconds: i64) {
        let after = Duration::from_secs(seconds.max(1) as u64);
        self.wake = Some(self.wake.map_or(after, |w| w.min(after)));
    }

    fn note(&mut self, warning: bool, reason: &'static str, message: impl Into<String>) {
        self.events.push(Note {
            warning,
            reason,
            message: message.into(),
        });
    }
}

/// Whether `status` is final (`Successful` or `Failed`): nothing starts again.
pub fn is_terminal(status: &DaskJobStatus) -> bool {
    matches!(
        status.job_status.as_deref(),
        Some(job_status::SUCCESSFUL | job_status::FAILED)
    )
}

/// The next status and actions for the job `o` describes.
pub fn decide(o: &Observed) -> Decision {
    let mut status = o.status.clone();
    status.observed_generation = o.job.meta().generation;
    let mut d = Decision {
        status,
        apply_cluster: false,
        actions: Vec::new(),
        events: Vec::new(),
        wake: None,
        blocked: None,
    };
    if is_terminal(&d.status) {
        finished(o, &mut d);
        return d;
    }
    // The job is recorded before anything is made for it (upstream's first jobStatus); the status
    // write wakes the job again.
    if d.status.job_status.is_none() {
        d.status.job_status = Some(job_status::JOB_CREATED.into());
        return d;
    }
    let spec = &o.job.spec;
    let own = spec.cluster_ref.is_none();
    let job = o.job.name_any();
    if own {
        if let Err(invalid) = names::validate_cluster_name(&job) {
            fail(o, &mut d, reasons::INVALID_NAME, invalid.to_string());
            return d;
        }
        if let ClusterSeen::Foreign { going_away } = o.cluster {
            if going_away {
                d.blocked = Some(format!(
                    "DaskCluster {job} is not this job's and is being deleted; waiting for it to go"
                ));
            } else {
                fail(
                    o,
                    &mut d,
                    reasons::CLUSTER_NAME_TAKEN,
                    cluster_name_taken(o.job),
                );
            }
            return d;
        }
    }
    if spec.suspend && !current_succeeded(o, &d.status) {
        suspend(o, &mut d);
        return d;
    }
    if conditions::is_true(d.status.conditions(), types::SUSPENDED) {
        let message = "spec.suspend is false: the job starts a fresh attempt".to_string();
        set_condition(
            &mut d,
            o,
            Want::new(types::SUSPENDED, false, reasons::RESUMED, message.clone()),
        );
        d.note(false, reasons::RESUMED, message);
    }

    // Deadlines, counted from the job's creation or its last resume. A runner that already
    // succeeded (seen late: the operator was down) is a success, not a missed deadline; one that
    // already started did not miss the startup deadline.
    let since = active_since(o.job, &d.status).0.as_second();
    let now = o.now.0.as_second();
    let succeeded = current_succeeded(o, &d.status);
    let started = succeeded
        || current_pod(o, &d.status)
            .is_some_and(|p| runner_time(Some(p), false).is_some() || ended(p));
    if let Some(limit) = spec.active_deadline_seconds.filter(|_| !succeeded) {
        let left = since + limit - now;
        if left <= 0 {
            let message = format!(
                "the job was active for more than activeDeadlineSeconds ({limit}s){}",
                attempts_so_far(&d.status)
            );
            fail(o, &mut d, reasons::DEADLINE_EXCEEDED, message);
            return d;
        }
        d.wake_in(left);
    }
    if d.status.start_time.is_none()
        && !started
        && let Some(limit) = spec.startup_deadline_seconds
    {
        let left = since + limit - now;
        if left <= 0 {
            let cause = startup_cause(o);
            let message = format!(
                "the job did not reach Running within startupDeadlineSeconds ({limit}s): {cause}"
            );
            fail(o, &mut d, reasons::STARTUP_DEADLINE_EXCEEDED, message);
            return d;
        }
        d.wake_in(left);
    }

    // The cluster: the job's own is applied on every reconcile (spec edits roll out), unless it is
    // still being deleted (after a suspension); an existing one is only waited for.
    let cluster = build_cluster_name(o.job);
    let usable = match &o.cluster {
        ClusterSeen::Present { deleting: true, .. } => false,
        ClusterSeen::Present { running, .. } => own || *running,
        ClusterSeen::Absent => own,
        ClusterSeen::Foreign { .. } => false,
    };
    d.apply_cluster = own && usable;
    cluster_ready(o, &mut d, &cluster);

    if d.status.job_status.as_deref() == Some(job_status::JOB_CREATED) {
        if !usable {
            return d;
        }
        start_attempt(o, &mut d, &cluster);
    }
    current_attempt(o, &mut d);
    if !is_terminal(&d.status) {
        tidy_runners(o, &mut d);
    }
    d
}

/// Whether the startup deadline has passed for a job not yet running: the shell then looks up the
/// causes ([`Observed::startup_causes`]) before calling [`decide`].
pub fn startup_deadline_passed(job: &DaskJob, status: &DaskJobStatus, now: &Time) -> bool {
    match job.spec.startup_deadline_seconds {
        Some(limit) if status.start_time.is_none() && !is_terminal(status) => {
            active_since(job, status).0.as_second() + limit <= now.0.as_second()
        }
        _ => false,
    }
}

fn build_cluster_name(job: &DaskJob) -> String {
    crate::resources::job::cluster_name(job)
}

/// When the job became active: its creation, or its last resume (the `Suspended` condition turning
/// `False`), whichever is later. Deadlines count from here, as batch/v1 Job's do.
fn active_since(job: &DaskJob, status: &DaskJobStatus) -> Time {
    let created = job.meta().creation_timestamp.clone();
    let resumed = conditions::find(status.conditions(), types::SUSPENDED)
        .filter(|c| c.status == "False")
        .map(|c| c.last_transition_time.clone());
    match (created, resumed) {
        (Some(c), Some(r)) => {
            if r.0 > c.0 {
                r
            } else {
                c
            }
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

fn set_condition(d: &mut Decision, o: &Observed, want: Want) {
    let merged = conditions::upsert(d.status.conditions(), want, o.job.meta().generation, &o.now);
    d.status.set_conditions(merged);
}

/// `ClusterReady`, with a Warning when the existing cluster the job names turns out missing.
fn cluster_ready(o: &Observed, d: &mut Decision, cluster: &str) {
    let namespace = o.job.namespace().unwrap_or_default();
    let want = match &o.cluster {
        ClusterSeen::Present {
            deleting: false,
            available: true,
            ..
        } => Want::new(
            types::CLUSTER_READY,
            true,
            reasons::CLUSTER_AVAILABLE,
            format!("DaskCluster {cluster}'s scheduler is ready"),
        ),
        ClusterSeen::Present { deleting: true, .. } => Want::new(
            types::CLUSTER_READY,
            false,
            reasons::CLUSTER_DELETING,
            format!("DaskCluster {cluster} is being deleted; waiting for it to go"),
        ),
        ClusterSeen::Absent if o.job.spec.cluster_ref.is_some() => Want::new(
            types::CLUSTER_READY,
            false,
            reasons::CLUSTER_NOT_FOUND,
            format!(
                "spec.clusterRef: DaskCluster {cluster} does not exist in namespace {namespace}; \
                 waiting for it"
            ),
        ),
        _ => Want::new(
            types::CLUSTER_READY,
            false,
            reasons::CLUSTER_STARTING,
            format!("waiting for DaskCluster {cluster}'s scheduler"),
        ),
    };
    let was =
        conditions::find(d.status.conditions(), types::CLUSTER_READY).map(|c| c.reason.clone());
    if want.reason == reasons::CLUSTER_NOT_FOUND && was.as_deref() != Some(want.reason) {
        d.note(true, reasons::CLUSTER_NOT_FOUND, want.message.clone());
    }
    set_condition(d, o, want);
}

/// Starts the next attempt: its identity goes into the status (written before its pod is created).
fn start_attempt(o: &Observed, d: &mut Decision, cluster: &str) {
    let namespace = o.job.namespace().unwrap_or_default();
    let attempt = d.status.attempts.unwrap_or(0) + 1;
    let pod = names::runner_attempt(&o.job.name_any(), attempt);
    let first = d.status.job_status.as_deref() == Some(job_status::JOB_CREATED);
    let s = &mut d.status;
    s.attempts = Some(attempt);
    s.failed_attempts.get_or_insert(0);
    s.job_runner_pod_name = Some(pod.clone());
    s.runner_uid = None;
    s.cluster_name = Some(cluster.to_string());
    s.scheduler_address = Some(names::scheduler_service_address(cluster, &namespace));
    s.dashboard_url = Some(names::dashboard_url(cluster, &namespace));
    if first {
        s.job_status = Some(job_status::CLUSTER_CREATED.into());
        let message = if o.job.spec.cluster_ref.is_some() {
            format!("Running on the existing DaskCluster {cluster}")
        } else {
            format!("Created DaskCluster {cluster}")
        };
        d.note(false, reasons::CLUSTER_CREATED, message);
    }
}

/// What the current attempt's runner pod tells.
#[derive(Clone, Debug, PartialEq)]
pub enum Runner {
    /// Not scheduled or not started yet.
    Waiting,
    Running,
    Succeeded,
    Failed(String),
    /// Its containers restarted more often than allowed.
    RestartLimitExceeded(i32),
}

/// What `pod`'s status says, with at most `restart_limit` container restarts allowed.
pub fn observe_runner(pod: &Pod, restart_limit: i32) -> Runner {
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
                .or_else(|| exit_code(pod).map(|c| format!("exit code {c}")))
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

fn exit_code(pod: &Pod) -> Option<i32> {
    main_container(pod)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

/// The status of the runner's first container, the one whose termination message is the result.
fn main_container(pod: &Pod) -> Option<&ContainerStatus> {
    let name = &pod.spec.as_ref()?.containers.first()?.name;
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .find(|c| &c.name == name)
        .or(statuses.first())
}

/// The runner container's termination message, at most [`RESULT_LIMIT`] bytes (cut at a character
/// boundary); `None` when it wrote none.
pub fn result_of(pod: &Pod) -> Option<String> {
    let c = main_container(pod)?;
    let terminated = c
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
    let message = terminated.message.as_deref()?.trim_end_matches('\n');
    if message.is_empty() {
        return None;
    }
    let mut end = message.len().min(RESULT_LIMIT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Some(message[..end].to_string())
}

/// When the runner's first container started (`finished: false`; running, or already terminated) or
/// last finished (`true`), as the kubelet reported it; so the times are right even when the operator
/// was down at the time.
pub fn runner_time(pod: Option<&Pod>, finished: bool) -> Option<Time> {
    let statuses = pod?.status.as_ref()?.container_statuses.as_ref()?;
    let times = statuses.iter().filter_map(|c| {
        let state = c.state.as_ref()?;
        if finished {
            state
                .terminated
                .as_ref()
                .and_then(|t| t.finished_at.clone())
        } else {
            (state.running.as_ref().and_then(|r| r.started_at.clone()))
                .or_else(|| state.terminated.as_ref().and_then(|t| t.started_at.clone()))
        }
    });
    if finished {
        times.max_by_key(|t| t.0)
    } else {
        times.min_by_key(|t| t.0)
    }
}

/// Whether `pod` still has to be stopped: not ended, not being deleted, and without an active
/// deadline of at most one second yet (the stop itself).
pub fn needs_stop(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    pod.meta().deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && deadline.is_none_or(|d| d > 1)
}

fn ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn current_pod<'a>(o: &Observed<'a>, status: &DaskJobStatus) -> Option<&'a Pod> {
    let name = status.job_runner_pod_name.as_deref()?;
    o.runners.iter().copied().find(|p| p.name_any() == name)
}

/// Whether the current attempt's pod already succeeded (and is the recorded one): a success that a
/// suspension arriving at the same time must not throw away.
fn current_succeeded(o: &Observed, status: &DaskJobStatus) -> bool {
    if !matches!(
        status.job_status.as_deref(),
        Some(job_status::CLUSTER_CREATED | job_status::RUNNING)
    ) {
        return false;
    }
    current_pod(o, status).is_some_and(|p| {
        status
            .runner_uid
            .as_deref()
            .is_none_or(|u| p.uid().as_deref() == Some(u))
            && observe_runner(p, i32::MAX) == Runner::Succeeded
    })
}

/// The attempt in progress: create its pod, follow it, end the job or retry.
fn current_attempt(o: &Observed, d: &mut Decision) {
    let job = o.job.name_any();
    let attempt = d.status.attempts.unwrap_or(1).max(1);
    let name = d
        .status
        .job_runner_pod_name
        .get_or_insert_with(|| names::runner_attempt(&job, attempt))
        .clone();
    let pod = current_pod(o, &d.status);
    let recorded = d.status.runner_uid.clone();
    let pod = match (pod, recorded) {
        (None, None) => {
            let waiting = o.job.spec.job.wait_for_scheduler
                && !matches!(
                    o.cluster,
                    ClusterSeen::Present {
                        available: true,
                        deleting: false,
                        ..
                    }
                );
            if !waiting {
                d.actions.push(Act::CreateRunner(name));
            }
            return;
        }
        (None, Some(_)) => {
            let message = format!("runner pod {name} was deleted before it finished");
            return attempt_failed(o, d, None, reasons::RUNNER_DELETED, message);
        }
        (Some(pod), Some(uid)) if pod.uid().as_deref() != Some(uid.as_str()) => {
            let message = format!("runner pod {name} was deleted and replaced before it finished");
            return attempt_failed(o, d, None, reasons::RUNNER_DELETED, message);
        }
        (Some(pod), _) => pod,
    };
    d.status.runner_uid = pod.uid();
    match observe_runner(pod, o.restart_limit) {
        Runner::Waiting => {}
        Runner::Running => {
            if d.status.job_status.as_deref() != Some(job_status::RUNNING) {
                d.status.job_status = Some(job_status::RUNNING.into());
                d.note(
                    false,
                    reasons::RUNNING,
                    format!("Runner pod {name} is running"),
                );
            }
            if d.status.start_time.is_none() {
                d.status.start_time = Some(runner_time(Some(pod), false).unwrap_or(o.now.clone()));
            }
        }
        Runner::Succeeded => {
            let message = format!("runner pod {name} succeeded");
            let end = runner_time(Some(pod), true).unwrap_or(o.now.clone());
            d.status.result = result_of(pod);
            terminal(
                o,
                d,
                job_status::SUCCESSFUL,
                reasons::RUNNER_SUCCEEDED,
                message,
                end,
            );
            d.note(
                false,
                reasons::RUNNER_SUCCEEDED,
                format!("Runner pod {name} succeeded"),
            );
            finished(o, d);
        }
        Runner::Failed(why) => {
            let message = format!("runner pod {name} failed: {why}");
            attempt_failed(o, d, Some(pod), reasons::RUNNER_FAILED, message)
        }
        Runner::RestartLimitExceeded(restarts) => {
            let limit = o.restart_limit;
            let message = format!(
                "runner pod {name} restarted {restarts} times, more than the limit of {limit}"
            );
            attempt_failed(o, d, Some(pod), reasons::RESTART_LIMIT_EXCEEDED, message)
        }
    }
}

/// The current attempt failed (`pod`: its runner, if it still exists): retry while `backoffLimit`
/// allows, else fail the job.
fn attempt_failed(
    o: &Observed,
    d: &mut Decision,
    pod: Option<&Pod>,
    reason: &'static str,
    message: String,
) {
    let failed = d.status.failed_attempts.unwrap_or(0) + 1;
    d.status.failed_attempts = Some(failed);
    if let Some(pod) = pod {
        d.status.result = result_of(pod);
    }
    match o.job.spec.backoff_limit {
        Some(limit) if failed <= limit => {
            d.note(
                true,
                reasons::ATTEMPT_FAILED,
                format!("Attempt failed: {message}"),
            );
            if let Some(pod) = pod.filter(|p| needs_stop(p)) {
                d.actions.push(Act::StopRunner(pod.name_any()));
            }
            let cluster = build_cluster_name(o.job);
            start_attempt(o, d, &cluster);
            let (attempt, pod) = (
                d.status.attempts.unwrap_or(1),
                d.status.job_runner_pod_name.clone(),
            );
            let pod = pod.unwrap_or_default();
            d.note(
                false,
                reasons::RETRYING,
                format!("Starting attempt {attempt} with runner pod {pod} ({failed} of {limit} retries used)"),
            );
            current_attempt(o, d);
        }
        Some(limit) => {
            let attempts = d.status.attempts.unwrap_or(1);
            let message = format!(
                "{failed} of {attempts} attempts failed, more than backoffLimit ({limit}); the last: {message}"
            );
            fail_with(o, d, pod, reasons::BACKOFF_LIMIT_EXCEEDED, message);
        }
        None => fail_with(o, d, pod, reason, message),
    }
}

fn fail(o: &Observed, d: &mut Decision, reason: &'static str, message: String) {
    let pod = current_pod(o, &d.status);
    fail_with(o, d, pod, reason, message)
}

/// Ends the job `Failed` for `reason`, then what every finished job does.
fn fail_with(
    o: &Observed,
    d: &mut Decision,
    pod: Option<&Pod>,
    reason: &'static str,
    message: String,
) {
    let end = pod
        .filter(|p| ended(p))
        .and_then(|p| runner_time(Some(p), true))
        .unwrap_or(o.now.clone());
    if let Some(pod) = pod {
        d.status.result = result_of(pod).or(d.status.result.take());
    }
    terminal(o, d, job_status::FAILED, reason, message.clone(), end);
    d.note(true, reason, message);
    let keep = keep_seconds(o.job);
    if let (
        Some(seconds),
        ClusterSeen::Present {
            deleting: false, ..
        },
    ) = (keep, &o.cluster)
    {
        d.note(
            false,
            reasons::CLUSTER_KEPT,
            format!(
                "Keeping DaskCluster {} for {seconds}s for debugging (cleanupPolicy)",
                o.job.name_any()
            ),
        );
    }
    finished(o, d);
}

/// Makes the status terminal: `outcome` at `end`, with its reason, message and condition.
fn terminal(
    o: &Observed,
    d: &mut Decision,
    outcome: &str,
    reason: &'static str,
    message: String,
    end: Time,
) {
    let started = current_pod(o, &d.status).and_then(|p| runner_time(Some(p), false));
    let s = &mut d.status;
    if s.start_time.is_none() {
        s.start_time = started;
    }
    s.job_status = Some(outcome.into());
    s.end_time = Some(end);
    s.reason = Some(reason.into());
    s.message = Some(message.clone());
    let type_ = if outcome == job_status::SUCCESSFUL {
        types::COMPLETE
    } else {
        types::FAILED
    };
    set_condition(d, o, Want::new(type_, true, reason, message));
}

/// `keepForSeconds` when a failed job's own cluster is to be kept (`KeepOnFailure`).
fn keep_seconds(job: &DaskJob) -> Option<i64> {
    let policy = job.spec.cleanup_policy.as_ref()?;
    (policy.cluster == ClusterCleanup::KeepOnFailure && job.spec.cluster_ref.is_none())
        .then(|| policy.keep_for_seconds.unwrap_or(DEFAULT_KEEP_SECONDS))
}

/// What a finished job does on every reconcile: stop runners still running, delete its own cluster
/// (or keep a failed one for `keepForSeconds`), and delete itself once its TTL passed.
fn finished(o: &Observed, d: &mut Decision) {
    for pod in &o.runners {
        if needs_stop(pod) {
            d.actions.push(Act::StopRunner(pod.name_any()));
        }
    }
    let now = o.now.0.as_second();
    let end = d.status.end_time.as_ref().map_or(now, |t| t.0.as_second());
    let own = o.job.spec.cluster_ref.is_none();
    let cluster = build_cluster_name(o.job);
    let mut cluster_message = if own {
        format!("the job ended; DaskCluster {cluster} is deleted")
    } else {
        format!("the job ended; it does not use DaskCluster {cluster} any more")
    };
    if own
        && let ClusterSeen::Present {
            deleting: false, ..
        } = o.cluster
    {
        let failed = d.status.job_status.as_deref() == Some(job_status::FAILED);
        match keep_seconds(o.job).filter(|_| failed) {
            Some(keep) if end + keep > now => {
                d.wake_in(end + keep - now);
                cluster_message = format!(
                    "the job failed; DaskCluster {cluster} is kept for debugging until {} \
                     (cleanupPolicy)",
                    Time(k8s_openapi::jiff::Timestamp::from_second(end + keep).unwrap_or_default())
                        .0
                );
            }
            _ => d.actions.push(Act::DeleteCluster),
        }
    }
    if conditions::find(d.status.conditions(), types::CLUSTER_READY).is_some() {
        let want = Want::new(
            types::CLUSTER_READY,
            false,
            reasons::JOB_FINISHED,
            cluster_message,
        );
        set_condition(d, o, want);
    }
    if let Some(ttl) = o.job.spec.ttl_seconds_after_finished {
        let left = end + ttl - now;
        if left <= 0 {
            d.actions.push(Act::DeleteJob);
            d.note(
                false,
                reasons::TTL_EXPIRED,
                format!("Deleting the DaskJob {ttl}s after it ended (ttlSecondsAfterFinished)"),
            );
        } else {
            d.wake_in(left);
        }
    }
}

/// `spec.suspend`: nothing runs. A running attempt's runner and the job's own cluster are deleted;
/// the attempt does not count as failed, and resuming starts a fresh one.
fn suspend(o: &Observed, d: &mut Decision) {
    let was = conditions::is_true(d.status.conditions(), types::SUSPENDED);
    let in_progress = matches!(
        d.status.job_status.as_deref(),
        Some(job_status::CLUSTER_CREATED | job_status::RUNNING)
    );
    let message = if in_progress {
        format!(
            "spec.suspend is true: attempt {} is stopped (it does not count against \
             backoffLimit) and nothing runs until spec.suspend is false",
            d.status.attempts.unwrap_or(1)
        )
    } else {
        "spec.suspend is true: nothing runs until spec.suspend is false".to_string()
    };
    if in_progress {
        let s = &mut d.status;
        s.job_status = Some(job_status::JOB_CREATED.into());
        s.runner_uid = None;
        s.start_time = None;
    }
    if !was {
        d.note(false, reasons::SUSPENDED, message.clone());
        set_condition(
            d,
            o,
            Want::new(types::SUSPENDED, true, reasons::SUSPENDED, message),
        );
    }
    for pod in &o.runners {
        if !ended(pod) && pod.meta().deletion_timestamp.is_none() {
            d.actions.push(Act::DeleteRunner(pod.name_any()));
        }
    }
    if o.job.spec.cluster_ref.is_none()
        && let ClusterSeen::Present {
            deleting: false, ..
        } = o.cluster
    {
        d.actions.push(Act::DeleteCluster);
    }
    if conditions::find(d.status.conditions(), types::CLUSTER_READY).is_some() {
        let want = Want::new(
            types::CLUSTER_READY,
            false,
            reasons::SUSPENDED,
            "the job is suspended".to_string(),
        );
        set_condition(d, o, want);
    }
}

/// Earlier attempts: stop any still running, and delete all but the [`KEPT_ATTEMPTS`] latest.
fn tidy_runners(o: &Observed, d: &mut Decision) {
    let current = d.status.job_runner_pod_name.clone();
    let mut earlier: Vec<&Pod> = o
        .runners
        .iter()
        .copied()
        .filter(|p| Some(p.name_any()) != current)
        .collect();
    for pod in &earlier {
        if needs_stop(pod) && !d.actions.contains(&Act::StopRunner(pod.name_any())) {
            d.actions.push(Act::StopRunner(pod.name_any()));
        }
    }
    earlier.retain(|p| p.meta().deletion_timestamp.is_none());
    earlier.sort_by_key(|p| std::cmp::Reverse(p.meta().creation_timestamp.clone().map(|t| t.0)));
    for pod in earlier.iter().skip(KEPT_ATTEMPTS) {
        if ended(pod) {
            d.actions.push(Act::DeleteRunner(pod.name_any()));
        }
    }
}

fn attempts_so_far(status: &DaskJobStatus) -> String {
    match status.attempts {
        Some(n) if n > 1 => format!(" over {n} attempts"),
        _ => String::new(),
    }
}

/// The message of a job that fails because a DaskCluster named like it exists and is not its own.
fn cluster_name_taken(job: &DaskJob) -> String {
    let (name, namespace) = (job.name_any(), job.namespace().unwrap_or_default());
    format!(
        "DaskCluster {name} already exists in namespace {namespace} and does not belong to this \
         DaskJob; a DaskJob's cluster takes the job's name, so rename the job or the cluster"
    )
}

/// Why the job is not running yet, for the startup deadline's message.
fn startup_cause(o: &Observed) -> String {
    if !o.startup_causes.is_empty() {
        return o.startup_causes.join("; ");
    }
    let cluster = build_cluster_name(o.job);
    let namespace = o.job.namespace().unwrap_or_default();
    match &o.cluster {
        ClusterSeen::Absent if o.job.spec.cluster_ref.is_some() => {
            format!("DaskCluster {cluster} does not exist in namespace {namespace}")
        }
        ClusterSeen::Present { running: false, .. } if o.job.spec.cluster_ref.is_some() => {
            format!("DaskCluster {cluster} is not Running")
        }
        ClusterSeen::Present {
            available: false, ..
        } if o.job.spec.job.wait_for_scheduler => {
            format!("DaskCluster {cluster}'s scheduler is not ready")
        }
        _ => match &o.status.job_runner_pod_name {
            Some(pod) => format!("runner pod {pod} is not running"),
            None => "no runner pod yet".to_string(),
        },
    }
}

/// What keeps `pod` from running, as its status tells: unschedulable, an image that cannot be pulled,
/// a container that cannot be created or keeps crashing. Empty when nothing is wrong (yet).
pub fn pod_problems(pod: &Pod) -> Vec<String> {
    let name = pod.name_any();
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" {
            let why = c.message.as_deref().or(c.reason.as_deref()).unwrap_or("");
            problems.push(format!("pod {name} cannot be scheduled: {why}"));
        }
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let message = waiting.message.as_deref().unwrap_or_default();
        let (container, image) = (&c.name, &c.image);
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                problems.push(format!(
                    "pod {name}: container {container} cannot pull image {image}: {reason}: {message}"
                ))
            }
            "CrashLoopBackOff" => problems.push(format!(
                "pod {name}: container {container} is crash-looping ({} restarts)",
                c.restart_count
            )),
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                problems.push(format!("pod {name}: container {container}: {reason}: {message}"))
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
