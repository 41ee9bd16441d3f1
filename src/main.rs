use clap::Parser;
use dask_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
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
                !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
            })
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("{line}");
        std::process::exit(2);
    });
    match cli.command {
        Command::Crd => print!("{}", dask_operator::crd::crds_yaml()),
        Command::Run(args) => {
            if let Err(e) = dask_operator::operator::run(args).await {
                // One line, and only this one, whatever the log format.
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}
