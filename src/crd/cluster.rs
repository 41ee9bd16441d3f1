//! `DaskCluster`: a scheduler (Deployment + Service `<name>-scheduler`) and a default worker group
//! `<name>-default`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SchedulerSpec, WorkerSpec};

/// The `status.phase` strings of upstream dask-kubernetes.
pub mod phase {
    pub const PENDING: &str = "Pending";
    pub const RUNNING: &str = "Running";
    pub const ERROR: &str = "Error";
}

/// A Dask cluster: one scheduler and a default worker group. Also the cluster template of a `DaskJob`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubernetes.dask.org",
    version = "v1",
    kind = "DaskCluster",
    plural = "daskclusters",
    singular = "daskcluster",
    shortname = "daskcluster",
    shortname = "dsk",
    category = "dask",
    namespaced,
    status = "DaskClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Dask cluster: one scheduler and a default worker group.",
    scale(
        spec_replicas_path = ".spec.worker.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name": "Workers", "type": "integer", "description": "The number of desired worker Pods", "jsonPath": ".spec.worker.replicas"}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Available", "type": "string", "description": "Whether the scheduler is ready", "jsonPath": ".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DaskClusterSpec {
    /// Delete the cluster when the scheduler has been idle for longer than this many seconds; 0 never
    /// deletes it.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub idle_timeout: i64,
    pub scheduler: SchedulerSpec,
    pub worker: WorkerSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskClusterStatus {
    /// Status of the Dask cluster: Created, Pending, Running or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why the cluster is in phase Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Worker Deployments of the default worker group (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the default worker group's pods (scale subresource, HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The `metadata.generation` the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available` (the scheduler has a ready pod), `Progressing` (the scheduler or the default worker
    /// group is rolling out or scaling) and `Degraded` (a persistent error: the scheduler cannot start,
    /// the default worker group is degraded, or reconciling keeps failing). `lastTransitionTime` moves
    /// only when a condition's `status` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
