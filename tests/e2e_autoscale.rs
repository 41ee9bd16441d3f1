//! Autoscaling, graceful scale-down and idle clusters on the local node: real Dask pods, the operator
//! reaching each scheduler's HTTP API through the API server's service proxy (as it does from a
//! developer's host).

mod common;

use std::time::{Duration, Instant};

use common::{Operator, create_from_yaml, eventually, fixture, gone, with_namespace};
use dask_operator::crd::{DaskAutoscaler, DaskCluster, DaskWorkerGroup};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);
const IMAGE: &str = "ghcr.io/dask/dask:2026.8.0";

/// upstream's simplecluster named `name` with `workers` workers (one thread each) and `extra` spec lines.
fn cluster(name: &str, workers: i32, extra: &str) -> String {
    fixture("simplecluster.yaml")
        .replace("name: simple\n", &format!("name: {name}\n"))
        .replace(
            "dask.org/cluster-name: simple",
            &format!("dask.org/cluster-name: {name}"),
        )
        .replacen(
            "    replicas: 2\n",
            &format!("    replicas: {workers}\n"),
            1,
        )
        .replacen(
            "            - $(DASK_WORKER_NAME)\n",
            "            - $(DASK_WORKER_NAME)\n            - --nthreads\n            - \"1\"\n",
            1,
        )
        .replacen(
            "spec:\n  worker:\n",
            &format!("spec:\n{extra}  worker:\n"),
            1,
        )
}

/// Runs `script` in a pod with a Dask client and returns its log once it ended; panics if it failed.
async fn run_client(client: &Client, ns: &str, name: &str, script: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "client", "image": IMAGE, "imagePullPolicy": "Never", "args": ["python", "-c", script]
        }]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let phase = eventually(&format!("client pod {name} to end"), TIMEOUT, || async {
        let phase = pods.get(name).await.ok()?.status?.phase?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
    .await;
    let log = pods.logs(name, &LogParams::default()).await.unwrap();
    assert_eq!(phase, "Succeeded", "client {name}:\n{log}");
    log
}

/// The worker Deployments of `cluster`'s default group that are not being deleted.
async fn workers(client: &Client, ns: &str, cluster: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("dask.org/workergroup-name={cluster}-default"));
    Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .map(|d| d.metadata.name.unwrap())
        .collect()
}

async fn warnings(client: &Client, ns: &str, reason: &str) -> Vec<Event> {
    let lp = ListParams::default().fields(&format!("reason={reason},type=Warning"));
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
        .items
}

/// A client that persists an array on the workers and publishes it, so a scale-down that lost a
/// worker's data would lose keys.
fn persist(address: &str, workers: usize) -> String {
    format!(
        "import dask.array as da\nfrom distributed import Client\n\
         c = Client('{address}', timeout=60)\nc.wait_for_workers({workers}, timeout=120)\n\
         x = da.ones((1000, 1000), chunks=(100, 100)).persist()\n\
         c.publish_dataset(kept=x)\nprint('persisted', len(c.who_has(x)))"
    )
}

fn check_kept(address: &str) -> String {
    format!(
        "from distributed import Client\nc = Client('{address}', timeout=60)\n\
         print('kept', float(c.get_dataset('kept').sum().compute()))"
    )
}

#[tokio::test]
async fn a_burst_scales_up_to_maximum_and_idle_scales_down_to_minimum_losing_no_key() {
    with_namespace("e2e-adapt", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &cluster("auto", 1, "")).await;
        let address = format!("tcp://auto-scheduler.{ns}.svc.cluster.local:8786");
        run_client(&client, &ns, "persist", &persist(&address, 1)).await;
        // The autoscaler comes after the persist (whose 100 tasks of unknown duration would raise the
        // target on their own), and the burst only once it has settled on 1 worker: the scale-up
        // timed below is the burst's.
        let autoscaler = "apiVersion: kubernetes.dask.org/v1\nkind: DaskAutoscaler\nmetadata:\n  name: auto\n\
                          spec:\n  cluster: auto\n  minimum: 1\n  maximum: 3\n";
        create_from_yaml(&client, &ns, autoscaler).await;
        let autoscalers: Api<DaskAutoscaler> = Api::namespaced(client.clone(), &ns);
        eventually("the autoscaler to settle on 1 worker", TIMEOUT, || async {
            let status = autoscalers.get("auto").await.ok()?.status?;
            (status.target == Some(1)).then_some(())
        })
        .await;
        assert_eq!(workers(&client, &ns, "auto").await.len(), 1);

        // A burst: 60 tasks of 3 s each, far more than 3 workers can do in the target duration.
        let burst = format!(
            "import time\nfrom distributed import Client\nc = Client('{address}', timeout=60)\n\
             fs = c.map(lambda i: time.sleep(3) or i, range(60), pure=False)\n\
             print('burst', sum(c.gather(fs)))"
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let started = Instant::now();
        let burst_pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "burst"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "client", "image": IMAGE, "imagePullPolicy": "Never", "args": ["python", "-c", burst]
            }]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &burst_pod).await.unwrap();
        eventually("3 workers (the maximum)", TIMEOUT, || async {
            (workers(&client, &ns, "auto").await.len() == 3).then_some(())
        })
        .await;
        let to_maximum = started.elapsed();
        let phase = eventually("the burst to end", TIMEOUT, || async {
            let phase = pods.get("burst").await.ok()?.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        })
        .await;
        let log = pods.logs("burst", &LogParams::default()).await.unwrap();
        assert_eq!(phase, "Succeeded", "{log}");
        assert!(log.contains(&format!("burst {}", (0..60).sum::<i32>())), "{log}");

        // Idle: back to the minimum after the stabilization window, keeping every key.
        let idle = Instant::now();
        eventually("1 worker (the minimum)", TIMEOUT, || async {
            (workers(&client, &ns, "auto").await.len() == 1).then_some(())
        })
        .await;
        let to_minimum = idle.elapsed();
        let log = run_client(&client, &ns, "check", &check_kept(&address)).await;
        assert!(log.contains("kept 1000000.0"), "{log}");
        assert!(warnings(&client, &ns, "ScaleDownWithoutScheduler").await.is_empty());
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        assert_eq!(groups.get("auto-default").await.unwrap().spec.worker.replicas, 1);
        println!(
            "autoscaling: burst to maximum (3) in {:.1}s, idle to minimum (1) in {:.1}s",
            to_maximum.as_secs_f64(),
            to_minimum.as_secs_f64()
        );
    })
    .await;
}

#[tokio::test]
async fn scaling_a_group_down_retires_the_workers_the_scheduler_names() {
    with_namespace("e2e-retire", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &cluster("retire", 3, "")).await;
        let address = format!("tcp://retire-scheduler.{ns}.svc.cluster.local:8786");
        let log = run_client(&client, &ns, "persist", &persist(&address, 3)).await;
        assert!(log.contains("persisted"), "{log}");

        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"spec": {"replicas": 1}});
        groups
            .patch_scale("retire-default", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let left = eventually("1 worker Deployment left", TIMEOUT, || async {
            let names = workers(&client, &ns, "retire").await;
            (names.len() == 1).then_some(names)
        })
        .await;
        // The scheduler chose, moved the data, and keeps exactly the worker that is left.
        let script = format!(
            "import time\nfrom distributed import Client\nc = Client('{address}', timeout=60)\n\
             deadline = time.time() + 120\n\
             while len(c.scheduler_info(n_workers=-1)['workers']) != 1 and time.time() < deadline: time.sleep(1)\n\
             print('names', sorted(w['name'] for w in c.scheduler_info(n_workers=-1)['workers'].values()))\n\
             print('kept', float(c.get_dataset('kept').sum().compute()))"
        );
        let log = run_client(&client, &ns, "check", &script).await;
        assert!(log.contains(&format!("names ['{}']", left[0])), "{log}");
        assert!(log.contains("kept 1000000.0"), "{log}");
        assert!(warnings(&client, &ns, "ScaleDownWithoutScheduler").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn an_idle_cluster_is_deleted_after_its_idle_timeout() {
    with_namespace("e2e-idle", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &cluster("idle", 0, "  idleTimeout: 10\n")).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        gone(&clusters, "idle", TIMEOUT).await;
        let lp = ListParams::default().fields("involvedObject.name=idle,reason=IdleTimeout");
        let events = Api::<Event>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await
            .unwrap()
            .items;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0]
                .message
                .as_deref()
                .unwrap()
                .contains("longer than idleTimeout (10s)")
        );
    })
    .await;
}
