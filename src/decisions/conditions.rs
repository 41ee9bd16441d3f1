//! `status.conditions` (metav1.Condition) of the four kinds, computed purely from what a reconcile
//! observed. A reconcile computes the conditions it wants ([`Want`]: type, status, reason, message) and
//! [`merge`]s them into the ones the object has: a condition whose `status` did not change keeps its
//! `lastTransitionTime`, so an unchanged object computes an unchanged status and
//! [`patch_status`](crate::controller) writes nothing.
//!
//! - DaskCluster: `Available` (its scheduler Deployment has a ready replica), `Progressing` (the
//!   scheduler or the default worker group is rolling out or scaling), `Degraded` (the scheduler cannot
//!   start, the default group is degraded, the name is invalid, or reconciling keeps failing).
//! - DaskWorkerGroup: `Available` (every wanted worker is ready), `Progressing` (workers are being
//!   created, deleted or rolled out), `Degraded` (the cluster is missing, workers cannot start, or
//!   reconciling keeps failing).
//! - DaskJob: `Suspended`, `ClusterReady`, `Complete`/`Failed` (see [`super::job`]), and `Degraded`
//!   while reconciling keeps failing, as for DaskAutoscaler (see the controller's `errors`).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::crd::{
    DaskAutoscalerStatus, DaskClusterStatus, DaskJobStatus, DaskWorkerGroup, DaskWorkerGroupStatus,
};

/// Condition types.
pub mod types {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (CamelCase, as metav1.Condition requires).
pub mod reasons {
    pub const SCHEDULER_READY: &str = "SchedulerReady";
    pub const SCHEDULER_NOT_READY: &str = "SchedulerNotReady";
    pub const WORKERS_READY: &str = "WorkersReady";
    pub const WORKERS_NOT_READY: &str = "WorkersNotReady";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const SCALING: &str = "Scaling";
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    pub const AS_EXPECTED: &str = "AsExpected";
    pub const WORKER_GROUP_DEGRADED: &str = "WorkerGroupDegraded";
    /// A Deployment's own `Progressing=False` reason.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// A Deployment's own `ReplicaFailure=True` condition type, used as a reason.
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    pub const INVALID_NAME: &str = "InvalidName";
    pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
    pub const RECONCILE_ERROR: &str = "ReconcileError";
}

/// A condition as a reconcile wants it, before its `lastTransitionTime` is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Want {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Want {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: String) -> Want {
        Want {
            type_,
            status,
            reason,
            message,
        }
    }
}

/// Access to the conditions of a kind's status.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
    fn set_conditions(&mut self, conditions: Vec<Condition>);
}

macro_rules! has_conditions {
    ($($status:ty),*) => {$(
        impl HasConditions for $status {
            fn conditions(&self) -> &[Condition] {
                self.conditions.as_deref().unwrap_or_default()
            }
            fn set_conditions(&mut self, conditions: Vec<Condition>) {
                self.conditions = (!conditions.is_empty()).then_some(conditions);
            }
        }
    )*};
}
has_conditions!(
    DaskClusterStatus,
    DaskWorkerGroupStatus,
    DaskJobStatus,
    DaskAutoscalerStatus
);

/// The current time in whole seconds, as Kubernetes writes condition times.
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp"))
}

fn status_string(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The conditions `wanted`, in that order and no others, each observed at `generation`. A condition
/// whose type is in `current` with the same `status` keeps its `lastTransitionTime`; any other gets
/// `now`. Reason and message follow `wanted` without counting as a transition.
pub fn merge(
    current: &[Condition],
    wanted: &[Want],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|want| {
            let status = status_string(want.status);
            let since = current
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: want.type_.into(),
                status: status.into(),
                reason: want.reason.into(),
                message: want.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// `current` with `want` set (merged as [`merge`] does) and every other condition kept as it is.
pub fn upsert(
    current: &[Condition],
    want: Want,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let set = merge(current, std::slice::from_ref(&want), generation, now);
    let mut out: Vec<Condition> = Vec::with_capacity(current.len() + 1);
    let mut placed = false;
    for c in current {
        if c.type_ == want.type_ {
            if !placed {
                out.extend(set.iter().cloned());
                placed = true;
            }
        } else {
            out.push(c.clone());
        }
    }
    if !placed {
        out.extend(set);
    }
    out
}

/// The condition of `type_`, if there is one.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is there with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Whether a Deployment has a ready replica.
fn ready(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        > 0
}

/// Whether a Deployment is still being rolled out, as `kubectl rollout status` sees it, without
/// waiting for availability (that is `Available`): not yet observed by its controller, fewer updated
/// replicas than wanted, old replicas still there, or being deleted.
fn rolling_out(d: &Deployment) -> bool {
    if d.meta().deletion_timestamp.is_some() {
        return true;
    }
    let Some(status) = d.status.as_ref() else {
        return true;
    };
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    status.observed_generation < d.meta().generation
        || updated < wanted
        || status.replicas.unwrap_or(0) > updated
}

/// Why a Deployment cannot make progress, as its controller reports it: its progress deadline passed,
/// or it cannot create pods (quota, admission).
fn failing(d: &Deployment) -> Option<(&'static str, String)> {
    let conditions = d.status.as_ref()?.conditions.as_ref()?;
    let name = d.name_any();
    conditions.iter().find_map(|c| {
        let reason = if c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some(reasons::PROGRESS_DEADLINE_EXCEEDED)
        {
            reasons::PROGRESS_DEADLINE_EXCEEDED
        } else if c.type_ == "ReplicaFailure" && c.status == "True" {
            reasons::REPLICA_FAILURE
        } else {
            return None;
        };
        let why = c.message.as_deref().or(c.reason.as_deref()).unwrap_or("");
        Some((reason, format!("Deployment {name}: {why}")))
    })
}

/// A DaskCluster's conditions, from its scheduler Deployment and its default worker group (both as
/// just applied or observed) and the workers the cluster wants in that group.
pub fn cluster(scheduler: &Deployment, group: &DaskWorkerGroup, wanted_workers: i32) -> Vec<Want> {
    use {reasons::*, types::*};
    let scheduler_name = scheduler.name_any();
    let group_name = group.name_any();
    let available = if ready(scheduler) {
        Want::new(
            AVAILABLE,
            true,
            SCHEDULER_READY,
            format!("scheduler Deployment {scheduler_name} has a ready replica"),
        )
    } else {
        Want::new(
            AVAILABLE,
            false,
            SCHEDULER_NOT_READY,
            format!("scheduler Deployment {scheduler_name} has no ready replica"),
        )
    };

    let group_status = group.status.clone().unwrap_or_default();
    let group_conditions = group_status.conditions();
    let progressing = if rolling_out(scheduler) {
        Want::new(
            PROGRESSING,
            true,
            ROLLING_OUT,
            format!("scheduler Deployment {scheduler_name} is rolling out"),
        )
    } else if group_status.replicas != Some(wanted_workers.max(0)) {
        Want::new(
            PROGRESSING,
            true,
            SCALING,
            format!(
                "worker group {group_name} has {} of {} worker Deployments",
                group_status.replicas.unwrap_or(0),
                wanted_workers.max(0)
            ),
        )
    } else if let Some(c) = find(group_conditions, PROGRESSING).filter(|c| c.status == "True") {
        Want::new(
            PROGRESSING,
            true,
            if c.reason == SCALING {
                SCALING
            } else {
                ROLLING_OUT
            },
            format!("worker group {group_name}: {}", c.message),
        )
    } else {
        Want::new(
            PROGRESSING,
            false,
            ROLLOUT_COMPLETE,
            "the scheduler and the default worker group are rolled out".into(),
        )
    };

    let degraded = if let Some((reason, message)) = failing(scheduler) {
        Want::new(DEGRADED, true, reason, message)
    } else if let Some(c) = find(group_conditions, DEGRADED).filter(|c| c.status == "True") {
        Want::new(
            DEGRADED,
            true,
            WORKER_GROUP_DEGRADED,
            format!("worker group {group_name}: {}", c.message),
        )
    } else {
        Want::new(DEGRADED, false, AS_EXPECTED, String::new())
    };
    vec![available, progressing, degraded]
}

/// A DaskWorkerGroup's conditions, from its worker Deployments as observed (those being deleted
/// included) and the number of workers it wants.
pub fn worker_group(workers: &[&Deployment], wanted: usize) -> Vec<Want> {
    use {reasons::*, types::*};
    let live: Vec<&Deployment> = workers
        .iter()
        .copied()
        .filter(|d| d.meta().deletion_timestamp.is_none())
        .collect();
    let deleting = workers.len() - live.len();
    let ready_count = live.iter().filter(|d| ready(d)).count();
    let available = Want::new(
        AVAILABLE,
        ready_count >= wanted,
        if ready_count >= wanted {
            WORKERS_READY
        } else {
            WORKERS_NOT_READY
        },
        format!("{ready_count} of {wanted} workers ready"),
    );

    let rolling = live.iter().filter(|d| rolling_out(d)).count();
    let progressing = if live.len() != wanted || deleting > 0 {
        let mut message = format!("{} of {wanted} worker Deployments", live.len());
        if deleting > 0 {
            message.push_str(&format!(", {deleting} being deleted"));
        }
        Want::new(PROGRESSING, true, SCALING, message)
    } else if rolling > 0 {
        Want::new(
            PROGRESSING,
            true,
            ROLLING_OUT,
            format!("{rolling} of {wanted} worker Deployments are rolling out"),
        )
    } else {
        Want::new(
            PROGRESSING,
            false,
            ROLLOUT_COMPLETE,
            format!("{wanted} worker Deployments are up to date"),
        )
    };

    let failures: Vec<(&'static str, String)> = live.iter().filter_map(|d| failing(d)).collect();
    let degraded = match failures.first() {
        Some((reason, message)) if failures.len() == 1 => {
            Want::new(DEGRADED, true, reason, message.clone())
        }
        Some((reason, message)) => Want::new(
            DEGRADED,
            true,
            reason,
            format!("{message} (and {} more)", failures.len() - 1),
        ),
        None => Want::new(DEGRADED, false, AS_EXPECTED, String::new()),
    };
    vec![available, progressing, degraded]
}

/// The conditions of an object that cannot be reconciled as it is (`reason`, `message`): not
/// available, not progressing, degraded.
pub fn unusable(reason: &'static str, message: &str) -> Vec<Want> {
    use types::*;
    vec![
        Want::new(AVAILABLE, false, reason, message.into()),
        Want::new(PROGRESSING, false, reason, message.into()),
        Want::new(DEGRADED, true, reason, message.into()),
    ]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use kube::api::ObjectMeta;

    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn deployment(name: &str, generation: i64) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// What the Deployment controller reports once it has rolled `d` out: `ready` replicas ready.
    fn rolled_out(mut d: Deployment, ready: i32) -> Deployment {
        d.status = Some(DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(1),
            updated_replicas: Some(1),
            ready_replicas: (ready > 0).then_some(ready),
            ..Default::default()
        });
        d
    }

    fn group(replicas: Option<i32>, conditions: Vec<Condition>) -> DaskWorkerGroup {
        let mut g = DaskWorkerGroup::new("c-default", Default::default());
        g.status = Some(DaskWorkerGroupStatus {
            replicas,
            conditions: (!conditions.is_empty()).then_some(conditions),
            ..Default::default()
        });
        g
    }

    fn get<'a>(wants: &'a [Want], type_: &str) -> &'a Want {
        wants.iter().find(|w| w.type_ == type_).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let wanted = [
            Want::new(types::AVAILABLE, false, "NotYet", "waiting".into()),
            Want::new(types::DEGRADED, false, "AsExpected", String::new()),
        ];
        let first = merge(&[], &wanted, Some(1), &at(100));
        assert!(first.iter().all(|c| c.last_transition_time == at(100)));
        assert_eq!(first[0].status, "False");
        assert_eq!(first[0].observed_generation, Some(1));

        // Same statuses later: nothing changes, so the status compares equal and is not written.
        assert_eq!(merge(&first, &wanted, Some(1), &at(200)), first);

        // A new reason or message alone is not a transition.
        let reworded = [
            Want::new(types::AVAILABLE, false, "StillNot", "still waiting".into()),
            wanted[1].clone(),
        ];
        let second = merge(&first, &reworded, Some(2), &at(300));
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].reason, "StillNot");
        assert_eq!(second[0].observed_generation, Some(2));

        // A status change is.
        let flipped = [
            Want::new(types::AVAILABLE, true, "Ready", "ready".into()),
            wanted[1].clone(),
        ];
        let third = merge(&second, &flipped, Some(2), &at(400));
        assert_eq!(third[0].last_transition_time, at(400));
        assert_eq!(third[0].status, "True");
        assert_eq!(third[1].last_transition_time, at(100), "Degraded untouched");
    }

    #[test]
    fn merge_keeps_only_the_wanted_types_and_upsert_keeps_the_others() {
        let current = merge(
            &[],
            &[
                Want::new(types::AVAILABLE, true, "Ready", String::new()),
                Want::new(
                    types::DEGRADED,
                    true,
                    reasons::RECONCILE_ERROR,
                    "boom".into(),
                ),
            ],
            None,
            &at(1),
        );
        let merged = merge(
            &current,
            &[Want::new(types::AVAILABLE, true, "Ready", String::new())],
            None,
            &at(2),
        );
        assert_eq!(merged.len(), 1, "Degraded is dropped: {merged:?}");

        let cleared = upsert(
            &current,
            Want::new(types::DEGRADED, false, reasons::AS_EXPECTED, String::new()),
            None,
            &at(3),
        );
        assert_eq!(cleared.len(), 2);
        assert_eq!(cleared[0], current[0], "Available kept as it was");
        assert_eq!(
            (
                cleared[1].status.as_str(),
                cleared[1].last_transition_time.clone()
            ),
            ("False", at(3))
        );
        let added = upsert(
            &[],
            Want::new(types::DEGRADED, true, "X", String::new()),
            None,
            &at(4),
        );
        assert_eq!(added.len(), 1);
        assert!(is_true(&added, types::DEGRADED));
        assert!(!is_true(&cleared, types::DEGRADED));
        assert!(!is_true(&cleared, "Missing"));
    }

    #[test]
    fn cluster_is_available_once_its_scheduler_has_a_ready_replica() {
        let group = group(Some(2), vec![]);
        let created = cluster(&deployment("c-scheduler", 1), &group, 2);
        assert!(!get(&created, types::AVAILABLE).status);
        assert_eq!(
            get(&created, types::PROGRESSING).reason,
            reasons::ROLLING_OUT
        );
        assert!(!get(&created, types::DEGRADED).status);

        let pending = cluster(&rolled_out(deployment("c-scheduler", 1), 0), &group, 2);
        assert_eq!(
            get(&pending, types::AVAILABLE).reason,
            reasons::SCHEDULER_NOT_READY
        );
        assert!(
            !get(&pending, types::PROGRESSING).status,
            "rolled out, not ready"
        );

        let ready = cluster(&rolled_out(deployment("c-scheduler", 1), 1), &group, 2);
        assert!(get(&ready, types::AVAILABLE).status);
        assert_eq!(
            get(&ready, types::AVAILABLE).reason,
            reasons::SCHEDULER_READY
        );
        assert!(!get(&ready, types::PROGRESSING).status);

        // A spec edit the Deployment controller has not seen yet: rolling out again, still available.
        let mut edited = rolled_out(deployment("c-scheduler", 1), 1);
        edited.metadata.generation = Some(2);
        let rolling = cluster(&edited, &group, 2);
        assert!(get(&rolling, types::AVAILABLE).status);
        assert_eq!(
            get(&rolling, types::PROGRESSING).reason,
            reasons::ROLLING_OUT
        );
    }

    #[test]
    fn cluster_progresses_while_its_default_group_scales() {
        let scheduler = rolled_out(deployment("c-scheduler", 1), 1);
        let scaling = cluster(&scheduler, &group(Some(2), vec![]), 4);
        let progressing = get(&scaling, types::PROGRESSING);
        assert_eq!(
            (progressing.status, progressing.reason),
            (true, reasons::SCALING)
        );
        assert!(progressing.message.contains("2 of 4"), "{progressing:?}");
        assert!(
            get(&scaling, types::AVAILABLE).status,
            "scaling is not unavailability"
        );

        let unreported = cluster(&scheduler, &group(None, vec![]), 0);
        assert!(
            get(&unreported, types::PROGRESSING).status,
            "group not reconciled yet"
        );

        let rolling_group = group(
            Some(4),
            merge(
                &[],
                &[Want::new(
                    types::PROGRESSING,
                    true,
                    reasons::ROLLING_OUT,
                    "1 of 4".into(),
                )],
                None,
                &at(1),
            ),
        );
        let rolling = cluster(&scheduler, &rolling_group, 4);
        assert_eq!(
            get(&rolling, types::PROGRESSING).reason,
            reasons::ROLLING_OUT
        );
    }

    #[test]
    fn cluster_is_degraded_by_a_failing_scheduler_or_a_degraded_group() {
        let mut stuck = rolled_out(deployment("c-scheduler", 1), 0);
        stuck.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("pods \"x\" is forbidden: exceeded quota".into()),
            ..Default::default()
        }]);
        let wants = cluster(&stuck, &group(Some(1), vec![]), 1);
        let degraded = get(&wants, types::DEGRADED);
        assert_eq!(
            (degraded.status, degraded.reason),
            (true, reasons::REPLICA_FAILURE)
        );
        assert!(degraded.message.contains("exceeded quota"), "{degraded:?}");

        let mut late = rolled_out(deployment("c-scheduler", 1), 0);
        late.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet has timed out progressing.".into()),
            ..Default::default()
        }]);
        let wants = cluster(&late, &group(Some(1), vec![]), 1);
        assert_eq!(
            get(&wants, types::DEGRADED).reason,
            reasons::PROGRESS_DEADLINE_EXCEEDED
        );

        let bad_group = group(
            Some(1),
            merge(
                &[],
                &[Want::new(
                    types::DEGRADED,
                    true,
                    reasons::RECONCILE_ERROR,
                    "boom".into(),
                )],
                None,
                &at(1),
            ),
        );
        let wants = cluster(&rolled_out(deployment("c-scheduler", 1), 1), &bad_group, 1);
        let degraded = get(&wants, types::DEGRADED);
        assert_eq!(
            (degraded.status, degraded.reason),
            (true, reasons::WORKER_GROUP_DEGRADED)
        );
        assert_eq!(degraded.message, "worker group c-default: boom");
    }

    #[test]
    fn worker_group_conditions_follow_its_workers() {
        let none = worker_group(&[], 0);
        assert!(
            get(&none, types::AVAILABLE).status,
            "nothing wanted, nothing missing"
        );
        assert!(!get(&none, types::PROGRESSING).status);

        let (a, b) = (
            rolled_out(deployment("w-a", 1), 1),
            rolled_out(deployment("w-b", 1), 0),
        );
        let half = worker_group(&[&a, &b], 2);
        let available = get(&half, types::AVAILABLE);
        assert_eq!(
            (available.status, available.reason),
            (false, reasons::WORKERS_NOT_READY)
        );
        assert_eq!(available.message, "1 of 2 workers ready");
        assert!(!get(&half, types::PROGRESSING).status);

        let up = worker_group(&[&a], 2);
        assert_eq!(get(&up, types::PROGRESSING).reason, reasons::SCALING);
        let mut gone = b.clone();
        gone.metadata.deletion_timestamp = Some(at(1));
        let down = worker_group(&[&a, &gone], 1);
        assert_eq!(get(&down, types::PROGRESSING).reason, reasons::SCALING);
        assert!(get(&down, types::AVAILABLE).status, "1 of 1 ready");
        let fresh = deployment("w-c", 1);
        let rolling = worker_group(&[&a, &fresh], 2);
        assert_eq!(
            get(&rolling, types::PROGRESSING).reason,
            reasons::ROLLING_OUT
        );

        let mut stuck = b.clone();
        stuck.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            message: Some("quota".into()),
            ..Default::default()
        }]);
        let degraded = worker_group(&[&a, &stuck], 2);
        assert_eq!(
            get(&degraded, types::DEGRADED).message,
            "Deployment w-b: quota"
        );
    }

    #[test]
    fn recomputing_an_unchanged_cluster_gives_an_equal_status() {
        // What makes a reconcile of an unchanged cluster write nothing.
        let scheduler = rolled_out(deployment("c-scheduler", 1), 1);
        let group = group(Some(2), vec![]);
        let status = |current: &[Condition], now: &Time| DaskClusterStatus {
            phase: Some("Running".into()),
            conditions: Some(merge(
                current,
                &cluster(&scheduler, &group, 2),
                Some(1),
                now,
            )),
            ..Default::default()
        };
        let first = status(&[], &at(10));
        let again = status(first.conditions(), &at(20));
        assert_eq!(first, again);
    }
}
