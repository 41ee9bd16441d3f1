//! Every transition of [`decide`], table-driven: a job and what was observed in, the status and the
//! actions out.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::job::{CleanupPolicy, ClusterRef};

const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(T0 + seconds).unwrap())
}

fn job() -> DaskJob {
    let mut job: DaskJob =
        serde_saphyr::from_str(include_str!("../../tests/fixtures/simplejob.yaml")).unwrap();
    job.metadata.namespace = Some("ns".into());
    job.metadata.uid = Some("job-uid".into());
    job.metadata.generation = Some(1);
    job.metadata.creation_timestamp = Some(at(0));
    job
}

fn status(job_status: &str) -> DaskJobStatus {
    DaskJobStatus {
        job_status: Some(job_status.into()),
        ..Default::default()
    }
}

/// A status with attempt `n` in progress, its pod recorded with UID `uid-<n>`.
fn attempt(job_status: &str, n: i32, failed: i32) -> DaskJobStatus {
    DaskJobStatus {
        job_status: Some(job_status.into()),
        attempts: Some(n),
        failed_attempts: Some(failed),
        job_runner_pod_name: Some(names::runner_attempt("simple-job", n)),
        runner_uid: Some(format!("uid-{n}")),
        cluster_name: Some("simple-job".into()),
        ..Default::default()
    }
}

/// Runner pod of attempt `n` in `phase` (`""`: no status yet), created at second `n`.
fn runner(n: i32, phase: &str) -> Pod {
    let mut pod = Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "job".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.metadata.name = Some(names::runner_attempt("simple-job", n));
    pod.metadata.uid = Some(format!("uid-{n}"));
    pod.metadata.creation_timestamp = Some(at(n as i64));
    pod.metadata.owner_references = Some(vec![OwnerReference {
        uid: "job-uid".into(),
        ..Default::default()
    }]);
    if !phase.is_empty() {
        let state = match phase {
            "Running" => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(at(5)),
                }),
                ..Default::default()
            },
            "Succeeded" | "Failed" => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: if phase == "Succeeded" { 0 } else { 1 },
                    started_at: Some(at(4)),
                    finished_at: Some(at(9)),
                    message: Some("{\"mean\": 1.5}\n".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            _ => ContainerState::default(),
        };
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "job".into(),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        });
    }
    pod
}

fn up() -> ClusterSeen {
    ClusterSeen::Present {
        running: true,
        available: true,
        deleting: false,
    }
}

fn starting() -> ClusterSeen {
    ClusterSeen::Present {
        running: false,
        available: false,
        deleting: false,
    }
}

fn run(
    job: &DaskJob,
    status: DaskJobStatus,
    cluster: ClusterSeen,
    pods: &[Pod],
    now: i64,
) -> Decision {
    decide(&Observed {
        job,
        status,
        now: at(now),
        restart_limit: 6,
        cluster,
        runners: pods.iter().collect(),
        startup_causes: Vec::new(),
    })
}

fn condition<'a>(d: &'a Decision, type_: &str) -> Option<&'a Condition> {
    conditions::find(d.status.conditions(), type_)
}

fn reasons_of(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

#[test]
fn the_happy_path_step_by_step() {
    let j = job();
    // A new job is recorded before anything is made.
    let d = run(&j, DaskJobStatus::default(), ClusterSeen::Absent, &[], 0);
    assert_eq!(d.status.job_status.as_deref(), Some("JobCreated"));
    assert!(!d.apply_cluster && d.actions.is_empty());
    assert_eq!(d.status.observed_generation, Some(1));

    // Then its cluster is applied and attempt 1 recorded with its runner created after.
    let d = run(&j, d.status, ClusterSeen::Absent, &[], 1);
    assert!(d.apply_cluster);
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("ClusterCreated"));
    assert_eq!((s.attempts, s.failed_attempts), (Some(1), Some(0)));
    assert_eq!(s.job_runner_pod_name.as_deref(), Some("simple-job-runner"));
    assert_eq!(s.runner_uid, None);
    assert_eq!(
        s.scheduler_address.as_deref(),
        Some("tcp://simple-job-scheduler.ns.svc:8786")
    );
    assert_eq!(
        s.dashboard_url.as_deref(),
        Some("http://simple-job-scheduler.ns.svc:8787")
    );
    assert_eq!(
        d.actions,
        vec![Act::CreateRunner("simple-job-runner".into())]
    );
    assert_eq!(reasons_of(&d), vec!["ClusterCreated"]);
    assert_eq!(condition(&d, "ClusterReady").unwrap().status, "False");

    // The pod appears: its UID is recorded, nothing else happens.
    let created = d.status.clone();
    let d = run(&j, created.clone(), starting(), &[runner(1, "Pending")], 2);
    assert_eq!(d.status.runner_uid.as_deref(), Some("uid-1"));
    assert!(d.actions.is_empty(), "{:?}", d.actions);

    // Running: startTime from the kubelet's report, an event, ClusterReady once the scheduler is.
    let d = run(&j, d.status, up(), &[runner(1, "Running")], 6);
    assert_eq!(d.status.job_status.as_deref(), Some("Running"));
    assert_eq!(d.status.start_time, Some(at(5)));
    assert_eq!(reasons_of(&d), vec!["Running"]);
    let ready = condition(&d, "ClusterReady").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "ClusterAvailable")
    );
    assert_eq!(ready.last_transition_time, at(6));

    // Nothing changed: the same status (no write), no actions, no events.
    let again = run(&j, d.status.clone(), up(), &[runner(1, "Running")], 7);
    assert_eq!(again.status, d.status);
    assert!(again.actions.is_empty() && again.events.is_empty());

    // Succeeded: terminal with the result, then the cluster goes.
    let d = run(&j, d.status, up(), &[runner(1, "Succeeded")], 10);
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("Successful"));
    assert_eq!(s.reason.as_deref(), Some("RunnerSucceeded"));
    assert_eq!(s.end_time, Some(at(9)));
    assert_eq!(s.result.as_deref(), Some("{\"mean\": 1.5}"));
    assert_eq!(condition(&d, "Complete").unwrap().status, "True");
    assert_eq!(condition(&d, "ClusterReady").unwrap().reason, "JobFinished");
    assert_eq!(d.actions, vec![Act::DeleteCluster]);
    assert_eq!(reasons_of(&d), vec!["RunnerSucceeded"]);
    assert_eq!(d.wake, None);

    // Finished: only makes sure the cluster is gone; nothing once it is.
    let after = run(&j, d.status.clone(), up(), &[runner(1, "Succeeded")], 11);
    assert_eq!(after.status, d.status);
    assert_eq!(after.actions, vec![Act::DeleteCluster]);
    let gone = run(
        &j,
        d.status.clone(),
        ClusterSeen::Absent,
        &[runner(1, "Succeeded")],
        12,
    );
    assert!(gone.actions.is_empty() && gone.events.is_empty());
}

#[test]
fn runner_outcomes_without_backoff_limit_keep_upstreams_reasons() {
    let j = job();
    let mut restarting = runner(1, "Running");
    restarting
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .restart_count = 7;
    let cases: Vec<(&str, Vec<Pod>, &str, Vec<Act>)> = vec![
        (
            "failed",
            vec![runner(1, "Failed")],
            "RunnerFailed",
            vec![Act::DeleteCluster],
        ),
        (
            "restart limit",
            vec![restarting],
            "RestartLimitExceeded",
            vec![
                Act::StopRunner("simple-job-runner".into()),
                Act::DeleteCluster,
            ],
        ),
        ("deleted", vec![], "RunnerDeleted", vec![Act::DeleteCluster]),
    ];
    for (case, pods, reason, actions) in cases {
        let d = run(&j, attempt("Running", 1, 0), up(), &pods, 20);
        assert_eq!(d.status.job_status.as_deref(), Some("Failed"), "{case}");
        assert_eq!(d.status.reason.as_deref(), Some(reason), "{case}");
        assert_eq!(d.status.failed_attempts, Some(1), "{case}");
        assert_eq!(d.actions, actions, "{case}");
        assert_eq!(reasons_of(&d), vec![reason], "{case}");
        assert!(d.events[0].warning, "{case}");
        assert_eq!(condition(&d, "Failed").unwrap().reason, reason, "{case}");
    }
}

#[test]
fn a_replaced_runner_pod_is_a_lost_attempt_never_a_success() {
    let j = job();
    let mut impostor = runner(1, "Succeeded");
    impostor.metadata.uid = Some("another".into());
    let d = run(&j, attempt("Running", 1, 0), up(), &[impostor], 20);
    assert_eq!(d.status.job_status.as_deref(), Some("Failed"));
    assert_eq!(d.status.reason.as_deref(), Some("RunnerDeleted"));
}

#[test]
fn a_pod_not_yet_recorded_is_created_again_under_the_same_name() {
    // The operator crashed between writing attempt 2 and creating its pod.
    let j = job();
    let mut s = attempt("Running", 2, 1);
    s.runner_uid = None;
    let d = run(&j, s, up(), &[runner(1, "Failed")], 20);
    let s = &d.status;
    assert_eq!(
        (s.attempts, s.failed_attempts),
        (Some(2), Some(1)),
        "no attempt lost or added"
    );
    assert_eq!(
        s.job_runner_pod_name.as_deref(),
        Some("simple-job-runner-2")
    );
    assert_eq!(
        d.actions,
        vec![Act::CreateRunner("simple-job-runner-2".into())]
    );
}

#[test]
fn retries_reuse_the_cluster_and_name_each_attempt() {
    let mut j = job();
    j.spec.backoff_limit = Some(2);
    // Attempt 1 fails: attempt 2 is recorded and created, the cluster is kept.
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Failed")],
        20,
    );
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("Running"));
    assert_eq!((s.attempts, s.failed_attempts), (Some(2), Some(1)));
    assert_eq!(
        s.job_runner_pod_name.as_deref(),
        Some("simple-job-runner-2")
    );
    assert_eq!(s.runner_uid, None);
    assert!(d.apply_cluster);
    assert_eq!(
        d.actions,
        vec![Act::CreateRunner("simple-job-runner-2".into())]
    );
    assert_eq!(reasons_of(&d), vec!["AttemptFailed", "Retrying"]);
    assert!(d.events[0].warning && !d.events[1].warning);

    // A runner past its restart limit is stopped before the next attempt starts.
    let mut restarting = runner(2, "Running");
    restarting
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .restart_count = 7;
    let d = run(
        &j,
        attempt("Running", 2, 1),
        up(),
        &[runner(1, "Failed"), restarting],
        30,
    );
    assert_eq!(
        d.actions,
        vec![
            Act::StopRunner("simple-job-runner-2".into()),
            Act::CreateRunner("simple-job-runner-3".into())
        ]
    );

    // The third failure is one more than backoffLimit: Failed, with the last failure named.
    let d = run(
        &j,
        attempt("Running", 3, 2),
        up(),
        &[
            runner(1, "Failed"),
            runner(2, "Failed"),
            runner(3, "Failed"),
        ],
        40,
    );
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(s.failed_attempts, Some(3));
    let message = s.message.as_deref().unwrap();
    assert!(
        message.contains("3 of 3 attempts failed, more than backoffLimit (2)"),
        "{message}"
    );
    assert!(message.contains("simple-job-runner-3 failed"), "{message}");
    assert_eq!(d.actions, vec![Act::DeleteCluster]);
}

#[test]
fn a_succeeding_retry_ends_successful() {
    let mut j = job();
    j.spec.backoff_limit = Some(1);
    let d = run(
        &j,
        attempt("Running", 2, 1),
        up(),
        &[runner(1, "Failed"), runner(2, "Succeeded")],
        20,
    );
    assert_eq!(d.status.job_status.as_deref(), Some("Successful"));
    assert_eq!(
        d.status.job_runner_pod_name.as_deref(),
        Some("simple-job-runner-2")
    );
    assert_eq!(d.status.failed_attempts, Some(1));
}

#[test]
fn earlier_attempts_are_kept_bounded_and_never_left_running() {
    let mut j = job();
    j.spec.backoff_limit = Some(10);
    let mut pods: Vec<Pod> = (1..=5).map(|n| runner(n, "Failed")).collect();
    pods[4] = runner(5, "Running");
    let mut still = runner(4, "Running");
    still.status.as_mut().unwrap().phase = Some("Running".into());
    pods[3] = still;
    let d = run(&j, attempt("Running", 5, 4), up(), &pods, 20);
    // Attempt 4 still runs (a crash before its stop): stopped. Attempts 1 is beyond the 3 kept.
    assert_eq!(
        d.actions,
        vec![
            Act::StopRunner("simple-job-runner-4".into()),
            Act::DeleteRunner("simple-job-runner".into())
        ]
    );
}

#[test]
fn deadlines_fail_the_job_with_the_cause() {
    let mut j = job();
    j.spec.active_deadline_seconds = Some(60);
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Running")],
        30,
    );
    assert_eq!(d.status.job_status.as_deref(), Some("Running"));
    assert_eq!(
        d.wake,
        Some(Duration::from_secs(30)),
        "wakes at the deadline"
    );

    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Running")],
        60,
    );
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(s.end_time, Some(at(60)));
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("activeDeadlineSeconds (60s)")
    );
    assert_eq!(
        d.actions,
        vec![
            Act::StopRunner("simple-job-runner".into()),
            Act::DeleteCluster
        ]
    );

    // Not retried, even with retries left.
    j.spec.backoff_limit = Some(3);
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Running")],
        61,
    );
    assert_eq!(d.status.reason.as_deref(), Some("DeadlineExceeded"));

    // The startup deadline applies until Running, with the cause the shell found.
    let mut j = job();
    j.spec.startup_deadline_seconds = Some(30);
    let pending = runner(1, "Pending");
    let s = attempt("ClusterCreated", 1, 0);
    assert!(!startup_deadline_passed(&j, &s, &at(29)));
    assert!(startup_deadline_passed(&j, &s, &at(30)));
    let cause = pod_problems(&image_pull_backoff());
    let d = decide(&Observed {
        job: &j,
        status: s,
        now: at(30),
        restart_limit: 6,
        cluster: up(),
        runners: vec![&pending],
        startup_causes: cause,
    });
    assert_eq!(d.status.reason.as_deref(), Some("StartupDeadlineExceeded"));
    let message = d.status.message.unwrap();
    assert!(
        message.contains("startupDeadlineSeconds (30s)"),
        "{message}"
    );
    assert!(message.contains("cannot pull image nope:1"), "{message}");
    // Once Running it no longer applies.
    let mut running = attempt("Running", 1, 0);
    running.start_time = Some(at(5));
    assert!(!startup_deadline_passed(&j, &running, &at(100)));
}

fn image_pull_backoff() -> Pod {
    let mut pod = runner(1, "Pending");
    pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "job".into(),
        image: "nope:1".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("Back-off pulling image \"nope:1\"".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    pod
}

#[test]
fn pod_problems_name_what_keeps_a_pod_from_running() {
    let problems = pod_problems(&image_pull_backoff());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("container job cannot pull image nope:1: ImagePullBackOff"));
    let mut unschedulable = runner(1, "Pending");
    unschedulable.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some("0/1 nodes are available: 1 Insufficient cpu.".into()),
        ..Default::default()
    }]);
    assert_eq!(
        pod_problems(&unschedulable),
        vec![
            "pod simple-job-runner cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu."
        ]
    );
    let mut crashing = runner(1, "Running");
    let c = &mut crashing
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0];
    c.restart_count = 4;
    c.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("CrashLoopBackOff".into()),
            message: None,
        }),
        ..Default::default()
    });
    assert!(pod_problems(&crashing)[0].contains("crash-looping (4 restarts)"));
    assert!(pod_problems(&runner(1, "Running")).is_empty());
}

#[test]
fn suspend_stops_the_attempt_without_counting_it_and_resume_starts_a_fresh_one() {
    let mut j = job();
    j.spec.backoff_limit = Some(0);
    j.spec.suspend = true;
    let mut s = attempt("Running", 1, 0);
    s.start_time = Some(at(5));
    let d = run(&j, s, up(), &[runner(1, "Running")], 20);
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("JobCreated"));
    assert_eq!((s.attempts, s.failed_attempts), (Some(1), Some(0)));
    assert_eq!(s.start_time, None);
    assert_eq!(s.runner_uid, None);
    let suspended = condition(&d, "Suspended").unwrap();
    assert_eq!(
        (
            suspended.status.as_str(),
            suspended.last_transition_time.clone()
        ),
        ("True", at(20))
    );
    assert_eq!(
        d.actions,
        vec![
            Act::DeleteRunner("simple-job-runner".into()),
            Act::DeleteCluster
        ]
    );
    assert!(!d.apply_cluster);
    assert_eq!(reasons_of(&d), vec!["Suspended"]);

    // Still suspended: the same status, nothing left to do once things are gone.
    let still = run(&j, d.status.clone(), ClusterSeen::Absent, &[], 30);
    assert_eq!(still.status, d.status);
    assert!(still.actions.is_empty() && still.events.is_empty());

    // Resumed while the old cluster is still being deleted: wait for it.
    j.spec.suspend = false;
    let deleting = ClusterSeen::Present {
        running: true,
        available: true,
        deleting: true,
    };
    let d = run(&j, d.status, deleting, &[], 40);
    assert_eq!(reasons_of(&d), vec!["Resumed"]);
    assert_eq!(condition(&d, "Suspended").unwrap().status, "False");
    assert!(!d.apply_cluster && d.actions.is_empty());
    assert_eq!(d.status.job_status.as_deref(), Some("JobCreated"));

    // Then a fresh attempt 2 on a fresh cluster; backoffLimit 0 is not exceeded.
    let d = run(&j, d.status, ClusterSeen::Absent, &[], 41);
    assert!(d.apply_cluster);
    assert_eq!(d.status.attempts, Some(2));
    assert_eq!(d.status.failed_attempts, Some(0));
    assert_eq!(
        d.actions,
        vec![Act::CreateRunner("simple-job-runner-2".into())]
    );
}

#[test]
fn created_suspended_nothing_runs_and_deadlines_count_from_the_resume() {
    let mut j = job();
    j.spec.suspend = true;
    j.spec.active_deadline_seconds = Some(60);
    let d = run(&j, status("JobCreated"), ClusterSeen::Absent, &[], 100);
    assert!(d.actions.is_empty() && !d.apply_cluster);
    assert_eq!(
        d.status.job_status.as_deref(),
        Some("JobCreated"),
        "not failed by the deadline"
    );
    j.spec.suspend = false;
    let d = run(&j, d.status, ClusterSeen::Absent, &[], 200);
    assert_eq!(d.status.job_status.as_deref(), Some("ClusterCreated"));
    assert_eq!(d.wake, Some(Duration::from_secs(60)));
    let d = run(&j, d.status, up(), &[runner(1, "Running")], 259);
    assert_eq!(d.status.job_status.as_deref(), Some("Running"));
    let d = run(&j, d.status, up(), &[runner(1, "Running")], 260);
    assert_eq!(d.status.reason.as_deref(), Some("DeadlineExceeded"));
}

#[test]
fn a_success_seen_together_with_a_suspension_is_kept() {
    let mut j = job();
    j.spec.suspend = true;
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Succeeded")],
        20,
    );
    assert_eq!(d.status.job_status.as_deref(), Some("Successful"));
}

#[test]
fn an_existing_cluster_is_waited_for_used_and_never_touched() {
    let mut j = job();
    j.spec.cluster = None;
    j.spec.cluster_ref = Some(ClusterRef {
        name: "shared".into(),
    });
    // Missing: a Warning once, ClusterReady False naming the field, nothing created.
    let d = run(&j, status("JobCreated"), ClusterSeen::Absent, &[], 1);
    assert!(!d.apply_cluster && d.actions.is_empty());
    assert_eq!(reasons_of(&d), vec!["ClusterNotFound"]);
    assert!(d.events[0].warning);
    let ready = condition(&d, "ClusterReady").unwrap();
    assert_eq!(ready.reason, "ClusterNotFound");
    assert!(
        ready
            .message
            .contains("spec.clusterRef: DaskCluster shared does not exist")
    );
    let again = run(&j, d.status.clone(), ClusterSeen::Absent, &[], 2);
    assert!(again.events.is_empty(), "reported once");

    // Not Running yet: still waiting.
    let d = run(&j, d.status, starting(), &[], 3);
    assert_eq!(d.status.job_status.as_deref(), Some("JobCreated"));
    assert!(d.actions.is_empty());

    // Running: the attempt starts against it.
    let d = run(&j, d.status, up(), &[], 4);
    assert!(!d.apply_cluster);
    assert_eq!(d.status.cluster_name.as_deref(), Some("shared"));
    assert_eq!(
        d.status.scheduler_address.as_deref(),
        Some("tcp://shared-scheduler.ns.svc:8786")
    );
    assert_eq!(
        d.actions,
        vec![Act::CreateRunner("simple-job-runner".into())]
    );

    // Finished: never deleted, whatever the outcome.
    for phase in ["Succeeded", "Failed"] {
        let d = run(&j, attempt("Running", 1, 0), up(), &[runner(1, phase)], 20);
        assert!(is_terminal(&d.status));
        assert!(!d.actions.contains(&Act::DeleteCluster), "{phase}");
    }

    // A startup deadline counts the wait, and says what it waited for.
    j.spec.startup_deadline_seconds = Some(10);
    let d = run(&j, status("JobCreated"), ClusterSeen::Absent, &[], 10);
    assert_eq!(d.status.reason.as_deref(), Some("StartupDeadlineExceeded"));
    assert!(
        d.status
            .message
            .unwrap()
            .contains("DaskCluster shared does not exist")
    );
}

#[test]
fn names_the_job_cannot_use_fail_it_at_once_touching_nothing() {
    let j = job();
    let d = run(
        &j,
        status("JobCreated"),
        ClusterSeen::Foreign { going_away: false },
        &[],
        1,
    );
    assert_eq!(d.status.reason.as_deref(), Some("ClusterNameTaken"));
    assert!(d.actions.is_empty() && !d.apply_cluster);
    let d = run(
        &j,
        status("JobCreated"),
        ClusterSeen::Foreign { going_away: true },
        &[],
        1,
    );
    assert!(d.blocked.is_some() && d.actions.is_empty() && !d.apply_cluster);
    let mut dotted = job();
    dotted.metadata.name = Some("my.job".into());
    let d = run(&dotted, status("JobCreated"), ClusterSeen::Absent, &[], 1);
    assert_eq!(d.status.reason.as_deref(), Some("InvalidName"));
    assert!(d.actions.is_empty() && !d.apply_cluster);
}

#[test]
fn wait_for_scheduler_creates_the_runner_once_the_cluster_is_available() {
    let mut j = job();
    j.spec.job.wait_for_scheduler = true;
    let mut s = attempt("ClusterCreated", 1, 0);
    s.runner_uid = None;
    let d = run(&j, s.clone(), starting(), &[], 5);
    assert!(d.actions.is_empty());
    let d = run(&j, s, up(), &[], 6);
    assert_eq!(
        d.actions,
        vec![Act::CreateRunner("simple-job-runner".into())]
    );
}

#[test]
fn finished_jobs_keep_a_failed_cluster_for_its_time_and_go_after_their_ttl() {
    let mut j = job();
    j.spec.cleanup_policy = Some(CleanupPolicy {
        cluster: ClusterCleanup::KeepOnFailure,
        keep_for_seconds: Some(100),
    });
    j.spec.ttl_seconds_after_finished = Some(300);
    // Fails at 9 (the runner's end): kept until 109, the job deleted at 309.
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Failed")],
        10,
    );
    assert_eq!(d.status.end_time, Some(at(9)));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(reasons_of(&d), vec!["RunnerFailed", "ClusterKept"]);
    assert_eq!(d.wake, Some(Duration::from_secs(99)));
    assert!(
        condition(&d, "ClusterReady")
            .unwrap()
            .message
            .contains("kept for debugging")
    );
    let d = run(&j, d.status, up(), &[runner(1, "Failed")], 109);
    assert_eq!(d.actions, vec![Act::DeleteCluster]);
    assert_eq!(d.wake, Some(Duration::from_secs(200)));
    let d = run(
        &j,
        d.status,
        ClusterSeen::Absent,
        &[runner(1, "Failed")],
        309,
    );
    assert_eq!(d.actions, vec![Act::DeleteJob]);
    assert_eq!(reasons_of(&d), vec!["TTLExpired"]);

    // A success is not kept.
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Succeeded")],
        10,
    );
    assert_eq!(d.actions, vec![Act::DeleteCluster]);
    // TTL 0: deleted as soon as it ended.
    j.spec.ttl_seconds_after_finished = Some(0);
    j.spec.cleanup_policy = None;
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Succeeded")],
        10,
    );
    assert_eq!(d.actions, vec![Act::DeleteCluster, Act::DeleteJob]);
}

#[test]
fn results_are_bounded_text() {
    let mut pod = runner(1, "Succeeded");
    let long = "é".repeat(3000); // 6000 bytes
    pod.status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .state
        .as_mut()
        .unwrap()
        .terminated
        .as_mut()
        .unwrap()
        .message = Some(long);
    let result = result_of(&pod).unwrap();
    assert_eq!(result.len(), RESULT_LIMIT);
    assert!(result.chars().all(|c| c == 'é'));
    assert_eq!(result_of(&runner(1, "Running")), None);
}

#[test]
fn runner_phases_map_to_outcomes() {
    let with_restarts = |phase: &str, restarts: i32| {
        let mut pod = runner(1, phase);
        pod.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .restart_count = restarts;
        pod
    };
    assert_eq!(observe_runner(&Pod::default(), 6), Runner::Waiting);
    assert_eq!(
        observe_runner(&with_restarts("Pending", 0), 6),
        Runner::Waiting
    );
    assert_eq!(
        observe_runner(&with_restarts("Running", 6), 6),
        Runner::Running
    );
    assert_eq!(
        observe_runner(&with_restarts("Running", 7), 6),
        Runner::RestartLimitExceeded(7)
    );
    assert_eq!(
        observe_runner(&with_restarts("Succeeded", 9), 6),
        Runner::Succeeded
    );
    assert_eq!(
        observe_runner(&with_restarts("Failed", 0), 6),
        Runner::Failed("exit code 1".into())
    );
}

#[test]
fn only_a_running_runner_without_a_short_deadline_needs_a_stop() {
    assert!(needs_stop(&runner(1, "Running")));
    assert!(needs_stop(&runner(1, "Pending")));
    assert!(needs_stop(&runner(1, "")));
    assert!(!needs_stop(&runner(1, "Succeeded")));
    assert!(!needs_stop(&runner(1, "Failed")));
    let mut stopped = runner(1, "Running");
    stopped.spec.as_mut().unwrap().active_deadline_seconds = Some(1);
    assert!(!needs_stop(&stopped), "the stop holds");
    stopped.spec.as_mut().unwrap().active_deadline_seconds = Some(3600);
    assert!(
        needs_stop(&stopped),
        "a user's longer deadline is shortened"
    );
    let mut deleting = runner(1, "Running");
    deleting.metadata.deletion_timestamp = Some(at(1));
    assert!(!needs_stop(&deleting));
}

#[test]
fn times_have_whole_seconds_like_upstream() {
    let text = serde_json::to_string(&conditions::now()).unwrap();
    assert!(
        text.ends_with("Z\"") && text.len() == "\"2026-01-01T00:00:00Z\"".len(),
        "{text}"
    );
}

#[test]
fn an_outcome_seen_late_wins_over_a_deadline_passed_since() {
    let mut j = job();
    j.spec.active_deadline_seconds = Some(60);
    j.spec.startup_deadline_seconds = Some(30);
    // The runner started at 4 and succeeded at 9; the operator, down, sees it at 100.
    let d = run(
        &j,
        attempt("ClusterCreated", 1, 0),
        up(),
        &[runner(1, "Succeeded")],
        100,
    );
    let s = &d.status;
    assert_eq!(s.job_status.as_deref(), Some("Successful"));
    assert_eq!(
        (s.start_time.clone(), s.end_time.clone()),
        (Some(at(4)), Some(at(9)))
    );
    // A runner that started in time but is seen late has not missed its startup deadline.
    let d = run(
        &j,
        attempt("ClusterCreated", 1, 0),
        up(),
        &[runner(1, "Running")],
        40,
    );
    assert_eq!(d.status.job_status.as_deref(), Some("Running"));
    // One that failed is an attempt failed; with the deadline passed the job then fails by it.
    let d = run(
        &j,
        attempt("Running", 1, 0),
        up(),
        &[runner(1, "Failed")],
        100,
    );
    assert_eq!(d.status.reason.as_deref(), Some("DeadlineExceeded"));
}
