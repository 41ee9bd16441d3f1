//! Command line: every flag of `run` also reads an environment variable `DASK_OPERATOR_*`.

use clap::{Args, Parser, Subcommand};

use crate::controller::Settings;

#[derive(Debug, Parser)]
#[command(name = "dask-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions of the four kinds as YAML.
    Crd,
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster config).
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch only this namespace (the operator then needs no cluster-wide rights).
    #[arg(long, env = "DASK_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Reconciles running at once, per kind.
    #[arg(long, env = "DASK_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Container restarts of a DaskJob runner before the job is Failed (a job's
    /// `spec.job.restartLimit` overrides it).
    #[arg(long, env = "DASK_OPERATOR_RUNNER_RESTART_LIMIT", default_value_t = 6)]
    pub runner_restart_limit: i32,
}

impl From<RunArgs> for Settings {
    fn from(args: RunArgs) -> Self {
        Settings {
            namespace: args.namespace,
            concurrency: args.concurrency,
            runner_restart_limit: args.runner_restart_limit,
        }
    }
}
