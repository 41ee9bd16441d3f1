//! What `job` and `cluster` commands share: the connection flags kubectl has (`--kubeconfig`,
//! `--context`, `-n`), so the binary also works as the kubectl plugin `kubectl-dask`, and a table
//! printer in kubectl's style.

use std::path::PathBuf;

use clap::Args;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::CliError;

/// Connection flags, as kubectl's.
#[derive(Clone, Debug, Default, Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

impl KubeArgs {
    /// A client and the namespace to work in.
    pub async fn connect(&self) -> Result<(Client, String), CliError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    CliError::Message(format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            None => match Config::from_kubeconfig(&options).await {
                Ok(config) => Ok(config),
                Err(e) => Config::incluster().map_err(|_| e.to_string()),
            },
        }
        .map_err(|e| CliError::Message(format!("no cluster to talk to: {e}")))?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| CliError::Message(format!("cannot make a client: {e}")))?;
        Ok((client, namespace))
    }
}

/// Rows under `header`, each column as wide as its widest cell plus three spaces, as kubectl prints.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// An age as kubectl shows it: `42s`, `7m`, `3h`, `2d`.
pub fn age(since: Option<&Time>, now: Timestamp) -> String {
    let Some(since) = since else {
        return "<unknown>".into();
    };
    let seconds = (now.as_second() - since.0.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_like_kubectls() {
        let out = table(
            &["NAME", "STATUS", "AGE"],
            &[
                vec!["a".into(), "Running".into(), "5s".into()],
                vec!["longer-name".into(), "Failed".into(), "2m".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME          STATUS    AGE\na             Running   5s\nlonger-name   Failed    2m\n"
        );
    }

    #[test]
    fn ages_round_as_kubectl_does() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| Time(Timestamp::from_second(1_000_000 - s).unwrap());
        assert_eq!(age(Some(&at(42)), now), "42s");
        assert_eq!(age(Some(&at(600)), now), "10m");
        assert_eq!(age(Some(&at(3 * 3600)), now), "3h");
        assert_eq!(age(Some(&at(3 * 86400)), now), "3d");
        assert_eq!(age(None, now), "<unknown>");
    }
}
