//! `make bench`: N DaskJobs applied at once against the local cluster (default 500).
//!
//! Runs the release operator binary as its own process, with its own identity (user `dask-operator`,
//! `.cluster/operator.kubeconfig`, the ClusterRole of `deploy/rbac.yaml`), watching one fresh
//! namespace, and prints:
//! - the wall time from the first create until every job is `ClusterCreated` (and until every
//!   DaskCluster is `Running` and every worker Deployment exists),
//! - the operator's peak RSS (`VmHWM` of its process),
//! - the API requests it made, from the API server's priority-and-fairness metrics for its user
//!   (`apiserver_flowcontrol_dispatched_requests_total{flow_schema="dask-operator"}`).
//!
//! Usage: `cargo bench --bench daskjobs -- [JOBS]`; `DASK_OPERATOR_BIN` names the operator binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dask_operator::crd::{DaskCluster, DaskJob};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};

const WORKERS_PER_JOB: usize = 2;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn admin() -> Client {
    let kubeconfig = Kubeconfig::read_from(root().join(".cluster/kubeconfig"))
        .expect("run make cluster-up first");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Requests the API server dispatched for the operator's user so far.
async fn operator_requests(client: &Client) -> f64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client
        .request_text(request)
        .await
        .expect("read API server metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_flowcontrol_dispatched_requests_total{")
                && l.contains("flow_schema=\"dask-operator\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The operator process; killed when dropped, also when the bench panics.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (usize, usize)>,
{
    let start = Instant::now();
    loop {
        let (have, want) = done().await;
        if have >= want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}: {have}/{want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let binary = std::env::var("DASK_OPERATOR_BIN")
        .expect("DASK_OPERATOR_BIN: the operator binary (make bench sets it)");
    let client = admin().await;
    let ns = format!("bench-{}", std::process::id());

    // CRDs (server-side: the DaskJob CRD is too large for a client-side apply annotation).
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in dask_operator::crd::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .expect("CRD Established")
            .unwrap();
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Its pods are never scheduled (PodNodeSelector: a selector no node matches): the bench measures
    // the operator, not a thousand Dask processes on the local node.
    let selector = (
        "scheduler.alpha.kubernetes.io/node-selector".to_string(),
        "dask-operator.dask.org/bench=no-node".to_string(),
    );
    let meta = ObjectMeta {
        name: Some(ns.clone()),
        annotations: Some([selector].into()),
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
        .await
        .unwrap();

    let requests_before = operator_requests(&client).await;
    let operator = Child(
        Command::new(&binary)
            .args(["run", "--namespace", &ns, "--http-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", root().join(".cluster/operator.kubeconfig"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the operator"),
    );
    let pid = operator.0.id();

    let template: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/simplejob.yaml")).unwrap(),
    )
    .unwrap();
    let api: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
    println!("applying {jobs} DaskJobs in namespace {ns} (operator pid {pid})");
    let start = Instant::now();
    futures::stream::iter(0..jobs)
        .map(|i| {
            let mut job: DaskJob = serde_json::from_value(template.clone()).unwrap();
            job.metadata.name = Some(format!("job-{i}"));
            job.metadata.namespace = Some(ns.clone());
            let api = api.clone();
            async move { api.create(&PostParams::default(), &job).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("create DaskJobs");
    let created = start.elapsed();

    let timeout = Duration::from_secs(1800);
    let cluster_created = wait_until("ClusterCreated", timeout, || async {
        let list = api.list(&ListParams::default()).await.unwrap();
        let n = list
            .items
            .iter()
            .filter(|j| {
                j.status.as_ref().and_then(|s| s.job_status.as_deref()) == Some("ClusterCreated")
            })
            .count();
        (n, jobs)
    })
    .await
        + created;
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
    let running = wait_until("DaskClusters Running", timeout, || async {
        let list = clusters.list(&ListParams::default()).await.unwrap();
        let n = list
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (n, jobs)
    })
    .await
        + cluster_created;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let workers = wait_until("worker Deployments", timeout, || async {
        let lp = ListParams::default().labels("dask.org/component=worker");
        (
            deployments.list_metadata(&lp).await.unwrap().items.len(),
            jobs * WORKERS_PER_JOB,
        )
    })
    .await
        + running;
    // Let the operator settle, then count: what a quiet operator adds after this is its resync.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let requests = operator_requests(&client).await - requests_before;
    let rss = peak_rss_kib(pid);
    drop(operator);

    println!("jobs:                                {jobs}");
    println!(
        "all created (client side):           {:.1} s",
        created.as_secs_f64()
    );
    println!(
        "all ClusterCreated:                  {:.1} s",
        cluster_created.as_secs_f64()
    );
    println!(
        "all DaskClusters Running:            {:.1} s",
        running.as_secs_f64()
    );
    println!(
        "all {:>5} worker Deployments exist:  {:.1} s",
        jobs * WORKERS_PER_JOB,
        workers.as_secs_f64()
    );
    println!(
        "operator peak RSS:                   {:.1} MiB",
        rss as f64 / 1024.0
    );
    println!(
        "operator API requests:               {requests} ({:.1} per job)",
        requests / jobs as f64
    );

    namespaces
        .delete(&ns, &DeleteParams::background())
        .await
        .ok();
}
