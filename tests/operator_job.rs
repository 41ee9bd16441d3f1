//! DaskJob against the local cluster, with the runner pod's phase driven by the test the way a
//! kubelet reports it: upstream's simplejob and failedjob applied unchanged, the status progression,
//! the cluster deleted at the end, the restart limit, and an operator restarted mid-job.

mod common;

use std::time::Duration;

use common::jobs::{cluster_gone, report_runner, report_scheduler_ready, wait_job};
use common::{
    Operator, create_from_yaml, events, eventually, fixture, try_create_from_yaml,
    with_unscheduled_namespace,
};
use dask_operator::crd::{DaskCluster, DaskJob, DaskJobStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

fn status_keys(status: &DaskJobStatus) -> Vec<String> {
    let mut keys: Vec<String> = serde_json::to_value(status)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn simplejob_runs_to_successful_and_its_cluster_is_deleted() {
    with_unscheduled_namespace("job-ok", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let job = create_from_yaml(&client, &ns, &fixture("simplejob.yaml")).await;

        let status = wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        assert_eq!(status.cluster_name.as_deref(), Some("simple-job"));
        assert_eq!(
            status.job_runner_pod_name.as_deref(),
            Some("simple-job-runner")
        );
        assert!(status.start_time.is_none() && status.end_time.is_none());

        let cluster = Api::<DaskCluster>::namespaced(client.clone(), &ns)
            .get("simple-job")
            .await
            .unwrap();
        assert_eq!(cluster.owner_references()[0].uid, job.uid().unwrap());
        assert_eq!(
            cluster
                .labels()
                .get("dask.org/cluster-name")
                .map(String::as_str),
            Some("simple-job")
        );
        let runner = report_scheduler_ready(&client, &ns, "simple-job").await;
        assert_eq!(runner.owner_references()[0].uid, job.uid().unwrap());
        assert_eq!(
            runner
                .labels()
                .get("dask.org/component")
                .map(String::as_str),
            Some("job-runner")
        );
        assert_eq!(
            runner
                .annotations()
                .get("test-annotation")
                .map(String::as_str),
            Some("annotation-value")
        );
        let spec = runner.spec.unwrap();
        assert_eq!(
            spec.restart_policy.as_deref(),
            Some("OnFailure"),
            "upstream's schema default"
        );
        let env = spec.containers[0].env.clone().unwrap();
        assert_eq!(env.last().unwrap().name, "DASK_SCHEDULER_ADDRESS");
        assert_eq!(
            env.last().unwrap().value.as_deref(),
            Some(format!("tcp://simple-job-scheduler.{ns}.svc.cluster.local:8786").as_str())
        );

        report_runner(&client, &ns, "simple-job-runner", "Running", 0).await;
        let running = wait_job(&client, &ns, "simple-job", "Running").await;
        assert!(running.start_time.is_some());

        report_runner(&client, &ns, "simple-job-runner", "Succeeded", 0).await;
        let done = wait_job(&client, &ns, "simple-job", "Successful").await;
        assert_eq!(done.start_time, running.start_time, "startTime is kept");
        assert!(done.end_time.as_ref().unwrap().0 >= done.start_time.as_ref().unwrap().0);
        assert_eq!(done.reason.as_deref(), Some("RunnerSucceeded"));
        let conditions = done.conditions.clone().unwrap();
        let complete = conditions.iter().find(|c| c.type_ == "Complete").unwrap();
        assert_eq!(
            (complete.type_.as_str(), complete.status.as_str()),
            ("Complete", "True")
        );
        // Upstream's five keys, plus our additive ones (compat §3.3).
        assert_eq!(
            status_keys(&done),
            [
                "attempts",
                "clusterName",
                "conditions",
                "dashboardURL",
                "endTime",
                "failedAttempts",
                "jobRunnerPodName",
                "jobStatus",
                "message",
                "observedGeneration",
                "reason",
                "runnerUid",
                "schedulerAddress",
                "startTime"
            ]
        );
        cluster_gone(&client, &ns, "simple-job").await;
        // The runner pod (and its logs) stays until the DaskJob is deleted.
        assert!(
            Api::<Pod>::namespaced(client.clone(), &ns)
                .get_opt("simple-job-runner")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            !events(&client, &ns, "simple-job", "RunnerSucceeded")
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn failedjob_ends_failed_with_a_warning_event() {
    with_unscheduled_namespace("job-fail", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("failedjob.yaml")).await;
        wait_job(&client, &ns, "failed-job", "ClusterCreated").await;
        report_scheduler_ready(&client, &ns, "failed-job").await;
        report_runner(&client, &ns, "failed-job-runner", "Running", 0).await;
        wait_job(&client, &ns, "failed-job", "Running").await;
        report_runner(&client, &ns, "failed-job-runner", "Failed", 0).await;
        let status = wait_job(&client, &ns, "failed-job", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("RunnerFailed"));
        assert!(status.end_time.is_some());
        let conditions = status.conditions.unwrap();
        let failed = conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("True", "RunnerFailed")
        );
        cluster_gone(&client, &ns, "failed-job").await;
        let warnings = events(&client, &ns, "failed-job", "RunnerFailed").await;
        assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    })
    .await;
}

#[tokio::test]
async fn runner_restarting_past_the_limit_fails_the_job_and_is_stopped() {
    with_unscheduled_namespace("job-restarts", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let yaml = fixture("simplejob.yaml").replacen(
            "  job:\n    spec:\n",
            "  job:\n    restartLimit: 2\n    spec:\n",
            1,
        );
        create_from_yaml(&client, &ns, &yaml).await;
        wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        report_scheduler_ready(&client, &ns, "simple-job").await;
        report_runner(&client, &ns, "simple-job-runner", "Running", 2).await;
        wait_job(&client, &ns, "simple-job", "Running").await;
        report_runner(&client, &ns, "simple-job-runner", "Running", 3).await;
        let status = wait_job(&client, &ns, "simple-job", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("RestartLimitExceeded"));
        assert!(status.message.unwrap().contains("restarted 3 times"));
        // The terminal status is written first, then the runner is stopped (kept, with its logs).
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        eventually(
            "the runner to be stopped with activeDeadlineSeconds 1",
            TIMEOUT,
            || async {
                let pod = pods.get("simple-job-runner").await.ok()?;
                (pod.spec?.active_deadline_seconds == Some(1)).then_some(())
            },
        )
        .await;
        cluster_gone(&client, &ns, "simple-job").await;
    })
    .await;
}

#[tokio::test]
async fn operator_restarted_mid_job_makes_no_second_runner_and_finishes_the_job() {
    with_unscheduled_namespace("job-restart-op", |client, ns| async move {
        let operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplejob.yaml")).await;
        wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        report_scheduler_ready(&client, &ns, "simple-job").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let runner_uid = pods.get("simple-job-runner").await.unwrap().uid();
        operator.stop().await;

        // While no operator runs, the runner starts and finishes.
        report_runner(&client, &ns, "simple-job-runner", "Running", 0).await;
        let _operator = Operator::start(&client, &ns).await;
        wait_job(&client, &ns, "simple-job", "Running").await;
        let runners = pods
            .list(&ListParams::default().labels("dask.org/component=job-runner"))
            .await
            .unwrap();
        assert_eq!(runners.items.len(), 1, "no second runner");
        assert_eq!(runners.items[0].uid(), runner_uid);

        report_runner(&client, &ns, "simple-job-runner", "Succeeded", 0).await;
        wait_job(&client, &ns, "simple-job", "Successful").await;
        cluster_gone(&client, &ns, "simple-job").await;
    })
    .await;
}

#[tokio::test]
async fn terminal_status_survives_an_operator_that_was_down_when_the_runner_ended() {
    with_unscheduled_namespace("job-down", |client, ns| async move {
        let operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("failedjob.yaml")).await;
        wait_job(&client, &ns, "failed-job", "ClusterCreated").await;
        report_scheduler_ready(&client, &ns, "failed-job").await;
        operator.stop().await;
        report_runner(&client, &ns, "failed-job-runner", "Failed", 0).await;
        let _operator = Operator::start(&client, &ns).await;
        let status = wait_job(&client, &ns, "failed-job", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("RunnerFailed"));
        cluster_gone(&client, &ns, "failed-job").await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_runner_fails_the_job_instead_of_passing_it() {
    with_unscheduled_namespace("job-deleted", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplejob.yaml")).await;
        wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        report_scheduler_ready(&client, &ns, "simple-job").await;
        report_runner(&client, &ns, "simple-job-runner", "Running", 0).await;
        wait_job(&client, &ns, "simple-job", "Running").await;
        Api::<Pod>::namespaced(client.clone(), &ns)
            .delete(
                "simple-job-runner",
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let status = wait_job(&client, &ns, "simple-job", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("RunnerDeleted"));
        cluster_gone(&client, &ns, "simple-job").await;
    })
    .await;
}

#[tokio::test]
async fn with_wait_for_scheduler_the_runner_starts_once_the_scheduler_is_ready() {
    with_unscheduled_namespace("job-wait", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let yaml = fixture("simplejob.yaml").replacen(
            "  job:\n    spec:\n",
            "  job:\n    waitForScheduler: true\n    spec:\n",
            1,
        );
        create_from_yaml(&client, &ns, &yaml).await;
        wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        // The cluster exists, the scheduler is not ready: no runner yet. Another job in the namespace,
        // created after this one, gets its runner at once (the operator is not stuck).
        create_from_yaml(&client, &ns, &fixture("failedjob.yaml")).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        eventually("failed-job's runner, created at once", TIMEOUT, || async {
            pods.get_opt("failed-job-runner").await.ok()?
        })
        .await;
        assert!(pods.get_opt("simple-job-runner").await.unwrap().is_none());
        // What the job waits for: its DaskCluster's Available condition.
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let available = |c: &DaskCluster| {
            let conditions = c.status.as_ref()?.conditions.as_ref()?;
            let available = conditions.iter().find(|c| c.type_ == "Available")?;
            Some(available.status.clone())
        };
        let cluster = clusters.get("simple-job").await.unwrap();
        assert_ne!(available(&cluster).as_deref(), Some("True"));
        report_scheduler_ready(&client, &ns, "simple-job").await;
        // The runner exists, so the job saw the cluster Available (and the scheduler stays ready).
        let cluster = clusters.get("simple-job").await.unwrap();
        assert_eq!(available(&cluster).as_deref(), Some("True"));
    })
    .await;
}

#[tokio::test]
async fn a_terminal_job_stops_its_running_runner_after_an_operator_restart() {
    with_unscheduled_namespace("job-stop", |client, ns| async move {
        let operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplejob.yaml")).await;
        wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        report_scheduler_ready(&client, &ns, "simple-job").await;
        report_runner(&client, &ns, "simple-job-runner", "Running", 0).await;
        wait_job(&client, &ns, "simple-job", "Running").await;
        operator.stop().await;

        // A crash between the terminal status write and the stop: the status is terminal, the
        // runner still runs and has no deadline.
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"status": {
            "jobStatus": "Failed", "reason": "RestartLimitExceeded",
            "message": "runner pod simple-job-runner restarted 9 times, more than the limit of 6",
            "endTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        }});
        jobs.patch_status("simple-job", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let runner = pods.get("simple-job-runner").await.unwrap();
        assert_eq!(runner.spec.unwrap().active_deadline_seconds, None);

        let _operator = Operator::start(&client, &ns).await;
        eventually(
            "the runner of the terminal job to be stopped with activeDeadlineSeconds 1",
            TIMEOUT,
            || async {
                let pod = pods.get("simple-job-runner").await.ok()?;
                (pod.spec?.active_deadline_seconds == Some(1)).then_some(())
            },
        )
        .await;
        let status = jobs.get("simple-job").await.unwrap().status.unwrap();
        assert_eq!(
            status.job_status.as_deref(),
            Some("Failed"),
            "stays terminal"
        );
        cluster_gone(&client, &ns, "simple-job").await;
    })
    .await;
}

#[tokio::test]
async fn a_job_named_like_a_users_cluster_fails_and_leaves_the_cluster_alone() {
    with_unscheduled_namespace("job-taken", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        // The user's own DaskCluster `foo`, then a DaskJob `foo` right after (the operator's cache
        // may or may not hold the cluster yet: both ways must end the same).
        let cluster_yaml =
            fixture("simplecluster.yaml").replacen("name: simple\n", "name: foo\n", 1);
        create_from_yaml(&client, &ns, &cluster_yaml).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let before = clusters.get("foo").await.unwrap();
        let job_yaml = fixture("simplejob.yaml").replacen("name: simple-job\n", "name: foo\n", 1);
        create_from_yaml(&client, &ns, &job_yaml).await;

        let status = wait_job(&client, &ns, "foo", "Failed").await;
        assert_eq!(status.reason.as_deref(), Some("ClusterNameTaken"));
        let message = status.message.unwrap();
        assert!(message.contains("DaskCluster foo"), "{message}");
        let conditions = status.conditions.unwrap();
        let failed = conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("True", "ClusterNameTaken")
        );
        let warnings = events(&client, &ns, "foo", "ClusterNameTaken").await;
        assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

        // Give a wrongly deleting or applying operator the time to do it, then look.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = clusters
            .get_opt("foo")
            .await
            .unwrap()
            .expect("the user's cluster still exists after the job ended");
        assert_eq!(after.uid(), before.uid());
        assert_eq!(after.spec, before.spec);
        assert_eq!(after.owner_references(), before.owner_references());
        assert!(after.owner_references().is_empty());
        assert_eq!(after.labels(), before.labels());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        assert!(
            pods.get_opt("foo-runner").await.unwrap().is_none(),
            "no runner"
        );
    })
    .await;
}

#[tokio::test]
async fn a_job_recreated_under_the_same_name_waits_for_the_earlier_jobs_cluster() {
    with_unscheduled_namespace("job-again", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let first = create_from_yaml(&client, &ns, &fixture("simplejob.yaml")).await;
        wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        // The first job's cluster is held by a finalizer, so it is still there (being deleted by the
        // garbage collector) when the second job with the same name looks for its cluster.
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let hold = json!({"metadata": {"finalizers": ["dask-operator.dask.org/test-hold"]}});
        clusters
            .patch("simple-job", &PatchParams::default(), &Patch::Merge(&hold))
            .await
            .unwrap();
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        jobs.delete("simple-job", &DeleteParams::background())
            .await
            .unwrap();
        eventually(
            "the first job gone, its cluster being deleted",
            TIMEOUT,
            || async {
                let gone = jobs.get_opt("simple-job").await.ok()?.is_none();
                let c = clusters.get_opt("simple-job").await.ok()??;
                (gone && c.metadata.deletion_timestamp.is_some()).then_some(())
            },
        )
        .await;
        let second = create_from_yaml(&client, &ns, &fixture("simplejob.yaml")).await;
        assert_ne!(first.uid(), second.uid());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let status = jobs.get("simple-job").await.unwrap().status.unwrap();
        assert_eq!(
            status.job_status.as_deref(),
            Some("JobCreated"),
            "waits: {status:?}"
        );

        clusters
            .patch(
                "simple-job",
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        let status = wait_job(&client, &ns, "simple-job", "ClusterCreated").await;
        assert_eq!(status.reason, None);
        let cluster = eventually("the second job's cluster", TIMEOUT, || async {
            let c = clusters.get_opt("simple-job").await.ok()??;
            (c.owner_references().first()?.uid == second.uid().unwrap()).then_some(c)
        })
        .await;
        assert_eq!(cluster.owner_references().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn deleted_jobs_leave_nothing_in_the_operators_memory() {
    with_unscheduled_namespace("job-memory", |client, ns| async move {
        let operator = Operator::start(&client, &ns).await;
        let names = ["job-a", "job-b", "job-c"];
        for name in names {
            let yaml = fixture("simplejob.yaml").replacen(
                "name: simple-job\n",
                &format!("name: {name}\n"),
                1,
            );
            create_from_yaml(&client, &ns, &yaml).await;
        }
        for name in names {
            wait_job(&client, &ns, name, "ClusterCreated").await;
        }
        // Statuses written: the jobs', their clusters' and their default worker groups'.
        eventually("the operator to remember the objects", TIMEOUT, || async {
            (operator.bookkeeping.tracked_objects() >= 3 * names.len()).then_some(())
        })
        .await;

        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        for name in names {
            jobs.delete(name, &DeleteParams::background())
                .await
                .unwrap();
        }
        // The garbage collector deletes the clusters, then their worker groups.
        for name in names {
            cluster_gone(&client, &ns, name).await;
        }
        eventually("the operator to remember nothing", TIMEOUT, || async {
            (operator.bookkeeping.tracked_objects() == 0).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn job_names_that_cannot_be_cluster_names_are_rejected_naming_the_field() {
    with_unscheduled_namespace("job-names", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let yaml = fixture("simplejob.yaml");
        let named = |name: &str| yaml.replace("simple-job", name);
        for (name, expected) in [
            ("j".repeat(60), "metadata.name: at most 53 characters"),
            ("j".repeat(54), "metadata.name: at most 53 characters"),
            (
                "a.dotted.job".to_string(),
                "metadata.name: lower case letters, digits and '-' only",
            ),
            (
                "1-starts-with-a-digit".to_string(),
                "metadata.name: lower case letters, digits and '-' only",
            ),
        ] {
            match try_create_from_yaml(&client, &ns, &named(&name)).await {
                Err(kube::Error::Api(status)) => {
                    assert_eq!(status.code, 422, "{name}: {status:?}");
                    assert!(
                        status.message.contains(expected),
                        "{name}: {}",
                        status.message
                    );
                }
                other => panic!("{name}: expected a refusal, got {other:?}"),
            }
        }

        // The longest name is accepted and runs: its cluster's workers are
        // `<53>-default-worker-<10 hex>`, 79 characters.
        let name = format!("longest-job-{}", "j".repeat(41));
        assert_eq!(name.len(), 53);
        create_from_yaml(&client, &ns, &named(&name)).await;
        let status = wait_job(&client, &ns, &name, "ClusterCreated").await;
        assert_eq!(status.cluster_name.as_deref(), Some(name.as_str()));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let lp = ListParams::default().labels(&format!("dask.org/workergroup-name={name}-default"));
        eventually("the job cluster's two workers", TIMEOUT, || async {
            (deployments.list(&lp).await.ok()?.items.len() == 2).then_some(())
        })
        .await;
    })
    .await;
}
