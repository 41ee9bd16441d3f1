//! A DaskJob's lifecycle controls against the local cluster (runner pods' status driven by the test
//! the way a kubelet reports it): validation, retries, deadlines, suspension, TTL, an existing
//! cluster, the result, and an operator killed at every step of a retried job.

mod common;

use std::collections::BTreeMap;

use common::jobs::{
    TIMEOUT, cluster_gone, report_cluster_ready, report_container, report_runner, wait_job,
};
use common::{
    Operator, create_from_yaml, events, eventually, fixture, gone, try_create_from_yaml,
    with_unscheduled_namespace,
};
use dask_operator::crd::{DaskCluster, DaskJob, DaskJobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// upstream's simplejob named `name`, with `spec_lines` (YAML at the level of `spec.job`) added.
fn job_yaml(name: &str, spec_lines: &str) -> String {
    fixture("simplejob.yaml")
        .replace("simple-job", name)
        .replacen(
            "spec:\n  job:\n",
            &format!("spec:\n{spec_lines}  job:\n"),
            1,
        )
}

/// The names and UIDs of the job runner pods in `ns`.
async fn runners(client: &Client, ns: &str) -> BTreeMap<String, String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("dask.org/component=job-runner"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.name_any(), p.uid().unwrap()))
        .collect()
}

async fn wait_pod(client: &Client, ns: &str, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(&format!("pod {name}"), TIMEOUT, || async {
        pods.get_opt(name).await.ok()?
    })
    .await
}

async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&DaskJobStatus) -> bool,
) -> DaskJobStatus {
    let jobs: Api<DaskJob> = Api::namespaced(client.clone(), ns);
    eventually(&format!("DaskJob {name}: {what}"), TIMEOUT, || async {
        let status = jobs.get(name).await.ok()?.status?;
        check(&status).then_some(status)
    })
    .await
}

fn condition<'a>(status: &'a DaskJobStatus, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)?;
    Some((c.status.as_str(), c.reason.as_str()))
}

#[tokio::test]
async fn bad_lifecycle_fields_are_rejected_naming_the_field() {
    with_unscheduled_namespace("job-invalid", |client, ns| async move {
        let without_cluster = |extra: &str| {
            let yaml = job_yaml("bad", extra);
            let cut = yaml.find("\n  cluster:\n").unwrap();
            yaml[..cut + 1].to_string()
        };
        let cases: Vec<(&str, String, &str)> = vec![
            ("negative backoffLimit", job_yaml("bad", "  backoffLimit: -1\n"), "spec.backoffLimit"),
            ("huge backoffLimit", job_yaml("bad", "  backoffLimit: 101\n"), "spec.backoffLimit"),
            ("zero deadline", job_yaml("bad", "  activeDeadlineSeconds: 0\n"), "spec.activeDeadlineSeconds"),
            ("zero startup deadline", job_yaml("bad", "  startupDeadlineSeconds: 0\n"), "spec.startupDeadlineSeconds"),
            ("negative TTL", job_yaml("bad", "  ttlSecondsAfterFinished: -1\n"), "spec.ttlSecondsAfterFinished"),
            ("suspend not a bool", job_yaml("bad", "  suspend: sometimes\n"), "spec.suspend"),
            ("both cluster and clusterRef", job_yaml("bad", "  clusterRef:\n    name: shared\n"), "exactly one of spec.cluster"),
            ("neither", without_cluster(""), "exactly one of spec.cluster"),
            ("clusterRef not a cluster name", without_cluster("  clusterRef:\n    name: Not_A_Name\n"), "spec.clusterRef.name"),
            ("clusterRef without name", without_cluster("  clusterRef: {}\n"), "spec.clusterRef.name"),
            (
                "cleanupPolicy with clusterRef",
                without_cluster("  clusterRef:\n    name: shared\n  cleanupPolicy:\n    cluster: KeepOnFailure\n"),
                "spec.cleanupPolicy",
            ),
            ("unknown cleanup", job_yaml("bad", "  cleanupPolicy:\n    cluster: Sometimes\n"), "spec.cleanupPolicy.cluster"),
            (
                "keepForSeconds with Delete",
                job_yaml("bad", "  cleanupPolicy:\n    keepForSeconds: 60\n"),
                "spec.cleanupPolicy.keepForSeconds",
            ),
            (
                "keepForSeconds too long",
                job_yaml("bad", "  cleanupPolicy:\n    cluster: KeepOnFailure\n    keepForSeconds: 604801\n"),
                "spec.cleanupPolicy.keepForSeconds",
            ),
        ];
        for (case, yaml, field) in cases {
            match try_create_from_yaml(&client, &ns, &yaml).await {
                Err(kube::Error::Api(status)) => {
                    assert_eq!(status.code, 422, "{case}: {status:?}");
                    assert!(status.message.contains(field), "{case}: {}", status.message);
                }
                other => panic!("{case}: expected a refusal naming {field}, got {other:?}"),
            }
        }
        // The valid combinations are accepted.
        let ok = job_yaml(
            "ok",
            "  backoffLimit: 2\n  activeDeadlineSeconds: 600\n  startupDeadlineSeconds: 300\n  \
             ttlSecondsAfterFinished: 0\n  suspend: true\n  cleanupPolicy:\n    cluster: KeepOnFailure\n    \
             keepForSeconds: 60\n",
        );
        try_create_from_yaml(&client, &ns, &ok).await.expect("a valid DaskJob");
        // Whether a job owns its cluster is decided once: clusterRef cannot be switched on or off.
        let switch = json!({"spec": {"cluster": null, "clusterRef": {"name": "shared"}}});
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        match jobs.patch("ok", &PatchParams::default(), &Patch::Merge(&switch)).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(status.message.contains("spec.clusterRef: cannot be added or removed"), "{}", status.message);
            }
            other => panic!("switching to clusterRef: expected a refusal, got {other:?}"),
        }
        let on_existing = without_cluster("  clusterRef:\n    name: shared\n").replace("name: bad\n", "name: ref\n");
        try_create_from_yaml(&client, &ns, &on_existing).await.expect("a DaskJob on an existing cluster");
    })
    .await;
}

#[tokio::test]
async fn a_failed_attempt_is_retried_on_the_same_cluster_until_the_backoff_limit() {
    with_unscheduled_namespace("job-retry", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &job_yaml("retry", "  backoffLimit: 1\n")).await;
        wait_job(&client, &ns, "retry", "ClusterCreated").await;
        wait_pod(&client, &ns, "retry-runner").await;
        let cluster_uid = Api::<DaskCluster>::namespaced(client.clone(), &ns)
            .get("retry")
            .await
            .unwrap()
            .uid();
        report_runner(&client, &ns, "retry-runner", "Running", 0).await;
        wait_job(&client, &ns, "retry", "Running").await;
        report_runner(&client, &ns, "retry-runner", "Failed", 0).await;

        let status = wait_status(&client, &ns, "retry", "attempt 2", |s| {
            s.attempts == Some(2)
        })
        .await;
        assert_eq!(
            status.job_runner_pod_name.as_deref(),
            Some("retry-runner-2")
        );
        assert_eq!(status.failed_attempts, Some(1));
        assert_eq!(
            status.job_status.as_deref(),
            Some("Running"),
            "still running: retrying"
        );
        wait_pod(&client, &ns, "retry-runner-2").await;
        let same = Api::<DaskCluster>::namespaced(client.clone(), &ns)
            .get("retry")
            .await
            .unwrap();
        assert_eq!(same.uid(), cluster_uid, "the cluster is reused");
        events(&client, &ns, "retry", "AttemptFailed").await;
        events(&client, &ns, "retry", "Retrying").await;

        report_runner(&client, &ns, "retry-runner-2", "Failed", 0).await;
        let status = wait_job(&client, &ns, "retry", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            (status.attempts, status.failed_attempts),
            (Some(2), Some(2))
        );
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .contains("retry-runner-2 failed")
        );
        assert_eq!(
            condition(&status, "Failed"),
            Some(("True", "BackoffLimitExceeded"))
        );
        let warning = events(&client, &ns, "retry", "BackoffLimitExceeded").await;
        assert_eq!(warning[0].type_.as_deref(), Some("Warning"));
        cluster_gone(&client, &ns, "retry").await;
        // Both attempts' pods are kept, for their logs.
        let pods = runners(&client, &ns).await;
        assert_eq!(
            pods.keys().collect::<Vec<_>>(),
            ["retry-runner", "retry-runner-2"]
        );
    })
    .await;
}

#[tokio::test]
async fn an_operator_killed_at_every_step_of_a_retried_job_keeps_its_invariants() {
    with_unscheduled_namespace("job-kill", |client, ns| async move {
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        // Every runner pod ever seen keeps its UID: no attempt gets a second pod.
        let mut check = |pods: BTreeMap<String, String>| {
            for (name, uid) in pods {
                let first = seen.entry(name.clone()).or_insert(uid.clone());
                assert_eq!(*first, uid, "runner {name} was created twice");
            }
        };

        let operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &job_yaml("kill", "  backoffLimit: 2\n")).await;
        wait_job(&client, &ns, "kill", "ClusterCreated").await;
        wait_pod(&client, &ns, "kill-runner").await;
        operator.stop().await;
        check(runners(&client, &ns).await);

        // Killed while attempt 1 ran and failed: on restart attempt 2 starts, once.
        report_runner(&client, &ns, "kill-runner", "Running", 0).await;
        report_runner(&client, &ns, "kill-runner", "Failed", 0).await;
        let operator = Operator::start(&client, &ns).await;
        wait_pod(&client, &ns, "kill-runner-2").await;
        operator.stop().await;
        check(runners(&client, &ns).await);

        // Killed right after writing attempt 3 and before creating its pod (the status as that
        // write leaves it): on restart exactly that pod is created, attempt 2 is not redone.
        report_runner(&client, &ns, "kill-runner-2", "Failed", 0).await;
        let patch = json!({"status": {
            "attempts": 3, "failedAttempts": 2, "jobRunnerPodName": "kill-runner-3", "runnerUid": null,
        }});
        jobs.patch_status("kill", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let operator = Operator::start(&client, &ns).await;
        wait_pod(&client, &ns, "kill-runner-3").await;
        let status = wait_status(&client, &ns, "kill", "runner 3 recorded", |s| s.runner_uid.is_some()).await;
        assert_eq!((status.attempts, status.failed_attempts), (Some(3), Some(2)));
        check(runners(&client, &ns).await);

        // Killed between the terminal write and the clean-up: the restarted operator finishes it.
        report_runner(&client, &ns, "kill-runner-3", "Running", 0).await;
        wait_job(&client, &ns, "kill", "Running").await;
        operator.stop().await;
        report_runner(&client, &ns, "kill-runner-3", "Succeeded", 0).await;
        let _operator = Operator::start(&client, &ns).await;
        let status = wait_job(&client, &ns, "kill", "Successful").await;
        assert_eq!(status.job_runner_pod_name.as_deref(), Some("kill-runner-3"));
        assert_eq!((status.attempts, status.failed_attempts), (Some(3), Some(2)));
        cluster_gone(&client, &ns, "kill").await;
        let pods = runners(&client, &ns).await;
        assert_eq!(pods.len(), 3, "one pod per attempt: {pods:?}");
        check(pods);
        // The terminal status stays terminal.
        let again = jobs.get("kill").await.unwrap().status.unwrap();
        assert_eq!(again.job_status.as_deref(), Some("Successful"));
    })
    .await;
}

#[tokio::test]
async fn a_runner_deleted_by_hand_is_a_failed_attempt_and_is_retried() {
    with_unscheduled_namespace("job-lost", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(
            &client,
            &ns,
            &job_yaml(
                "lost",
                "  backoffLimit: 1
",
            ),
        )
        .await;
        wait_pod(&client, &ns, "lost-runner").await;
        report_runner(&client, &ns, "lost-runner", "Running", 0).await;
        wait_job(&client, &ns, "lost", "Running").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete("lost-runner", &now).await.unwrap();
        let status =
            wait_status(&client, &ns, "lost", "attempt 2", |s| s.attempts == Some(2)).await;
        assert_eq!(status.failed_attempts, Some(1));
        let failed = events(&client, &ns, "lost", "AttemptFailed").await;
        assert!(
            failed[0]
                .message
                .as_deref()
                .unwrap()
                .contains("was deleted before it finished")
        );
        wait_pod(&client, &ns, "lost-runner-2").await;
        // The second one deleted too: the job fails, never succeeds.
        wait_status(&client, &ns, "lost", "runner 2 recorded", |s| {
            s.runner_uid.is_some()
        })
        .await;
        pods.delete("lost-runner-2", &now).await.unwrap();
        let status = wait_job(&client, &ns, "lost", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("BackoffLimitExceeded"));
    })
    .await;
}

#[tokio::test]
async fn deadlines_end_the_job_with_the_cause() {
    with_unscheduled_namespace("job-deadline", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        // activeDeadlineSeconds: the running runner is stopped, never retried.
        create_from_yaml(
            &client,
            &ns,
            &job_yaml("slow", "  activeDeadlineSeconds: 3\n  backoffLimit: 5\n"),
        )
        .await;
        wait_pod(&client, &ns, "slow-runner").await;
        report_runner(&client, &ns, "slow-runner", "Running", 0).await;
        let status = wait_job(&client, &ns, "slow", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .contains("activeDeadlineSeconds (3s)")
        );
        assert_eq!(status.attempts, Some(1), "not retried");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        eventually("the runner stopped", TIMEOUT, || async {
            (pods
                .get("slow-runner")
                .await
                .ok()?
                .spec?
                .active_deadline_seconds
                == Some(1))
            .then_some(())
        })
        .await;
        cluster_gone(&client, &ns, "slow").await;
        events(&client, &ns, "slow", "DeadlineExceeded").await;

        // startupDeadlineSeconds: the message names what kept the runner from starting.
        create_from_yaml(
            &client,
            &ns,
            &job_yaml("stuck", "  startupDeadlineSeconds: 3\n"),
        )
        .await;
        wait_pod(&client, &ns, "stuck-runner").await;
        let waiting = json!({"waiting": {"reason": "ErrImageNeverPull",
            "message": "Container image \"nope:1\" is not present with pull policy of Never"}});
        report_container(&client, &ns, "stuck-runner", "Pending", 0, waiting).await;
        let status = wait_job(&client, &ns, "stuck", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("StartupDeadlineExceeded"));
        let message = status.message.unwrap();
        assert!(message.contains("startupDeadlineSeconds (3s)"), "{message}");
        assert!(
            message.contains("container job cannot pull image"),
            "{message}"
        );
        assert!(message.contains("ErrImageNeverPull"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn a_suspended_job_runs_only_once_resumed_and_a_suspension_does_not_count_as_a_failure() {
    with_unscheduled_namespace("job-suspend", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        create_from_yaml(
            &client,
            &ns,
            &job_yaml("queued", "  suspend: true\n  backoffLimit: 0\n"),
        )
        .await;
        let status = wait_status(&client, &ns, "queued", "Suspended", |s| {
            condition(s, "Suspended") == Some(("True", "Suspended"))
        })
        .await;
        assert_eq!(status.job_status.as_deref(), Some("JobCreated"));
        // The operator has decided on the suspended job: nothing exists for it.
        assert!(runners(&client, &ns).await.is_empty());
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        assert!(clusters.get_opt("queued").await.unwrap().is_none());
        events(&client, &ns, "queued", "Suspended").await;

        let resume = |suspend: bool| json!({"spec": {"suspend": suspend}});
        jobs.patch(
            "queued",
            &PatchParams::default(),
            &Patch::Merge(resume(false)),
        )
        .await
        .unwrap();
        wait_job(&client, &ns, "queued", "ClusterCreated").await;
        wait_pod(&client, &ns, "queued-runner").await;
        report_runner(&client, &ns, "queued-runner", "Running", 0).await;
        wait_job(&client, &ns, "queued", "Running").await;
        events(&client, &ns, "queued", "Resumed").await;

        // Suspended while running: runner and cluster removed, the attempt not counted.
        jobs.patch(
            "queued",
            &PatchParams::default(),
            &Patch::Merge(resume(true)),
        )
        .await
        .unwrap();
        let status = wait_job(&client, &ns, "queued", "JobCreated").await;
        assert_eq!(
            (status.attempts, status.failed_attempts),
            (Some(1), Some(0))
        );
        cluster_gone(&client, &ns, "queued").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        gone(&pods, "queued-runner", TIMEOUT).await;

        // Resumed: a fresh attempt on a fresh cluster; backoffLimit 0 is not exceeded.
        jobs.patch(
            "queued",
            &PatchParams::default(),
            &Patch::Merge(resume(false)),
        )
        .await
        .unwrap();
        wait_pod(&client, &ns, "queued-runner-2").await;
        report_runner(&client, &ns, "queued-runner-2", "Succeeded", 0).await;
        let status = wait_job(&client, &ns, "queued", "Successful").await;
        assert_eq!(
            (status.attempts, status.failed_attempts),
            (Some(2), Some(0))
        );
        assert_eq!(condition(&status, "Suspended"), Some(("False", "Resumed")));
    })
    .await;
}

#[tokio::test]
async fn finished_jobs_go_after_their_ttl_and_a_failed_cluster_is_kept_for_its_time() {
    with_unscheduled_namespace("job-ttl", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        create_from_yaml(
            &client,
            &ns,
            &job_yaml("short", "  ttlSecondsAfterFinished: 2\n"),
        )
        .await;
        wait_pod(&client, &ns, "short-runner").await;
        report_runner(&client, &ns, "short-runner", "Succeeded", 0).await;
        wait_job(&client, &ns, "short", "Successful").await;
        gone(&jobs, "short", TIMEOUT).await;

        let keep = "  cleanupPolicy:\n    cluster: KeepOnFailure\n    keepForSeconds: 3\n";
        create_from_yaml(&client, &ns, &job_yaml("kept", keep)).await;
        wait_pod(&client, &ns, "kept-runner").await;
        report_runner(&client, &ns, "kept-runner", "Failed", 0).await;
        let status = wait_job(&client, &ns, "kept", "Failed").await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let cluster = clusters.get_opt("kept").await.unwrap();
        assert!(
            cluster.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
            "kept after the failure"
        );
        assert_eq!(
            condition(&status, "ClusterReady").map(|c| c.1),
            Some("JobFinished")
        );
        events(&client, &ns, "kept", "ClusterKept").await;
        cluster_gone(&client, &ns, "kept").await;
    })
    .await;
}

#[tokio::test]
async fn a_job_on_an_existing_cluster_waits_for_it_uses_it_and_leaves_it() {
    with_unscheduled_namespace("job-ref", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let on_simple = |name: &str| {
            let yaml = job_yaml(name, "  clusterRef:\n    name: simple\n");
            let cut = yaml.find("\n  cluster:\n").unwrap();
            yaml[..cut + 1].to_string()
        };
        create_from_yaml(&client, &ns, &on_simple("first")).await;
        let status = wait_status(&client, &ns, "first", "ClusterNotFound", |s| {
            condition(s, "ClusterReady") == Some(("False", "ClusterNotFound"))
        })
        .await;
        assert_eq!(status.job_status.as_deref(), Some("JobCreated"));
        let warning = events(&client, &ns, "first", "ClusterNotFound").await;
        assert!(
            warning[0]
                .message
                .as_deref()
                .unwrap()
                .contains("spec.clusterRef: DaskCluster simple does not exist")
        );

        // The cluster appears: the job runs on it once it is Running.
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        report_cluster_ready(&client, &ns, "simple").await;
        let runner = wait_pod(&client, &ns, "first-runner").await;
        let env = runner.spec.unwrap().containers[0].env.clone().unwrap();
        let address = env
            .iter()
            .find(|e| e.name == "DASK_SCHEDULER_ADDRESS")
            .unwrap();
        assert_eq!(
            address.value.clone().unwrap(),
            format!("tcp://simple-scheduler.{ns}.svc.cluster.local:8786")
        );
        let status = wait_job(&client, &ns, "first", "ClusterCreated").await;
        assert_eq!(status.cluster_name.as_deref(), Some("simple"));
        assert_eq!(
            status.scheduler_address,
            Some(format!("tcp://simple-scheduler.{ns}.svc:8786"))
        );
        assert_eq!(
            status.dashboard_url,
            Some(format!("http://simple-scheduler.{ns}.svc:8787"))
        );
        let before = clusters.get("simple").await.unwrap();
        report_runner(&client, &ns, "first-runner", "Failed", 0).await;
        wait_job(&client, &ns, "first", "Failed").await;

        // A second job serves itself from the same cluster, which is never modified or deleted.
        create_from_yaml(&client, &ns, &on_simple("second")).await;
        wait_pod(&client, &ns, "second-runner").await;
        report_runner(&client, &ns, "second-runner", "Succeeded", 0).await;
        wait_job(&client, &ns, "second", "Successful").await;
        let after = clusters.get("simple").await.unwrap();
        assert!(after.metadata.deletion_timestamp.is_none());
        assert_eq!(after.owner_references(), before.owner_references());
        assert_eq!(after.spec, before.spec);
        assert_eq!(after.metadata.generation, before.metadata.generation);
    })
    .await;
}

#[tokio::test]
async fn the_runners_termination_message_is_the_jobs_result() {
    with_unscheduled_namespace("job-result", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &job_yaml("answer", "")).await;
        wait_pod(&client, &ns, "answer-runner").await;
        let done = json!({"terminated": {"exitCode": 0, "message": "{\"mean\": 1.0001}"}});
        report_container(&client, &ns, "answer-runner", "Succeeded", 0, done).await;
        let status = wait_job(&client, &ns, "answer", "Successful").await;
        let result: serde_json::Value =
            serde_json::from_str(status.result.as_deref().unwrap()).unwrap();
        assert_eq!(result, json!({"mean": 1.0001}));
        assert_eq!(
            condition(&status, "Complete"),
            Some(("True", "RunnerSucceeded"))
        );
        events(&client, &ns, "answer", "RunnerSucceeded").await;
    })
    .await;
}
