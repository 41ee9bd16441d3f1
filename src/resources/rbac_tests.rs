//! The chart's rules (`dask-operator.rules` in charts/dask-operator/templates/_helpers.tpl) against
//! the children the builders make: every child can be written with its owner reference under the
//! OwnerReferencesPermissionEnforcement admission plugin, and the finalizers rule names exactly the
//! owners.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Resource;
use serde::Deserialize;

use crate::crd::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};
use crate::resources::{cluster, job, names, workers};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// The rule list of the chart, without the template's comment lines.
fn chart_rules() -> Vec<Rule> {
    let text = include_str!("../../charts/dask-operator/templates/_helpers.tpl");
    let (_, rest) = text
        .split_once("{{- define \"dask-operator.rules\" -}}\n")
        .expect("the chart defines dask-operator.rules");
    let (body, _) = rest.split_once("{{- end }}").expect("the define ends");
    let yaml: String = body
        .lines()
        .filter(|l| !l.trim_start().starts_with("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!yaml.contains("{{"), "template logic in the rules: {yaml}");
    serde_saphyr::from_str(&yaml).expect("the rules are YAML")
}

/// `(group, resource, verb)` granted by `rules`.
fn grants(rules: &[Rule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in &r.api_groups {
            for res in &r.resources {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn resource<K: Resource<DynamicType = ()>>() -> (String, String) {
    (K::group(&()).to_string(), K::plural(&()).to_string())
}

/// Owner kinds (group, plural) by name, for the owner references the builders set.
fn owner_resource(kind: &str) -> (String, String) {
    match kind {
        "DaskCluster" => resource::<DaskCluster>(),
        "DaskWorkerGroup" => resource::<DaskWorkerGroup>(),
        "DaskJob" => resource::<DaskJob>(),
        other => panic!("an owner kind this test does not know: {other}"),
    }
}

#[test]
fn the_rules_let_the_operator_write_every_child_with_its_owner_reference() {
    let granted = grants(&chart_rules());
    let can = |(group, res): &(String, String), verb: &str| {
        granted.contains(&(group.clone(), res.clone(), verb.to_string()))
    };

    // Every child the builders make, with the owner references they set.
    let c = cluster::tests::simplecluster();
    let mut group = cluster::default_worker_group(&c);
    group.metadata.uid = Some("uid-g".into());
    let mut j: DaskJob =
        serde_saphyr::from_str(include_str!("../../tests/fixtures/simplejob.yaml")).unwrap();
    j.metadata.namespace = Some("ns1".into());
    j.metadata.uid = Some("uid-job".into());
    let worker = names::worker_deployment("simple-default", "uid-g", 0);
    let children = [
        (
            resource::<Deployment>(),
            cluster::scheduler_deployment(&c, None).metadata,
            true,
        ),
        (
            resource::<Service>(),
            cluster::scheduler_service(&c).metadata,
            true,
        ),
        (resource::<DaskWorkerGroup>(), group.metadata.clone(), true),
        (
            resource::<Deployment>(),
            workers::worker_deployment(&group, &worker, &Default::default(), None).metadata,
            true,
        ),
        (
            resource::<DaskCluster>(),
            job::job_cluster(&j).unwrap().metadata,
            true,
        ),
        // The runner is created once, never applied again.
        (
            resource::<Pod>(),
            job::runner_pod(&j, "j-runner").metadata,
            false,
        ),
    ];
    let mut owners = BTreeSet::new();
    for (child, meta, applied) in &children {
        // Watched, and written by server-side apply (create when new).
        for verb in ["list", "watch", "create"] {
            assert!(can(child, verb), "{verb} {child:?}");
        }
        // Applied again and again; a repair may restore an owner reference removed by hand, which
        // the admission plugin allows only with delete on the child.
        if *applied {
            for verb in ["patch", "delete"] {
                assert!(can(child, verb), "{verb} {child:?}");
            }
        }
        for owner in meta.owner_references.iter().flatten() {
            assert_eq!(owner.block_owner_deletion, Some(true), "{child:?}");
            owners.insert(owner_resource(&owner.kind));
        }
    }
    // Adopted by their cluster (an owner reference added to an existing object: patch and delete).
    for adopted in [resource::<DaskWorkerGroup>(), resource::<DaskAutoscaler>()] {
        assert!(
            can(&adopted, "patch") && can(&adopted, "delete"),
            "{adopted:?}"
        );
    }
    owners.insert(resource::<DaskCluster>());

    // blockOwnerDeletion needs update on the owner's finalizers; and nothing else has that rule.
    let finalizers: BTreeSet<(String, String)> = granted
        .iter()
        .filter(|(_, res, _)| res.ends_with("/finalizers"))
        .map(|(g, res, verb)| {
            assert_eq!(verb, "update", "{res}");
            (g.clone(), res.trim_end_matches("/finalizers").to_string())
        })
        .collect();
    assert_eq!(finalizers, owners);
}

#[test]
fn the_rules_have_no_wildcards_and_no_verbs_beyond_the_api_calls() {
    let allowed: BTreeSet<&str> = [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ]
    .into();
    for r in chart_rules() {
        for field in [&r.api_groups, &r.resources, &r.verbs] {
            assert!(field.iter().all(|v| !v.contains('*')), "{field:?}");
        }
        for v in &r.verbs {
            assert!(allowed.contains(v.as_str()), "{v}");
            // The operator never replaces an object (PUT): only the finalizers rule has update.
            if v == "update" {
                assert!(
                    r.resources.iter().all(|res| res.ends_with("/finalizers")),
                    "{:?}",
                    r.resources
                );
            }
        }
    }
}
