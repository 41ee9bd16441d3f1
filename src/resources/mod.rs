//! Pure builders: each turns a parent object into the children it should have. No client, no I/O;
//! the controllers apply what these return.

pub mod cluster;
pub mod job;
pub mod labels;
pub mod names;
pub mod scheduler_api;
pub mod workers;

#[cfg(test)]
mod rbac_tests;

use k8s_openapi::api::core::v1::{EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::ObjectMeta;
use labels::Map;

/// Appends `vars` to the env of every container (not init containers) that does not set them already:
/// user values are never overridden (upstream PRs #869/#874).
pub fn append_env(spec: &mut PodSpec, vars: &[(&str, &str)]) {
    for container in &mut spec.containers {
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in vars {
            if !env.iter().any(|e| e.name == *name) {
                env.push(EnvVar {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                    ..Default::default()
                });
            }
        }
    }
}

/// The owner reference of a child to its parent: the parent is its controller, and (as upstream's
/// kopf sets it) blocks the owner's foreground deletion until the child is gone. Setting
/// `blockOwnerDeletion` needs `update` on the owner's `finalizers` under the
/// OwnerReferencesPermissionEnforcement admission plugin (the chart's rules grant it).
pub fn controller_owner<K: Resource<DynamicType = ()>>(parent: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        block_owner_deletion: Some(true),
        ..parent.controller_owner_ref(&())?
    })
}

/// Metadata of a child: name, namespace, labels, annotations and the parent as controller owner.
pub fn child_meta(
    name: String,
    parent: &ObjectMeta,
    owner: Option<OwnerReference>,
    labels: Map,
    annotations: Map,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: parent.namespace.clone(),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Container;

    use super::*;

    #[test]
    fn env_is_appended_after_user_env_and_never_overrides() {
        let mut spec = PodSpec {
            containers: vec![
                Container {
                    name: "a".into(),
                    env: Some(vec![EnvVar {
                        name: "USER".into(),
                        value: Some("1".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                Container {
                    name: "b".into(),
                    env: Some(vec![EnvVar {
                        name: "X".into(),
                        value: Some("mine".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            ],
            init_containers: Some(vec![Container {
                name: "init".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        append_env(&mut spec, &[("X", "ours"), ("Y", "ours")]);
        let names = |c: &Container| {
            c.env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&spec.containers[0]),
            [
                ("USER".into(), "1".into()),
                ("X".into(), "ours".into()),
                ("Y".into(), "ours".into())
            ]
        );
        assert_eq!(
            names(&spec.containers[1]),
            [("X".into(), "mine".into()), ("Y".into(), "ours".into())]
        );
        assert!(spec.init_containers.unwrap()[0].env.is_none());
    }
}
