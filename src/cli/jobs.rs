//! `dask-operator job ...`: submit a script as a DaskJob and follow it, and look at or delete jobs.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::CliError;
use super::kubectl::{KubeArgs, age, table};
use super::submit::{self, SubmitArgs};
use crate::crd::job::job_status;
use crate::crd::{DaskJob, DaskJobStatus};
use crate::decisions::job::is_terminal;
use crate::resources::names;

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a Python script as a DaskJob: on a Dask cluster made for it (or an existing one), with
    /// the script (and a small working directory) shipped in a ConfigMap.
    #[command(after_help = "Examples:\n  \
        dask-operator job submit mean.py --wait                  # follow the log, exit with the job's outcome\n  \
        dask-operator job submit mean.py --workers 4 -- --size 10000\n  \
        dask-operator job submit etl.py --cluster shared -n team-a --wait -o json\n  \
        kubectl dask job submit mean.py --wait                   # the same, as a kubectl plugin")]
    Submit(Box<SubmitCommand>),
    /// Print the runner's log (the current attempt's, or --attempt N's).
    #[command(after_help = "Example:\n  dask-operator job logs mean-1a2b3 -f")]
    Logs {
        name: String,
        /// Keep printing as the runner writes.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The attempt whose runner to read (1 is the first).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        attempt: Option<i32>,
    },
    /// Print a job's status, conditions and result.
    #[command(after_help = "Example:\n  dask-operator job status mean-1a2b3 -o json")]
    Status {
        name: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the DaskJobs of the namespace.
    #[command(after_help = "Example:\n  dask-operator job list -n team-a")]
    List,
    /// Delete a DaskJob (its cluster, runner pods and files go with it).
    #[command(after_help = "Example:\n  dask-operator job delete mean-1a2b3")]
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct SubmitCommand {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// Follow the job: its phases on stderr, the runner's log as it runs, and exit 0 when it is
    /// Successful, 1 when it Failed (with the reason on stderr).
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// On Ctrl-C while waiting, delete the job without asking.
    #[arg(long)]
    pub delete_on_interrupt: bool,
    /// `json`: print the job's name, namespace and (final, with --wait) status as JSON on stdout;
    /// the runner's log then goes to stderr.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Runs a `job` command; the process's exit code.
pub async fn run(args: JobArgs) -> Result<i32, CliError> {
    if let JobCommand::Submit(submit) = &args.command {
        // Bad input is found before anything is asked of the cluster.
        let prepared = prepare(&submit.submit)?;
        let (client, namespace) = args.kube.connect().await?;
        return submit_job(client, &namespace, submit, prepared).await;
    }
    let (client, namespace) = args.kube.connect().await?;
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &namespace);
    match args.command {
        JobCommand::Submit(_) => unreachable!(),
        JobCommand::Logs {
            name,
            follow,
            attempt,
        } => {
            let job = jobs.get(&name).await?;
            let pod = match attempt {
                Some(n) => names::runner_attempt(&name, n),
                None => job
                    .status
                    .and_then(|s| s.job_runner_pod_name)
                    .ok_or_else(|| {
                        CliError::Message(format!("DaskJob {name} has no runner pod yet"))
                    })?,
            };
            let pods: Api<Pod> = Api::namespaced(client, &namespace);
            print_log(&pods, &pod, follow, false).await?;
        }
        JobCommand::Status { name, output } => {
            let job = jobs.get(&name).await?;
            let status = job.status.clone().unwrap_or_default();
            match output {
                Output::Json => println!("{}", summary_json(&name, &namespace, &status)),
                Output::Text => print!("{}", describe(&job, &namespace)),
            }
        }
        JobCommand::List => {
            let now = Timestamp::now();
            let rows: Vec<Vec<String>> = jobs
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|j| {
                    let s = j.status.clone().unwrap_or_default();
                    vec![
                        j.name_any(),
                        s.job_status.unwrap_or_default(),
                        s.attempts.map(|a| a.to_string()).unwrap_or_default(),
                        s.cluster_name.unwrap_or_default(),
                        age(j.metadata.creation_timestamp.as_ref(), now),
                    ]
                })
                .collect();
            if rows.is_empty() {
                eprintln!("No DaskJobs in namespace {namespace}.");
            } else {
                print!(
                    "{}",
                    table(&["NAME", "STATUS", "ATTEMPTS", "CLUSTER", "AGE"], &rows)
                );
            }
        }
        JobCommand::Delete { name } => {
            jobs.delete(&name, &DeleteParams::background()).await?;
            println!("daskjob.kubernetes.dask.org/{name} deleted");
        }
    }
    Ok(0)
}

/// What `submit` found on the local side: the job to create and its files.
struct Prepared {
    job: DaskJob,
    files: submit::Files,
}

fn prepare(args: &SubmitArgs) -> Result<Prepared, CliError> {
    let base = args
        .from_file
        .as_deref()
        .map(submit::read_manifest)
        .transpose()?;
    let files = match &args.script {
        Some(script) => submit::read_files(Some(script), args.working_dir.as_deref())?,
        None => submit::Files::new(),
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ u64::from(std::process::id());
    let name = args
        .name
        .clone()
        .or_else(|| base.as_ref().and_then(|b| b.metadata.name.clone()))
        .unwrap_or_else(|| submit::generated_name(args.script.as_deref(), seed));
    let job = submit::build_job(args, &name, base, &files)?;
    Ok(Prepared { job, files })
}

async fn submit_job(
    client: Client,
    namespace: &str,
    cmd: &SubmitCommand,
    prepared: Prepared,
) -> Result<i32, CliError> {
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), namespace);
    let created = jobs
        .create(&PostParams::default(), &prepared.job)
        .await
        .map_err(|e| CliError::Message(format!("cannot create the DaskJob: {}", api_message(e))))?;
    let name = created.name_any();
    if !prepared.files.is_empty() {
        let cm = submit::configmap(&created, namespace, &prepared.files);
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        if let Err(e) = configmaps.create(&PostParams::default(), &cm).await {
            // Nothing is left behind.
            let _ = jobs.delete(&name, &DeleteParams::background()).await;
            return Err(CliError::Message(format!(
                "cannot create ConfigMap {}: {}",
                submit::files_configmap(&name),
                api_message(e)
            )));
        }
    }
    let json = cmd.output == Output::Json;
    eprintln!("daskjob.kubernetes.dask.org/{name} created in namespace {namespace}");
    if !cmd.wait {
        if json {
            let status = created.status.unwrap_or_default();
            println!("{}", summary_json(&name, namespace, &status));
        }
        return Ok(0);
    }
    let outcome = tokio::select! {
        outcome = follow(&client, namespace, &name, json) => outcome?,
        _ = tokio::signal::ctrl_c() => {
            interrupted(&jobs, namespace, &name, cmd.delete_on_interrupt).await?;
            return Ok(130);
        }
    };
    if json {
        println!("{}", summary_json(&name, namespace, &outcome));
    }
    if outcome.job_status.as_deref() == Some(job_status::SUCCESSFUL) {
        if let (Some(result), false) = (&outcome.result, json) {
            eprintln!("DaskJob {name} result: {result}");
        }
        Ok(0)
    } else {
        let reason = outcome.reason.as_deref().unwrap_or("Failed");
        let message = outcome.message.as_deref().unwrap_or_default();
        eprintln!("DaskJob {name} failed: {reason}: {message}");
        Ok(1)
    }
}

/// Ctrl-C while following: delete the job if told to, or if the person at the terminal says so.
async fn interrupted(
    jobs: &Api<DaskJob>,
    namespace: &str,
    name: &str,
    delete: bool,
) -> Result<(), CliError> {
    let delete = delete || {
        if std::io::stdin().is_terminal() {
            eprint!("\nDelete DaskJob {name}? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            matches!(answer.trim(), "y" | "Y" | "yes")
        } else {
            false
        }
    };
    if delete {
        jobs.delete(name, &DeleteParams::background()).await?;
        eprintln!("daskjob.kubernetes.dask.org/{name} deleted");
    } else {
        eprintln!(
            "DaskJob {name} keeps running; delete it with: dask-operator job delete {name} -n {namespace}"
        );
    }
    Ok(())
}

/// Follows a job until it ends: its phases on stderr, each attempt's runner log as it runs (on
/// stdout, or on stderr when stdout is for JSON). Returns the final status.
async fn follow(
    client: &Client,
    namespace: &str,
    name: &str,
    log_to_stderr: bool,
) -> Result<DaskJobStatus, CliError> {
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(jobs, config).default_backoff().boxed();
    let mut shown = String::new();
    let mut streamed = HashSet::new();
    let mut logs = tokio::task::JoinSet::new();
    let mut last = DaskJobStatus::default();
    while let Some(event) = events
        .try_next()
        .await
        .map_err(|e| CliError::Message(format!("watching DaskJob {name}: {e}")))?
    {
        let job = match event {
            watcher::Event::Apply(job) | watcher::Event::InitApply(job) => job,
            watcher::Event::Delete(_) if is_terminal(&last) => break,
            watcher::Event::Delete(_) => {
                return Err(CliError::Message(format!(
                    "DaskJob {name} was deleted before it ended"
                )));
            }
            _ => continue,
        };
        let status = job.status.unwrap_or_default();
        let phase = phase_line(&status);
        if phase != shown {
            eprintln!(
                "[{:>4}s] DaskJob {name}: {phase}",
                started.elapsed().as_secs()
            );
            shown = phase;
        }
        if let Some(pod) = &status.job_runner_pod_name
            && streamed.insert(pod.clone())
        {
            let (pods, pod) = (pods.clone(), pod.clone());
            logs.spawn(async move {
                let running = |p: Option<&Pod>| {
                    let phase = p.and_then(|p| p.status.as_ref()?.phase.clone());
                    matches!(phase.as_deref(), Some("Running" | "Succeeded" | "Failed"))
                };
                if kube::runtime::wait::await_condition(pods.clone(), &pod, running)
                    .await
                    .is_ok()
                {
                    let _ = print_log(&pods, &pod, true, log_to_stderr).await;
                }
            });
        }
        let done = is_terminal(&status);
        last = status;
        if done {
            break;
        }
    }
    // The runner has ended: its log stream ends on its own; do not wait long for one that never ran.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while logs.join_next().await.is_some() {}
    })
    .await;
    logs.abort_all();
    Ok(last)
}

fn phase_line(status: &DaskJobStatus) -> String {
    let phase = status
        .job_status
        .clone()
        .unwrap_or_else(|| "Pending".into());
    match (status.attempts, status.job_runner_pod_name.as_deref()) {
        (Some(n), Some(pod)) if n > 1 => format!("{phase} (attempt {n}, runner {pod})"),
        (_, Some(pod)) => format!("{phase} (runner {pod})"),
        _ => phase,
    }
}

/// Prints a pod's log, line by line, as it comes.
async fn print_log(
    pods: &Api<Pod>,
    pod: &str,
    follow: bool,
    to_stderr: bool,
) -> Result<(), CliError> {
    let params = LogParams {
        follow,
        ..Default::default()
    };
    let mut lines = pods.log_stream(pod, &params).await?.lines();
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| CliError::Message(format!("reading {pod}'s log: {e}")))?;
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

fn summary_json(name: &str, namespace: &str, status: &DaskJobStatus) -> String {
    serde_json::to_string_pretty(&json!({"name": name, "namespace": namespace, "status": status}))
        .expect("JSON")
}

/// `job status` in text.
fn describe(job: &DaskJob, namespace: &str) -> String {
    let s = job.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("{:<12}{value}\n", format!("{label}:")));
        }
    };
    field("Name", job.name_any());
    field("Namespace", namespace.to_string());
    let mut status = s.job_status.clone().unwrap_or_else(|| "Pending".into());
    if let Some(reason) = &s.reason {
        status.push_str(&format!(
            " ({reason}: {})",
            s.message.clone().unwrap_or_default()
        ));
    }
    field("Status", status);
    if let Some(n) = s.attempts {
        field(
            "Attempts",
            format!("{n} ({} failed)", s.failed_attempts.unwrap_or(0)),
        );
    }
    field("Runner", s.job_runner_pod_name.clone().unwrap_or_default());
    let cluster = match (&s.cluster_name, &s.scheduler_address) {
        (Some(c), Some(a)) => format!("{c} ({a})"),
        (Some(c), None) => c.clone(),
        _ => String::new(),
    };
    field("Cluster", cluster);
    field("Dashboard", s.dashboard_url.clone().unwrap_or_default());
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
    };
    field("Started", time(&s.start_time));
    field("Ended", time(&s.end_time));
    field("Result", s.result.clone().unwrap_or_default());
    let conditions = s.conditions.clone().unwrap_or_default();
    if !conditions.is_empty() {
        out.push_str("Conditions:\n");
        let rows: Vec<Vec<String>> = conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        for line in table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The API server's own words for a refusal (`namespaces "x" not found`, a schema message).
fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_name_the_attempt_and_runner() {
        let mut s = DaskJobStatus::default();
        assert_eq!(phase_line(&s), "Pending");
        s.job_status = Some("Running".into());
        s.job_runner_pod_name = Some("m-runner".into());
        s.attempts = Some(1);
        assert_eq!(phase_line(&s), "Running (runner m-runner)");
        s.attempts = Some(2);
        s.job_runner_pod_name = Some("m-runner-2".into());
        assert_eq!(phase_line(&s), "Running (attempt 2, runner m-runner-2)");
    }

    #[test]
    fn status_text_shows_the_outcome_and_result() {
        let mut job = DaskJob::new("m", Default::default());
        job.status = Some(DaskJobStatus {
            job_status: Some("Successful".into()),
            reason: Some("RunnerSucceeded".into()),
            message: Some("runner pod m-runner succeeded".into()),
            attempts: Some(1),
            failed_attempts: Some(0),
            result: Some("{\"mean\": 1.0}".into()),
            ..Default::default()
        });
        let text = describe(&job, "ns");
        assert!(
            text.contains(
                "Status:     Successful (RunnerSucceeded: runner pod m-runner succeeded)"
            ),
            "{text}"
        );
        assert!(text.contains("Attempts:   1 (0 failed)"), "{text}");
        assert!(text.contains("Result:     {\"mean\": 1.0}"), "{text}");
    }
}
