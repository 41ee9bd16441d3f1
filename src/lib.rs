//! dask-operator: serves the `kubernetes.dask.org/v1` kinds (DaskCluster, DaskWorkerGroup, DaskJob,
//! DaskAutoscaler) as a drop-in for the dask-kubernetes operator.
//!
//! - [`crd`]: the four kinds, the single source of the CRD YAML;
//! - [`resources`]: pure builders, parent object in, desired children out;
//! - [`decisions`]: pure decisions (conditions, a DaskJob's life) apart from their effects;
//! - [`controller`]: one reconciler per kind: observe, build, apply, compute status;
//! - [`scheduler`]: the Dask scheduler's HTTP API (adaptive target, retiring workers, idleness);
//! - [`operator`]: the `run` process: CRD check, leader lease, one controller set per namespace;
//! - [`telemetry`]: logs, metrics, probes and the lease.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod decisions;
pub mod error;
pub mod operator;
pub mod resources;
pub mod scheduler;
pub mod telemetry;
