use clap::CommandFactory;
use dask_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() {
    // As the kubectl plugin `kubectl-dask`, help and errors say `kubectl dask`.
    let plugin = std::env::args()
        .next()
        .is_some_and(|a| a.ends_with("kubectl-dask"));
    let mut command = Cli::command();
    if plugin {
        command = command.bin_name("kubectl dask").name("kubectl dask");
    }
    let cli = command
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
        .unwrap_or_else(|e| {
            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
            if matches!(e.kind(), DisplayHelp | DisplayVersion) {
                e.exit();
            }
            // One line: what is wrong, without the usage block.
            let text = e.to_string();
            let line = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("For more information")
                        && !l.starts_with("Usage:")
                })
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("{line}");
            std::process::exit(2);
        });
    match cli.command {
        Command::Crd => print!("{}", dask_operator::crd::crds_yaml()),
        Command::Job(args) => exit(dask_operator::cli::jobs::run(*args).await),
        Command::Cluster(args) => exit(dask_operator::cli::clusters::run(args).await),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            let name = if plugin {
                "kubectl-dask"
            } else {
                "dask-operator"
            };
            clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
        }
        Command::Run(args) => {
            if let Err(e) = dask_operator::operator::run(args).await {
                // One line, and only this one, whatever the log format.
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Exits with a command's code, or 1 after printing its error on one line.
fn exit(result: Result<i32, dask_operator::cli::CliError>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
