//! Label and annotation keys, and how a child's metadata is inherited from its parent.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;

use crate::crd::SimpleObjectMeta;

pub const CLUSTER_NAME: &str = "dask.org/cluster-name";
pub const COMPONENT: &str = "dask.org/component";
pub const WORKERGROUP_NAME: &str = "dask.org/workergroup-name";
pub const ISTIO_INJECT: &str = "sidecar.istio.io/inject";
/// Ours, in addition to upstream's: one worker Deployment's pods, so worker selectors never overlap.
pub const WORKER_NAME: &str = "dask.org/worker-name";

/// Annotation on every child: a hash of the desired object, so an unchanged child is not written again.
pub const SPEC_HASH: &str = "kubernetes.dask.org/spec-hash";
/// Annotation on a child whose users scale it (a DaskWorkerGroup or DaskCluster the operator made): the
/// replicas its parent asked for when the operator last wrote it, so that only a change of the
/// parent's value overrides the child's own.
pub const PARENT_REPLICAS: &str = "kubernetes.dask.org/parent-replicas";
/// The operator's own annotations on a child: never inherited from a parent.
const OWN_ANNOTATIONS: [&str; 2] = [SPEC_HASH, PARENT_REPLICAS];
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

/// The labels and annotations a child inherits: the parent's own (annotations filtered), overridden by
/// the sub-resource template's `metadata` (upstream's precedence; base labels are added last by the
/// caller and always win).
pub fn inherit(parent: &ObjectMeta, template: &Option<SimpleObjectMeta>) -> (Map, Map) {
    let mut labels = parent.labels.clone().unwrap_or_default();
    labels.extend(SimpleObjectMeta::labels(template));
    let mut annotations: Map = parent
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !OWN_ANNOTATIONS.contains(&k.as_str())
                && !IGNORED_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.extend(SimpleObjectMeta::annotations(template));
    (labels, annotations)
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
