//! Fragments shared by the four kinds (upstream `templates.yaml`): the scheduler and worker
//! templates, the cluster spec and the small metadata block.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, ServiceSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The labels and annotations of a sub-resource, merged over the parent's when children are built.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SimpleObjectMeta {
    /// Labels added to the objects built from this template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the objects built from this template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Dask worker configuration: how many workers, and the pod each one runs in.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct WorkerSpec {
    /// Number of workers to start.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SimpleObjectMeta>,
    /// The pod of each worker. `DASK_WORKER_NAME` and `DASK_SCHEDULER_ADDRESS` are appended to every
    /// container's env unless the container sets them.
    pub spec: PodSpec,
}

fn default_replicas() -> i32 {
    1
}

/// Dask scheduler configuration: its pod and the Service in front of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SchedulerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SimpleObjectMeta>,
    /// The scheduler pod, run by a one-replica Deployment `<cluster>-scheduler`.
    pub spec: PodSpec,
    /// The Service `<cluster>-scheduler`, used as given: set its `selector` and the ports `tcp-comm`
    /// (8786) and `http-dashboard` (8787).
    pub service: ServiceSpec,
}

impl SimpleObjectMeta {
    pub fn labels(meta: &Option<Self>) -> BTreeMap<String, String> {
        meta.as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }

    pub fn annotations(meta: &Option<Self>) -> BTreeMap<String, String> {
        meta.as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default()
    }
}
