//! The `kubernetes.dask.org/v1` custom resources, one module per kind. These types are the single
//! source of the CRD YAML in `crds/` (`dask-operator crd`).

pub mod autoscaler;
pub mod cluster;
pub mod common;
pub mod install;
pub mod job;
mod schema;
pub mod workergroup;

pub use autoscaler::{DaskAutoscaler, DaskAutoscalerSpec, DaskAutoscalerStatus};
pub use cluster::{DaskCluster, DaskClusterSpec, DaskClusterStatus};
pub use common::{SchedulerSpec, SimpleObjectMeta, WorkerSpec};
pub use job::{DaskJob, DaskJobSpec, DaskJobStatus, JobClusterTemplate, JobRunnerSpec};
pub use workergroup::{DaskWorkerGroup, DaskWorkerGroupSpec, DaskWorkerGroupStatus};

pub use schema::{SERVED, crds, crds_yaml};

/// The API group of the four kinds.
pub const GROUP: &str = "kubernetes.dask.org";
