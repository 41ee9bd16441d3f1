//! A DaskCluster's children: the scheduler Deployment and Service, and the default worker group.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Resource, ResourceExt};

use super::labels::{
    self, CLUSTER_NAME, COMPONENT, ISTIO_INJECT, Metadata, POD_INHERITED, component,
};
use super::{child_meta, controller_owner, names, scheduler_api};
use crate::crd::{DaskCluster, DaskWorkerGroup, DaskWorkerGroupSpec};

/// Labels the scheduler Deployment selects its pod by, unless an existing Deployment already has a
/// (immutable) selector of its own, e.g. one made by the Python operator.
pub fn scheduler_selector(cluster: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels::with_base(
            Default::default(),
            &[(CLUSTER_NAME, cluster), (COMPONENT, component::SCHEDULER)],
        )),
        ..Default::default()
    }
}

/// Deployment `<cluster>-scheduler`: one replica of `spec.scheduler.spec`, verbatim.
///
/// `existing` is the Deployment as it is, if there is one. It keeps its selector (immutable) and its
/// strategy: ours is `Recreate`, one chosen at creation, while a scheduler the Python operator made
/// has the API's default `RollingUpdate`, and changing it would bump the Deployment's generation (and
/// cannot be applied over the defaulted `rollingUpdate` it owns). Its pod template keeps the
/// cluster's labels and annotations as they were at creation (see [`labels`]): a metadata-only edit
/// of the DaskCluster relabels the Deployment but never restarts the scheduler.
pub fn scheduler_deployment(cluster: &DaskCluster, existing: Option<&Deployment>) -> Deployment {
    let name = cluster.name_any();
    let template = &cluster.spec.scheduler.metadata;
    let (inherited, mut annotations) = labels::inherit(cluster.meta(), template);
    let base = [
        (CLUSTER_NAME, name.as_str()),
        (COMPONENT, component::SCHEDULER),
        (ISTIO_INJECT, "false"),
    ];
    let labels = labels::with_base(inherited, &base);
    let (pod_meta, recorded) = labels::pod_template_metadata(
        existing,
        Metadata::of_parent(cluster.meta()),
        template,
        &base,
    );
    if let Some(recorded) = recorded {
        annotations.insert(POD_INHERITED.into(), recorded);
    }
    // The scheduler's HTTP API (autoscaling, graceful scale-down, idleness), unless the user configured
    // the routes. A scheduler made before the operator did this keeps its pod as it is: adding the
    // variable would restart it, and a restarted scheduler loses the cluster's work.
    let mut pod_spec = cluster.spec.scheduler.spec.clone();
    let with_api = existing.is_none_or(|d| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| {
                p.containers.iter().any(|c| {
                    c.env
                        .iter()
                        .flatten()
                        .any(|e| e.name == scheduler_api::ROUTES_ENV)
                })
            })
    });
    if with_api {
        scheduler_api::enable_http_api(&mut pod_spec);
    }
    let existing = existing.and_then(|d| d.spec.as_ref());
    Deployment {
        metadata: child_meta(
            names::scheduler(&name),
            cluster.meta(),
            controller_owner(cluster),
            labels,
            annotations,
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: existing
                .map(|s| s.selector.clone())
                .unwrap_or_else(|| scheduler_selector(&name)),
            // Never two schedulers at once: a rollout stops the old pod before starting the new one.
            strategy: match existing {
                Some(spec) => spec.strategy.clone(),
                None => Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    ..Default::default()
                }),
            },
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Service `<cluster>-scheduler`: `spec.scheduler.service`, verbatim.
pub fn scheduler_service(cluster: &DaskCluster) -> Service {
    let name = cluster.name_any();
    let (inherited, annotations) =
        labels::inherit(cluster.meta(), &cluster.spec.scheduler.metadata);
    let labels = labels::with_base(
        inherited,
        &[(CLUSTER_NAME, &name), (COMPONENT, component::SCHEDULER)],
    );
    Service {
        metadata: child_meta(
            names::scheduler(&name),
            cluster.meta(),
            controller_owner(cluster),
            labels,
            annotations,
        ),
        spec: Some(cluster.spec.scheduler.service.clone()),
        ..Default::default()
    }
}

/// DaskWorkerGroup `<cluster>-default` with `spec.worker`.
pub fn default_worker_group(cluster: &DaskCluster) -> DaskWorkerGroup {
    let name = cluster.name_any();
    let (inherited, annotations) = labels::inherit(cluster.meta(), &cluster.spec.worker.metadata);
    let labels = labels::with_base(
        inherited,
        &[(CLUSTER_NAME, &name), (COMPONENT, component::WORKERGROUP)],
    );
    DaskWorkerGroup {
        metadata: child_meta(
            names::default_worker_group(&name),
            cluster.meta(),
            controller_owner(cluster),
            labels,
            annotations,
        ),
        spec: DaskWorkerGroupSpec {
            cluster: name,
            worker: cluster.spec.worker.clone(),
        },
        status: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resources::labels::Map;

    pub(crate) fn simplecluster() -> DaskCluster {
        let yaml = include_str!("../../tests/fixtures/simplecluster.yaml");
        let mut cluster: DaskCluster = serde_saphyr::from_str(yaml).unwrap();
        cluster.metadata.namespace = Some("ns1".into());
        cluster.metadata.uid = Some("uid-simple".into());
        cluster
    }

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_scheduler_made_without_the_http_api_is_not_restarted_to_get_it() {
        let cluster = simplecluster();
        let mut old = scheduler_deployment(&cluster, None);
        let pod = old.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        pod.containers[0]
            .env
            .as_mut()
            .unwrap()
            .retain(|e| e.name != scheduler_api::ROUTES_ENV);
        let again = scheduler_deployment(&cluster, Some(&old));
        assert_eq!(
            again.spec.unwrap().template.spec,
            old.spec.clone().unwrap().template.spec
        );
        let fresh = scheduler_deployment(&cluster, None);
        let with_api = scheduler_deployment(&cluster, Some(&fresh));
        assert_eq!(
            with_api.spec.unwrap().template.spec,
            fresh.spec.unwrap().template.spec
        );
    }

    #[test]
    fn scheduler_deployment_has_upstream_names_labels_and_owner() {
        let cluster = simplecluster();
        let d = scheduler_deployment(&cluster, None);
        assert_eq!(d.metadata.name.as_deref(), Some("simple-scheduler"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("ns1"));
        let labels = d.metadata.labels.clone().unwrap();
        assert_eq!(
            labels,
            map(&[
                ("dask.org/cluster-name", "simple"),
                ("dask.org/component", "scheduler"),
                ("scheduler-sublabel", "label-value"),
                ("sidecar.istio.io/inject", "false"),
                ("test-label", "label-value"),
            ])
        );
        // The cluster's own metadata, which the pods got at creation, is recorded.
        assert_eq!(
            d.metadata.annotations.clone().unwrap(),
            map(&[
                (
                    POD_INHERITED,
                    r#"{"labels":{"test-label":"label-value"},"annotations":{"test-annotation":"annotation-value"}}"#
                ),
                ("scheduler-subannotation", "annotation-value"),
                ("test-annotation", "annotation-value")
            ])
        );
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("DaskCluster", "simple", Some(true))
        );
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let template = spec.template;
        let pod = template.metadata.unwrap();
        assert_eq!(pod.labels.unwrap(), labels);
        assert_eq!(
            pod.annotations.unwrap(),
            map(&[
                ("scheduler-subannotation", "annotation-value"),
                ("test-annotation", "annotation-value")
            ])
        );
        // The pod spec is used as given, plus the scheduler's HTTP API routes after the user's env.
        let container = &template.spec.unwrap().containers[0];
        let env = container.env.as_ref().unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(env[0].name, "SCHEDULER_ENV");
        assert_eq!(env[1].name, scheduler_api::ROUTES_ENV);
        assert!(
            env[1]
                .value
                .as_ref()
                .unwrap()
                .contains("distributed.http.scheduler.api")
        );
        for (k, v) in spec.selector.match_labels.unwrap() {
            assert_eq!(
                labels.get(&k),
                Some(&v),
                "selector label {k} is on the pods"
            );
        }
    }

    #[test]
    fn an_existing_selector_and_strategy_are_kept() {
        let ours = scheduler_deployment(&simplecluster(), None);
        let spec = ours.spec.clone().unwrap();
        assert_eq!(
            spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("Recreate")
        );
        // A scheduler the Python operator made: its own selector, the API's default strategy, the
        // same pod template and no annotation of ours.
        let mut existing = ours.clone();
        existing.metadata.annotations = None;
        let theirs = existing.spec.as_mut().unwrap();
        theirs.selector = LabelSelector {
            match_labels: Some(map(&[("a", "b")])),
            ..Default::default()
        };
        theirs.strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(Default::default()),
        });
        let d = scheduler_deployment(&simplecluster(), Some(&existing));
        let kept = d.spec.unwrap();
        assert_eq!(kept.selector, existing.spec.as_ref().unwrap().selector);
        assert_eq!(kept.strategy, existing.spec.as_ref().unwrap().strategy);
        assert_eq!(kept.template, spec.template);
        assert!(
            !d.metadata.annotations.unwrap().contains_key(POD_INHERITED),
            "not added to a Deployment made without it"
        );
    }

    /// What a GitOps tool does: labels and annotations on the DaskCluster itself change.
    fn relabelled(mut cluster: DaskCluster) -> DaskCluster {
        let labels = cluster.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("test-label".into(), "changed".into());
        labels.insert("app.kubernetes.io/instance".into(), "gitops".into());
        cluster
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("argocd.argoproj.io/tracking-id".into(), "x".into());
        cluster
    }

    #[test]
    fn a_metadata_only_edit_of_the_cluster_leaves_the_scheduler_pod_template_alone() {
        let cluster = simplecluster();
        let created = scheduler_deployment(&cluster, None);
        let edited = relabelled(cluster);
        let d = scheduler_deployment(&edited, Some(&created));
        // The pod template, and so the pod, is untouched...
        assert_eq!(d.spec, created.spec);
        // ...while the Deployment itself follows the cluster's metadata.
        let labels = d.metadata.labels.unwrap();
        assert_eq!(labels["test-label"], "changed");
        assert_eq!(labels["app.kubernetes.io/instance"], "gitops");
        let annotations = d.metadata.annotations.unwrap();
        assert_eq!(annotations["argocd.argoproj.io/tracking-id"], "x");
        assert_eq!(
            annotations[POD_INHERITED],
            created.metadata.annotations.as_ref().unwrap()[POD_INHERITED],
            "the record of what the pods inherited stays as it was"
        );
        // A Deployment made now gets the cluster's metadata as it is now.
        let fresh = scheduler_deployment(&edited, None).spec.unwrap().template;
        assert_eq!(
            fresh.metadata.unwrap().labels.unwrap()["test-label"],
            "changed"
        );
    }

    #[test]
    fn a_deployment_made_before_the_record_keeps_its_pod_template_too() {
        let cluster = simplecluster();
        let mut created = scheduler_deployment(&cluster, None);
        created
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(POD_INHERITED);
        let d = scheduler_deployment(&relabelled(cluster), Some(&created));
        assert_eq!(d.spec, created.spec);
        assert!(!d.metadata.annotations.unwrap().contains_key(POD_INHERITED));
    }

    #[test]
    fn edits_of_the_scheduler_template_metadata_are_rolled_out() {
        let cluster = simplecluster();
        let created = scheduler_deployment(&cluster, None);
        let mut edited = cluster.clone();
        edited.spec.scheduler.metadata = Some(crate::crd::SimpleObjectMeta {
            labels: Some(map(&[("new-sublabel", "v")])),
            annotations: None,
        });
        let pod = scheduler_deployment(&edited, Some(&created))
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap();
        let labels = pod.labels.unwrap();
        assert_eq!(labels["new-sublabel"], "v");
        assert!(!labels.contains_key("scheduler-sublabel"), "removed");
        assert_eq!(labels["test-label"], "label-value", "inherited at creation");
        assert_eq!(labels["dask.org/component"], "scheduler");
        let annotations = pod.annotations.unwrap();
        assert!(!annotations.contains_key("scheduler-subannotation"));
        assert_eq!(annotations["test-annotation"], "annotation-value");
    }

    #[test]
    fn service_is_verbatim_with_scheduler_labels_but_no_istio_label() {
        let cluster = simplecluster();
        let s = scheduler_service(&cluster);
        assert_eq!(s.metadata.name.as_deref(), Some("simple-scheduler"));
        let labels = s.metadata.labels.unwrap();
        assert_eq!(
            labels.get("dask.org/component").map(String::as_str),
            Some("scheduler")
        );
        assert!(!labels.contains_key("sidecar.istio.io/inject"));
        assert_eq!(s.spec.as_ref(), Some(&cluster.spec.scheduler.service));
    }

    #[test]
    fn default_worker_group_carries_worker_metadata() {
        let cluster = simplecluster();
        let g = default_worker_group(&cluster);
        assert_eq!(g.metadata.name.as_deref(), Some("simple-default"));
        assert_eq!(g.spec.cluster, "simple");
        assert_eq!(g.spec.worker, cluster.spec.worker);
        let labels = g.metadata.labels.unwrap();
        assert_eq!(
            labels.get("dask.org/component").map(String::as_str),
            Some("workergroup")
        );
        assert_eq!(
            labels.get("worker-sublabel").map(String::as_str),
            Some("label-value")
        );
        assert_eq!(
            labels.get("test-label").map(String::as_str),
            Some("label-value")
        );
        let annotations = g.metadata.annotations.unwrap();
        assert!(annotations.contains_key("worker-subannotation"));
        assert!(
            !annotations.keys().any(
                |k| k.starts_with("kopf.zalando.org") || k.starts_with("kubectl.kubernetes.io")
            )
        );
    }
}
