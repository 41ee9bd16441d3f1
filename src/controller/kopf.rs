//! Migration from the Python operator (kopf): what it left on the objects it handled.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use super::Context;
use crate::error::{Error, Result};
use crate::resources::labels;

/// Removes what the Python operator (kopf) left on an object it handled: its finalizer, so that
/// deleting the object does not hang now that kopf is gone, and its annotations (`kopf.zalando.org/…`:
/// `last-handled-configuration`, handler progress), which nothing reads any more. Metadata only: no
/// Deployment or Pod is rolled out by it. See [`kopf_leftovers_patch`].
pub async fn remove_kopf_leftovers<K>(ctx: &Context, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let Some(patch) = kopf_leftovers_patch(obj.meta()) else {
        return Ok(());
    };
    let (kind, name) = (K::kind(&()), obj.name_any());
    let namespace = obj.namespace().unwrap_or_default();
    ctx.api::<K>(&namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api(format!(
            "remove kopf's finalizer and annotations from {kind} {namespace}/{name}"
        )))?;
    info!(%kind, %namespace, %name, "removed kopf's finalizer and annotations");
    Ok(())
}

/// The merge patch that removes kopf's finalizer and `kopf.zalando.org/` annotations, for objects
/// kopf handled (its finalizer or its `last-handled-configuration` annotation is there; a user's own
/// `kopf.zalando.org/…` annotation on an object kopf never saw stays); `None` when there is nothing
/// to remove. Optimistic: it carries the resourceVersion the object was read at, so a concurrent
/// change makes it fail (and the reconcile is retried) rather than drop someone else's finalizer.
fn kopf_leftovers_patch(meta: &ObjectMeta) -> Option<serde_json::Value> {
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    let annotations = meta.annotations.as_ref();
    let has_finalizer = finalizers.iter().any(|f| f == labels::KOPF_FINALIZER);
    let handled = annotations.is_some_and(|a| a.contains_key(labels::KOPF_LAST_HANDLED));
    if !has_finalizer && !handled {
        return None;
    }
    let mut metadata = json!({"resourceVersion": meta.resource_version});
    if has_finalizer {
        let kept: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != labels::KOPF_FINALIZER)
            .collect();
        metadata["finalizers"] = json!(kept);
    }
    let kopf: serde_json::Map<String, serde_json::Value> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(labels::KOPF_ANNOTATION_PREFIX))
        .map(|(k, _)| (k.clone(), serde_json::Value::Null))
        .collect();
    if !kopf.is_empty() {
        metadata["annotations"] = serde_json::Value::Object(kopf);
    }
    Some(json!({ "metadata": metadata }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(finalizers: &[&str], annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some("42".into()),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn kopf_finalizer_and_annotations_are_removed_optimistically() {
        let m = meta(
            &[labels::KOPF_FINALIZER, "example.com/keep"],
            &[
                (labels::KOPF_LAST_HANDLED, "{}"),
                ("kopf.zalando.org/daskcluster_create", "{}"),
                ("user", "keep"),
            ],
        );
        assert_eq!(
            kopf_leftovers_patch(&m),
            Some(json!({"metadata": {
                "resourceVersion": "42",
                "finalizers": ["example.com/keep"],
                "annotations": {
                    "kopf.zalando.org/daskcluster_create": null,
                    "kopf.zalando.org/last-handled-configuration": null,
                },
            }}))
        );
        // Annotations only (kopf puts no finalizer on DaskJobs and DaskWorkerGroups).
        let m = meta(&[], &[(labels::KOPF_LAST_HANDLED, "{}")]);
        assert_eq!(
            kopf_leftovers_patch(&m),
            Some(json!({"metadata": {
                "resourceVersion": "42",
                "annotations": {"kopf.zalando.org/last-handled-configuration": null},
            }}))
        );
    }

    #[test]
    fn objects_kopf_never_handled_are_left_alone() {
        assert_eq!(kopf_leftovers_patch(&ObjectMeta::default()), None);
        let m = meta(
            &["example.com/keep"],
            &[("kopf.zalando.org/foobar", "user's")],
        );
        assert_eq!(kopf_leftovers_patch(&m), None);
    }
}
