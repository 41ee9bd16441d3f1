//! `make bench`: this operator and dask-kubernetes' kopf operator side by side, on the same local
//! cluster, with the same CRDs (ours) and the same manifests (upstream's simplejob, one distinct name
//! per job), at several sizes; plus a steady-rate mode and the raw-client limit.
//!
//! For every size N (`BENCH_SIZES`, default 100,500,1000) and operator (`BENCH_OPERATORS`,
//! default ours,kopf), in a fresh namespace whose pods are never scheduled (a node selector no node
//! matches, through the PodNodeSelector admission plugin), the bench starts the operator as its own
//! process with its own identity, applies N DaskJobs at once and measures, from the first create:
//! - the time until every job is `ClusterCreated`, every DaskCluster `Running`, every worker
//!   Deployment exists and every runner pod exists (a state not reached is reported as such, with
//!   the time waited: `BENCH_TIMEOUT_SECONDS`, or earlier when nothing changed for
//!   `BENCH_STALL_SECONDS`);
//! - per job, the time from its create call returning to its runner pod being seen by a watch
//!   (p50, p99);
//! - the operator's peak RSS (`VmHWM`);
//! - its API requests (and writes) per job, and those in the idle window after the run settled
//!   (`BENCH_IDLE_SECONDS`), from the API server's priority-and-fairness metric per flow schema.
//!
//! Then the operator is killed, finalizers left behind (kopf's) are removed, and the namespace is
//! deleted and waited for before the next run.
//!
//! The raw client (`BENCH_RAW`) creates, per job, the objects an operator creates (DaskJob,
//! DaskCluster, scheduler Deployment and Service, DaskWorkerGroup, worker Deployments, runner Pod;
//! built by this crate's own builders) as fast as the API server takes them, with
//! `BENCH_CONCURRENCY` jobs in flight: the floor an operator could reach on this cluster.
//!
//! The steady mode (`BENCH_RATE` jobs/s for `BENCH_RATE_SECONDS`) reports the apply→runner
//! latencies of each operator under a constant load.
//!
//! Identities: ours runs as user `dask-operator` (`<cluster>/operator.kubeconfig`, made by
//! `make cluster-up`); kopf and the raw client as ServiceAccounts with tokens, with the rules and
//! flow schemas of `benches/identities.yaml` (applied at start, deleted at the end).
//!
//! Output: the Markdown report on stdout; with `BENCH_OUT`, also `RESULTS.md`, `results.json` and
//! `results.svg` there; with `BENCH_README`, the report between the README's bench markers. With
//! `--check`, exits 1 unless both operators brought every job to `ClusterCreated` and ours wrote
//! nothing in the idle windows. All settings: `benches/support/config.rs`.
//!
//! Environment: `DASK_OPERATOR_BIN` (our binary), `BENCH_KOPF` (the `kopf` script of the pinned
//! venv, `tests/conformance/venv.sh`), `DASK_CLUSTER_DIR` (default `<repo>/.cluster`).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dask_operator::crd::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};
use dask_operator::resources;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::config::{Runner, Settings};
use support::metrics;
use support::report::{self, Environment, Milestone, Results, SizeRun, SteadyRun};
use support::stats;

/// Statuses a job has once its cluster and runner were created.
const CLUSTER_CREATED_OR_LATER: [&str; 4] = ["ClusterCreated", "Running", "Successful", "Failed"];
const NODE_SELECTOR: (&str, &str) = (
    "scheduler.alpha.kubernetes.io/node-selector",
    "dask-operator.dask.org/bench=no-node",
);
const IDENTITIES_NAMESPACE: &str = "bench-identities";
const KOPF_ACCOUNT: &str = "dask-bench-kopf";
const RAW_ACCOUNT: &str = "dask-bench-raw";
/// How long a namespace may take to go once deleted.
const DELETE_TIMEOUT: Duration = Duration::from_secs(900);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cluster_dir() -> PathBuf {
    std::env::var_os("DASK_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cluster"))
}

async fn client_from(path: &Path) -> Res<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| format!("{}: {e} (run make cluster-up first)", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

// --- identities ---------------------------------------------------------------------------------

fn identity_documents() -> Res<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(root().join("benches/identities.yaml"))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

async fn dynamic_api(
    client: &Client,
    doc: &serde_json::Value,
) -> Res<(Api<DynamicObject>, DynamicObject)> {
    let object: DynamicObject = serde_json::from_value(doc.clone())?;
    let types = object
        .types
        .clone()
        .ok_or("a document without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(&types)?;
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api = match (capabilities.scope, object.metadata.namespace.as_deref()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    Ok((api, object))
}

/// Applies `benches/identities.yaml` (server-side, idempotent).
async fn apply_identities(admin: &Client) -> Res<()> {
    for doc in identity_documents()? {
        let (api, object) = dynamic_api(admin, &doc).await?;
        let name = object.name_any();
        api.patch(
            &name,
            &PatchParams::apply("dask-bench").force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| format!("apply {name}: {e}"))?;
    }
    Ok(())
}

/// Deletes everything `benches/identities.yaml` made.
async fn delete_identities(admin: &Client) {
    let Ok(docs) = identity_documents() else {
        return;
    };
    for doc in docs.iter().rev() {
        if let Ok((api, object)) = dynamic_api(admin, doc).await {
            let _ = api
                .delete(&object.name_any(), &DeleteParams::background())
                .await;
        }
    }
}

/// A kubeconfig for a ServiceAccount of `benches/identities.yaml`: the admin kubeconfig's cluster
/// and a fresh token (valid three hours).
async fn service_account_kubeconfig(admin: &Client, account: &str, path: &Path) -> Res<PathBuf> {
    let admin_config = Kubeconfig::read_from(cluster_dir().join("kubeconfig"))?;
    let cluster = admin_config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or("the admin kubeconfig has no cluster")?;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), IDENTITIES_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await?
        .status
        .ok_or("no token in the TokenRequest")?
        .token;
    let mut cluster_entry = serde_json::json!({ "server": cluster.server });
    if let Some(data) = cluster.certificate_authority_data {
        cluster_entry["certificate-authority-data"] = data.into();
    }
    if let Some(file) = cluster.certificate_authority {
        cluster_entry["certificate-authority"] = file.into();
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster_entry}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": account}}],
        "current-context": "local",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path.to_path_buf())
}

/// (all requests, writes) the API server dispatched so far for the runner's identity, from one
/// read of its metrics.
async fn counters(admin: &Client, runner: Runner) -> (Option<f64>, Option<f64>) {
    let Ok(request) = http::Request::get("/metrics").body(Vec::new()) else {
        return (None, None);
    };
    let Ok(text) = admin.request_text(request).await else {
        return (None, None);
    };
    let sum = |schemas: &[&str]| -> f64 {
        schemas
            .iter()
            .map(|s| metrics::dispatched_requests(&text, s))
            .sum()
    };
    let (all, writes) = runner.flow_schemas();
    (Some(sum(all)), writes.map(sum))
}

fn difference(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// A run has settled when the operator made no write for this long...
const SETTLE_QUIET: Duration = Duration::from_secs(5);
/// ...or this long after its states were reached (or given up).
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Waits until the runner's identity made no write for [`SETTLE_QUIET`] (at most [`SETTLE_LIMIT`]);
/// whether it got quiet. The idle window starts then: the trailing status writes of the last jobs
/// belong to the run, not to the idle operator.
async fn settle(admin: &Client, runner: Runner) -> bool {
    let start = Instant::now();
    let mut last = counters(admin, runner).await.1;
    let mut quiet_since = Instant::now();
    while start.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = counters(admin, runner).await.1;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= SETTLE_QUIET {
            return true;
        }
    }
    false
}

// --- namespaces ---------------------------------------------------------------------------------

async fn create_namespace(admin: &Client, name: &str) -> Res<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let meta = ObjectMeta {
        name: Some(name.to_string()),
        annotations: Some([(NODE_SELECTOR.0.to_string(), NODE_SELECTOR.1.to_string())].into()),
        labels: Some(
            [(
                "dask-operator.dask.org/bench".to_string(),
                "true".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta,
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

fn dask_kinds() -> [ApiResource; 4] {
    [
        ApiResource::erase::<DaskJob>(&()),
        ApiResource::erase::<DaskCluster>(&()),
        ApiResource::erase::<DaskWorkerGroup>(&()),
        ApiResource::erase::<DaskAutoscaler>(&()),
    ]
}

/// Removes every finalizer from the Dask objects of the namespace (kopf's, once it is stopped).
/// Returns how many objects had some.
async fn strip_finalizers(admin: &Client, ns: &str) -> usize {
    let mut stripped = 0;
    for kind in dask_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &kind);
        let Ok(list) = api.list_metadata(&ListParams::default()).await else {
            continue;
        };
        let names: Vec<String> = list
            .items
            .iter()
            .filter(|o| !o.finalizers().is_empty())
            .map(|o| o.name_any())
            .collect();
        stripped += names.len();
        futures::stream::iter(names)
            .map(|name| {
                let api = api.clone();
                async move {
                    let patch = serde_json::json!({"metadata": {"finalizers": null}});
                    let _ = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    }
    stripped
}

/// Deletes the namespace and waits until it is gone, stripping finalizers on the way.
async fn delete_namespace(admin: &Client, ns: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let stripped = strip_finalizers(admin, ns).await;
    if stripped > 0 {
        eprintln!("  {ns}: removed the finalizers of {stripped} objects");
    }
    let _ = namespaces.delete(ns, &DeleteParams::background()).await;
    let mut last_strip = Instant::now();
    loop {
        if let Ok(None) = namespaces.get_opt(ns).await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > DELETE_TIMEOUT {
            return Err(format!(
                "namespace {ns} still there {} s after its deletion",
                DELETE_TIMEOUT.as_secs()
            ));
        }
        if last_strip.elapsed() > Duration::from_secs(30) {
            strip_finalizers(admin, ns).await;
            last_strip = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// --- what the watches see -----------------------------------------------------------------------

/// When each object was first seen in each state, in seconds since the tracker started.
#[derive(Default)]
struct Seen {
    cluster_created: HashMap<String, f64>,
    running: HashMap<String, f64>,
    workers: HashMap<String, f64>,
    /// By job name.
    runners: HashMap<String, f64>,
    /// Job name and when its create call returned.
    created: Vec<(String, f64)>,
    last_change: f64,
}

struct Tracker {
    start: Instant,
    seen: Mutex<Seen>,
    synced: AtomicUsize,
}

#[derive(Clone, Copy)]
enum State {
    ClusterCreated,
    Running,
    Workers,
    Runners,
}

impl Tracker {
    fn new() -> Arc<Tracker> {
        Arc::new(Tracker {
            start: Instant::now(),
            seen: Mutex::new(Seen::default()),
            synced: AtomicUsize::new(0),
        })
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn mark(&self, state: State, key: String) {
        let now = self.now();
        let mut seen = self.seen.lock().unwrap();
        let map = match state {
            State::ClusterCreated => &mut seen.cluster_created,
            State::Running => &mut seen.running,
            State::Workers => &mut seen.workers,
            State::Runners => &mut seen.runners,
        };
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(key) {
            e.insert(now);
            seen.last_change = now;
        }
    }

    fn created(&self, job: String) {
        let now = self.now();
        let mut seen = self.seen.lock().unwrap();
        seen.created.push((job, now));
        seen.last_change = now;
    }

    fn count(&self, state: State) -> usize {
        let seen = self.seen.lock().unwrap();
        match state {
            State::ClusterCreated => seen.cluster_created.len(),
            State::Running => seen.running.len(),
            State::Workers => seen.workers.len(),
            State::Runners => seen.runners.len(),
        }
    }

    fn milestone(&self, state: State, expected: usize, t0: f64, stop: &Stop) -> Milestone {
        let seen = self.seen.lock().unwrap();
        let map = match state {
            State::ClusterCreated => &seen.cluster_created,
            State::Running => &seen.running,
            State::Workers => &seen.workers,
            State::Runners => &seen.runners,
        };
        let offsets: Vec<f64> = map.values().map(|t| (t - t0).max(0.0)).collect();
        Milestone {
            expected,
            reached: offsets.len().min(expected),
            seconds: stats::time_to_nth(&offsets, expected),
            waited_seconds: stop.at - t0,
            stalled: stop.stalled,
        }
    }

    fn latencies(&self) -> Vec<f64> {
        let seen = self.seen.lock().unwrap();
        stats::latencies_ms(&seen.created, |job| seen.runners.get(job).copied())
    }
}

/// Runs `f` on every object the watch `stream` sees (listed or changed) until the task is aborted;
/// counts the tracker synced once the first list is done.
fn spawn_watch<K, S, F>(stream: S, tracker: Arc<Tracker>, f: F) -> tokio::task::JoinHandle<()>
where
    K: Send + 'static,
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    F: Fn(&Tracker, &K) + Send + 'static,
{
    tokio::spawn(async move {
        let mut synced = false;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(o) | Event::InitApply(o)) => f(&tracker, &o),
                Ok(Event::InitDone) if !synced => {
                    synced = true;
                    tracker.synced.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    })
}

fn status_field(object: &DynamicObject, field: &str) -> Option<String> {
    object
        .data
        .get("status")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

/// The four watches of a run's namespace (jobs, clusters, worker Deployments, runner pods); waits
/// until all four have listed.
async fn start_watches(admin: &Client, ns: &str, tracker: &Arc<Tracker>) -> Res<Watches> {
    let jobs: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), ns, &ApiResource::erase::<DaskJob>(&()));
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), ns, &ApiResource::erase::<DaskCluster>(&()));
    let deployments: Api<PartialObjectMeta<Deployment>> = Api::namespaced(admin.clone(), ns);
    let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(admin.clone(), ns);
    let config = watcher::Config::default;
    let handles = vec![
        spawn_watch(
            watcher::watcher(jobs, config()).default_backoff(),
            tracker.clone(),
            |t, o: &DynamicObject| {
                if status_field(o, "jobStatus")
                    .is_some_and(|s| CLUSTER_CREATED_OR_LATER.contains(&s.as_str()))
                {
                    t.mark(State::ClusterCreated, o.name_any());
                }
            },
        ),
        spawn_watch(
            watcher::watcher(clusters, config()).default_backoff(),
            tracker.clone(),
            |t, o: &DynamicObject| {
                if status_field(o, "phase").as_deref() == Some("Running") {
                    t.mark(State::Running, o.name_any());
                }
            },
        ),
        spawn_watch(
            watcher::watcher(deployments, config().labels("dask.org/component=worker"))
                .default_backoff(),
            tracker.clone(),
            |t, o: &PartialObjectMeta<Deployment>| t.mark(State::Workers, o.name_any()),
        ),
        spawn_watch(
            watcher::watcher(pods, config().labels("dask.org/component=job-runner"))
                .default_backoff(),
            tracker.clone(),
            |t, o: &PartialObjectMeta<Pod>| {
                // The runner's job: its cluster label (the job's name, for both operators).
                let name = o.name_any();
                let job = o
                    .labels()
                    .get("dask.org/cluster-name")
                    .cloned()
                    .or_else(|| name.strip_suffix("-runner").map(str::to_string))
                    .unwrap_or(name);
                t.mark(State::Runners, job);
            },
        ),
    ];
    let watches = Watches(handles);
    let start = Instant::now();
    while tracker.synced.load(Ordering::SeqCst) < 4 {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("the bench's watches did not list within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(watches)
}

/// The watch tasks; aborted when dropped.
struct Watches(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Why waiting stopped: when (seconds since the tracker started) and whether for lack of progress.
struct Stop {
    at: f64,
    stalled: bool,
}

/// Waits until every state has its count, or the timeout (from `t0`), or nothing changed for the
/// stall window.
async fn wait_states(
    tracker: &Tracker,
    targets: &[(State, usize)],
    t0: f64,
    settings: &Settings,
) -> Stop {
    loop {
        let now = tracker.now();
        if targets.iter().all(|(s, n)| tracker.count(*s) >= *n) {
            return Stop {
                at: now,
                stalled: false,
            };
        }
        if now - t0 >= settings.timeout_seconds as f64 {
            return Stop {
                at: now,
                stalled: false,
            };
        }
        let last = tracker.seen.lock().unwrap().last_change;
        if now - last.max(t0) >= settings.stall_seconds as f64 {
            return Stop {
                at: now,
                stalled: true,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- the operators as processes -----------------------------------------------------------------

/// An operator process; killed when dropped (also when the bench panics).
struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        metrics::vm_hwm_kib(&std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether `GET path` on 127.0.0.1:port answers 200.
async fn http_ok(port: u16, path: &str) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && head.starts_with(b"HTTP/1.")
        && &head[9..12] == b"200"
}

struct Paths {
    work: PathBuf,
    operator_bin: Option<PathBuf>,
    kopf_bin: Option<PathBuf>,
}

/// Starts the operator watching `ns` and waits until it says it is ready (ours: `/readyz`; kopf:
/// its liveness endpoint), then two more seconds for its watches.
async fn start_operator(admin: &Client, paths: &Paths, runner: Runner, ns: &str) -> Res<Operator> {
    let port = free_port()?;
    let log = paths.work.join(format!("{ns}.log"));
    let out = std::fs::File::create(&log)?;
    let (mut command, probe) = match runner {
        Runner::Ours => {
            let bin = paths
                .operator_bin
                .as_ref()
                .ok_or("DASK_OPERATOR_BIN is not set")?;
            let mut c = Command::new(bin);
            c.args([
                "run",
                "--namespace",
                ns,
                "--http-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", cluster_dir().join("operator.kubeconfig"))
            .env_remove("RUST_LOG"); // its default level, as the chart runs it
            (c, "/readyz")
        }
        Runner::Kopf => {
            let bin = paths.kopf_bin.as_ref().ok_or("BENCH_KOPF is not set")?;
            let kubeconfig = service_account_kubeconfig(
                admin,
                KOPF_ACCOUNT,
                &paths.work.join("kopf.kubeconfig"),
            )
            .await?;
            let mut c = Command::new(bin);
            c.args([
                "run",
                "--standalone",
                "-m",
                "dask_kubernetes.operator.controller",
                "--namespace",
                ns,
                "--liveness",
                &format!("http://127.0.0.1:{port}/healthz"),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("PYTHONUNBUFFERED", "1");
            (c, "/healthz")
        }
        Runner::Raw => return Err("the raw client is no operator".into()),
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("start {}: {e}", runner.title()))?;
    let mut operator = Operator { child, log };
    let start = Instant::now();
    loop {
        if let Some(status) = operator.exited() {
            return Err(format!(
                "{} exited ({status}) before it was ready:\n{}",
                runner.title(),
                operator.log_tail()
            )
            .into());
        }
        if http_ok(port, probe).await {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            return Err(format!(
                "{} not ready within 90 s:\n{}",
                runner.title(),
                operator.log_tail()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(operator)
}

// --- the jobs -----------------------------------------------------------------------------------

fn job_manifest(template: &serde_json::Value, ns: &str, name: &str) -> Res<DaskJob> {
    Ok(serde_json::from_value(support::config::simplejob(
        template, ns, name,
    ))?)
}

/// Creates the jobs (`concurrency` in flight), recording when each create returned.
async fn create_jobs(
    client: &Client,
    template: &serde_json::Value,
    ns: &str,
    names: Vec<String>,
    concurrency: usize,
    tracker: &Arc<Tracker>,
) -> Res<()> {
    let api: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            let tracker = tracker.clone();
            async move {
                let job = job_manifest(template, ns, &name)?;
                api.create(&PostParams::default(), &job).await?;
                tracker.created(name);
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The raw client: one job's objects, created directly, as this operator builds them.
async fn raw_job(
    client: &Client,
    template: &serde_json::Value,
    ns: &str,
    name: String,
    tracker: &Tracker,
) -> Res<()> {
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), ns);
    let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    let job = jobs
        .create(&pp, &job_manifest(template, ns, &name)?)
        .await?;
    tracker.created(name.clone());
    let runner = async {
        let pod = resources::job::runner_pod(&job, &resources::names::runner(&name));
        pods.create(&pp, &pod).await?;
        Ok::<_, BoxError>(())
    };
    let cluster = async {
        let cluster = resources::job::job_cluster(&job).ok_or("a job with clusterRef")?;
        let cluster = clusters.create(&pp, &cluster).await?;
        let scheduler = resources::cluster::scheduler_deployment(&cluster, None);
        let service = resources::cluster::scheduler_service(&cluster);
        let group = resources::cluster::default_worker_group(&cluster);
        let (scheduler, service, group) = tokio::join!(
            deployments.create(&pp, &scheduler),
            services.create(&pp, &service),
            groups.create(&pp, &group)
        );
        scheduler?;
        service?;
        let group = group?;
        let uid = group.uid().unwrap_or_default();
        let replicas = group.spec.worker.replicas.max(0) as u32;
        futures::future::try_join_all((0..replicas).map(|slot| {
            let worker = resources::names::worker_deployment(&group.name_any(), &uid, slot);
            let deployment =
                resources::workers::worker_deployment(&group, &worker, cluster.labels(), None);
            let deployments = deployments.clone();
            let pp = pp.clone();
            async move { deployments.create(&pp, &deployment).await }
        }))
        .await?;
        Ok::<_, BoxError>(())
    };
    tokio::try_join!(runner, cluster)?;
    Ok(())
}

// --- one run ------------------------------------------------------------------------------------

struct Bench {
    settings: Settings,
    admin: Client,
    paths: Paths,
    template: serde_json::Value,
    workers: usize,
    pid: u32,
}

fn failed_run(runner: Runner, jobs: usize, workers: usize, idle: u64, error: String) -> SizeRun {
    let none = |expected| Milestone {
        expected,
        reached: 0,
        seconds: None,
        waited_seconds: 0.0,
        stalled: false,
    };
    let operator = runner != Runner::Raw;
    SizeRun {
        runner,
        jobs,
        apply_seconds: 0.0,
        cluster_created: operator.then(|| none(jobs)),
        running: operator.then(|| none(jobs)),
        worker_deployments: none(jobs * workers),
        runner_pods: none(jobs),
        latency: stats::summarize(&[]),
        peak_rss_kib: None,
        requests: None,
        writes: None,
        idle_seconds: if operator { idle } else { 0 },
        idle_requests: None,
        idle_writes: None,
        notes: vec![format!("the run failed: {error}")],
    }
}

impl Bench {
    fn namespace(&self, runner: Runner, what: &str) -> String {
        format!("bench-{}-{what}-{}", runner.as_str(), self.pid)
    }

    /// N jobs at once, for an operator or the raw client; the namespace is deleted afterwards.
    async fn size_run(&self, runner: Runner, jobs: usize) -> SizeRun {
        let ns = self.namespace(runner, &jobs.to_string());
        eprintln!("{}: {jobs} jobs in {ns}", runner.title());
        let mut notes = Vec::new();
        let result = match create_namespace(&self.admin, &ns).await {
            Ok(()) => self.measure(runner, jobs, &ns, &mut notes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = delete_namespace(&self.admin, &ns).await {
            notes.push(e);
        }
        let mut run = result.unwrap_or_else(|e| {
            eprintln!("  failed: {e}");
            failed_run(
                runner,
                jobs,
                self.workers,
                self.settings.idle_seconds,
                e.to_string(),
            )
        });
        run.notes.extend(notes);
        run
    }

    async fn measure(
        &self,
        runner: Runner,
        jobs: usize,
        ns: &str,
        notes: &mut Vec<String>,
    ) -> Res<SizeRun> {
        let tracker = Tracker::new();
        let _watches = start_watches(&self.admin, ns, &tracker).await?;
        let mut operator = match runner {
            Runner::Raw => None,
            _ => Some(start_operator(&self.admin, &self.paths, runner, ns).await?),
        };
        let raw_client = match runner {
            Runner::Raw => {
                let path = self.paths.work.join("raw.kubeconfig");
                Some(
                    client_from(
                        &service_account_kubeconfig(&self.admin, RAW_ACCOUNT, &path).await?,
                    )
                    .await?,
                )
            }
            _ => None,
        };
        let names: Vec<String> = (0..jobs).map(|i| format!("job-{i}")).collect();
        let (requests_before, writes_before) = counters(&self.admin, runner).await;
        let t0 = tracker.now();
        match &raw_client {
            None => {
                create_jobs(
                    &self.admin,
                    &self.template,
                    ns,
                    names,
                    self.settings.concurrency,
                    &tracker,
                )
                .await?
            }
            Some(client) => {
                futures::stream::iter(names)
                    .map(|name| raw_job(client, &self.template, ns, name, &tracker))
                    .buffer_unordered(self.settings.concurrency)
                    .try_collect::<Vec<_>>()
                    .await?;
            }
        }
        let apply_seconds = tracker.now() - t0;
        let operator_runs = runner != Runner::Raw;
        let mut targets = vec![
            (State::Workers, jobs * self.workers),
            (State::Runners, jobs),
        ];
        if operator_runs {
            targets.extend([(State::ClusterCreated, jobs), (State::Running, jobs)]);
        }
        let stop = wait_states(&tracker, &targets, t0, &self.settings).await;
        if operator_runs && self.settings.idle_seconds > 0 {
            let quiet = settle(&self.admin, runner).await;
            if !quiet {
                notes.push(format!(
                    "still writing {} s after the run (the idle window began anyway)",
                    SETTLE_LIMIT.as_secs()
                ));
            }
        }
        let (requests_after, writes_after) = counters(&self.admin, runner).await;
        let milestone = |state, expected| tracker.milestone(state, expected, t0, &stop);
        let mut run = SizeRun {
            runner,
            jobs,
            apply_seconds,
            cluster_created: operator_runs.then(|| milestone(State::ClusterCreated, jobs)),
            running: operator_runs.then(|| milestone(State::Running, jobs)),
            worker_deployments: milestone(State::Workers, jobs * self.workers),
            runner_pods: milestone(State::Runners, jobs),
            latency: stats::summarize(&tracker.latencies()),
            peak_rss_kib: None,
            requests: difference(requests_after, requests_before),
            writes: difference(writes_after, writes_before),
            idle_seconds: 0,
            idle_requests: None,
            idle_writes: None,
            notes: vec![],
        };
        if let Some(operator) = operator.as_mut() {
            if self.settings.idle_seconds > 0 {
                eprintln!(
                    "  states done at {:.1} s, settled; idle window of {} s",
                    stop.at - t0,
                    self.settings.idle_seconds
                );
                tokio::time::sleep(Duration::from_secs(self.settings.idle_seconds)).await;
                let (requests_idle, writes_idle) = counters(&self.admin, runner).await;
                run.idle_seconds = self.settings.idle_seconds;
                run.idle_requests = difference(requests_idle, requests_after);
                run.idle_writes = difference(writes_idle, writes_after);
            }
            run.peak_rss_kib = operator.peak_rss_kib();
            if let Some(status) = operator.exited() {
                notes.push(format!("the operator exited ({status}) during the run"));
                eprintln!("  the operator exited ({status}):\n{}", operator.log_tail());
            }
        }
        drop(operator);
        eprintln!(
            "  ClusterCreated {}, workers {}, runners {}",
            run.cluster_created
                .as_ref()
                .map_or("—".into(), report::milestone),
            report::milestone(&run.worker_deployments),
            report::milestone(&run.runner_pods)
        );
        Ok(run)
    }

    /// Jobs created at `rate` per second for `rate_seconds`: apply→runner latencies.
    async fn steady_run(&self, runner: Runner) -> SteadyRun {
        let ns = self.namespace(runner, "steady");
        let jobs = self.settings.steady_jobs();
        eprintln!(
            "{}: {jobs} jobs at {} jobs/s in {ns}",
            runner.title(),
            self.settings.rate
        );
        let result = match create_namespace(&self.admin, &ns).await {
            Ok(()) => self.measure_steady(runner, jobs, &ns).await,
            Err(e) => Err(e),
        };
        let deleted = delete_namespace(&self.admin, &ns).await;
        let mut run = result.unwrap_or_else(|e| {
            eprintln!("  failed: {e}");
            SteadyRun {
                runner,
                rate: self.settings.rate,
                seconds: self.settings.rate_seconds,
                jobs,
                achieved_rate: 0.0,
                latency: stats::summarize(&[]),
                peak_rss_kib: None,
                requests: None,
                notes: vec![format!("the run failed: {e}")],
            }
        });
        if let Err(e) = deleted {
            run.notes.push(e);
        }
        run
    }

    async fn measure_steady(&self, runner: Runner, jobs: usize, ns: &str) -> Res<SteadyRun> {
        let tracker = Tracker::new();
        let _watches = start_watches(&self.admin, ns, &tracker).await?;
        let mut operator = start_operator(&self.admin, &self.paths, runner, ns).await?;
        let (requests_before, _) = counters(&self.admin, runner).await;
        let period = Duration::from_secs_f64(1.0 / self.settings.rate);
        let api: Api<DaskJob> = Api::namespaced(self.admin.clone(), ns);
        let start = tokio::time::Instant::now();
        let t0 = tracker.now();
        let mut tasks = Vec::with_capacity(jobs);
        for i in 0..jobs {
            tokio::time::sleep_until(start + period * i as u32).await;
            let job = job_manifest(&self.template, ns, &format!("job-{i}"))?;
            let api = api.clone();
            let tracker = tracker.clone();
            tasks.push(tokio::spawn(async move {
                api.create(&PostParams::default(), &job).await?;
                tracker.created(job.name_any());
                Ok::<_, kube::Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let sent = tracker.now() - t0;
        let achieved_rate = jobs as f64 / sent.max(1e-9);
        let last = tracker.now();
        let stop = wait_states(&tracker, &[(State::Runners, jobs)], last, &self.settings).await;
        let _ = stop;
        let (requests_after, _) = counters(&self.admin, runner).await;
        let mut notes = Vec::new();
        if let Some(status) = operator.exited() {
            notes.push(format!("the operator exited ({status}) during the run"));
        }
        let run = SteadyRun {
            runner,
            rate: self.settings.rate,
            seconds: self.settings.rate_seconds,
            jobs,
            achieved_rate,
            latency: stats::summarize(&tracker.latencies()),
            peak_rss_kib: operator.peak_rss_kib(),
            requests: difference(requests_after, requests_before),
            notes,
        };
        drop(operator);
        eprintln!(
            "  p50 {}, p99 {}, {}/{} runners",
            run.latency.p50_ms.map_or("—".into(), report::millis),
            run.latency.p99_ms.map_or("—".into(), report::millis),
            run.latency.seen,
            run.latency.expected
        );
        Ok(run)
    }
}

// --- setup and output ---------------------------------------------------------------------------

async fn install_crds(client: &Client) -> Res<()> {
    // Server-side: the DaskJob CRD is too large for a client-side apply annotation.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in dask_operator::crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(60), established).await??;
    }
    Ok(())
}

fn command_output(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn environment(admin: &Client, paths: &Paths) -> Environment {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut operator = paths
        .operator_bin
        .as_ref()
        .and_then(|b| command_output(b, &["--version"]))
        // `dask-operator 0.1.0`: the report already names the operator.
        .map(|v| v.trim_start_matches("dask-operator ").to_string())
        .unwrap_or_else(|| "?".into());
    if let Some(rev) = command_output(
        Path::new("git"),
        &[
            "-C",
            root().to_str().unwrap_or("."),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    ) {
        operator = format!("{operator} ({rev})");
    }
    let (dask_kubernetes, kopf) = paths
        .kopf_bin
        .as_ref()
        .and_then(|k| {
            let python = k.with_file_name("python");
            command_output(
                &python,
                &["-c", "import importlib.metadata as m; print(m.version('dask-kubernetes'), m.version('kopf'))"],
            )
        })
        .and_then(|v| {
            let (a, b) = v.split_once(' ')?;
            Some((a.to_string(), b.to_string()))
        })
        .unwrap_or_else(|| ("?".into(), "?".into()));
    Environment {
        date: command_output(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        cpu: metrics::cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "?".into()),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: metrics::mem_total_kib(&read("/proc/meminfo")).unwrap_or(0) as f64
            / 1024.0
            / 1024.0,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        kubernetes: admin
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .unwrap_or_else(|_| "?".into()),
        operator,
        dask_kubernetes,
        kopf,
        rustc: command_output(Path::new("rustc"), &["--version"]).unwrap_or_else(|| "?".into()),
    }
}

const RESULTS_HEADER: &str = "# Benchmark results\n\n\
Written by `make bench` (`benches/daskjobs.rs`): dask-operator and dask-kubernetes' kopf operator side by \
side on the local cluster. `results.json` has the same figures; `results.svg` is the plot.\n\n";

fn write_outputs(settings: &Settings, results: &Results) -> Res<()> {
    if let Some(out) = &settings.out {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(results)? + "\n",
        )?;
        std::fs::write(out.join("results.svg"), support::plot::svg(results)?)?;
        let body = report::markdown(results, Some("results.svg"));
        std::fs::write(out.join("RESULTS.md"), format!("{RESULTS_HEADER}{body}"))?;
        eprintln!(
            "wrote {}/RESULTS.md, results.json and results.svg",
            out.display()
        );
    }
    if let Some(readme) = &settings.readme {
        let base = readme.parent().unwrap_or(Path::new("."));
        let plot = settings.out.as_ref().map(|out| {
            let svg = out.join("results.svg");
            let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            abs(&svg)
                .strip_prefix(abs(base))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| svg.display().to_string())
        });
        let text = std::fs::read_to_string(readme)?;
        let new =
            report::replace_between_markers(&text, &report::markdown(results, plot.as_deref()))
                .ok_or_else(|| {
                    format!(
                        "{}: no {} … {} markers",
                        readme.display(),
                        report::README_BEGIN,
                        report::README_END
                    )
                })?;
        std::fs::write(readme, new)?;
        eprintln!("updated {}", readme.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match Settings::from(|k| std::env::var(k).ok(), &args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(settings).await {
        eprintln!("bench: {e}");
        std::process::exit(2);
    }
}

async fn run(settings: Settings) -> Res<()> {
    let pid = std::process::id();
    let work = std::env::temp_dir().join(format!("dask-bench-{pid}"));
    std::fs::create_dir_all(&work)?;
    let paths = Paths {
        work: work.clone(),
        operator_bin: std::env::var_os("DASK_OPERATOR_BIN").map(PathBuf::from),
        kopf_bin: std::env::var_os("BENCH_KOPF").map(PathBuf::from),
    };
    if settings.operators.contains(&Runner::Ours) && paths.operator_bin.is_none() {
        return Err("DASK_OPERATOR_BIN: our operator binary (make bench sets it)".into());
    }
    if settings.operators.contains(&Runner::Kopf) && paths.kopf_bin.is_none() {
        return Err("BENCH_KOPF: the kopf script of the venv of tests/conformance/venv.sh (make bench sets it)".into());
    }
    let admin = client_from(&cluster_dir().join("kubeconfig")).await?;
    install_crds(&admin).await?;
    apply_identities(&admin).await?;
    let template: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(
        root().join("tests/fixtures/simplejob.yaml"),
    )?)?;
    let bench = Bench {
        workers: support::config::workers_per_job(&template),
        template,
        settings: settings.clone(),
        admin: admin.clone(),
        paths,
        pid,
    };
    eprintln!("bench: logs and credentials in {}", work.display());

    let mut results = Results {
        environment: environment(&admin, &bench.paths).await,
        timeout_seconds: settings.timeout_seconds,
        stall_seconds: settings.stall_seconds,
        runs: Vec::new(),
        steady: Vec::new(),
    };
    for &jobs in &settings.sizes {
        for &runner in &settings.operators {
            results.runs.push(bench.size_run(runner, jobs).await);
        }
        if settings.raw {
            results.runs.push(bench.size_run(Runner::Raw, jobs).await);
        }
    }
    if settings.steady_jobs() > 0 {
        for &runner in &settings.operators {
            results.steady.push(bench.steady_run(runner).await);
        }
    }
    delete_identities(&admin).await;
    for f in ["kopf.kubeconfig", "raw.kubeconfig"] {
        let _ = std::fs::remove_file(work.join(f));
    }

    println!("{}", report::markdown(&results, None));
    write_outputs(&settings, &results)?;
    if settings.check {
        let failures = report::check_failures(&results);
        if !failures.is_empty() {
            for f in &failures {
                eprintln!("bench check failed: {f}");
            }
            eprintln!("operator logs: {}", work.display());
            std::process::exit(1);
        }
        eprintln!("bench check passed");
    }
    Ok(())
}
