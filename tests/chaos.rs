//! Chaos: the operator, as its own process, keeps its promises while it is killed at random, while
//! the network and the API server misbehave, while the control plane restarts, and it writes nothing
//! when it restarts with nothing to do.
//!
//! Each scenario runs in its own namespace where pods are never scheduled: this test plays the
//! kubelet for the job runners (each runner runs for a moment, then succeeds or fails as its job's
//! number says). It applies `CHAOS_JOBS` DaskJobs (default 12) and `CHAOS_CLUSTERS` DaskClusters
//! (default 2) that it scales up and down, with the operator behind the fault proxy
//! (`common::faultproxy`), and checks at the end:
//! - every job ends with the outcome its runner had;
//! - no runner name ever had two pod UIDs (the operator never made a second runner);
//! - no job ever left a terminal status;
//! - nothing is left of a finished job's cluster (DaskCluster, Deployments, Services);
//! - every DaskCluster's default group has exactly its replicas of worker Deployments.
//!
//! `CHAOS_SCENARIOS` picks scenarios (comma list of `kill`, `faults`, `control-plane`, `no-write`;
//! all by default). `make chaos` runs them at `CHAOS_JOBS=200`; `make test` at the default size.
//! The figures of each run are printed, and written as JSON to `$CHAOS_REPORT` when it is set.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faultproxy::{FaultProxy, Faults};
use common::{eventually, with_unscheduled_namespace};
use dask_operator::crd::{DaskCluster, DaskJob};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const SUCCESSFUL: &str = "Successful";
const FAILED: &str = "Failed";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// SIGKILL every 2–5 s, restarted at once.
    Kill,
    /// Resets, aborted answers, 429/500/503, timeouts, latency, cut watches, slow lists.
    Faults,
    /// etcd and kube-apiserver restarted mid-run.
    ControlPlane,
    /// A settled namespace, the operator restarted with slow first lists: no write at all.
    NoWrite,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Kill => "kill",
            Scenario::Faults => "faults",
            Scenario::ControlPlane => "control-plane",
            Scenario::NoWrite => "no-write",
        }
    }
}

fn scenarios() -> Vec<Scenario> {
    let all = [
        Scenario::Kill,
        Scenario::Faults,
        Scenario::ControlPlane,
        Scenario::NoWrite,
    ];
    match std::env::var("CHAOS_SCENARIOS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                *all.iter()
                    .find(|sc| sc.name() == s.trim())
                    .unwrap_or_else(|| panic!("unknown chaos scenario {s:?}"))
            })
            .collect(),
        _ => all.to_vec(),
    }
}

/// The faults of the `faults` scenario: a share of everything a bad network and a loaded API
/// server do.
fn wire_faults() -> Faults {
    Faults {
        reset: 0.05,
        error: 0.08,
        abort: 0.03,
        timeout: 0.01,
        hang: Duration::from_secs(5),
        latency: (Duration::ZERO, Duration::from_millis(150)),
        watch_cut: Some((Duration::from_secs(2), Duration::from_secs(10))),
        slow_lists: slow_lists(),
    }
}

/// First lists that take a while, different per kind: the stores fill in a different order.
fn slow_lists() -> Vec<(String, Duration)> {
    [
        ("daskclusters", 2000),
        ("deployments", 1200),
        ("daskworkergroups", 300),
        ("pods", 800),
        ("services", 1500),
    ]
    .iter()
    .map(|(p, ms)| (p.to_string(), Duration::from_millis(*ms)))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// The operator as a process: started, killed, restarted.

struct OperatorProcess {
    child: Option<tokio::process::Child>,
    kubeconfig: PathBuf,
    log: PathBuf,
    namespace: String,
    port: u16,
    /// Processes started (the first one included).
    starts: u32,
    kills: u32,
}

/// The operator binary: `$DASK_OPERATOR_BIN` (`make chaos` passes the release build), else the one
/// cargo built for this test.
fn operator_binary() -> PathBuf {
    std::env::var_os("DASK_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dask-operator")))
}

impl OperatorProcess {
    fn new(proxy: &FaultProxy, namespace: &str) -> OperatorProcess {
        let dir = std::env::temp_dir().join(format!("dask-operator-chaos-{namespace}"));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, proxy.kubeconfig(namespace)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OperatorProcess {
            child: None,
            kubeconfig,
            log: dir.join("operator.log"),
            namespace: namespace.to_string(),
            port,
            starts: 0,
            kills: 0,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = tokio::process::Command::new(operator_binary())
            // Its CRDs are the ones this test installed; --upgrade-crds makes sure of it when another
            // build's test replaced them meanwhile.
            .args([
                "run",
                "--upgrade-crds",
                "--namespaces",
                &self.namespace,
                "--http-addr",
            ])
            .arg(format!("127.0.0.1:{}", self.port))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the operator binary");
        self.child = Some(child);
        self.starts += 1;
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill(); // SIGKILL
            let _ = child.wait().await;
            self.kills += 1;
        }
    }

    /// Starts it again if it exited on its own (as a kubelet restarts a crashed container).
    fn revive(&mut self) -> bool {
        let exited = match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        };
        if exited {
            self.start();
        }
        exited
    }

    /// The operator's own counter of reconciles, per kind, from its /metrics.
    async fn reconciles(&self) -> Option<BTreeMap<String, f64>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        let counts = text
            .lines()
            .filter_map(|l| l.strip_prefix("dask_operator_reconciles_total{kind=\""))
            .filter_map(|l| {
                let (kind, value) = l.split_once("\"} ")?;
                Some((kind.to_string(), value.trim().parse().ok()?))
            })
            .collect();
        Some(counts)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// What the test plays and watches: the kubelet of the runners, and an observer of jobs and pods.

#[derive(Default)]
struct Observed {
    /// Runner name → the pod UIDs it ever had.
    runner_uids: BTreeMap<String, BTreeSet<String>>,
    /// Runner name → the phase this test reported last (Succeeded or Failed when it ended).
    runner_outcome: BTreeMap<String, &'static str>,
    /// Jobs that left a terminal status: `name: from → to`.
    regressions: Vec<String>,
    /// Job name → the last terminal status seen.
    terminal: BTreeMap<String, String>,
}

fn job_name(i: usize) -> String {
    format!("job-{i:03}")
}

/// Every fourth job fails.
fn runner_fails(runner: &str) -> bool {
    runner
        .trim_start_matches("job-")
        .trim_end_matches("-runner")
        .parse::<usize>()
        .is_ok_and(|i| i % 4 == 3)
}

/// Plays the kubelet for the runner pods of `ns`: each new runner is Running after a moment and ends
/// Succeeded or Failed (as [`runner_fails`] says) a moment later. Also records the runners' UIDs.
async fn kubelet_and_observer(client: Client, ns: String, observed: Arc<Mutex<Observed>>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
    let runners = watcher(
        pods.clone(),
        watcher::Config::default().labels("dask.org/component=job-runner"),
    )
    .default_backoff()
    .applied_objects();
    let jobs_watch = watcher(jobs, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let kubelet = runners.for_each(|pod| {
        let (pods, seen, observed) = (pods.clone(), seen.clone(), observed.clone());
        async move {
            let Ok(pod) = pod else { return };
            let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
            observed
                .lock()
                .unwrap()
                .runner_uids
                .entry(name.clone())
                .or_default()
                .insert(uid.clone());
            if !seen.lock().unwrap().insert(uid) {
                return;
            }
            tokio::spawn(run_runner(pods, name, observed));
        }
    });
    let observer = jobs_watch.for_each(|job| {
        let observed = observed.clone();
        async move {
            let Ok(job) = job else { return };
            let status = job
                .status
                .as_ref()
                .and_then(|s| s.job_status.clone())
                .unwrap_or_default();
            let mut o = observed.lock().unwrap();
            let name = job.name_any();
            match o.terminal.get(&name).cloned() {
                Some(before) if before != status => {
                    o.regressions.push(format!("{name}: {before} → {status:?}"))
                }
                _ => {}
            }
            if status == SUCCESSFUL || status == FAILED {
                o.terminal.insert(name, status);
            }
        }
    });
    futures::join!(kubelet, observer);
}

/// One runner's life: Running, then its outcome. Status writes are retried (the API server may be
/// restarting); a pod deleted meanwhile ends it.
async fn run_runner(pods: Api<Pod>, name: String, observed: Arc<Mutex<Observed>>) {
    let pause = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
    pause(300 + (name.len() as u64 * 37) % 700).await;
    let now = || k8s_openapi::jiff::Timestamp::now().to_string();
    let started = now();
    let running = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "job", "image": "dask-kubernetes:dev", "imageID": "", "ready": true, "restartCount": 0,
        "started": true, "state": {"running": {"startedAt": started}}}]}});
    if !report(&pods, &name, &running).await {
        return;
    }
    pause(500 + (name.len() as u64 * 53) % 1500).await;
    let (phase, code) = if runner_fails(&name) {
        ("Failed", 1)
    } else {
        ("Succeeded", 0)
    };
    let ended = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "job", "image": "dask-kubernetes:dev", "imageID": "", "ready": false, "restartCount": 0,
        "started": false, "state": {"terminated": {"exitCode": code, "startedAt": started, "finishedAt": now()}}}]}});
    if report(&pods, &name, &ended).await {
        observed
            .lock()
            .unwrap()
            .runner_outcome
            .insert(name, phase_static(phase));
    }
}

fn phase_static(phase: &str) -> &'static str {
    if phase == "Failed" {
        "Failed"
    } else {
        "Succeeded"
    }
}

/// Writes a runner's status, retrying for up to two minutes; false if the pod is gone.
async fn report(pods: &Api<Pod>, name: &str, patch: &Value) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(s)) if s.is_not_found() => return false,
            Err(e) if Instant::now() > deadline => panic!("report runner {name}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The workload.

fn job_manifest(name: &str) -> DaskJob {
    let mut value: Value =
        serde_saphyr::from_str(&common::fixture("simplejob.yaml")).expect("fixture is YAML");
    value["metadata"] = json!({"name": name});
    // A runner that ends Failed is one that is not restarted.
    value["spec"]["job"]["spec"]["restartPolicy"] = json!("Never");
    value["spec"]["cluster"]["spec"]["worker"]["replicas"] = json!(1);
    serde_json::from_value(value).expect("a DaskJob")
}

fn cluster_manifest(name: &str) -> DaskCluster {
    let mut value: Value =
        serde_saphyr::from_str(&common::fixture("simplecluster.yaml")).expect("fixture is YAML");
    value["metadata"] = json!({"name": name});
    value["spec"]["worker"]["replicas"] = json!(1);
    serde_json::from_value(value).expect("a DaskCluster")
}

/// Retries `what` for up to two minutes (the control plane may be restarting).
async fn retried<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn create_jobs(client: &Client, ns: &str, count: usize) {
    let api: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..count)
        .for_each_concurrent(8, |i| {
            let api = api.clone();
            async move {
                let job = job_manifest(&job_name(i));
                retried("create DaskJob", || async {
                    match api.create(&PostParams::default(), &job).await {
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        other => other.map(|_| ()),
                    }
                })
                .await
            }
        })
        .await;
}

async fn scale(client: &Client, ns: &str, cluster: &str, replicas: i32) {
    let api: Api<DaskCluster> = Api::namespaced(client.clone(), ns);
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    retried("scale DaskCluster", || {
        api.patch_scale(cluster, &params, &patch)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The run and its invariants.

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    scenario: String,
    jobs: usize,
    clusters: usize,
    scalings: u32,
    operator_starts: u32,
    kills: u32,
    control_plane_restarts: u32,
    faults: BTreeMap<String, u64>,
    faults_total: u64,
    requests: BTreeMap<String, u64>,
    seconds_to_all_terminal: f64,
    seconds_to_settled: f64,
    successful: usize,
    failed: usize,
    writes_on_restart: Option<usize>,
}

/// Runs one scenario in its own namespace and returns its report; panics if an invariant fails.
async fn run(scenario: Scenario, jobs: usize, clusters: usize) -> Report {
    let report = Arc::new(Mutex::new(Report {
        scenario: scenario.name().into(),
        jobs,
        clusters,
        ..Default::default()
    }));
    let out = report.clone();
    with_unscheduled_namespace(&format!("chaos-{}", scenario.name()), |client, ns| async move {
        common::install_crds(&client).await;
        let operator_client = operator_identity().await;
        let faults = match scenario {
            Scenario::Faults => wire_faults(),
            _ => Faults::default(),
        };
        let proxy = FaultProxy::start(operator_client, faults, 0x5eed ^ jobs as u64).await;
        let mut operator = OperatorProcess::new(&proxy, &ns);
        operator.start();
        let observed = Arc::new(Mutex::new(Observed::default()));
        let background = tokio::spawn(kubelet_and_observer(
            client.clone(),
            ns.clone(),
            observed.clone(),
        ));

        let cluster_names: Vec<String> = (0..clusters).map(|i| format!("c{i}")).collect();
        let cluster_api: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        for name in &cluster_names {
            let cluster = cluster_manifest(name);
            let params = PostParams::default();
            retried("create DaskCluster", || cluster_api.create(&params, &cluster)).await;
        }
        let started = Instant::now();
        create_jobs(&client, &ns, jobs).await;

        // The chaos, until every job is terminal: kills, scaling, a control-plane restart.
        let job_api: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        let mut replicas: HashMap<String, i32> =
            cluster_names.iter().map(|c| (c.clone(), 1)).collect();
        let deadline = started + Duration::from_secs(120 + jobs as u64 * 2);
        let mut next_kill = Instant::now() + Duration::from_millis(2000);
        let mut step = 0u64;
        let mut control_plane_restarted = false;
        loop {
            let terminal = observed.lock().unwrap().terminal.len();
            if terminal == jobs {
                break;
            }
            if Instant::now() > deadline {
                let missing = missing_jobs(&job_api, jobs).await;
                panic!(
                    "[{}] {terminal} of {jobs} jobs terminal after {:?}; not terminal: {missing:?}\n\
                     operator log:\n{}",
                    scenario.name(),
                    started.elapsed(),
                    operator.log_tail()
                );
            }
            step += 1;
            if scenario == Scenario::Kill && Instant::now() >= next_kill {
                operator.kill().await;
                operator.start();
                next_kill = Instant::now() + Duration::from_millis(2000 + (step * 7919) % 3000);
            }
            if scenario == Scenario::ControlPlane && !control_plane_restarted && terminal * 3 >= jobs
            {
                restart_control_plane();
                control_plane_restarted = true;
                report.lock().unwrap().control_plane_restarts += 1;
            }
            if !cluster_names.is_empty() && step.is_multiple_of(10) {
                let name = &cluster_names[(step as usize / 10) % cluster_names.len()];
                let want = ((step / 10) % 4) as i32;
                scale(&client, &ns, name, want).await;
                replicas.insert(name.clone(), want);
                report.lock().unwrap().scalings += 1;
            }
            operator.revive();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let all_terminal = started.elapsed();
        let kills = operator.kills;

        // Calm: no more kills or faults; the operator converges.
        proxy.set_faults(Faults::default());
        operator.revive();
        check_settled(&client, &ns, jobs, &replicas, &observed, &operator, scenario).await;
        let settled = started.elapsed();

        let mut writes_on_restart = None;
        if scenario == Scenario::NoWrite {
            writes_on_restart = Some(restart_without_writes(&client, &ns, &proxy, &mut operator, jobs, clusters).await);
        }

        operator.kill().await;
        background.abort();
        let o = observed.lock().unwrap();
        let mut r = report.lock().unwrap();
        r.operator_starts = operator.starts;
        r.kills = kills;
        r.seconds_to_all_terminal = all_terminal.as_secs_f64();
        r.seconds_to_settled = settled.as_secs_f64();
        r.successful = o.terminal.values().filter(|s| *s == SUCCESSFUL).count();
        r.failed = o.terminal.values().filter(|s| *s == FAILED).count();
        r.writes_on_restart = writes_on_restart;
        let stats = proxy.stats.snapshot();
        r.faults_total = proxy.stats.faults();
        for (k, v) in stats {
            if ["get", "list", "watch", "create", "patch", "update", "delete"].contains(&k.as_str()) {
                r.requests.insert(k, v);
            } else {
                r.faults.insert(k, v);
            }
        }
    })
    .await;
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

async fn missing_jobs(api: &Api<DaskJob>, jobs: usize) -> Vec<String> {
    let list = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let _ = jobs;
    list.iter()
        .filter(|j| {
            let s = j.status.as_ref().and_then(|s| s.job_status.as_deref());
            s != Some(SUCCESSFUL) && s != Some(FAILED)
        })
        .map(|j| {
            format!(
                "{}={:?}",
                j.name_any(),
                j.status.as_ref().and_then(|s| s.job_status.clone())
            )
        })
        .collect()
}

/// The invariants, once the chaos has stopped: waits (with a deadline) for the operator and the
/// garbage collector to converge, then asserts.
async fn check_settled(
    client: &Client,
    ns: &str,
    jobs: usize,
    replicas: &HashMap<String, i32>,
    observed: &Arc<Mutex<Observed>>,
    operator: &OperatorProcess,
    scenario: Scenario,
) {
    let timeout = Duration::from_secs(120 + jobs as u64);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), ns);
    let job_api: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    let name = scenario.name();

    // Outcomes and runners.
    {
        let o = observed.lock().unwrap();
        for i in 0..jobs {
            let job = job_name(i);
            let runner = format!("{job}-runner");
            let uids = o.runner_uids.get(&runner).map(|u| u.len()).unwrap_or(0);
            assert_eq!(uids, 1, "[{name}] runner {runner} had {uids} pod UIDs");
            let outcome = o.runner_outcome.get(&runner).copied();
            let expected = match outcome {
                Some("Succeeded") => SUCCESSFUL,
                Some(_) => FAILED,
                None => panic!("[{name}] runner {runner} never ended"),
            };
            assert_eq!(
                o.terminal.get(&job).map(String::as_str),
                Some(expected),
                "[{name}] job {job} must end as its runner did ({outcome:?})"
            );
        }
        assert!(
            o.regressions.is_empty(),
            "[{name}] jobs left a terminal status: {:?}",
            o.regressions
        );
    }
    // The jobs' status agrees with what the observer saw (the final word is the API server's).
    let listed = job_api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), jobs);

    // Nothing left of a finished job's cluster, and every cluster has its replicas of workers.
    eventually(
        &format!("[{name}] finished jobs' clusters gone and every cluster at its replicas"),
        timeout,
        || async {
            let deps = deployments.list(&ListParams::default()).await.ok()?.items;
            let svcs = services.list(&ListParams::default()).await.ok()?.items;
            let cls = clusters.list(&ListParams::default()).await.ok()?.items;
            let job_owned = |labels: &BTreeMap<String, String>| {
                labels
                    .get("dask.org/cluster-name")
                    .is_some_and(|c| c.starts_with("job-"))
            };
            if cls.iter().any(|c| c.name_any().starts_with("job-"))
                || deps.iter().any(|d| job_owned(d.labels()))
                || svcs.iter().any(|s| job_owned(s.labels()))
            {
                return None;
            }
            for (cluster, want) in replicas {
                let group = format!("{cluster}-default");
                let workers = deps
                    .iter()
                    .filter(|d| {
                        d.labels().get("dask.org/workergroup-name") == Some(&group)
                            && d.metadata.deletion_timestamp.is_none()
                    })
                    .count();
                if workers != *want as usize {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let _ = operator;
}

/// Restarts the operator on the settled namespace, with slow first lists, and returns how many
/// writes it made; asserts there were none once it has reconciled every object.
async fn restart_without_writes(
    client: &Client,
    ns: &str,
    proxy: &FaultProxy,
    operator: &mut OperatorProcess,
    jobs: usize,
    clusters: usize,
) -> usize {
    let _ = client;
    // Let the running operator finish what it does (its own writes settle the namespace), then
    // forget them.
    operator.kill().await;
    let before = resource_versions(client, ns).await;
    proxy.stats.take_writes();
    proxy.set_faults(Faults {
        slow_lists: slow_lists(),
        ..Default::default()
    });
    operator.start();
    eventually(
        "the restarted operator reconciled every object",
        Duration::from_secs(60 + jobs as u64),
        || async {
            let counts = operator.reconciles().await?;
            let at_least =
                |kind: &str, n: usize| counts.get(kind).copied().unwrap_or(0.0) >= n as f64;
            (at_least("DaskJob", jobs)
                && at_least("DaskCluster", clusters)
                && at_least("DaskWorkerGroup", clusters))
            .then_some(())
        },
    )
    .await;
    let writes = proxy.stats.take_writes();
    let after = resource_versions(client, ns).await;
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        writes.is_empty() && changed.is_empty(),
        "[no-write] a restart with nothing to do wrote {} times: {writes:?}; objects changed: {changed:?}\n\
         operator log:\n{}",
        writes.len(),
        operator.log_tail()
    );
    writes.len()
}

/// `kind/name` → resourceVersion of every object of the namespace the operator reads or writes.
async fn resource_versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    use dask_operator::crd::DaskWorkerGroup;
    let mut out = BTreeMap::new();
    let lp = ListParams::default();
    macro_rules! collect {
        ($t:ty, $kind:expr) => {
            for o in Api::<$t>::namespaced(client.clone(), ns)
                .list(&lp)
                .await
                .unwrap()
                .items
            {
                out.insert(
                    format!("{}/{}", $kind, o.name_any()),
                    o.resource_version().unwrap_or_default(),
                );
            }
        };
    }
    collect!(DaskCluster, "DaskCluster");
    collect!(DaskWorkerGroup, "DaskWorkerGroup");
    collect!(DaskJob, "DaskJob");
    collect!(Deployment, "Deployment");
    collect!(Service, "Service");
    out
}

/// A client with the operator's own identity (user `dask-operator`, `.cluster/operator.kubeconfig`),
/// bound by `make cluster-up` to the development RBAC (`deploy/rbac.yaml`): what the operator may do,
/// and no more.
async fn operator_identity() -> Client {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(".cluster/operator.kubeconfig");
    let kubeconfig =
        Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("operator kubeconfig is valid");
    Client::try_from(config).expect("operator client")
}

/// Stops etcd and kube-apiserver and starts them again (`hack/restart-control-plane.sh`).
fn restart_control_plane() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new(root.join("hack/restart-control-plane.sh"))
        .status()
        .expect("run hack/restart-control-plane.sh");
    assert!(status.success(), "hack/restart-control-plane.sh failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_keeps_its_promises_under_chaos() {
    let jobs = env_usize("CHAOS_JOBS", 12);
    let clusters = env_usize("CHAOS_CLUSTERS", 2);
    let mut reports = Vec::new();
    for scenario in scenarios() {
        let report = run(scenario, jobs, clusters).await;
        eprintln!(
            "chaos {}: {} jobs ({} successful, {} failed), {} clusters scaled {} times; {} operator \
             starts, {} kills, {} control-plane restarts; {} faults injected {:?}; requests {:?}; all \
             terminal after {:.1} s, settled after {:.1} s; writes on restart: {:?}",
            report.scenario,
            report.jobs,
            report.successful,
            report.failed,
            report.clusters,
            report.scalings,
            report.operator_starts,
            report.kills,
            report.control_plane_restarts,
            report.faults_total,
            report.faults,
            report.requests,
            report.seconds_to_all_terminal,
            report.seconds_to_settled,
            report.writes_on_restart,
        );
        reports.push(report);
    }
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        std::fs::write(&path, serde_json::to_string_pretty(&reports).unwrap())
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
}

#[test]
fn the_proxy_tells_verbs_apart() {
    use axum::http::Method;
    use common::faultproxy::verb;
    assert_eq!(verb(&Method::GET, "/api/v1/namespaces/a/pods", ""), "list");
    assert_eq!(
        verb(&Method::GET, "/api/v1/namespaces/a/pods", "watch=true&x=1"),
        "watch"
    );
    assert_eq!(verb(&Method::GET, "/api/v1/namespaces/a/pods/p", ""), "get");
    assert_eq!(
        verb(
            &Method::GET,
            "/apis/kubernetes.dask.org/v1/daskclusters",
            ""
        ),
        "list"
    );
    assert_eq!(
        verb(
            &Method::GET,
            "/apis/kubernetes.dask.org/v1/namespaces/a/daskclusters/c",
            ""
        ),
        "get"
    );
    assert_eq!(
        verb(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/d",
            ""
        ),
        "patch"
    );
}
