//! A DaskWorkerGroup's children: one Deployment per Dask worker.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Resource, ResourceExt};

use super::labels::{
    self, CLUSTER_NAME, COMPONENT, ISTIO_INJECT, Map, Metadata, POD_INHERITED, WORKER_NAME,
    WORKERGROUP_NAME, component,
};
use super::{append_env, child_meta, controller_owner, names};
use crate::crd::DaskWorkerGroup;

/// The labels on every worker Deployment and pod of a group: how workers are counted.
pub fn group_selector(group: &DaskWorkerGroup) -> Map {
    labels::with_base(
        Default::default(),
        &[
            (CLUSTER_NAME, &group.spec.cluster),
            (WORKERGROUP_NAME, &group.name_any()),
            (COMPONENT, component::WORKER),
        ],
    )
}

/// Worker Deployment `name` (see [`names::worker_deployment`]): one replica of `spec.worker.spec` with
/// `DASK_WORKER_NAME` (the Deployment name, which is also the Dask worker name) and
/// `DASK_SCHEDULER_ADDRESS` appended. `cluster_labels` are the DaskCluster's labels, added where the
/// group does not set the key (upstream's non-forced labelling). `existing` is the Deployment as it
/// is, if there is one: it keeps its (immutable) selector, and its pod template keeps the group's and
/// cluster's labels and annotations as they were at creation (see [`labels`]), so a metadata-only
/// edit of the group or its cluster relabels the Deployment but never restarts the worker.
///
/// Our workers carry [`WORKER_NAME`] (in their selector and pods); a worker the Python operator made
/// has no such label in its selector and does not get it, since a new pod label would roll it out.
pub fn worker_deployment(
    group: &DaskWorkerGroup,
    name: &str,
    cluster_labels: &Map,
    existing: Option<&Deployment>,
) -> Deployment {
    let cluster = &group.spec.cluster;
    let group_name = group.name_any();
    let template = &group.spec.worker.metadata;
    let existing_selector = existing
        .and_then(|d| d.spec.as_ref())
        .map(|s| s.selector.clone());
    let named = existing_selector.as_ref().is_none_or(|s| {
        s.match_labels
            .as_ref()
            .is_some_and(|m| m.contains_key(WORKER_NAME))
    });
    let worker_label = names::worker_label(name);
    let mut base = vec![
        (CLUSTER_NAME, cluster.as_str()),
        (WORKERGROUP_NAME, group_name.as_str()),
        (COMPONENT, component::WORKER),
        (ISTIO_INJECT, "false"),
    ];
    if named {
        base.push((WORKER_NAME, worker_label.as_str()));
    }
    // The group's labels win over the cluster's.
    let mut parent = Metadata::of_parent(group.meta());
    let mut inherited_labels = cluster_labels.clone();
    inherited_labels.append(&mut parent.labels);
    parent.labels = inherited_labels;
    let Metadata {
        labels,
        mut annotations,
    } = parent.clone().overridden_by(template);
    let labels = labels::with_base(labels, &base);
    let (pod_meta, recorded) = labels::pod_template_metadata(existing, parent, template, &base);
    if let Some(recorded) = recorded {
        annotations.insert(POD_INHERITED.into(), recorded);
    }
    let selector = existing_selector.unwrap_or_else(|| LabelSelector {
        match_labels: Some(labels::with_base(
            group_selector(group),
            &[(WORKER_NAME, &worker_label)],
        )),
        ..Default::default()
    });
    let mut pod_spec = group.spec.worker.spec.clone();
    let address =
        names::scheduler_address(cluster, group.namespace().as_deref().unwrap_or_default());
    append_env(
        &mut pod_spec,
        &[
            ("DASK_WORKER_NAME", name),
            ("DASK_SCHEDULER_ADDRESS", &address),
        ],
    );
    Deployment {
        metadata: child_meta(
            name.to_string(),
            group.meta(),
            controller_owner(group),
            labels,
            annotations,
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector,
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(yaml: &str) -> DaskWorkerGroup {
        let mut g: DaskWorkerGroup = serde_saphyr::from_str(yaml).unwrap();
        g.metadata.namespace = Some("ns1".into());
        g.metadata.uid = Some("uid-g".into());
        g
    }

    fn env(d: &Deployment) -> Vec<(String, String)> {
        let spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn default_group_worker_gets_env_appended_labels_and_owner() {
        let cluster = crate::resources::cluster::tests::simplecluster();
        let g = crate::resources::cluster::default_worker_group(&cluster);
        let mut g = g;
        g.metadata.uid = Some("uid-g".into());
        let name = names::worker_deployment("simple-default", "uid-g", 0);
        let d = worker_deployment(&g, &name, cluster.metadata.labels.as_ref().unwrap(), None);
        assert_eq!(d.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(
            env(&d),
            [
                ("WORKER_ENV".to_string(), "hello-world".to_string()),
                ("DASK_WORKER_NAME".to_string(), name.clone()),
                (
                    "DASK_SCHEDULER_ADDRESS".to_string(),
                    "tcp://simple-scheduler.ns1.svc.cluster.local:8786".to_string()
                ),
            ]
        );
        let labels = d.metadata.labels.clone().unwrap();
        for (k, v) in [
            ("dask.org/cluster-name", "simple"),
            ("dask.org/workergroup-name", "simple-default"),
            ("dask.org/component", "worker"),
            ("sidecar.istio.io/inject", "false"),
            ("worker-sublabel", "label-value"),
            ("test-label", "label-value"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
        }
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("DaskWorkerGroup", "simple-default")
        );
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in spec.selector.match_labels.unwrap() {
            assert_eq!(pod_labels.get(&k), Some(&v));
        }
    }

    #[test]
    fn a_worker_without_the_worker_name_label_in_its_selector_does_not_get_it() {
        let cluster = crate::resources::cluster::tests::simplecluster();
        let mut g = crate::resources::cluster::default_worker_group(&cluster);
        g.metadata.uid = Some("uid-g".into());
        let cluster_labels = cluster.metadata.labels.clone().unwrap();
        let name = "simple-default-worker-0123456789";
        let ours = worker_deployment(&g, name, &cluster_labels, None);
        // Upstream's worker: every label of the worker in its selector and pods, no worker name, no
        // annotation of ours.
        let mut upstream_labels = ours.metadata.labels.clone().unwrap();
        upstream_labels.remove(WORKER_NAME);
        let selector = LabelSelector {
            match_labels: Some(upstream_labels.clone()),
            ..Default::default()
        };
        let mut theirs = ours.clone();
        theirs.metadata.annotations = None;
        let spec = theirs.spec.as_mut().unwrap();
        spec.selector = selector.clone();
        spec.template.metadata.as_mut().unwrap().labels = Some(upstream_labels.clone());
        let d = worker_deployment(&g, name, &cluster_labels, Some(&theirs));
        assert_eq!(d.metadata.labels.as_ref(), Some(&upstream_labels));
        assert!(!d.metadata.annotations.unwrap().contains_key(POD_INHERITED));
        assert_eq!(d.spec, theirs.spec, "taken over as it is");
        // Ours keep it, in the selector and on the pods.
        let spec = worker_deployment(&g, name, &cluster_labels, Some(&ours))
            .spec
            .unwrap();
        let pods = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(pods.get(WORKER_NAME).map(String::as_str), Some(name));
        assert_eq!(
            spec.selector.match_labels.unwrap().get(WORKER_NAME),
            Some(&name.to_string())
        );
    }

    #[test]
    fn metadata_only_edits_of_the_group_or_cluster_leave_the_worker_pod_template_alone() {
        let mut cluster = crate::resources::cluster::tests::simplecluster();
        let mut g = crate::resources::cluster::default_worker_group(&cluster);
        g.metadata.uid = Some("uid-g".into());
        let name = names::worker_deployment("simple-default", "uid-g", 0);
        let created = worker_deployment(&g, &name, cluster.metadata.labels.as_ref().unwrap(), None);
        let pod = created
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .clone()
            .unwrap();
        assert_eq!(pod.labels.as_ref().unwrap()["test-label"], "label-value");
        assert_eq!(
            pod.annotations.as_ref().unwrap()["test-annotation"],
            "annotation-value"
        );

        // The cluster is relabelled, which relabels its default group; the group is annotated.
        let labels = cluster.metadata.labels.as_mut().unwrap();
        labels.insert("test-label".into(), "changed".into());
        labels.insert("cluster-only".into(), "new".into());
        let mut edited = crate::resources::cluster::default_worker_group(&cluster);
        edited.metadata.uid = Some("uid-g".into());
        edited
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("argocd.argoproj.io/tracking-id".into(), "x".into());
        let d = worker_deployment(
            &edited,
            &name,
            cluster.metadata.labels.as_ref().unwrap(),
            Some(&created),
        );
        assert_eq!(d.spec, created.spec, "the worker pod is not replaced");
        let labels = d.metadata.labels.unwrap();
        assert_eq!(labels["test-label"], "changed");
        assert_eq!(labels["cluster-only"], "new");
        assert_eq!(
            d.metadata.annotations.unwrap()["argocd.argoproj.io/tracking-id"],
            "x"
        );
        // A new worker gets the metadata as it is now.
        let fresh = worker_deployment(
            &edited,
            &names::worker_deployment("simple-default", "uid-g", 1),
            cluster.metadata.labels.as_ref().unwrap(),
            None,
        );
        let pod = fresh.spec.unwrap().template.metadata.unwrap();
        assert_eq!(pod.labels.as_ref().unwrap()["cluster-only"], "new");
        assert_eq!(
            pod.annotations.unwrap()["argocd.argoproj.io/tracking-id"],
            "x"
        );
    }

    #[test]
    fn workers_of_a_group_with_the_longest_name_have_valid_labels() {
        let cluster = crate::resources::cluster::tests::simplecluster();
        let mut g = crate::resources::cluster::default_worker_group(&cluster);
        let group = format!("{}-default", "c".repeat(names::MAX_CLUSTER_NAME));
        g.metadata.name = Some(group.clone());
        g.spec.cluster = "c".repeat(names::MAX_CLUSTER_NAME);
        g.metadata.uid = Some("uid-g".into());
        let name = names::worker_deployment(&group, "uid-g", 0);
        assert!(name.len() > names::MAX_LABEL_VALUE);
        let d = worker_deployment(&g, &name, &Map::new(), None);
        assert_eq!(d.metadata.name.as_deref(), Some(name.as_str()));
        let spec = d.spec.unwrap();
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        let selector = spec.selector.match_labels.unwrap();
        for labels in [d.metadata.labels.as_ref().unwrap(), &pod_labels, &selector] {
            for (k, v) in labels {
                assert!(v.len() <= names::MAX_LABEL_VALUE, "{k}={v}");
            }
            assert_eq!(labels[WORKER_NAME], names::worker_label(&name));
        }
        assert_eq!(pod_labels[WORKERGROUP_NAME], group);
        // The Dask worker is still named after its Deployment.
        assert!(
            env(&Deployment {
                spec: Some(DeploymentSpec {
                    template: PodTemplateSpec {
                        spec: Some(spec.template.spec.unwrap()),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                ..Default::default()
            })
            .contains(&("DASK_WORKER_NAME".to_string(), name.clone()))
        );
    }

    #[test]
    fn user_group_keeps_its_worker_name_and_gets_cluster_labels_without_forcing() {
        let g = group(include_str!("../../tests/fixtures/simpleworkergroup.yaml"));
        let cluster_labels: Map = [("test-label".to_string(), "label-value".to_string())].into();
        let d = worker_deployment(
            &g,
            "simple-additional-worker-0123456789",
            &cluster_labels,
            None,
        );
        let env = env(&d);
        // The user's DASK_WORKER_NAME stays; the scheduler address is appended.
        assert_eq!(
            env.iter().filter(|(k, _)| k == "DASK_WORKER_NAME").count(),
            1
        );
        assert!(env.contains(&("DASK_WORKER_NAME".to_string(), "test-worker".to_string())));
        assert_eq!(env.last().unwrap().0, "DASK_SCHEDULER_ADDRESS");
        let labels = d.metadata.labels.unwrap();
        assert_eq!(
            labels.get("test-label").map(String::as_str),
            Some("label-value")
        );
        assert_eq!(
            labels.get("dask.org/cluster-name").map(String::as_str),
            Some("simple")
        );
        // The group object itself is not labelled by building its workers.
        assert!(g.metadata.labels.is_none());
    }
}
