//! What the controllers remember about an object between reconciles: its failure count (for the
//! backoff), the error last shown in its status (see [`super::errors`]) and the status last written to
//! it (see [`Context::current_status`]). Kept per object UID and bounded by the objects that exist:
//!
//! - An object's entries are dropped when the shared watch of its kind sees it deleted (`shared()` in
//!   the parent module). A reconcile cannot do it: once the object is gone from the store the
//!   controller runs no reconcile for it, and an object deleted without a finalizer never shows a
//!   deletionTimestamp.
//! - A watch that is re-listed (after a desync or an outage) reports no Delete for what went away in
//!   between; so after every complete list, the entries of that kind whose UID is not in the store are
//!   dropped ([`Bookkeeping::retain`]).
//! - A reconcile still running when its object is deleted may record a failure or a status after the
//!   Delete was handled. So an entry is only written while the object is in its kind's store, and that
//!   check and the write happen under the same lock as the drop: the store forgets an object before
//!   its Delete reaches the bookkeeping, so either the write sees the object gone, or the drop comes
//!   after the write.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::core::object::HasStatus;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use crate::decisions::autoscale::Sample;

/// A status write: the resourceVersion it was based on, and the status written.
type Written = (Option<String>, serde_json::Value);

#[derive(Debug, Default)]
struct Entry {
    /// The object's kind, for [`Bookkeeping::retain`].
    kind: String,
    failures: u32,
    /// The error shown in the object's status since its last success (`errors::signature`).
    reported: Option<String>,
    written: Option<Written>,
    /// An autoscaler's recent scheduler targets (`decisions::autoscale`).
    samples: Vec<Sample>,
}

/// Per-object memory of the controllers, keyed by UID; see the module documentation.
#[derive(Debug, Default)]
pub struct Bookkeeping {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Bookkeeping {
    /// How many objects anything is remembered about.
    pub fn tracked_objects(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    fn written(&self, uid: &str) -> Option<Written> {
        self.entries.lock().unwrap().get(uid)?.written.clone()
    }

    /// Records the status written to the object `uid` of `kind`, if `live()` says it still exists.
    fn record_written(&self, kind: &str, uid: &str, written: Written, live: impl FnOnce() -> bool) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid) {
            entry.written = Some(written);
        } else if live() {
            let entry = Entry {
                kind: kind.into(),
                written: Some(written),
                ..Default::default()
            };
            entries.insert(uid.into(), entry);
        }
    }

    /// Counts one more failure of the object `uid` of `kind` and returns the count; remembered only
    /// if `live()` says the object still exists.
    fn record_failure(&self, kind: &str, uid: &str, live: impl FnOnce() -> bool) -> u32 {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid) {
            entry.failures += 1;
            return entry.failures;
        }
        if live() {
            let entry = Entry {
                kind: kind.into(),
                failures: 1,
                ..Default::default()
            };
            entries.insert(uid.into(), entry);
        }
        1
    }

    /// The failures of `uid` in a row so far.
    fn failures(&self, uid: &str) -> u32 {
        self.entries
            .lock()
            .unwrap()
            .get(uid)
            .map_or(0, |e| e.failures)
    }

    /// The error shown in the status of `uid` since its last success.
    fn reported(&self, uid: &str) -> Option<String> {
        self.entries.lock().unwrap().get(uid)?.reported.clone()
    }

    /// Records that `error` is shown in the status of the object `uid` of `kind`, if `live()` says it
    /// still exists.
    fn record_reported(&self, kind: &str, uid: &str, error: String, live: impl FnOnce() -> bool) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid) {
            entry.reported = Some(error);
        } else if live() {
            let entry = Entry {
                kind: kind.into(),
                reported: Some(error),
                ..Default::default()
            };
            entries.insert(uid.into(), entry);
        }
    }

    /// Resets the failure count of `uid` and forgets the error it showed.
    fn record_success(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid) {
            entry.failures = 0;
            entry.reported = None;
            if entry.written.is_none() && entry.samples.is_empty() {
                entries.remove(uid);
            }
        }
    }

    /// The recent scheduler targets an autoscaler's last decision kept.
    pub(super) fn samples(&self, uid: &str) -> Vec<Sample> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(uid)
            .map(|e| e.samples.clone())
            .unwrap_or_default()
    }

    /// Records an autoscaler's recent targets, if `live()` says it still exists.
    pub(super) fn record_samples(
        &self,
        kind: &str,
        uid: &str,
        samples: Vec<Sample>,
        live: impl FnOnce() -> bool,
    ) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(uid) {
            entry.samples = samples;
        } else if !samples.is_empty() && live() {
            let entry = Entry {
                kind: kind.into(),
                samples,
                ..Default::default()
            };
            entries.insert(uid.into(), entry);
        }
    }

    /// Drops everything about `uid`: the object was deleted.
    pub(super) fn forget(&self, uid: &str) {
        self.entries.lock().unwrap().remove(uid);
    }

    /// Drops the entries of `kind` whose UID is not in `live` (the complete list the watch has just
    /// received).
    pub(super) fn retain(&self, kind: &str, live: &HashSet<String>) {
        self.entries
            .lock()
            .unwrap()
            .retain(|uid, e| e.kind != kind || live.contains(uid));
    }
}

/// Whether the object `namespace/name` with `uid` is in `store`.
fn in_store<K>(store: &Store<K>, namespace: &str, name: &str, uid: &str) -> bool
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .is_some_and(|o| o.meta().uid.as_deref() == Some(uid))
}

/// The UIDs of the objects in `store`.
pub(super) fn uids<K>(store: &Store<K>) -> HashSet<String>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store.state().iter().filter_map(|o| o.uid()).collect()
}

impl Context {
    /// The recent scheduler targets of the autoscaler `obj`.
    pub(super) fn autoscaler_samples<K: Resource<DynamicType = ()>>(&self, obj: &K) -> Vec<Sample> {
        self.bookkeeping
            .samples(obj.meta().uid.as_deref().unwrap_or_default())
    }

    /// Remembers the recent scheduler targets of the autoscaler `obj` for its next decision.
    pub(super) fn record_autoscaler_samples<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        samples: Vec<Sample>,
    ) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        self.bookkeeping
            .record_samples(&K::kind(&()), &uid, samples, || self.in_store(obj));
    }

    /// Whether `obj` (one of the four kinds) is in the operator's store of its kind.
    fn in_store<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        let meta = obj.meta();
        let (namespace, name) = (
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        let uid = meta.uid.as_deref().unwrap_or_default();
        let s = &self.stores;
        match K::kind(&()).as_ref() {
            "DaskCluster" => in_store(&s.clusters, namespace, name, uid),
            "DaskWorkerGroup" => in_store(&s.groups, namespace, name, uid),
            "DaskJob" => in_store(&s.jobs, namespace, name, uid),
            "DaskAutoscaler" => in_store(&s.autoscalers, namespace, name, uid),
            _ => false,
        }
    }

    /// The status `obj` has, as far as this operator knows: the status it last wrote if `obj` is the
    /// very version that write was based on (the cache has not caught up yet), else `obj`'s own. This
    /// keeps a reconcile on a stale cache from repeating a transition it already made.
    pub fn current_status<K>(&self, obj: &K) -> Option<K::Status>
    where
        K: Resource<DynamicType = ()> + HasStatus,
        K::Status: DeserializeOwned + Clone,
    {
        match self
            .bookkeeping
            .written(obj.meta().uid.as_deref().unwrap_or_default())
        {
            Some((version, status)) if version == obj.resource_version() => {
                serde_json::from_value(status).ok()
            }
            _ => obj.status().cloned(),
        }
    }

    /// Remembers `status`, just written to `obj` (based on `obj`'s resourceVersion).
    pub(super) fn record_written<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        status: serde_json::Value,
    ) {
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        let written = (obj.resource_version(), status);
        self.bookkeeping
            .record_written(&K::kind(&()), uid, written, || self.in_store(obj));
    }

    pub(super) fn record_success<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        self.bookkeeping
            .record_success(obj.meta().uid.as_deref().unwrap_or_default());
    }

    pub(super) fn record_failure<K: Resource<DynamicType = ()>>(&self, obj: &K) -> u32 {
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        self.bookkeeping
            .record_failure(&K::kind(&()), uid, || self.in_store(obj))
    }

    /// The failures of `obj` in a row so far (this failure not yet counted, in `errors::report`).
    pub(super) fn failures<K: Resource<DynamicType = ()>>(&self, obj: &K) -> u32 {
        self.bookkeeping
            .failures(obj.meta().uid.as_deref().unwrap_or_default())
    }

    /// The error shown in the status of `obj` since its last success.
    pub(super) fn reported<K: Resource<DynamicType = ()>>(&self, obj: &K) -> Option<String> {
        self.bookkeeping
            .reported(obj.meta().uid.as_deref().unwrap_or_default())
    }

    pub(super) fn record_reported<K: Resource<DynamicType = ()>>(&self, obj: &K, error: String) {
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        self.bookkeeping
            .record_reported(&K::kind(&()), uid, error, || self.in_store(obj))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn written(rv: &str) -> Written {
        (Some(rv.into()), json!({"phase": rv}))
    }

    #[test]
    fn entries_are_per_uid_and_dropped_when_the_object_is_deleted() {
        let b = Bookkeeping::default();
        b.record_written("DaskJob", "a", written("1"), || true);
        b.record_written("DaskJob", "b", written("1"), || true);
        assert_eq!(b.record_failure("DaskJob", "a", || true), 1);
        assert_eq!(b.record_failure("DaskJob", "a", || true), 2);
        assert_eq!(b.record_failure("DaskJob", "b", || true), 1, "per UID");
        b.record_written("DaskJob", "a", written("2"), || true);
        assert_eq!(b.written("a"), Some(written("2")));
        assert_eq!(b.tracked_objects(), 2);
        b.forget("a");
        assert_eq!(b.written("a"), None);
        assert_eq!(b.record_failure("DaskJob", "a", || true), 1, "a new count");
        b.forget("a");
        b.forget("b");
        assert_eq!(b.tracked_objects(), 0);
    }

    #[test]
    fn a_success_resets_the_count_and_drops_an_entry_with_nothing_else() {
        let b = Bookkeeping::default();
        b.record_failure("DaskCluster", "a", || true);
        b.record_failure("DaskCluster", "a", || true);
        b.record_success("a");
        assert_eq!(b.tracked_objects(), 0);
        b.record_written("DaskCluster", "b", written("1"), || true);
        b.record_failure("DaskCluster", "b", || true);
        b.record_success("b");
        assert_eq!(b.record_failure("DaskCluster", "b", || true), 1);
        assert_eq!(b.written("b"), Some(written("1")), "the status is kept");
        b.record_success("unknown");
        assert_eq!(b.tracked_objects(), 1);
    }

    #[test]
    fn a_reported_error_is_remembered_until_a_success() {
        let b = Bookkeeping::default();
        assert_eq!(b.failures("a"), 0);
        b.record_failure("DaskCluster", "a", || true);
        b.record_failure("DaskCluster", "a", || true);
        assert_eq!(b.failures("a"), 2);
        b.record_reported("DaskCluster", "a", "boom".into(), || true);
        assert_eq!(b.reported("a").as_deref(), Some("boom"));
        b.record_success("a");
        assert_eq!((b.failures("a"), b.reported("a")), (0, None));
        assert_eq!(b.tracked_objects(), 0, "nothing else was remembered");
        b.record_reported("DaskCluster", "gone", "boom".into(), || false);
        assert_eq!(b.tracked_objects(), 0);
    }

    #[test]
    fn nothing_is_remembered_about_an_object_that_is_gone() {
        // A reconcile that ends after the Delete was handled.
        let b = Bookkeeping::default();
        assert_eq!(b.record_failure("DaskJob", "gone", || false), 1);
        assert_eq!(b.record_failure("DaskJob", "gone", || false), 1);
        b.record_written("DaskJob", "gone", written("1"), || false);
        assert_eq!(b.tracked_objects(), 0);
        assert_eq!(b.written("gone"), None);
    }

    #[test]
    fn a_complete_list_drops_what_went_away_unseen_of_its_kind_only() {
        let b = Bookkeeping::default();
        for uid in ["a", "b", "c"] {
            b.record_written("DaskJob", uid, written("1"), || true);
        }
        b.record_failure("DaskCluster", "x", || true);
        b.retain("DaskJob", &HashSet::from(["b".to_string()]));
        assert_eq!(b.written("a"), None);
        assert_eq!(b.written("b"), Some(written("1")));
        assert_eq!(b.written("c"), None);
        assert_eq!(b.tracked_objects(), 2, "b, and the DaskCluster x");
        b.retain("DaskCluster", &HashSet::new());
        assert_eq!(b.tracked_objects(), 1);
    }
}
