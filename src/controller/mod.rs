//! The controllers, one module per kind, and what they share.
//!
//! Every kind is watched once (shared reflectors, narrowed by label selectors where the kind is not
//! ours) and every controller reads its children from those stores. A reconcile observes, builds the
//! desired children with the pure builders in [`crate::resources`], applies only what differs
//! (server-side apply, one field manager), then patches status only if it changed.
//!
//! - [`runtime`]: the shared watches, the controllers on them, the entry points ([`run`]);
//! - [`context`]: what a reconcile gets (client, stores, settings, events);
//! - [`apply`]: the generic writes (apply a child, patch status, delete, adopt);
//! - [`kopf`]: removing what the Python operator left behind;
//! - [`crate::decisions`]: what a reconcile concludes from what it observed (conditions, a job's life);
//! - [`errors`]: persistent reconcile errors shown in status (`Degraded`) and as Warning Events;
//! - `cluster`, `workergroup`, `job`, `autoscaler`: one reconcile per kind.

mod apply;
mod autoscaler;
mod bookkeeping;
mod cluster;
use crate::decisions::conditions;
mod context;
mod errors;
mod job;
mod kopf;
mod runtime;
mod workergroup;

use std::time::Duration;

use kube::runtime::controller::Action;

pub use bookkeeping::Bookkeeping;
pub use context::{Context, SchedulerAccess, Stores};
pub use runtime::{run, run_with, run_with_bookkeeping};

pub(crate) use apply::{adopt, apply, delete, owned_by, patch_status};
pub(crate) use kopf::remove_kopf_leftovers;
pub(crate) use runtime::{Touched, naming_cluster, serve};

/// The field manager of every write.
pub const MANAGER: &str = "dask-operator";

/// Safety-net requeue for objects that are not finished: a missed event is noticed within this time.
const RESYNC: Duration = Duration::from_secs(300);

/// Operator settings (see `dask-operator run --help`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconciles running at once, per kind.
    pub concurrency: u16,
    /// Container restarts of a DaskJob runner before the job is Failed, unless the job sets its own.
    pub runner_restart_limit: i32,
    /// How schedulers' HTTP API is reached; `None`: as [`SchedulerAccess::new`] picks with the
    /// controllers' own client.
    pub scheduler: Option<SchedulerAccess>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            concurrency: 16,
            runner_restart_limit: 6,
            scheduler: None,
        }
    }
}

/// What a reconcile that did not fail returns for an object still in progress.
fn requeue() -> Action {
    Action::requeue(RESYNC)
}
