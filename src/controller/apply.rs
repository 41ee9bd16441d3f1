//! The generic writes every controller makes: apply a child only when it differs, patch status only
//! when it changed, delete, adopt.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::{Context, MANAGER};
use crate::crd::DaskCluster;
use crate::error::{Error, Result};
use crate::resources::labels::SPEC_HASH;

/// A hash of what we want a child to be; kept in its [`SPEC_HASH`] annotation.
fn spec_hash<K: Serialize>(desired: &K) -> String {
    let bytes = serde_json::to_vec(desired).expect("objects serialize");
    hex::encode(Sha256::digest(&bytes))[..16].to_string()
}

/// Server-side applies `desired` unless `observed` was made from the same desired state (same spec
/// hash), so an unchanged child costs no API call. Returns the child as stored; `what` names the
/// step in errors.
///
/// Takeover rule: a child without our hash annotation was written by someone else — the Python
/// operator, whose children have none. If it already holds everything we want (`desired` is
/// contained in it, see [`contains`]) it is taken over as it is, without a write: an apply would
/// only add the annotation, and a new annotation on a Deployment bumps its generation. Such a child
/// is compared again on each reconcile (no API call) until its parent's spec changes what we want;
/// then it is applied and carries our hash from there on. An apply over a child we did not write
/// could not remove the fields its writer owns either, so skipping it loses nothing.
pub async fn apply<K>(ctx: &Context, mut desired: K, observed: Option<&K>, what: &str) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let hash = spec_hash(&desired);
    if let Some(current) = observed {
        let same = current.annotations().get(SPEC_HASH) == Some(&hash);
        // Taken over as it is (see above): written by someone else, and already what we want.
        let taken_over = || {
            !current.annotations().contains_key(SPEC_HASH)
                && contains(
                    &serde_json::to_value(current).expect("objects serialize"),
                    &serde_json::to_value(&desired).expect("objects serialize"),
                )
        };
        let unchanged = same || taken_over();
        if unchanged && current.meta().deletion_timestamp.is_none() {
            return Ok(current.clone());
        }
    }
    desired.annotations_mut().insert(SPEC_HASH.into(), hash);
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let mut body = serde_json::to_value(&desired).expect("objects serialize");
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    let api: Api<K> = ctx.api(&namespace);
    let object = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::api(format!("apply {what} {namespace}/{name}")))?;
    debug!(%namespace, %name, what, "applied");
    Ok(object)
}

/// Whether `observed` holds everything `desired` has: every key of an object with a contained value
/// (other keys, such as the API server's defaults, may be there too), arrays of the same length with
/// contained elements in the same order, equal scalars. A `null` in `desired` (a field it leaves
/// unset) is contained in anything.
fn contains(observed: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(o), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| o.get(k).is_some_and(|ov| contains(ov, dv)) || dv.is_null()),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| contains(ov, dv))
        }
        (o, d) => o == d,
    }
}

/// Server-side applies `status` to the status subresource of `obj` unless it is the status `obj`
/// already has (see [`Context::current_status`]). Returns whether it wrote.
pub async fn patch_status<K>(ctx: &Context, obj: &K, status: &K::Status) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus
        + Clone
        + Debug
        + DeserializeOwned,
    K::Status: Serialize + DeserializeOwned + PartialEq + Clone,
{
    if ctx.current_status(obj).as_ref() == Some(status) {
        return Ok(false);
    }
    let name = obj.name_any();
    let namespace = obj.namespace().unwrap_or_default();
    let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    ctx.api::<K>(&namespace)
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::api(format!(
            "patch {} status {namespace}/{name}",
            K::kind(&())
        )))?;
    ctx.record_written(
        obj,
        serde_json::to_value(status).expect("status serializes"),
    );
    Ok(true)
}

/// Deletes `name`; NotFound counts as done.
pub async fn delete<K>(ctx: &Context, namespace: &str, name: &str, what: &str) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    match ctx
        .api::<K>(namespace)
        .delete(name, &Default::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(Error::api(format!("delete {what} {namespace}/{name}"))(e)),
    }
}

/// Makes `obj` a child of its DaskCluster (cascade deletion), as upstream does for user-created
/// worker groups and autoscalers, without labelling it. Uses its own field manager so it never drops
/// fields that the main one owns.
pub async fn adopt<K>(ctx: &Context, obj: &K, cluster: &DaskCluster) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let cluster_uid = cluster.uid().unwrap_or_default();
    let owners = obj.owner_references();
    if owners.iter().any(|o| o.uid == cluster_uid) {
        return Ok(());
    }
    let mut owner = cluster
        .controller_owner_ref(&())
        .expect("cluster has a name and uid");
    if owners.iter().any(|o| o.controller == Some(true)) {
        owner.controller = Some(false); // only one controller reference is allowed
    }
    let (name, namespace) = (obj.name_any(), obj.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
    });
    ctx.api::<K>(&namespace)
        .patch(
            &name,
            &PatchParams::apply(&format!("{MANAGER}/adopt")).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::api(format!(
            "adopt {} {namespace}/{name}",
            K::kind(&())
        )))?;
    info!(kind = %K::kind(&()), %namespace, %name, cluster = %cluster.name_any(), "adopted by its cluster");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_allows_defaults_but_not_changes() {
        let observed = json!({
            "metadata": {"name": "w", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"spec": {"containers": [
                {"name": "worker", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                 "terminationMessagePath": "/dev/termination-log"}
            ]}}},
        });
        let desired = json!({
            "metadata": {"name": "w", "labels": {"a": "1", "b": "2"}, "annotations": null},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "worker", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
            ]}}},
        });
        assert!(contains(&observed, &desired));
        let mut changed = desired.clone();
        changed["metadata"]["labels"]["c"] = json!("3");
        assert!(!contains(&observed, &changed), "a new label");
        let mut changed = desired.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]);
        assert!(!contains(&observed, &changed), "env in another order");
        let mut changed = desired.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "X", "value": "1"}]);
        assert!(!contains(&observed, &changed), "one env var fewer");
        let mut changed = desired;
        changed["spec"]["strategy"] = json!({"type": "Recreate"});
        assert!(!contains(&observed, &changed), "a field that is not there");
    }
}
