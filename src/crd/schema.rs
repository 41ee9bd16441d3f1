//! Turns the derived CRDs into the served ones: the few places where upstream's schema carries a
//! default or a field that the Rust types cannot express are filled in here, in one pass.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::{DaskAutoscaler, DaskCluster, DaskJob, DaskWorkerGroup};

/// The four CRDs as served: DaskCluster, DaskWorkerGroup, DaskJob, DaskAutoscaler.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        DaskCluster::crd(),
        DaskWorkerGroup::crd(),
        DaskJob::crd(),
        DaskAutoscaler::crd(),
    ];
    for crd in &mut crds {
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
        super::install::stamp(crd);
    }
    crds
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
