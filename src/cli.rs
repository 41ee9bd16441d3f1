//! Command line: every flag also reads an environment variable `DASK_OPERATOR_*`.

use clap::{Parser, Subcommand};

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
}
