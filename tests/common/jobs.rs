//! DaskJob helpers for the tests that drive a runner pod's status the way a kubelet reports it (in
//! a namespace whose pods are never scheduled).

use std::time::Duration;

use dask_operator::crd::{DaskCluster, DaskJob, DaskJobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::{eventually, gone};

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn wait_job(client: &Client, ns: &str, name: &str, job_status: &str) -> DaskJobStatus {
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("DaskJob {name} jobStatus {job_status}"),
        TIMEOUT,
        || async {
            let status = jobs.get(name).await.ok()?.status?;
            (status.job_status.as_deref() == Some(job_status)).then_some(status)
        },
    )
    .await
}

/// Reports the job's scheduler pod Ready as a kubelet would, and waits for the runner pod (created at
/// once, or only then with `waitForScheduler`).
pub async fn report_scheduler_ready(client: &Client, ns: &str, job: &str) -> Pod {
    report_cluster_ready(client, ns, job).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let runner = format!("{job}-runner");
    eventually("the runner pod", TIMEOUT, || async {
        pods.get_opt(&runner).await.ok()?
    })
    .await
}

/// Reports the scheduler pod of DaskCluster `cluster` Ready as a kubelet would.
pub async fn report_cluster_ready(client: &Client, ns: &str, cluster: &str) {
    let selector = format!("dask.org/cluster-name={cluster},dask.org/component=scheduler");
    super::report_pods_ready(client, ns, &selector, 1).await
}

/// Reports the runner's phase (and container restarts) as a kubelet would.
pub async fn report_runner(client: &Client, ns: &str, pod: &str, phase: &str, restarts: i32) {
    let state = match phase {
        "Running" => json!({"running": {}}),
        "Succeeded" => json!({"terminated": {"exitCode": 0}}),
        "Failed" => json!({"terminated": {"exitCode": 1}}),
        _ => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    report_container(client, ns, pod, phase, restarts, state).await
}

/// Reports the runner's phase with its one container (`job`) in `state`, as a kubelet would.
pub async fn report_container(
    client: &Client,
    ns: &str,
    pod: &str,
    phase: &str,
    restarts: i32,
    state: Value,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let container = json!({
        "name": "job", "image": "dask-kubernetes:dev", "imageID": "", "ready": phase == "Running",
        "restartCount": restarts, "started": phase == "Running", "state": state,
    });
    let patch = json!({"status": {"phase": phase, "containerStatuses": [container]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

pub async fn cluster_gone(client: &Client, ns: &str, name: &str) {
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), ns);
    gone(&clusters, name, TIMEOUT).await;
}
