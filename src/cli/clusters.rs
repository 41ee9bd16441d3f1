//! `dask-operator cluster ...`: list, scale and delete DaskClusters.

use clap::{Args, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::CliError;
use super::kubectl::{KubeArgs, age, table};
use crate::crd::{DaskCluster, DaskWorkerGroup};
use crate::resources::names;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the DaskClusters of the namespace, with their phase and workers.
    #[command(after_help = "Example:\n  dask-operator cluster list -n team-a")]
    List,
    /// Set the number of workers of a cluster's default worker group.
    #[command(after_help = "Example:\n  dask-operator cluster scale shared 4")]
    Scale {
        name: String,
        #[arg(value_parser = clap::value_parser!(i32).range(0..))]
        workers: i32,
    },
    /// Delete a DaskCluster (with its scheduler, workers and worker groups).
    #[command(after_help = "Example:\n  dask-operator cluster delete shared")]
    Delete { name: String },
}

/// Runs a `cluster` command; the process's exit code.
pub async fn run(args: ClusterArgs) -> Result<i32, CliError> {
    let (client, namespace) = args.kube.connect().await?;
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &namespace);
    match args.command {
        ClusterCommand::List => {
            let groups: Api<DaskWorkerGroup> = Api::namespaced(client, &namespace);
            let groups = groups.list(&ListParams::default()).await?.items;
            let now = Timestamp::now();
            let rows: Vec<Vec<String>> = clusters
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|c| {
                    let name = c.name_any();
                    let default = names::default_worker_group(&name);
                    let workers = groups
                        .iter()
                        .find(|g| g.name_any() == default)
                        .map_or(c.spec.worker.replicas, |g| g.spec.worker.replicas);
                    vec![
                        name,
                        c.status
                            .as_ref()
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_default(),
                        workers.to_string(),
                        age(c.metadata.creation_timestamp.as_ref(), now),
                    ]
                })
                .collect();
            if rows.is_empty() {
                eprintln!("No DaskClusters in namespace {namespace}.");
            } else {
                print!("{}", table(&["NAME", "PHASE", "WORKERS", "AGE"], &rows));
            }
        }
        ClusterCommand::Scale { name, workers } => {
            // As `kubectl scale daskworkergroup <name>-default`: the scale subresource.
            clusters.get(&name).await?;
            let groups: Api<DaskWorkerGroup> = Api::namespaced(client, &namespace);
            let group = names::default_worker_group(&name);
            let patch = json!({"spec": {"replicas": workers}});
            groups
                .patch_scale(&group, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            println!("daskcluster.kubernetes.dask.org/{name} scaled to {workers} workers");
        }
        ClusterCommand::Delete { name } => {
            clusters.delete(&name, &DeleteParams::background()).await?;
            println!("daskcluster.kubernetes.dask.org/{name} deleted");
        }
    }
    Ok(0)
}
