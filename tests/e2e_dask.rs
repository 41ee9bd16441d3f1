//! End to end on the local node: real Dask pods from the locally built image, driven by the operator.
//! Each test runs in its own namespace with its own operator.

mod common;

use std::time::Duration;

use common::{Operator, create_from_yaml, eventually, fixture, gone, kubectl, with_namespace};
use dask_operator::crd::{DaskCluster, DaskJob, DaskWorkerGroup};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Real pods start in seconds, but two cores shared with the rest of the suite make it slower.
const TIMEOUT: Duration = Duration::from_secs(240);
const IMAGE: &str = "ghcr.io/dask/dask:2026.8.0";

async fn job_status(client: &Client, ns: &str, name: &str, wanted: &[&str]) -> String {
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("DaskJob {name} to reach one of {wanted:?}"),
        TIMEOUT,
        || async {
            let status = jobs.get(name).await.ok()?.status?.job_status?;
            wanted.contains(&status.as_str()).then_some(status)
        },
    )
    .await
}

async fn logs(client: &Client, ns: &str, pod: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), ns)
        .logs(pod, &LogParams::default())
        .await
        .unwrap()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn scheduler_pod(client: &Client, ns: &str, cluster: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "dask.org/cluster-name={cluster},dask.org/component=scheduler"
    ));
    eventually("a Ready scheduler pod", TIMEOUT, || async {
        let list = pods.list(&lp).await.ok()?;
        list.items
            .into_iter()
            .find(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
    })
    .await
}

/// The number of workers the scheduler itself reports, asked inside its pod.
fn scheduler_workers(ns: &str, pod: &str) -> Option<usize> {
    let script = "from distributed import Client\n\
                  c = Client('tcp://127.0.0.1:8786', timeout=20)\n\
                  print(len(c.scheduler_info(n_workers=-1)['workers']))\n\
                  c.close()";
    let out = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".cluster/bin/kubectl"),
    )
    .arg("--kubeconfig")
    .arg(common::kubeconfig_path())
    .args(["exec", "-n", ns, pod, "--", "python", "-c", script])
    .output()
    .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()?
        .parse()
        .ok()
}

#[tokio::test]
async fn example_job_computes_the_mean_and_succeeds() {
    with_namespace("e2e-example", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let manifest = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/daskjob.yaml"
        ))
        .unwrap();
        create_from_yaml(&client, &ns, &manifest).await;
        let status = job_status(&client, &ns, "example", &["Successful", "Failed"]).await;
        let output = logs(&client, &ns, "example-runner").await;
        assert_eq!(status, "Successful", "runner output:\n{output}");
        let mean: f64 = output
            .trim()
            .lines()
            .last()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("a number: {output}"));
        assert!((mean - 1.0).abs() < 0.01, "mean of x + x.T is {mean}");
        // The same value handed back as JSON in status.result (the runner's termination message).
        let job = Api::<DaskJob>::namespaced(client.clone(), &ns)
            .get("example")
            .await
            .unwrap();
        let result = job.status.unwrap().result.expect("status.result");
        let result: serde_json::Value = serde_json::from_str(&result).unwrap();
        // Within a few ULPs: serde_json's default float parser is not always correctly rounded.
        let handed_back = result["mean"]
            .as_f64()
            .expect("status.result has a numeric mean");
        assert!(
            (handed_back - mean).abs() <= 4.0 * f64::EPSILON,
            "status.result {result}, log {mean}"
        );
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        gone(&clusters, "example", TIMEOUT).await;
    })
    .await;
}

#[tokio::test]
async fn a_job_whose_script_raises_ends_failed() {
    with_namespace("e2e-failed", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        // The example job, but its script raises once it has computed, and the runner does not restart.
        let manifest = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/daskjob.yaml"
        ))
        .unwrap();
        let manifest = manifest
            .replace("name: example\n", "name: raises\n")
            .replace(
                "dask.org/cluster-name: example",
                "dask.org/cluster-name: raises",
            )
            .replace(
                "mean = float(y.mean().compute())",
                "raise ValueError(f'failed on purpose after {y.mean().compute()}')",
            )
            .replacen(
                "    spec:\n      containers:",
                "    spec:\n      restartPolicy: Never\n      containers:",
                1,
            );
        assert!(
            manifest.contains("restartPolicy: Never") && manifest.contains("failed on purpose")
        );
        create_from_yaml(&client, &ns, &manifest).await;
        let status = job_status(&client, &ns, "raises", &["Successful", "Failed"]).await;
        let output = logs(&client, &ns, "raises-runner").await;
        assert_eq!(status, "Failed", "runner output:\n{output}");
        assert!(
            output.contains("ValueError: failed on purpose after"),
            "runner output:\n{output}"
        );
        let job = Api::<DaskJob>::namespaced(client.clone(), &ns)
            .get("raises")
            .await
            .unwrap();
        assert_eq!(job.status.unwrap().reason.as_deref(), Some("RunnerFailed"));
    })
    .await;
}

#[tokio::test]
async fn a_cluster_serves_clients_scales_and_replaces_its_scheduler() {
    with_namespace("e2e-cluster", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let scheduler = scheduler_pod(&client, &ns, "simple").await;

        // A pod connects through the Service's DNS name and computes.
        let address = format!("tcp://simple-scheduler.{ns}.svc.cluster.local:8786");
        let script = format!(
            "from distributed import Client\nc = Client('{address}', timeout=60)\nc.wait_for_workers(2, timeout=120)\nprint(c.submit(lambda x: x + 1, 10).result())"
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "client"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "client", "image": IMAGE, "imagePullPolicy": "Never", "args": ["python", "-c", script]
            }]}
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let phase = eventually("the client pod to finish", TIMEOUT, || async {
            let phase = pods.get("client").await.ok()?.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        })
        .await;
        let output = logs(&client, &ns, "client").await;
        assert_eq!(phase, "Succeeded", "client output:\n{output}");
        assert_eq!(output.trim().lines().last(), Some("11"));

        // Scaling the worker group changes what the scheduler reports.
        let name = scheduler.name_any();
        eventually("the scheduler to report 2 workers", TIMEOUT, || async { (scheduler_workers(&ns, &name)? == 2).then_some(()) }).await;
        kubectl(&["scale", "-n", &ns, "daskworkergroup", "simple-default", "--replicas=3"]);
        eventually("the scheduler to report 3 workers", TIMEOUT, || async { (scheduler_workers(&ns, &name)? == 3).then_some(()) }).await;
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        groups
            .patch("simple-default", &PatchParams::default(), &Patch::Merge(json!({"spec": {"worker": {"replicas": 1}}})))
            .await
            .unwrap();
        eventually("the scheduler to report 1 worker", TIMEOUT, || async { (scheduler_workers(&ns, &name)? == 1).then_some(()) }).await;

        // A deleted scheduler pod is replaced by a Ready one.
        pods.delete(&name, &DeleteParams::default()).await.unwrap();
        let replacement = eventually("a Ready replacement scheduler", TIMEOUT, || async {
            let lp = ListParams::default().labels("dask.org/cluster-name=simple,dask.org/component=scheduler");
            let list = pods.list(&lp).await.ok()?;
            list.items.into_iter().find(|p| p.uid() != scheduler.uid() && ready(p))
        })
        .await;
        assert_ne!(replacement.name_any(), name);
    })
    .await;
}

/// examples/daskjob.yaml named `name`, with one worker, `spec_lines` added at the level of `spec.job`,
/// the runner running `script` and not restarting (each failure is an attempt).
fn small_job(name: &str, spec_lines: &str, script: &str) -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/daskjob.yaml"
    ))
    .unwrap();
    let start = example.find("            - |\n").unwrap() + "            - |\n".len();
    let end = example.find("  cluster:\n").unwrap();
    let script: String = script
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    let yaml = format!("{}{script}{}", &example[..start], &example[end..])
        .replace("name: example\n", &format!("name: {name}\n"))
        .replace(
            "dask.org/cluster-name: example",
            &format!("dask.org/cluster-name: {name}"),
        )
        .replace("replicas: 2", "replicas: 1")
        .replacen(
            "spec:\n  job:\n",
            &format!("spec:\n{spec_lines}  job:\n"),
            1,
        )
        .replacen(
            "    spec:\n      containers:",
            "    spec:\n      restartPolicy: Never\n      containers:",
            1,
        );
    assert!(yaml.contains(&format!("name: {name}\n")) && yaml.contains("restartPolicy: Never"));
    yaml
}

async fn job(client: &Client, ns: &str, name: &str) -> DaskJob {
    Api::<DaskJob>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_failing_once_succeeds_on_its_second_attempt() {
    with_namespace("e2e-retry", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let script = "import os, sys\n\
                      from distributed import Client\n\
                      total = Client().submit(sum, [1, 2, 3]).result()\n\
                      if os.environ['HOSTNAME'].endswith('-runner'):\n    \
                          sys.exit(f'attempt 1 fails on purpose after computing {total}')\n\
                      print(total)";
        create_from_yaml(
            &client,
            &ns,
            &small_job("retry", "  backoffLimit: 1\n", script),
        )
        .await;
        let outcome = job_status(&client, &ns, "retry", &["Successful", "Failed"]).await;
        let status = job(&client, &ns, "retry").await.status.unwrap();
        assert_eq!(outcome, "Successful", "{status:?}");
        assert_eq!(
            status.job_runner_pod_name.as_deref(),
            Some("retry-runner-2")
        );
        assert_eq!(
            (status.attempts, status.failed_attempts),
            (Some(2), Some(1))
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let phase = |p: Pod| p.status.and_then(|s| s.phase);
        assert_eq!(
            phase(pods.get("retry-runner").await.unwrap()).as_deref(),
            Some("Failed")
        );
        assert_eq!(
            phase(pods.get("retry-runner-2").await.unwrap()).as_deref(),
            Some("Succeeded")
        );
        assert!(
            logs(&client, &ns, "retry-runner")
                .await
                .contains("fails on purpose after computing 6")
        );
        assert_eq!(
            logs(&client, &ns, "retry-runner-2")
                .await
                .trim()
                .lines()
                .last(),
            Some("6")
        );
    })
    .await;
}

#[tokio::test]
async fn deadlines_end_real_jobs_and_say_why() {
    with_namespace("e2e-deadline", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        // A runner that would run for ten minutes, under a 30 s wall-clock limit.
        let sleeper = small_job(
            "sleeper",
            "  activeDeadlineSeconds: 30\n",
            "import time\ntime.sleep(600)",
        );
        create_from_yaml(&client, &ns, &sleeper).await;
        // An image that does not exist (and is never pulled: nothing leaves the machine).
        let missing = small_job(
            "missing",
            "  startupDeadlineSeconds: 20\n",
            "print('never')",
        )
        .replacen(
            &format!("image: {IMAGE}"),
            "image: dask-operator.invalid/missing:1",
            1,
        )
        .replacen("imagePullPolicy: IfNotPresent", "imagePullPolicy: Never", 1);
        create_from_yaml(&client, &ns, &missing).await;

        assert_eq!(
            job_status(&client, &ns, "sleeper", &["Successful", "Failed"]).await,
            "Failed"
        );
        let status = job(&client, &ns, "sleeper").await.status.unwrap();
        assert_eq!(
            status.reason.as_deref(),
            Some("DeadlineExceeded"),
            "{status:?}"
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        eventually(
            "the sleeping runner to be ended by the kubelet",
            TIMEOUT,
            || async {
                let phase = pods.get("sleeper-runner").await.ok()?.status?.phase?;
                (phase == "Failed").then_some(())
            },
        )
        .await;

        assert_eq!(
            job_status(&client, &ns, "missing", &["Successful", "Failed"]).await,
            "Failed"
        );
        let status = job(&client, &ns, "missing").await.status.unwrap();
        assert_eq!(
            status.reason.as_deref(),
            Some("StartupDeadlineExceeded"),
            "{status:?}"
        );
        let message = status.message.unwrap();
        assert!(
            message.contains("dask-operator.invalid/missing:1"),
            "{message}"
        );
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        for name in ["sleeper", "missing"] {
            gone(&clusters, name, TIMEOUT).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_existing_cluster_serves_two_jobs_and_survives_them() {
    with_namespace("e2e-shared", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let script = "import json\n\
                      from distributed import Client\n\
                      value = Client().submit(lambda x: x + 1, 10).result()\n\
                      json.dump({'value': value}, open('/dev/termination-log', 'w'))";
        let on_simple = |name: &str| {
            let yaml = small_job(name, "  clusterRef:\n    name: simple\n", script);
            let cut = yaml.find("\n  cluster:\n").unwrap();
            yaml[..cut + 1].to_string()
        };
        create_from_yaml(&client, &ns, &on_simple("first")).await;
        create_from_yaml(&client, &ns, &on_simple("second")).await;
        for name in ["first", "second"] {
            let outcome = job_status(&client, &ns, name, &["Successful", "Failed"]).await;
            let status = job(&client, &ns, name).await.status.unwrap();
            assert_eq!(outcome, "Successful", "{name}: {status:?}");
            assert_eq!(status.result.as_deref(), Some("{\"value\": 11}"), "{name}");
            assert_eq!(status.cluster_name.as_deref(), Some("simple"));
        }
        // The cluster is still there, untouched, and still serves clients.
        let cluster = Api::<DaskCluster>::namespaced(client.clone(), &ns)
            .get("simple")
            .await
            .unwrap();
        assert!(cluster.metadata.deletion_timestamp.is_none());
        assert!(cluster.owner_references().is_empty());
        let scheduler = scheduler_pod(&client, &ns, "simple").await;
        let name = scheduler.name_any();
        eventually(
            "the shared cluster's scheduler to report its 2 workers",
            TIMEOUT,
            || async { (scheduler_workers(&ns, &name)? == 2).then_some(()) },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_suspended_job_runs_once_resumed_and_its_ttl_removes_it() {
    with_namespace("e2e-suspend", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let script = "from distributed import Client\nprint(Client().submit(sum, [1, 2]).result())";
        let yaml = small_job(
            "later",
            "  suspend: true\n  ttlSecondsAfterFinished: 5\n",
            script,
        );
        create_from_yaml(&client, &ns, &yaml).await;
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        eventually("the job to be Suspended", TIMEOUT, || async {
            let status = jobs.get("later").await.ok()?.status?;
            let suspended = status
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Suspended")?;
            (suspended.status == "True").then_some(())
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        assert!(
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "nothing runs"
        );

        jobs.patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
        let outcome = job_status(&client, &ns, "later", &["Successful", "Failed"]).await;
        assert_eq!(outcome, "Successful");
        gone(&jobs, "later", TIMEOUT).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        gone(&clusters, "later", TIMEOUT).await;
    })
    .await;
}
