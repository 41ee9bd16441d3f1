//! Turns the derived CRDs into the served ones: the few places where upstream's schema carries a
//! default or a field that the Rust types cannot express are filled in here, in one pass.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};
use crate::resources::names;

/// The four CRDs as served: DaskCluster, DaskWorkerGroup, DaskJob, DaskAutoscaler.
pub fn crds() -> Vec<CustomResourceDefinition> {
    SERVED.iter().map(|make| make()).collect()
}

/// The makers of the four served CRDs, in [`crds`]' order: one CRD's schema at a time is much
/// smaller than four (the DaskJob's holds three PodSpecs), for the operator's start-up check.
pub const SERVED: [fn() -> CustomResourceDefinition; 4] = [
    || served(DaskCluster::crd()),
    || served(DaskWorkerGroup::crd()),
    || served(DaskJob::crd()),
    || served(DaskAutoscaler::crd()),
];

/// A derived CRD completed (see [`complete_schema`]) and stamped.
fn served(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let kind = crd.spec.names.kind.clone();
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else {
            continue;
        };
        let Some(props) = validation.open_api_v3_schema.take() else {
            continue;
        };
        let mut schema = serde_json::to_value(props).expect("schema serializes");
        complete_schema(&kind, &mut schema);
        validation.open_api_v3_schema =
            Some(serde_json::from_value(schema).expect("schema deserializes"));
    }
    super::install::stamp(&mut crd);
    crd
}

/// All CRDs as one multi-document YAML stream, the content of `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_saphyr::to_string(crd).expect("CRD serializes to YAML"))
        .map(|doc| format!("---\n{doc}"))
        .collect()
}

fn complete_schema(kind: &str, schema: &mut Value) {
    walk(schema);
    if kind == "DaskJob" {
        // Upstream's patch: the runner restarts on failure unless told otherwise.
        let restart_policy = schema.pointer_mut(
            "/properties/spec/properties/job/properties/spec/properties/restartPolicy",
        );
        restart_policy.expect("DaskJob runner PodSpec has restartPolicy")["default"] =
            json!("OnFailure");
    }
    name_rules(kind, schema);
}

/// CEL rules for the names that children are derived from (see `crate::resources::names` for every
/// derived name, its limit and why each kind is checked where it is). DaskCluster has none: upstream
/// accepts any name and reports an invalid one as `status.phase: Error`, which its tests expect.
///
/// A rule on `metadata.name` sits at the root of the schema, where an update of anything (a status
/// write, a finalizer) would evaluate it again; with `optionalOldSelf` and `oldSelf.hasValue() ||` it
/// applies on create only, so objects stored before the rule can still be updated and deleted (their
/// controllers fail them with a reason instead). Root rules name their field in the message, as the
/// API server reports them at the root; rules on a field are reported at the field's path.
fn name_rules(kind: &str, schema: &mut Value) {
    let max_cluster = names::MAX_CLUSTER_NAME;
    let pattern = names::CLUSTER_NAME_PATTERN;
    let on_create = |rule: String, message: String| json!({"rule": format!("oldSelf.hasValue() || {rule}"), "optionalOldSelf": true, "message": message});
    let cluster_reference = json!([
        {
            "rule": format!("self.size() <= {max_cluster}"),
            "message": format!("at most {max_cluster} characters: must be the name of a DaskCluster, which is at most {max_cluster} characters long"),
        },
        {
            "rule": format!("self.matches('{pattern}')"),
            "message": "must be the name of a DaskCluster: lower case letters, digits and '-', starting with a letter and ending with a letter or digit",
        },
    ]);
    match kind {
        "DaskJob" => {
            schema["x-kubernetes-validations"] = json!([
                on_create(
                    format!("self.metadata.name.size() <= {max_cluster}"),
                    format!(
                        "metadata.name: at most {max_cluster} characters: a DaskJob's name is the name of its \
                         DaskCluster, whose Service <name>-scheduler must fit the 63 characters of a DNS label"
                    ),
                ),
                on_create(
                    format!("self.metadata.name.matches('{pattern}')"),
                    "metadata.name: lower case letters, digits and '-' only, starting with a letter and \
                     ending with a letter or digit (no dots): a DaskJob's name is the name of its \
                     DaskCluster and of its Service <name>-scheduler (a DNS-1035 label)"
                        .to_string(),
                ),
            ]);
            let spec = &mut schema["properties"]["spec"];
            spec["x-kubernetes-validations"] = json!([
                {
                    "rule": "has(self.cluster) != has(self.clusterRef)",
                    "message": "spec: exactly one of spec.cluster (a DaskCluster made for the job) and \
                                spec.clusterRef (an existing DaskCluster) must be set",
                },
                {
                    "rule": "has(oldSelf.clusterRef) == has(self.clusterRef)",
                    "message": "spec.clusterRef: cannot be added or removed once the job exists (it \
                                decides whether the job owns its cluster); create a new DaskJob",
                },
                {
                    "rule": "!has(self.clusterRef) || !has(self.cleanupPolicy)",
                    "message": "spec.cleanupPolicy: applies to the job's own cluster (spec.cluster); a job \
                                on an existing cluster (spec.clusterRef) never deletes it",
                },
            ]);
            spec["properties"]["clusterRef"]["properties"]["name"]["x-kubernetes-validations"] =
                cluster_reference;
            spec["properties"]["cleanupPolicy"]["x-kubernetes-validations"] = json!([{
                "rule": "!has(self.keepForSeconds) || self.cluster == 'KeepOnFailure'",
                "message": "spec.cleanupPolicy.keepForSeconds: only with cluster: KeepOnFailure \
                            (a cluster that is deleted when the job ends is not kept)",
            }]);
        }
        "DaskWorkerGroup" => {
            let max_group = names::MAX_WORKER_GROUP_NAME;
            schema["x-kubernetes-validations"] = json!([on_create(
                format!("self.metadata.name.size() <= {max_group}"),
                format!(
                    "metadata.name: at most {max_group} characters: a DaskWorkerGroup's name is the value \
                     of the label dask.org/workergroup-name on its workers"
                ),
            )]);
            schema["properties"]["spec"]["properties"]["cluster"]["x-kubernetes-validations"] =
                cluster_reference;
        }
        "DaskAutoscaler" => {
            let spec = &mut schema["properties"]["spec"];
            spec["properties"]["cluster"]["x-kubernetes-validations"] = cluster_reference;
            spec["x-kubernetes-validations"] = json!([{
                "rule": "self.minimum <= self.maximum",
                "message": "spec.minimum: must not be greater than spec.maximum",
            }]);
        }
        _ => {}
    }
}

fn walk(node: &mut Value) {
    if is_kubernetes_type(node) {
        // The embedded PodSpec and ServiceSpec are documented by `kubectl explain pod.spec` and
        // `service.spec`; their descriptions would make the DaskJob CRD over 1 MB (three PodSpecs).
        strip_descriptions(node);
        unrequire_reference_names(node);
    }
    let Some(object) = node.as_object_mut() else {
        if let Some(items) = node.as_array_mut() {
            items.iter_mut().for_each(walk);
        }
        return;
    };
    if let Some(props) = object.get_mut("properties").and_then(Value::as_object_mut) {
        // Container, init container and Service ports: `protocol` defaults to TCP as upstream's
        // patches do (it is a key of the ports list-map).
        if let Some(protocol) = props
            .get_mut("ports")
            .and_then(|p| p.pointer_mut("/items/properties/protocol"))
        {
            protocol["default"] = json!("TCP");
        }
        // A ServiceSpec: accept the field removed in Kubernetes 1.22 that upstream's 1.21 schema still has;
        // it is stored but never copied to the Service.
        if props.contains_key("clusterIP") && props.contains_key("sessionAffinity") {
            props.insert(
                "topologyKeys".into(),
                json!({
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Removed in Kubernetes 1.22. Accepted for compatibility with dask-kubernetes manifests and ignored."
                }),
            );
        }
    }
    object.values_mut().for_each(walk);
}

/// The root of an embedded PodSpec or ServiceSpec schema.
fn is_kubernetes_type(node: &Value) -> bool {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return false;
    };
    let pod_spec = props.contains_key("containers") && props.contains_key("restartPolicy");
    let service_spec = props.contains_key("clusterIP") && props.contains_key("sessionAffinity");
    pod_spec || service_spec
}

/// k8s-openapi's schemas require `name` in object references (`LocalObjectReference` and the
/// `*KeySelector`, `*EnvSource`, `*Projection` and `ConfigMapVolumeSource` types), which neither
/// Kubernetes' own OpenAPI nor upstream's CRDs do; an empty reference (a Helm value left blank) must
/// stay accepted.
fn unrequire_reference_names(node: &mut Value) {
    match node {
        Value::Object(object) => {
            let is_reference = object
                .get("properties")
                .and_then(Value::as_object)
                .is_some_and(|props| {
                    props.contains_key("name")
                        && (props.len() == 1 || props.contains_key("optional"))
                });
            if is_reference
                && let Some(required) = object.get_mut("required").and_then(Value::as_array_mut)
            {
                required.retain(|r| r != "name");
                if required.is_empty() {
                    object.remove("required");
                }
            }
            object.values_mut().for_each(unrequire_reference_names);
        }
        Value::Array(items) => items.iter_mut().for_each(unrequire_reference_names),
        _ => {}
    }
}

fn strip_descriptions(node: &mut Value) {
    match node {
        Value::Object(object) => {
            // A property may itself be named "description": only drop the string-valued keyword.
            if object.get("description").is_some_and(Value::is_string) {
                object.remove("description");
            }
            object.values_mut().for_each(strip_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(kind: &str) -> Value {
        let crd = crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema,
        )
        .unwrap()
    }

    fn rules(node: &Value) -> Vec<(String, String, bool)> {
        node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["rule"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap().to_string(),
                    r["optionalOldSelf"] == json!(true),
                )
            })
            .collect()
    }

    #[test]
    fn daskjob_names_are_checked_on_create_like_cluster_names() {
        let rules = rules(&schema_of("DaskJob"));
        assert_eq!(rules.len(), 2);
        for (rule, message, optional_old_self) in &rules {
            // Only on create: stored objects stay updatable.
            assert!(rule.starts_with("oldSelf.hasValue() || "), "{rule}");
            assert!(optional_old_self);
            assert!(message.starts_with("metadata.name: "), "{message}");
        }
        assert!(rules[0].0.ends_with("self.metadata.name.size() <= 53"));
        assert!(rules[0].1.contains("at most 53 characters"));
        assert!(rules[1].0.contains(names::CLUSTER_NAME_PATTERN));
    }

    #[test]
    fn worker_group_names_and_cluster_references_are_checked() {
        let group = schema_of("DaskWorkerGroup");
        let root = rules(&group);
        assert_eq!(root.len(), 1);
        assert!(root[0].0.ends_with("self.metadata.name.size() <= 63"));
        assert!(root[0].2);
        for schema in [group, schema_of("DaskAutoscaler")] {
            let cluster = rules(&schema["properties"]["spec"]["properties"]["cluster"]);
            assert_eq!(cluster[0].0, "self.size() <= 53");
            assert!(cluster[1].0.contains(names::CLUSTER_NAME_PATTERN));
        }
    }

    #[test]
    fn daskcluster_names_are_not_checked_by_the_schema() {
        // Upstream accepts them and reports `phase: Error`; its tests rely on it.
        assert!(rules(&schema_of("DaskCluster")).is_empty());
    }
}
