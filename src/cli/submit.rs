//! `job submit`: from flags (and optionally a manifest) to a DaskJob and the ConfigMap that carries
//! the script, as pure functions; reading the files is bounded and fails before anything is created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use serde_json::json;
use thiserror::Error;

use crate::crd::DaskJob;
use crate::crd::job::ClusterRef;
use crate::resources::{labels, names};

/// The image of the job's runner, scheduler and workers unless `--image` says otherwise.
pub const DEFAULT_IMAGE: &str = "ghcr.io/dask/dask:2026.8.0";
/// Where the script and the working directory are mounted in the runner.
pub const MOUNT: &str = "/dask-job";
/// The most bytes of files shipped in the ConfigMap (whose limit is 1 MiB in all).
pub const MAX_FILES_BYTES: u64 = 512 * 1024;

#[derive(Clone, Debug, Default, Args)]
pub struct SubmitArgs {
    /// The Python script the runner runs (`python SCRIPT ARGS...`); optional with --from-file,
    /// whose runner command is then kept.
    #[arg(required_unless_present = "from_file")]
    pub script: Option<PathBuf>,
    /// Arguments for the script, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
    /// The DaskJob's name (a DNS label of at most 53 characters); generated from the script's name
    /// when not given.
    #[arg(long)]
    pub name: Option<String>,
    /// Start from this DaskJob manifest; the flags given override its fields.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Image of the runner, the scheduler and the workers.
    #[arg(long)]
    pub image: Option<String>,
    /// Number of workers of the job's own cluster.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub workers: Option<i32>,
    /// CPU of each worker (requests and limits), e.g. `1` or `500m`.
    #[arg(long)]
    pub worker_cpu: Option<String>,
    /// Memory of each worker (requests and limits), e.g. `2Gi`.
    #[arg(long)]
    pub worker_memory: Option<String>,
    /// CPU of the scheduler (requests and limits).
    #[arg(long)]
    pub scheduler_cpu: Option<String>,
    /// Memory of the scheduler (requests and limits).
    #[arg(long)]
    pub scheduler_memory: Option<String>,
    /// Environment variable of the runner, `NAME=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Run on this existing DaskCluster (`spec.clusterRef`) instead of a cluster made for the job.
    #[arg(long, value_name = "CLUSTER")]
    pub cluster: Option<String>,
    /// Ship this directory with the script (at most 512 KiB of files; hidden files and
    /// `__pycache__` are left out); the runner starts in it.
    #[arg(long, value_name = "DIR")]
    pub working_dir: Option<PathBuf>,
    /// Failed attempts retried (`spec.backoffLimit`).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=100))]
    pub backoff_limit: Option<i32>,
    /// Wall-clock limit of the job in seconds (`spec.activeDeadlineSeconds`).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    pub timeout: Option<i64>,
    /// Delete the DaskJob this long after it ended (`spec.ttlSecondsAfterFinished`).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(0..))]
    pub ttl: Option<i64>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the files to ship are {bytes} bytes, more than the limit of {limit} (a ConfigMap holds at \
         most 1 MiB): ship less, or build an image with them"
    )]
    TooLarge { bytes: u64, limit: u64 },
    #[error("{0}")]
    InvalidName(String),
    #[error("{path} is not a DaskJob manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

/// The files the runner gets: relative path → content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Reads the script and the working directory (if any), bounded by [`MAX_FILES_BYTES`].
pub fn read_files(script: Option<&Path>, working_dir: Option<&Path>) -> Result<Files, SubmitError> {
    let mut files = Files::new();
    let mut total = 0u64;
    let mut add = |files: &mut Files, rel: String, path: &Path| -> Result<(), SubmitError> {
        let read = |source| SubmitError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        total += len;
        if total > MAX_FILES_BYTES {
            return Err(SubmitError::TooLarge {
                bytes: total,
                limit: MAX_FILES_BYTES,
            });
        }
        files.insert(rel, std::fs::read(path).map_err(read)?);
        Ok(())
    };
    if let Some(dir) = working_dir {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(current) = stack.pop() {
            let read = |source| SubmitError::Read {
                path: current.clone(),
                source,
            };
            let mut entries: Vec<_> = std::fs::read_dir(&current)
                .map_err(read)?
                .collect::<Result<_, _>>()
                .map_err(read)?;
            entries.sort_by_key(|e| e.path());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name == "__pycache__" {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(dir).unwrap_or(&path);
                    add(&mut files, rel.to_string_lossy().into_owned(), &path)?;
                }
            }
        }
    }
    if let Some(script) = script {
        let in_dir = working_dir
            .and_then(|d| script.strip_prefix(d).ok())
            .map(|r| r.to_string_lossy().into_owned());
        match in_dir {
            Some(rel) if files.contains_key(&rel) => {}
            _ => {
                let name = script_name(script);
                add(&mut files, name, script)?;
            }
        }
    }
    Ok(files)
}

fn script_name(script: &Path) -> String {
    script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "script.py".into())
}

/// The path of the script inside the runner, relative to [`MOUNT`].
fn script_in_runner(script: &Path, working_dir: Option<&Path>) -> String {
    working_dir
        .and_then(|d| script.strip_prefix(d).ok())
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|| script_name(script))
}

/// A name for a job made from `script`: its stem as a DNS label, and a suffix from `seed`.
pub fn generated_name(script: Option<&Path>, seed: u64) -> String {
    let stem = script
        .and_then(|s| s.file_stem())
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "job".into());
    let mut label: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label = label.trim_matches('-').to_string();
    if !label.starts_with(|c: char| c.is_ascii_lowercase()) {
        label = format!("job-{label}");
    }
    label.truncate(40);
    let label = label.trim_end_matches('-');
    format!("{label}-{:05x}", seed & 0xfffff)
}

/// The name of the ConfigMap that carries a job's files.
pub fn files_configmap(job: &str) -> String {
    format!("{job}-files")
}

/// The DaskJob `args` describe, named `name`, starting from `base` (a manifest) when given.
pub fn build_job(
    args: &SubmitArgs,
    name: &str,
    base: Option<DaskJob>,
    files: &Files,
) -> Result<DaskJob, SubmitError> {
    names::validate_cluster_name(name)
        .map_err(|e| SubmitError::InvalidName(format!("--name: {e}")))?;
    let image = args.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into());
    let mut job = match base {
        Some(job) => job,
        None => default_job(&image),
    };
    job.metadata = ObjectMeta {
        name: Some(name.to_string()),
        labels: job.metadata.labels.take(),
        annotations: job.metadata.annotations.take(),
        ..Default::default()
    };
    let spec = &mut job.spec;
    if let Some(cluster) = &args.cluster {
        spec.cluster = None;
        spec.cluster_ref = Some(ClusterRef {
            name: cluster.clone(),
        });
        spec.cleanup_policy = None;
    }
    let runner = &mut spec.job.spec;
    if let Some(image) = &args.image {
        for c in runner.containers.iter_mut() {
            c.image = Some(image.clone());
        }
    }
    if let Some(cluster) = spec.cluster.as_mut() {
        let template = &mut cluster.spec;
        if let Some(image) = &args.image {
            for c in template.worker.spec.containers.iter_mut() {
                c.image = Some(image.clone());
            }
            for c in template.scheduler.spec.containers.iter_mut() {
                c.image = Some(image.clone());
            }
        }
        if let Some(workers) = args.workers {
            template.worker.replicas = workers;
        }
        // The scheduler Service is used as given (upstream's contract): it must select this job's
        // scheduler, whatever name a manifest was written for.
        template.scheduler.service.selector = Some(
            [
                (labels::CLUSTER_NAME.to_string(), name.to_string()),
                (
                    labels::COMPONENT.to_string(),
                    labels::component::SCHEDULER.to_string(),
                ),
            ]
            .into(),
        );
        let size = |cpu: &Option<String>, memory: &Option<String>| {
            let mut quantities = serde_json::Map::new();
            if let Some(cpu) = cpu {
                quantities.insert("cpu".into(), json!(cpu));
            }
            if let Some(memory) = memory {
                quantities.insert("memory".into(), json!(memory));
            }
            (!quantities.is_empty()).then(|| {
                serde_json::from_value::<ResourceRequirements>(
                    json!({"requests": quantities, "limits": quantities}),
                )
                .expect("resources from quantities")
            })
        };
        if let Some(resources) = size(&args.worker_cpu, &args.worker_memory) {
            for c in template.worker.spec.containers.iter_mut() {
                c.resources = Some(resources.clone());
            }
        }
        if let Some(resources) = size(&args.scheduler_cpu, &args.scheduler_memory) {
            for c in template.scheduler.spec.containers.iter_mut() {
                c.resources = Some(resources.clone());
            }
        }
    }
    let Some(container) = runner.containers.first_mut() else {
        return Err(SubmitError::Manifest {
            path: args.from_file.clone().unwrap_or_default(),
            reason: "spec.job.spec has no container".into(),
        });
    };
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in &args.env {
        env.retain(|e| &e.name != name);
        env.push(EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            ..Default::default()
        });
    }
    if let Some(script) = &args.script {
        let path = format!(
            "{MOUNT}/{}",
            script_in_runner(script, args.working_dir.as_deref())
        );
        container.command = None;
        container.args = Some(
            ["python".to_string(), path]
                .into_iter()
                .chain(args.args.iter().cloned())
                .collect(),
        );
        container.working_dir = Some(MOUNT.into());
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        mounts.push(
            serde_json::from_value(json!({"name": "dask-job-files", "mountPath": MOUNT})).unwrap(),
        );
        let items: Vec<_> = files
            .keys()
            .enumerate()
            .map(|(i, path)| json!({"key": format!("f{i}"), "path": path}))
            .collect();
        let volume = json!({
            "name": "dask-job-files",
            "configMap": {"name": files_configmap(name), "items": items},
        });
        runner
            .volumes
            .get_or_insert_with(Vec::new)
            .push(serde_json::from_value(volume).unwrap());
    }
    if let Some(limit) = args.backoff_limit {
        spec.backoff_limit = Some(limit);
    }
    if let Some(seconds) = args.timeout {
        spec.active_deadline_seconds = Some(seconds);
    }
    if let Some(seconds) = args.ttl {
        spec.ttl_seconds_after_finished = Some(seconds);
    }
    Ok(job)
}

/// The ConfigMap with the job's `files` (keys `f0`, `f1`... mapped to their paths by the runner's
/// volume), owned by the job so that it goes with it.
pub fn configmap(job: &DaskJob, namespace: &str, files: &Files) -> ConfigMap {
    let name = job.metadata.name.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "kubernetes.dask.org/v1".into(),
        kind: "DaskJob".into(),
        name: name.clone(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        ..Default::default()
    };
    let (mut data, mut binary) = (BTreeMap::new(), BTreeMap::new());
    for (i, content) in files.values().enumerate() {
        match String::from_utf8(content.clone()) {
            Ok(text) => {
                data.insert(format!("f{i}"), text);
            }
            Err(_) => {
                binary.insert(format!("f{i}"), ByteString(content.clone()));
            }
        }
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(files_configmap(&name)),
            namespace: Some(namespace.to_string()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: (!data.is_empty()).then_some(data),
        binary_data: (!binary.is_empty()).then_some(binary),
        ..Default::default()
    }
}

/// A job with its own cluster of one scheduler and two workers, all on `image`.
fn default_job(image: &str) -> DaskJob {
    let probe = json!({"httpGet": {"port": "http-dashboard", "path": "/health"}, "initialDelaySeconds": 2, "periodSeconds": 2});
    serde_json::from_value(json!({
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskJob",
        "metadata": {},
        "spec": {
            "job": {
                "waitForScheduler": true,
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "job", "image": image, "imagePullPolicy": "IfNotPresent"}],
                },
            },
            "cluster": {"spec": {
                "worker": {"replicas": 2, "spec": {"containers": [{
                    "name": "worker", "image": image, "imagePullPolicy": "IfNotPresent",
                    "args": ["dask-worker", "--name", "$(DASK_WORKER_NAME)", "--dashboard-address", "8788"],
                    "ports": [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
                }]}},
                "scheduler": {
                    "spec": {"containers": [{
                        "name": "scheduler", "image": image, "imagePullPolicy": "IfNotPresent",
                        "args": ["dask-scheduler"],
                        "ports": [
                            {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                            {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
                        ],
                        "readinessProbe": probe,
                    }]},
                    "service": {"type": "ClusterIP", "ports": [
                        {"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                        {"name": "http-dashboard", "protocol": "TCP", "port": 8787, "targetPort": "http-dashboard"},
                    ]},
                },
            }},
        },
    }))
    .expect("the default job is a DaskJob")
}

/// Reads a DaskJob manifest for `--from-file`.
pub fn read_manifest(path: &Path) -> Result<DaskJob, SubmitError> {
    let text = std::fs::read_to_string(path).map_err(|source| SubmitError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let job: DaskJob = serde_saphyr::from_str(&text).map_err(|e| SubmitError::Manifest {
        path: path.to_path_buf(),
        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
    })?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(script: &str) -> SubmitArgs {
        SubmitArgs {
            script: Some(PathBuf::from(script)),
            ..Default::default()
        }
    }

    fn files(paths: &[&str]) -> Files {
        paths
            .iter()
            .map(|p| (p.to_string(), b"print(1)".to_vec()))
            .collect()
    }

    #[test]
    fn a_script_becomes_a_job_with_its_own_cluster_and_its_files_mounted() {
        let mut a = args("/home/me/mean.py");
        a.args = vec!["--size".into(), "100".into()];
        a.workers = Some(3);
        a.worker_memory = Some("2Gi".into());
        a.env = vec![("MODE".into(), "fast".into())];
        a.backoff_limit = Some(1);
        let job = build_job(&a, "mean-1a2b3", None, &files(&["mean.py"])).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("mean-1a2b3"));
        let runner = &job.spec.job.spec;
        assert_eq!(runner.restart_policy.as_deref(), Some("Never"));
        let c = &runner.containers[0];
        assert_eq!(c.image.as_deref(), Some(DEFAULT_IMAGE));
        assert_eq!(
            c.args.clone().unwrap(),
            ["python", "/dask-job/mean.py", "--size", "100"]
        );
        assert_eq!(c.working_dir.as_deref(), Some(MOUNT));
        assert_eq!(c.env.as_ref().unwrap()[0].name, "MODE");
        let volume = &runner.volumes.as_ref().unwrap()[0];
        let cm = volume.config_map.as_ref().unwrap();
        assert_eq!(cm.name, "mean-1a2b3-files");
        assert_eq!(cm.items.as_ref().unwrap()[0].path, "mean.py");
        let cluster = &job.spec.cluster.as_ref().unwrap().spec;
        assert_eq!(cluster.worker.replicas, 3);
        let memory = &cluster.worker.spec.containers[0]
            .resources
            .as_ref()
            .unwrap();
        assert_eq!(memory.limits.as_ref().unwrap()["memory"].0, "2Gi");
        assert!(job.spec.job.wait_for_scheduler);
        assert_eq!(job.spec.backoff_limit, Some(1));
        let selector = cluster.scheduler.service.selector.clone().unwrap();
        assert_eq!(selector["dask.org/cluster-name"], "mean-1a2b3");
        assert_eq!(selector["dask.org/component"], "scheduler");
    }

    #[test]
    fn an_existing_cluster_replaces_the_jobs_own() {
        let mut a = args("x.py");
        a.cluster = Some("shared".into());
        let job = build_job(&a, "x", None, &files(&["x.py"])).unwrap();
        assert!(job.spec.cluster.is_none());
        assert_eq!(job.spec.cluster_ref.unwrap().name, "shared");
    }

    #[test]
    fn a_manifest_is_kept_except_for_the_flags_given() {
        let base: DaskJob =
            serde_saphyr::from_str(include_str!("../../examples/daskjob.yaml")).unwrap();
        let mut a = SubmitArgs {
            from_file: Some("examples/daskjob.yaml".into()),
            image: Some("my/image:2".into()),
            workers: Some(5),
            ..Default::default()
        };
        let job = build_job(&a, "from-file", Some(base.clone()), &Files::new()).unwrap();
        let runner = &job.spec.job.spec.containers[0];
        assert_eq!(
            runner.args, base.spec.job.spec.containers[0].args,
            "its command kept"
        );
        assert_eq!(runner.image.as_deref(), Some("my/image:2"));
        let cluster = &job.spec.cluster.as_ref().unwrap().spec;
        assert_eq!(cluster.worker.replicas, 5);
        let selector = cluster.scheduler.service.selector.clone().unwrap();
        assert_eq!(
            selector["dask.org/cluster-name"], "from-file",
            "not the manifest's example"
        );
        assert_eq!(
            cluster.scheduler.spec.containers[0].image.as_deref(),
            Some("my/image:2")
        );
        assert!(job.spec.job.spec.volumes.is_none());
        // With a script too, the script replaces the command.
        a.script = Some("run.py".into());
        let job = build_job(&a, "from-file", Some(base), &files(&["run.py"])).unwrap();
        assert_eq!(
            job.spec.job.spec.containers[0].args.clone().unwrap(),
            ["python", "/dask-job/run.py"]
        );
    }

    #[test]
    fn bad_names_are_refused_naming_the_flag() {
        let err = build_job(&args("x.py"), "Not_A_Name", None, &Files::new()).unwrap_err();
        assert!(err.to_string().starts_with("--name: "), "{err}");
    }

    #[test]
    fn generated_names_are_labels_from_the_script() {
        let name = generated_name(Some(Path::new("/tmp/My Mean_v2.py")), 0xabcdef);
        assert_eq!(name, "my-mean-v2-bcdef");
        assert!(names::validate_cluster_name(&name).is_ok());
        let name = generated_name(Some(Path::new("2024.py")), 1);
        assert_eq!(name, "job-2024-00001");
        let long = generated_name(Some(Path::new(&format!("{}.py", "a".repeat(80)))), 2);
        assert!(long.len() <= 53 && names::validate_cluster_name(&long).is_ok());
    }

    #[test]
    fn files_are_read_bounded_and_the_script_is_not_shipped_twice() {
        let dir = std::env::temp_dir().join(format!("dask-submit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pkg/__pycache__")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("main.py"), "import pkg").unwrap();
        std::fs::write(dir.join("pkg/util.py"), "x = 1").unwrap();
        std::fs::write(dir.join("pkg/__pycache__/util.pyc"), [0u8; 10]).unwrap();
        std::fs::write(dir.join(".git/HEAD"), "ref").unwrap();
        let files = read_files(Some(&dir.join("main.py")), Some(&dir)).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["main.py", "pkg/util.py"]);
        let mut a = args(dir.join("main.py").to_str().unwrap());
        a.working_dir = Some(dir.clone());
        let job = build_job(&a, "main", None, &files).unwrap();
        assert_eq!(
            job.spec.job.spec.containers[0].args.clone().unwrap()[1],
            "/dask-job/main.py"
        );
        std::fs::write(dir.join("big.bin"), vec![0u8; MAX_FILES_BYTES as usize]).unwrap();
        let err = read_files(Some(&dir.join("main.py")), Some(&dir)).unwrap_err();
        assert!(
            err.to_string().contains("more than the limit of 524288"),
            "{err}"
        );
        let err = read_files(Some(Path::new("/nonexistent/x.py")), None).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read /nonexistent/x.py"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
