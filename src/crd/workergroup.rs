//! `DaskWorkerGroup`: a set of Dask workers, one Deployment `<group>-worker-<10 hex>` each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::WorkerSpec;

/// A group of Dask workers attached to the DaskCluster named in `spec.cluster`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubernetes.dask.org",
    version = "v1",
    kind = "DaskWorkerGroup",
    plural = "daskworkergroups",
    singular = "daskworkergroup",
    shortname = "daskworkers",
    category = "dask",
    namespaced,
    status = "DaskWorkerGroupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A group of Dask workers attached to a DaskCluster.",
    scale(
        spec_replicas_path = ".spec.worker.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name": "Workers", "type": "integer", "description": "The number of desired worker Pods", "jsonPath": ".spec.worker.replicas"}"#,
    printcolumn = r#"{"name": "Available", "type": "string", "description": "Whether every wanted worker is ready", "jsonPath": ".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
pub struct DaskWorkerGroupSpec {
    /// Name of the cluster to associate this worker group with.
    pub cluster: String,
    pub worker: WorkerSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskWorkerGroupStatus {
    /// Worker Deployments that exist (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of this group's worker pods (scale subresource, HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Why the group cannot be reconciled, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available` (every wanted worker is ready), `Progressing` (workers are being created, deleted
    /// or rolled out) and `Degraded` (a persistent error: the cluster is missing, workers cannot
    /// start, or reconciling keeps failing). `lastTransitionTime` moves only when a condition's
    /// `status` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
