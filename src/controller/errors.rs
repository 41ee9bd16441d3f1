//! Reconcile errors that persist show in the object's status and as a Warning Event, not only in the
//! logs: after [`THRESHOLD`] failures in a row, the object gets `Degraded=True` with reason
//! `ReconcileError` and the error as message, and an Event `ReconcileError`. Its next successful
//! reconcile sets `Degraded` back (DaskCluster and DaskWorkerGroup compute their own `Degraded`; for
//! the other kinds [`report`] sets it `False`).
//!
//! Bounded writes: an error is reported once (per object, until a success), identified by the step
//! that failed and the API server's code rather than by the whole message, so a flapping API server or
//! a message with changing details cannot make a write (and the reconcile each write triggers) per
//! failure. Nothing is written about an object being deleted.
//!
//! [`report`] runs at the end of every reconcile (`tracked`, in the runtime), so it never races with a
//! reconcile of the same object: a write from a detached task could land after the next successful
//! reconcile and mark a healthy object degraded again, or put back a stale `phase` (status writes are
//! server-side applies of the whole status).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::core::object::HasStatus;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::conditions::{self, HasConditions, Want, reasons, types};
use super::{Context, patch_status};
use crate::error::Error;

/// Failures in a row after which an error shows in status.
pub(crate) const THRESHOLD: u32 = 3;

/// Longest message written (an Event's note must stay under 1 kB).
const MAX_MESSAGE: usize = 1000;

/// A status with conditions, as the four kinds have.
pub(crate) trait Status:
    HasConditions + Serialize + DeserializeOwned + PartialEq + Clone + Default + Debug
{
}
impl<S> Status for S where
    S: HasConditions + Serialize + DeserializeOwned + PartialEq + Clone + Default + Debug
{
}

/// One of the four kinds: what [`report`] can write the status of.
pub(crate) trait Reportable:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + HasStatus<Status: Status>
    + Clone
    + Debug
    + DeserializeOwned
{
}
impl<K> Reportable for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus<Status: Status>
        + Clone
        + Debug
        + DeserializeOwned
{
}

/// After a reconcile of `obj` ended with `outcome`: shows a persistent error in status (and an Event),
/// or clears one after a success. Best effort: a failed write is logged and tried again on the next
/// reconcile.
pub(crate) async fn report<K: Reportable>(obj: &K, ctx: &Context, outcome: Result<(), &Error>) {
    if obj.meta().deletion_timestamp.is_some() {
        return;
    }
    let generation = obj.meta().generation;
    match outcome {
        Ok(()) => {
            let Some(current) = ctx.current_status(obj) else {
                return;
            };
            if let Some(status) = recovered(&current, generation, &conditions::now())
                && let Err(e) = patch_status(ctx, obj, &status).await
            {
                debug!(kind = %K::kind(&()), name = %obj.name_any(), error = %e, "could not clear Degraded");
            }
        }
        Err(error) => {
            // This failure is counted by the error policy after this returns.
            if ctx.failures(obj) + 1 < THRESHOLD {
                return;
            }
            let key = signature(error);
            if ctx.reported(obj).as_deref() == Some(key.as_str()) {
                return;
            }
            let message = truncate(error.to_string());
            let current = ctx.current_status(obj).unwrap_or_default();
            let Some(status) = degraded(&current, &message, generation, &conditions::now()) else {
                ctx.record_reported(obj, key); // already shown (by the reconcile itself, or before a restart)
                return;
            };
            match patch_status(ctx, obj, &status).await {
                Ok(_) => {
                    ctx.record_reported(obj, key);
                    ctx.event(obj, EventType::Warning, reasons::RECONCILE_ERROR, message)
                        .await;
                }
                Err(e) => {
                    warn!(kind = %K::kind(&()), name = %obj.name_any(), error = %e, "could not report a reconcile error in status")
                }
            }
        }
    }
}

/// `current` with `Degraded=True` (`ReconcileError`, `message`), or `None` if it already shows
/// `Degraded=True` with that message (whatever the reason: a reconcile may have set it itself).
fn degraded<S: Status>(
    current: &S,
    message: &str,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<S> {
    let shown = conditions::find(current.conditions(), types::DEGRADED)
        .is_some_and(|c| c.status == "True" && c.message == message);
    if shown {
        return None;
    }
    let want = Want::new(
        types::DEGRADED,
        true,
        reasons::RECONCILE_ERROR,
        message.into(),
    );
    Some(with_condition(current, want, generation, now))
}

/// `current` with the condition `want` set (its transition time kept if its status did not change).
fn with_condition<S: Status>(
    current: &S,
    want: Want,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> S {
    let mut status = current.clone();
    status.set_conditions(conditions::upsert(
        current.conditions(),
        want,
        generation,
        now,
    ));
    status
}

/// `current` with a `Degraded=True` of reason `ReconcileError` set back to `False`, or `None` if it
/// has none.
fn recovered<S: Status>(
    current: &S,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<S> {
    let failing = conditions::find(current.conditions(), types::DEGRADED)
        .is_some_and(|c| c.status == "True" && c.reason == reasons::RECONCILE_ERROR);
    if !failing {
        return None;
    }
    let want = Want::new(types::DEGRADED, false, reasons::AS_EXPECTED, String::new());
    Some(with_condition(current, want, generation, now))
}

/// What identifies an error across retries: the step and the API server's answer code, not the whole
/// message (which may carry details that change on each try).
fn signature(error: &Error) -> String {
    match error {
        Error::Api {
            what,
            source: kube::Error::Api(status),
        } => format!("{what}: {} {}", status.code, status.reason),
        Error::Api { what, .. } => format!("{what}: no answer"),
        other => other.to_string(),
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::crd::{DaskClusterStatus, DaskJobStatus};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn api_error(what: &str, code: u16, message: &str) -> Error {
        let status = kube::core::Status {
            code,
            reason: "Invalid".into(),
            message: message.into(),
            ..Default::default()
        };
        Error::api(what)(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn an_error_is_shown_once_and_keeps_the_rest_of_the_status() {
        let running = DaskJobStatus {
            job_status: Some("ClusterCreated".into()),
            ..Default::default()
        };
        let failed = degraded(&running, "apply x: boom", Some(3), &at(10)).unwrap();
        assert_eq!(failed.job_status.as_deref(), Some("ClusterCreated"));
        let c = conditions::find(failed.conditions(), types::DEGRADED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("True", "ReconcileError", "apply x: boom")
        );
        assert_eq!(
            (c.last_transition_time.clone(), c.observed_generation),
            (at(10), Some(3))
        );
        assert_eq!(
            degraded(&failed, "apply x: boom", Some(3), &at(20)),
            None,
            "already shown"
        );

        // Another error while degraded: a new message, the same transition time.
        let other = degraded(&failed, "apply y: bang", Some(3), &at(30)).unwrap();
        let c = conditions::find(other.conditions(), types::DEGRADED).unwrap();
        assert_eq!(
            (c.message.as_str(), c.last_transition_time.clone()),
            ("apply y: bang", at(10))
        );

        // Shown already by the reconcile itself (another reason, same message): nothing to write.
        let mut by_reconcile = DaskClusterStatus::default();
        by_reconcile.set_conditions(conditions::merge(
            &[],
            &conditions::unusable(reasons::CLUSTER_NOT_FOUND, "no cluster"),
            None,
            &at(1),
        ));
        assert_eq!(degraded(&by_reconcile, "no cluster", None, &at(2)), None);
    }

    #[test]
    fn a_success_clears_only_a_reported_error() {
        let failed = degraded(&DaskJobStatus::default(), "boom", None, &at(10)).unwrap();
        let ok = recovered(&failed, None, &at(20)).unwrap();
        let c = conditions::find(ok.conditions(), types::DEGRADED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.last_transition_time.clone()),
            ("False", at(20))
        );
        assert_eq!(recovered(&ok, None, &at(30)), None, "nothing to clear");
        assert_eq!(recovered(&DaskJobStatus::default(), None, &at(30)), None);

        // A Degraded the reconcile computed itself (not ReconcileError) is its own to clear.
        let mut invalid = DaskClusterStatus::default();
        invalid.set_conditions(conditions::merge(
            &[],
            &conditions::unusable(reasons::INVALID_NAME, "bad name"),
            None,
            &at(1),
        ));
        assert_eq!(recovered(&invalid, None, &at(2)), None);
    }

    #[test]
    fn errors_are_identified_by_step_and_code_not_details() {
        let a = api_error("apply scheduler Deployment ns/c-scheduler", 422, "detail 1");
        let b = api_error("apply scheduler Deployment ns/c-scheduler", 422, "detail 2");
        let c = api_error("apply scheduler Deployment ns/c-scheduler", 409, "detail 1");
        assert_eq!(signature(&a), signature(&b));
        assert_ne!(signature(&a), signature(&c));
        let unusable = Error::Unusable("DaskCluster \"x\" does not exist".into());
        assert_eq!(signature(&unusable), "DaskCluster \"x\" does not exist");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let cut = truncate(long);
        assert!(
            cut.len() <= MAX_MESSAGE && cut.ends_with("..."),
            "{}",
            cut.len()
        );
        assert_eq!(truncate("short".into()), "short");
    }
}
