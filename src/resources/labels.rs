//! Label and annotation keys, and how a child's metadata is inherited from its parent.
//!
//! # What reaches the pods
//!
//! A child object (Deployment, Service, DaskWorkerGroup, DaskCluster of a job, runner Pod) carries its
//! parent's labels and annotations, overridden by the sub-resource's `metadata`
//! (`spec.scheduler.metadata`, `spec.worker.metadata`, `spec.job.metadata`,
//! `spec.cluster.metadata`), overridden by the base labels (upstream's precedence). The children's
//! own metadata follows the parent: editing a DaskCluster's labels relabels its Deployments, Service
//! and default group, which restarts nothing.
//!
//! A Deployment's *pod template* is different, since any change to it replaces the pods: a
//! scheduler or worker restarted mid-job loses the job's state. Its metadata is
//!
//! - the parent's labels and annotations **as they were when the Deployment was created** (upstream
//!   copies them onto the pods at creation and its tests check for them; it never updates them), kept in
//!   the Deployment's [`POD_INHERITED`] annotation so every later reconcile builds the same template;
//! - the sub-resource's `metadata` and the base labels, **as they are now**: those are the spec, and an
//!   edit of them is rolled out like any other spec edit.
//!
//! So a metadata-only edit of a DaskCluster, DaskJob or DaskWorkerGroup (what GitOps tools do) never
//! restarts a pod; new workers (scale-up, a replaced worker Deployment) get the parent's metadata as it
//! is then. To change the labels of running pods, edit `spec.*.metadata`. A Deployment made before
//! this rule (by an earlier dask-operator or by the Python operator) has no [`POD_INHERITED`]
//! annotation: the inherited part is then read back from its template (everything there but the base
//! labels and the sub-resource's keys), which keeps its template as it is, and no annotation is added
//! (a new annotation would bump the Deployment's generation). The runner of a DaskJob is a bare Pod
//! created once and never updated, so it too keeps the metadata it was created with.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::crd::SimpleObjectMeta;

pub const CLUSTER_NAME: &str = "dask.org/cluster-name";
pub const COMPONENT: &str = "dask.org/component";
pub const WORKERGROUP_NAME: &str = "dask.org/workergroup-name";
pub const ISTIO_INJECT: &str = "sidecar.istio.io/inject";
/// Ours, in addition to upstream's: one worker Deployment's pods, so worker selectors never overlap.
/// Its value is `crate::resources::names::worker_label` of the Deployment's name.
pub const WORKER_NAME: &str = "dask.org/worker-name";

/// Annotation on every child: a hash of the desired object, so an unchanged child is not written again.
pub const SPEC_HASH: &str = "kubernetes.dask.org/spec-hash";
/// Annotation on a child whose users scale it (a DaskWorkerGroup or DaskCluster the operator made): the
/// replicas its parent asked for when the operator last wrote it, so that only a change of the
/// parent's value overrides the child's own.
pub const PARENT_REPLICAS: &str = "kubernetes.dask.org/parent-replicas";
/// Annotation on the scheduler and worker Deployments: the labels and annotations their pod template
/// inherited from the parent objects when the Deployment was created, as JSON
/// `{"labels": {...}, "annotations": {...}}` (see the module documentation).
pub const POD_INHERITED: &str = "kubernetes.dask.org/pod-template-inherited";
/// The operator's own annotations on a child: never inherited from a parent.
const OWN_ANNOTATIONS: [&str; 3] = [SPEC_HASH, PARENT_REPLICAS, POD_INHERITED];
/// kopf's finalizer on objects left by the Python operator; removed on takeover.
pub const KOPF_FINALIZER: &str = "kopf.zalando.org/KopfFinalizerMarker";
/// Prefix of kopf's annotations on objects left by the Python operator; removed on takeover.
pub const KOPF_ANNOTATION_PREFIX: &str = "kopf.zalando.org/";
/// The annotation kopf writes on every object it handled (its diff base).
pub const KOPF_LAST_HANDLED: &str = "kopf.zalando.org/last-handled-configuration";

/// Values of [`COMPONENT`].
pub mod component {
    pub const SCHEDULER: &str = "scheduler";
    pub const WORKER: &str = "worker";
    pub const WORKERGROUP: &str = "workergroup";
    pub const JOB_RUNNER: &str = "job-runner";
}

/// Annotations under these prefixes are never propagated to children (upstream's rule).
const IGNORED_ANNOTATION_PREFIXES: [&str; 2] = ["kopf.zalando.org", "kubectl.kubernetes.io"];

pub type Map = BTreeMap<String, String>;

/// Labels and annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub labels: Map,
    #[serde(default)]
    pub annotations: Map,
}

impl Metadata {
    /// What a child inherits from its parent's own metadata: all labels, and the annotations that are
    /// not kopf's, kubectl's or ours.
    pub fn of_parent(parent: &ObjectMeta) -> Metadata {
        Metadata {
            labels: parent.labels.clone().unwrap_or_default(),
            annotations: parent
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| inheritable_annotation(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// These, overridden by a sub-resource's `metadata`.
    pub fn overridden_by(mut self, template: &Option<SimpleObjectMeta>) -> Metadata {
        self.labels.extend(SimpleObjectMeta::labels(template));
        self.annotations
            .extend(SimpleObjectMeta::annotations(template));
        self
    }
}

fn inheritable_annotation(key: &str) -> bool {
    !OWN_ANNOTATIONS.contains(&key)
        && !IGNORED_ANNOTATION_PREFIXES
            .iter()
            .any(|p| key.starts_with(p))
}

/// The labels and annotations a child inherits: the parent's own (annotations filtered), overridden by
/// the sub-resource template's `metadata` (upstream's precedence; base labels are added last by the
/// caller and always win).
pub fn inherit(parent: &ObjectMeta, template: &Option<SimpleObjectMeta>) -> (Map, Map) {
    let Metadata {
        labels,
        annotations,
    } = Metadata::of_parent(parent).overridden_by(template);
    (labels, annotations)
}

/// The metadata of a Deployment's pod template (see the module documentation): what it inherited
/// from the parent objects, overridden by the sub-resource's `metadata` (`template`), overridden by
/// `base`. `existing` is the Deployment as it is, `None` before it is created; `parent` is what the
/// parent objects give now, taken only at creation.
///
/// Also returns the value of the Deployment's [`POD_INHERITED`] annotation, `None` for a Deployment
/// made before the annotation existed (it is not added to those).
pub fn pod_template_metadata(
    existing: Option<&Deployment>,
    parent: Metadata,
    template: &Option<SimpleObjectMeta>,
    base: &[(&str, &str)],
) -> (ObjectMeta, Option<String>) {
    let inherited = match existing {
        None => Some(parent),
        Some(d) => d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_INHERITED))
            .and_then(|json| serde_json::from_str::<Metadata>(json).ok()),
    };
    let record = inherited
        .as_ref()
        .map(|m| serde_json::to_string(m).expect("metadata serializes"));
    let inherited = match inherited {
        Some(inherited) => inherited,
        None => read_back(existing, template, base),
    };
    let Metadata {
        labels,
        annotations,
    } = inherited.overridden_by(template);
    let meta = ObjectMeta {
        labels: Some(with_base(labels, base)),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    };
    (meta, record)
}

/// The inherited part of the pod template of a Deployment made before [`POD_INHERITED`]: all it has
/// but the base labels and the keys of the sub-resource's `metadata`.
fn read_back(
    existing: Option<&Deployment>,
    template: &Option<SimpleObjectMeta>,
    base: &[(&str, &str)],
) -> Metadata {
    let pod = existing
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.metadata.as_ref());
    let (own_labels, own_annotations) = (
        SimpleObjectMeta::labels(template),
        SimpleObjectMeta::annotations(template),
    );
    Metadata {
        labels: pod
            .and_then(|p| p.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !own_labels.contains_key(k) && !base.iter().any(|(b, _)| b == k))
            .collect(),
        annotations: pod
            .and_then(|p| p.annotations.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !own_annotations.contains_key(k) && inheritable_annotation(k))
            .collect(),
    }
}

/// `base` wins over `labels`.
pub fn with_base(mut labels: Map, base: &[(&str, &str)]) -> Map {
    labels.extend(base.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    labels
}

/// A label selector string, `k=v,k=v`, in key order.
pub fn selector_string(labels: &Map) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn template_overrides_parent_and_kopf_kubectl_annotations_are_dropped() {
        let parent = ObjectMeta {
            labels: Some(map(&[("a", "parent"), ("b", "parent")])),
            annotations: Some(map(&[
                ("keep", "1"),
                ("kopf.zalando.org/last-handled-configuration", "x"),
                ("kubectl.kubernetes.io/last-applied-configuration", "y"),
                (SPEC_HASH, "h"),
                (PARENT_REPLICAS, "2"),
            ])),
            ..Default::default()
        };
        let template = Some(SimpleObjectMeta {
            labels: Some(map(&[("b", "template")])),
            annotations: Some(map(&[("t", "2")])),
        });
        let (labels, annotations) = inherit(&parent, &template);
        assert_eq!(labels, map(&[("a", "parent"), ("b", "template")]));
        assert_eq!(annotations, map(&[("keep", "1"), ("t", "2")]));
    }

    #[test]
    fn base_labels_win() {
        let labels = with_base(
            map(&[(CLUSTER_NAME, "user"), ("x", "1")]),
            &[(CLUSTER_NAME, "c")],
        );
        assert_eq!(labels, map(&[(CLUSTER_NAME, "c"), ("x", "1")]));
        assert_eq!(selector_string(&labels), "dask.org/cluster-name=c,x=1");
    }
}
