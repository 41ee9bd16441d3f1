//! dask-operator: serves the `kubernetes.dask.org/v1` kinds (DaskCluster, DaskWorkerGroup, DaskJob,
//! DaskAutoscaler) as a drop-in for the dask-kubernetes operator.
//!
//! - [`crd`]: the four kinds, the single source of the CRD YAML;
//! - [`resources`]: pure builders, parent object in, desired children out;
//! - [`controller`]: one reconciler per kind: observe, build, apply, compute status.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod error;
pub mod resources;
