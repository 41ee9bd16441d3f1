//! Command line. `run` is the operator: every flag of it also reads an environment variable
//! (`DASK_OPERATOR_*`), so the Helm chart and the kustomize manifests configure it through `env`
//! alone. `job` and `cluster` are for people and shell tasks (also as the kubectl plugin
//! `kubectl-dask`): [`jobs`] submits a script as a DaskJob and follows it, [`clusters`] lists,
//! scales and deletes clusters; [`submit`] builds the DaskJob purely from flags.

pub mod clusters;
pub mod jobs;
pub mod kubectl;
pub mod submit;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;

use crate::controller::Settings;
use crate::telemetry::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "dask-operator",
    version,
    about,
    after_help = "Examples:\n  \
    dask-operator run                        # the operator\n  \
    dask-operator job submit mean.py --wait  # a script as a DaskJob, followed to its end\n  \
    kubectl dask cluster list                # linked or installed as kubectl-dask"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions of the four kinds as YAML.
    Crd,
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster config).
    #[command(after_help = "Examples:\n  \
        dask-operator run                                  # all namespaces, from a developer's host\n  \
        dask-operator run -n team-a,team-b --leader-elect  # two namespaces, one active replica")]
    Run(RunArgs),
    /// Submit, follow, inspect and delete DaskJobs.
    Job(Box<jobs::JobArgs>),
    /// List, scale and delete DaskClusters.
    Cluster(clusters::ClusterArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  dask-operator completions bash > /etc/bash_completion.d/dask-operator"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A command's failure, one line for the terminal.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Submit(#[from] submit::SubmitError),
    #[error("{}", api_message(.0))]
    Kube(#[from] kube::Error),
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when empty. With a list the operator
    /// needs rights in those namespaces only.
    #[arg(
        short = 'n',
        long = "namespaces",
        alias = "namespace",
        env = "DASK_OPERATOR_NAMESPACES",
        value_delimiter = ',',
        value_parser = parse_namespace
    )]
    pub namespaces: Vec<String>,
    /// Address of the HTTP endpoint serving /healthz, /readyz and /metrics (port 0: any free port).
    #[arg(long, env = "DASK_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Log format; text has colours only when writing to a terminal.
    #[arg(long, env = "DASK_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Reconcile only while holding a coordination.k8s.io Lease, so that several replicas can run.
    #[arg(long, env = "DASK_OPERATOR_LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "DASK_OPERATOR_LEASE_NAME",
        default_value = "dask-operator"
    )]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: the pod's own namespace, from POD_NAMESPACE or the
    /// service account's namespace file, else `default`).
    #[arg(long, env = "DASK_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease holder that stopped renewing keeps the lease, in seconds.
    #[arg(long, env = "DASK_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_duration_seconds: u64,
    /// Replace CRDs that are missing, dask-kubernetes' own, or older than this operator's at start
    /// (otherwise the operator exits and says what to run).
    #[arg(long, env = "DASK_OPERATOR_UPGRADE_CRDS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub upgrade_crds: bool,
    /// Reconciles running at once, per kind and namespace.
    #[arg(long, env = "DASK_OPERATOR_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Container restarts of a DaskJob runner before the job is Failed (a job's
    /// `spec.job.restartLimit` overrides it).
    #[arg(long, env = "DASK_OPERATOR_RUNNER_RESTART_LIMIT", default_value_t = 6, value_parser = clap::value_parser!(i32).range(0..))]
    pub runner_restart_limit: i32,
}

/// A namespace name is a DNS label.
fn parse_namespace(s: &str) -> Result<String, String> {
    let s = s.trim();
    let valid = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a namespace name (a DNS label)"))
    }
}

impl RunArgs {
    /// The controllers' settings for one namespace (`None`: all).
    pub fn settings(&self, namespace: Option<String>) -> Settings {
        Settings {
            namespace,
            concurrency: self.concurrency,
            runner_restart_limit: self.runner_restart_limit,
            scheduler: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["dask-operator", "run"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Command::Run(a) => a,
            _ => unreachable!(),
        })
    }

    #[test]
    fn namespaces_are_a_list_and_the_old_flag_still_works() {
        assert!(run(&[]).unwrap().namespaces.is_empty());
        assert_eq!(run(&["-n", "a,b"]).unwrap().namespaces, ["a", "b"]);
        assert_eq!(run(&["--namespace", "a"]).unwrap().namespaces, ["a"]);
        let err = run(&["--namespaces", "Bad_Name"]).unwrap_err().to_string();
        assert!(err.contains("not a namespace name"), "{err}");
    }

    #[test]
    fn invalid_flags_are_rejected() {
        assert!(run(&["--log-format", "xml"]).is_err());
        assert!(run(&["--http-addr", "nowhere"]).is_err());
        assert!(run(&["--lease-duration-seconds", "1"]).is_err());
        assert!(run(&["--concurrency", "0"]).is_err());
        let ok = run(&["--leader-elect", "--log-format", "json"]).unwrap();
        assert!(ok.leader_elect);
        assert_eq!(ok.log_format, LogFormat::Json);
        assert!(!run(&["--leader-elect=false"]).unwrap().leader_elect);
    }
}
