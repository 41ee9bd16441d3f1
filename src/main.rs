use clap::Parser;
use dask_operator::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", dask_operator::crd::crds_yaml()),
    }
}
