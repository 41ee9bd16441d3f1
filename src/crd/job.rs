//! `DaskJob`: a runner pod `<job>-runner` that talks to its own DaskCluster `<job>` (or an existing
//! one), retried, bounded in time, suspended and cleaned up as a batch/v1 Job is.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::DaskClusterSpec;
use super::common::SimpleObjectMeta;

/// The `status.jobStatus` strings of upstream dask-kubernetes. No others are ever written: tools
/// such as Flyte treat unknown values as "still running".
pub mod job_status {
    pub const JOB_CREATED: &str = "JobCreated";
    pub const CLUSTER_CREATED: &str = "ClusterCreated";
    pub const RUNNING: &str = "Running";
    pub const SUCCESSFUL: &str = "Successful";
    pub const FAILED: &str = "Failed";
}

/// A Dask job: a runner pod with `DASK_SCHEDULER_ADDRESS` pointing at a cluster made for it (or an
/// existing one, `clusterRef`). Its life is decided by [`crate::decisions::job`].
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubernetes.dask.org",
    version = "v1",
    kind = "DaskJob",
    plural = "daskjobs",
    singular = "daskjob",
    shortname = "djb",
    category = "dask",
    namespaced,
    status = "DaskJobStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Dask job: a runner pod and the Dask cluster it runs on.",
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.jobStatus"}"#,
    printcolumn = r#"{"name": "Number Of Workers", "type": "integer", "jsonPath": ".spec.cluster.spec.worker.replicas"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DaskJobSpec {
    pub job: JobRunnerSpec,
    /// The DaskCluster `<job>` made for the job. Exactly one of `cluster` and `clusterRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<JobClusterTemplate>,
    /// Run against an existing DaskCluster in the job's namespace instead of making one: the job waits
    /// until it is `Running` (counted against `startupDeadlineSeconds`) and never modifies or deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<ClusterRef>,
    /// Failed attempts retried before the job is `Failed` (reason `BackoffLimitExceeded`). An attempt is
    /// one runner pod: the first is `<job>-runner`, attempt n is `<job>-runner-<n>`. Unset: the first
    /// failure fails the job with the runner's own reason, as upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: Option<i32>,
    /// Wall-clock limit for the whole job, from its creation (or its last resume): then it is `Failed`
    /// (reason `DeadlineExceeded`) and never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Limit to reach `Running` (the runner pod running), from the job's creation or its last resume:
    /// then it is `Failed` (reason `StartupDeadlineExceeded`), with the cause seen in the message
    /// (image cannot be pulled, pod unschedulable, scheduler crash-looping, cluster missing...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub startup_deadline_seconds: Option<i64>,
    /// The DaskJob, and all it owns, is deleted this long after it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// As batch/v1 Job's: while true nothing runs (a running attempt's runner and the job's own cluster
    /// are deleted, and that attempt does not count against `backoffLimit`); set it back to false to
    /// start a fresh attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// What happens to the job's own cluster once the job ended (not with `clusterRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<CleanupPolicy>,
}

/// An existing DaskCluster in the job's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClusterRef {
    /// The DaskCluster's name.
    pub name: String,
}

/// What happens to the job's own cluster once the job ended.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupPolicy {
    /// `Delete` (the default, as upstream): deleted when the job ends. `KeepOnFailure`: a failed job's
    /// cluster is kept `keepForSeconds` for debugging, then deleted.
    #[serde(default)]
    pub cluster: ClusterCleanup,
    /// How long `KeepOnFailure` keeps a failed job's cluster (default 3600, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub keep_for_seconds: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClusterCleanup {
    #[default]
    Delete,
    KeepOnFailure,
}

/// The runner pod `<job>-runner`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRunnerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SimpleObjectMeta>,
    /// The runner's pod. `restartPolicy` defaults to `OnFailure`; `DASK_SCHEDULER_ADDRESS` is appended to
    /// every container's env unless the container sets it.
    pub spec: PodSpec,
    /// How many times the runner's containers may restart (in all, under `restartPolicy: OnFailure`)
    /// before the attempt fails (`RestartLimitExceeded`): the job is then `Failed`, or retried under
    /// `backoffLimit`. Defaults to the operator's `--runner-restart-limit` (6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub restart_limit: Option<i32>,
    /// Create the runner pod only once the scheduler is ready, so that its client never times out on a
    /// scheduler that is still starting. Off by default, as upstream creates the runner at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_for_scheduler: bool,
}

/// The DaskCluster `<job>` made for the job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct JobClusterTemplate {
    /// Labels and annotations for the job's DaskCluster (in addition to the DaskJob's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SimpleObjectMeta>,
    /// The cluster's spec; `idleTimeout` is ignored for job clusters.
    pub spec: DaskClusterSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskJobStatus {
    /// JobCreated, ClusterCreated, Running, Successful or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    /// The job's DaskCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_runner_pod_name: Option<String>,
    /// When the runner pod was first seen running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Why the job ended, CamelCase (for example `RunnerSucceeded`, `RunnerFailed`,
    /// `RestartLimitExceeded`, `RunnerDeleted`, `BackoffLimitExceeded`, `DeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation of `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Attempts started (runner pods made); `failedAttempts` of them failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i32>,
    /// The UID of the current attempt's runner pod once it exists: a pod of that name with another
    /// UID, or none at all, is an attempt lost (deleted by hand), never a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_uid: Option<String>,
    /// The scheduler the runner talks to: `tcp://<cluster>-scheduler.<namespace>.svc:8786`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_address: Option<String>,
    /// The scheduler's dashboard: `http://<cluster>-scheduler.<namespace>.svc:8787`.
    #[serde(
        default,
        rename = "dashboardURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_url: Option<String>,
    /// The runner container's termination message (`/dev/termination-log`, at most 4 KiB, kept as
    /// text): the way a job hands back a small result, such as a JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The `metadata.generation` the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// As for batch/v1 Jobs: `Complete` or `Failed` once the job ended, `Suspended`; `ClusterReady`
    /// while the job's cluster can serve it; `Degraded` while reconciling the job keeps failing
    /// (`False` again once it succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
