//! `DaskAutoscaler`: adaptive scaling bounds for a cluster's default worker group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Adaptive scaling of the default worker group of `spec.cluster` between `minimum` and `maximum`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubernetes.dask.org",
    version = "v1",
    kind = "DaskAutoscaler",
    plural = "daskautoscalers",
    singular = "daskautoscaler",
    category = "dask",
    namespaced,
    status = "DaskAutoscalerStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Adaptive scaling bounds for the default worker group of a DaskCluster.",
    printcolumn = r#"{"name": "Cluster", "type": "string", "description": "Cluster to autoscale", "jsonPath": ".spec.cluster"}"#,
    printcolumn = r#"{"name": "Minimum", "type": "integer", "jsonPath": ".spec.minimum"}"#,
    printcolumn = r#"{"name": "Maximum", "type": "integer", "jsonPath": ".spec.maximum"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
pub struct DaskAutoscalerSpec {
    /// Name of the cluster to autoscale.
    pub cluster: String,
    /// Minimum number of workers.
    #[schemars(range(min = 0))]
    pub minimum: i32,
    /// Maximum number of workers.
    #[schemars(range(min = 0))]
    pub maximum: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskAutoscalerStatus {
    /// The scheduler's adaptive target, clamped to `minimum`/`maximum`, when it was last asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<i32>,
    /// The workers the autoscaler last set on the cluster's default worker group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<i32>,
    /// When the autoscaler last changed the number of workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The last decision, CamelCase (`ScaledUp`, `ScaledDown`, `Stable`, `Stabilizing`,
    /// `SchedulerUnreachable`, `InvalidBounds`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last decision, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Degraded` while reconciling the autoscaler keeps failing (for example its cluster is
    /// missing); `False` again once it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
