//! dask-operator: serves the `kubernetes.dask.org/v1` kinds (DaskCluster, DaskWorkerGroup, DaskJob,
//! DaskAutoscaler) as a drop-in for the dask-kubernetes operator.

pub mod cli;
pub mod crd;
