//! `DaskJob`: a runner pod `<job>-runner` that talks to its own DaskCluster `<job>`.

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

/// A Dask job: a runner pod with `DASK_SCHEDULER_ADDRESS` pointing at a cluster made for it.
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
pub struct DaskJobSpec {
    pub job: JobRunnerSpec,
    pub cluster: JobClusterTemplate,
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
    /// How many times the runner's containers may restart (under `restartPolicy: OnFailure`) before
    /// the job is `Failed`. Defaults to the operator's `--runner-restart-limit` (6).
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
    /// A CamelCase reason for the last transition (for example `RunnerSucceeded`, `RunnerFailed`,
    /// `RestartLimitExceeded`, `RunnerDeleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation of `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Complete` or `Failed` once the job ended, as for batch/v1 Jobs; `Degraded` while reconciling
    /// the job keeps failing (`False` again once it succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
