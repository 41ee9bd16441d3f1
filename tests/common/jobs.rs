//! DaskJob helpers for the tests that drive a runner pod's status the way a kubelet reports it (in
//! a namespace whose pods are never scheduled).

use std::time::Duration;

use dask_operator::crd::{DaskCluster, DaskJob, DaskJobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::eventually;

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
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "dask.org/cluster-name={cluster},dask.org/component=scheduler"
    ));
    let scheduler = eventually("the scheduler pod", TIMEOUT, || async {
        pods.list(&lp).await.ok()?.items.into_iter().next()
    })
    .await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let conditions: Vec<_> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
        .collect();
    let patch = json!({"status": {"phase": "Running", "conditions": conditions}});
    pods.patch_status(
        &scheduler.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .unwrap();
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
    eventually(
        &format!("DaskCluster {name} to be deleted"),
        TIMEOUT,
        || async { clusters.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}
