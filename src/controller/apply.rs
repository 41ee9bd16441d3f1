//! The generic writes every controller makes: apply a child only when it differs from what we want
//! (also when someone changed it by hand: drift is repaired), patch status only when it changed,
//! delete, adopt.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{LazyLock, Mutex};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::{Context, MANAGER};
use crate::crd::{DaskCluster, DaskWorkerGroup};
use crate::error::{Error, Result};
use crate::resources::labels::{PARENT_REPLICAS, SPEC_HASH};

/// A hash of what we want a child to be; kept in its [`SPEC_HASH`] annotation.
fn spec_hash<K: Serialize>(desired: &K) -> String {
    let bytes = serde_json::to_vec(desired).expect("objects serialize");
    hex::encode(Sha256::digest(&bytes))[..16].to_string()
}

/// A kind of child that [`apply`] writes. Every field the operator sets on a child is the operator's
/// (see [`apply`]), except the one a `SCALED` kind's users scale.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
{
    /// The replicas of a kind with a scale subresource (a JSON pointer): a DaskWorkerGroup or
    /// DaskCluster the operator made is scaled by users (`kubectl scale`, an autoscaler, upstream's
    /// `KubeCluster.scale`). The operator sets the value when it makes the child and whenever the
    /// parent's value changes; in between, the child's own value stands.
    const SCALED: Option<&'static str> = None;
}

impl Child for Deployment {}
impl Child for Service {}
impl Child for DaskWorkerGroup {
    const SCALED: Option<&'static str> = Some("/spec/worker/replicas");
}
impl Child for DaskCluster {
    const SCALED: Option<&'static str> = Some("/spec/worker/replicas");
}

/// What [`apply`] does with a child.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Nothing: it is what we want.
    Keep,
    /// Write it: it is new, or what we want of it changed.
    Apply,
    /// Restore it: what we want is unchanged (same spec hash), but someone changed it since.
    Repair,
}

/// Decides what to do with the child `current` (as JSON; `None`: it does not exist) for `body` (the
/// desired child as JSON, whose spec hash is `hash`), and completes `body` for a write: the user's
/// replicas where they stand (see [`Child::SCALED`], pointer `scaled`), our annotations.
///
/// A child is compared with what we want even when its hash matches: someone may have edited it. Only
/// the fields we set count (see [`contains`]): what the API server defaults, and what others add
/// (labels, annotations, list entries such as a container injected by a webhook or an env var set
/// with `kubectl set env`), is theirs; a field we set with another value, or removed, is drift.
fn decide(current: Option<&Value>, body: &mut Value, hash: &str, scaled: Option<&str>) -> Decision {
    let annotation = |key: &str| {
        current
            .and_then(|c| c.pointer("/metadata/annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let written = annotation(SPEC_HASH);
    let ours = written.is_some();
    let same = written.as_deref() == Some(hash);
    let parent_replicas = scaled.and_then(|p| body.pointer(p)).map(Value::to_string);
    if let (Some(current), Some(pointer)) = (current, scaled) {
        // The parent's value changed since we last wrote the child: it wins. Without a record, a
        // child we never wrote (the Python operator's) keeps its own, and one we wrote before the
        // record existed takes the parent's if anything of the parent changed.
        let parent_changed = !same
            && match annotation(PARENT_REPLICAS) {
                Some(recorded) => Some(recorded) != parent_replicas,
                None => ours,
            };
        if !parent_changed
            && let (Some(own), Some(slot)) = (current.pointer(pointer), body.pointer_mut(pointer))
        {
            *slot = own.clone();
        }
    }
    let decision = match current {
        None => Decision::Apply,
        // Being deleted (a foreground deletion under way): written as before.
        Some(c)
            if c.pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null()) =>
        {
            Decision::Apply
        }
        // Ours and unchanged, or the takeover rule (see `apply`): compare.
        Some(c) if same || !ours => match (contains(c, body), same) {
            (true, _) => Decision::Keep,
            (false, true) => Decision::Repair,
            (false, false) => Decision::Apply,
        },
        Some(_) => Decision::Apply,
    };
    let annotations = &mut body["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[SPEC_HASH] = json!(hash);
    if let Some(replicas) = parent_replicas {
        annotations[PARENT_REPLICAS] = json!(replicas);
    }
    decision
}

/// Children whose last repair did not hold (the API server or another writer changes them back):
/// child UID -> `<spec hash>@<resourceVersion>` after that repair. Such a child is not repaired again
/// until one of the two changes, so it costs no write per reconcile. Bounded: cleared when large.
static UNRESTORABLE: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

fn unrestorable_key(obj: &impl Resource, hash: &str) -> (String, String) {
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let version = obj.meta().resource_version.clone().unwrap_or_default();
    (uid, format!("{hash}@{version}"))
}

/// Sets `apiVersion` and `kind` of `body`, a server-side apply body for a `K`.
fn typed<K: Resource<DynamicType = ()>>(body: &mut serde_json::Value) {
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
}

/// Whether the object with `uid` is among the owners of `obj`.
pub(crate) fn owned_by<K: Resource>(obj: &K, uid: &str) -> bool {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid)
}

/// Server-side applies `desired` unless `observed` is already what we want. Returns the child as
/// stored; `what` names the step in errors.
///
/// What "already" means (see [`decide`]): a child holds every field we set, with our values (drift —
/// a field changed by hand — is repaired even when the spec hash annotation matches), except the
/// replicas its users scale ([`Child::SCALED`]). Comparing costs no API call.
///
/// Takeover rule: a child without our hash annotation was written by someone else — the Python
/// operator, whose children have none. If it already holds everything we want (`desired` is
/// contained in it, see [`contains`]) it is taken over as it is, without a write: an apply would
/// only add the annotation, and a new annotation on a Deployment bumps its generation. Such a child
/// is compared again on each reconcile (no API call) until its parent's spec changes what we want;
/// then it is applied and carries our hash from there on. An apply over a child we did not write
/// could not remove the fields its writer owns either, so skipping it loses nothing.
pub async fn apply<K: Child>(
    ctx: &Context,
    desired: K,
    observed: Option<&K>,
    what: &str,
) -> Result<K> {
    let hash = spec_hash(&desired);
    let mut body = serde_json::to_value(&desired).expect("objects serialize");
    let current = observed.map(|o| serde_json::to_value(o).expect("objects serialize"));
    let decision = decide(current.as_ref(), &mut body, &hash, K::SCALED);
    typed::<K>(&mut body);
    match (decision, observed) {
        (Decision::Keep, Some(current)) => Ok(current.clone()),
        (Decision::Repair, Some(current)) => repair(ctx, current, &body, &hash, what).await,
        _ => server_side_apply(ctx, &body, what).await,
    }
}

async fn server_side_apply<K: Child>(ctx: &Context, body: &Value, what: &str) -> Result<K> {
    let (name, namespace) = name_of(body);
    let object = ctx
        .api::<K>(&namespace)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(Error::api(format!("apply {what} {namespace}/{name}")))?;
    debug!(%namespace, %name, what, "applied");
    Ok(object)
}

fn name_of(body: &Value) -> (String, String) {
    let field = |f: &str| body["metadata"][f].as_str().unwrap_or_default().to_string();
    (field("name"), field("namespace"))
}

/// Restores `current`, a child someone changed, to `body`. A server-side apply first: it takes back
/// every field we set. It cannot remove what another writer owns, though, such as a Service port
/// whose number was edited (the edited port stays next to the restored one, and the two then share a
/// name, which the API server rejects): then the spec is replaced by ours (a merge patch replaces
/// lists as a whole) and applied again. A repair that does not hold is remembered ([`UNRESTORABLE`]).
async fn repair<K: Child>(
    ctx: &Context,
    current: &K,
    body: &Value,
    hash: &str,
    what: &str,
) -> Result<K> {
    let (uid, version) = unrestorable_key(current, hash);
    if UNRESTORABLE.lock().unwrap().get(&uid) == Some(&version) {
        return Ok(current.clone());
    }
    let (name, namespace) = name_of(body);
    info!(%namespace, %name, what, "repairing a child changed outside the operator");
    let holds = |o: &K| contains(&serde_json::to_value(o).expect("objects serialize"), body);
    let applied = match server_side_apply::<K>(ctx, body, what).await {
        Ok(o) if holds(&o) => Some(o),
        Ok(_) => None,
        Err(Error::Api {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 422 => None,
        Err(e) => return Err(e),
    };
    let object = match applied {
        Some(o) => o,
        None => {
            ctx.api::<K>(&namespace)
                .patch(
                    &name,
                    &PatchParams {
                        field_manager: Some(MANAGER.into()),
                        ..Default::default()
                    },
                    &Patch::Merge(json!({"spec": body["spec"]})),
                )
                .await
                .map_err(Error::api(format!(
                    "replace the spec of {what} {namespace}/{name}"
                )))?;
            server_side_apply::<K>(ctx, body, what).await?
        }
    };
    if holds(&object) {
        UNRESTORABLE.lock().unwrap().remove(&uid);
        let note = format!("{what} {name} was changed outside the operator; restored");
        ctx.event(current, EventType::Normal, "Restored", note)
            .await;
    } else {
        let mut unrestorable = UNRESTORABLE.lock().unwrap();
        if unrestorable.len() >= 4096 {
            unrestorable.clear();
        }
        unrestorable.insert(uid, unrestorable_key(&object, hash).1);
        warn!(%namespace, %name, what, "could not restore a child changed outside the operator; \
              something changes it back");
    }
    Ok(object)
}

/// Whether `observed` holds everything `desired` has, the way the API server stores what we write:
///
/// - objects: every key with a contained value; other keys (the API server's defaults, what others
///   add) may be there too. A key that is missing, or `null`, holds an empty or zero value (`""`, `0`,
///   `false`, `[]`, `{}`; the API server drops those), and a `null` in `desired` (a field it leaves
///   unset) is contained in anything;
/// - arrays of objects (containers, env, ports, volumes, owner references): the desired elements, in
///   order, each contained in its own element of `observed`, which may have more (a sidecar a webhook
///   injected, an env var set by hand): what others add to such a list is theirs;
/// - arrays of scalars (args, command): equal;
/// - quantities (the values of `limits`, `requests`, `overhead`, and `sizeLimit`): equal amounts
///   (`"0.5"` is stored as `"500m"`);
/// - other scalars: equal.
fn contains(observed: &Value, desired: &Value) -> bool {
    contains_at(observed, desired, false)
}

fn contains_at(observed: &Value, desired: &Value, quantity: bool) -> bool {
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Null, d) => is_empty(d),
        (Value::Object(o), Value::Object(d)) => d.iter().all(|(k, dv)| match o.get(k) {
            Some(ov) => {
                let quantities = matches!(k.as_str(), "limits" | "requests" | "overhead");
                match (quantities, ov, dv) {
                    (true, Value::Object(om), Value::Object(dm)) => dm.iter().all(|(r, dq)| {
                        om.get(r)
                            .map_or(is_empty(dq), |oq| contains_at(oq, dq, true))
                    }),
                    _ => contains_at(ov, dv, k == "sizeLimit"),
                }
            }
            None => is_empty(dv),
        }),
        (Value::Array(o), Value::Array(d)) if d.iter().all(Value::is_object) => {
            let mut rest = o.iter();
            d.iter()
                .all(|dv| rest.by_ref().any(|ov| contains_at(ov, dv, false)))
        }
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| contains_at(ov, dv, false))
        }
        (Value::String(o), Value::String(d)) if quantity && o != d => {
            nanos(o).is_some_and(|a| Some(a) == nanos(d))
        }
        (o, d) => o == d,
    }
}

/// The values the API server does not store (Go's `omitempty`).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// A Kubernetes quantity in billionths, rounded up as the API server rounds (`"0.5"`, `"500m"` and
/// `"5e-1"` are all 500000000); `None` for what is not a quantity, or too large.
fn nanos(quantity: &str) -> Option<i128> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let (negative, number) = match number.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mantissa: i128 = digits.parse().ok()?;
    // value = mantissa * 10^exponent * 1024^binary, in units of 10^-9.
    let (exponent, binary): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        s if s.starts_with(['e', 'E']) => (s[1..].parse().ok()?, 0),
        _ => return None,
    };
    let exponent = exponent + 9 - i32::try_from(fraction.len()).ok()?;
    let mut value = mantissa.checked_mul(1024_i128.checked_pow(binary)?)?;
    if exponent >= 0 {
        value = value.checked_mul(10_i128.checked_pow(exponent.unsigned_abs())?)?;
    } else {
        let divisor = 10_i128.checked_pow(exponent.unsigned_abs())?;
        value = (value + divisor - 1) / divisor;
    }
    Some(if negative { -value } else { value })
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
    let mut body = json!({ "status": status });
    typed::<K>(&mut body);
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
    if owned_by(obj, &cluster_uid) {
        return Ok(());
    }
    let mut owner =
        crate::resources::controller_owner(cluster).expect("cluster has a name and uid");
    if owners.iter().any(|o| o.controller == Some(true)) {
        owner.controller = Some(false); // only one controller reference is allowed
    }
    let (name, namespace) = (obj.name_any(), obj.namespace().unwrap_or_default());
    let mut body = json!({
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
    });
    typed::<K>(&mut body);
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
    fn containment_allows_defaults_and_additions_but_not_changes() {
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
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]);
        assert!(!contains(&observed, &changed), "another value");
        let mut changed = desired.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}, {"name": "Z"}]);
        assert!(!contains(&observed, &changed), "one env var more");
        let mut fewer = desired.clone();
        fewer["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "Y", "value": "2"}]);
        assert!(contains(&observed, &fewer), "an env var someone else added");
        let mut changed = desired;
        changed["spec"]["strategy"] = json!({"type": "Recreate"});
        assert!(!contains(&observed, &changed), "a field that is not there");
    }

    #[test]
    fn containment_knows_what_the_api_server_does_not_store() {
        let observed = json!({"spec": {
            "containers": [{"name": "c", "args": ["a", "b"], "env": [{"name": "E"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "1"}}}],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1k"}}],
        }});
        let desired = json!({"spec": {
            "containers": [{"name": "c", "args": ["a", "b"], "env": [{"name": "E", "value": ""}],
                            "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"cpu": "1000m"}}}],
            "nodeSelector": {}, "hostNetwork": false, "tolerations": [],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1000"}}],
        }});
        assert!(contains(&observed, &desired));
        let mut changed = desired.clone();
        changed["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("0.6");
        assert!(!contains(&observed, &changed), "another amount");
        let mut changed = desired.clone();
        changed["spec"]["containers"][0]["args"] = json!(["a"]);
        assert!(!contains(&observed, &changed), "args are compared whole");
        let mut changed = desired.clone();
        changed["spec"]["hostNetwork"] = json!(true);
        assert!(
            !contains(&observed, &changed),
            "a value that is not the default"
        );
        // Quantities only where Kubernetes has them: "1k" is not "1000" in an env var.
        let env = |v: &str| json!({"env": [{"name": "E", "value": v}]});
        assert!(!contains(&env("1k"), &env("1000")));
    }

    #[test]
    fn quantities_are_read_like_the_api_server_reads_them() {
        for (a, b) in [
            ("0.5", "500m"),
            ("1", "1000m"),
            ("1Gi", "1024Mi"),
            ("1e3", "1k"),
            ("5e-1", "500m"),
            ("0.0000000001", "1n"),
            ("+2", "2"),
            ("-1", "-1000m"),
        ] {
            assert_eq!(nanos(a), nanos(b), "{a} = {b}");
            assert!(nanos(a).is_some(), "{a}");
        }
        assert_eq!(nanos("1Ki"), Some(1024 * 1_000_000_000));
        for bad in ["", "x", "1x", "1.2.3", "Mi", "1e", "1 Gi"] {
            assert_eq!(nanos(bad), None, "{bad}");
        }
    }

    fn group(replicas: i32, annotations: Value) -> Value {
        json!({
            "metadata": {"name": "simple-default", "annotations": annotations},
            "spec": {"cluster": "simple", "worker": {"replicas": replicas, "spec": {"containers": [{"name": "w", "image": "a"}]}}},
        })
    }

    const SCALED: Option<&str> = Some("/spec/worker/replicas");

    #[test]
    fn an_unchanged_child_is_kept_and_one_changed_by_hand_is_repaired() {
        let desired = || group(2, Value::Null);
        let hash = "h1";
        let ours = json!({SPEC_HASH: hash, PARENT_REPLICAS: "2"});
        let mut body = desired();
        assert_eq!(decide(None, &mut body, hash, SCALED), Decision::Apply);
        assert_eq!(
            body["metadata"]["annotations"], ours,
            "our annotations go with a write"
        );
        assert_eq!(body["spec"]["worker"]["replicas"], 2);

        let current = group(2, ours.clone());
        assert_eq!(
            decide(Some(&current), &mut desired(), hash, SCALED),
            Decision::Keep
        );
        let mut edited = current.clone();
        edited["spec"]["worker"]["spec"]["containers"][0]["image"] = json!("b");
        assert_eq!(
            decide(Some(&edited), &mut desired(), hash, SCALED),
            Decision::Repair
        );
        let mut edited = current.clone();
        edited["metadata"]["annotations"] = json!({SPEC_HASH: hash});
        assert_eq!(
            decide(Some(&edited), &mut desired(), hash, SCALED),
            Decision::Keep,
            "our own annotations are not compared (written with the next write)"
        );
        assert_eq!(
            decide(Some(&current), &mut desired(), "h2", SCALED),
            Decision::Apply,
            "the parent changed"
        );
        let mut deleting = current;
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            decide(Some(&deleting), &mut desired(), hash, SCALED),
            Decision::Apply
        );
    }

    #[test]
    fn the_users_replicas_stand_until_the_parents_change() {
        let hash = "h1";
        // Scaled to 5 by hand; the parent still asks for 2.
        let scaled = group(5, json!({SPEC_HASH: hash, PARENT_REPLICAS: "2"}));
        let mut body = group(2, Value::Null);
        assert_eq!(
            decide(Some(&scaled), &mut body, hash, SCALED),
            Decision::Keep
        );
        // Something else of the parent changed (another hash), not its replicas: 5 stays.
        let mut body = group(2, Value::Null);
        body["spec"]["worker"]["spec"]["containers"][0]["image"] = json!("b");
        assert_eq!(
            decide(Some(&scaled), &mut body, "h2", SCALED),
            Decision::Apply
        );
        assert_eq!(body["spec"]["worker"]["replicas"], 5);
        assert_eq!(body["metadata"]["annotations"][PARENT_REPLICAS], "2");
        // The parent's replicas changed: they win.
        let mut body = group(3, Value::Null);
        assert_eq!(
            decide(Some(&scaled), &mut body, "h3", SCALED),
            Decision::Apply
        );
        assert_eq!(body["spec"]["worker"]["replicas"], 3);
        assert_eq!(body["metadata"]["annotations"][PARENT_REPLICAS], "3");
        // Not a scaled kind: replicas are ours like everything else.
        assert_eq!(
            decide(Some(&scaled), &mut group(2, Value::Null), hash, None),
            Decision::Repair
        );
    }

    #[test]
    fn replicas_without_a_record() {
        // Written by an operator version without the record: the hash decides, as it used to.
        let old = group(5, json!({SPEC_HASH: "h1"}));
        let mut body = group(2, Value::Null);
        assert_eq!(decide(Some(&old), &mut body, "h1", SCALED), Decision::Keep);
        let mut body = group(2, Value::Null);
        assert_eq!(decide(Some(&old), &mut body, "h2", SCALED), Decision::Apply);
        assert_eq!(body["spec"]["worker"]["replicas"], 2);
        // Written by the Python operator (no hash): taken over with its replicas.
        let kopf = group(5, Value::Null);
        let mut body = group(2, Value::Null);
        assert_eq!(decide(Some(&kopf), &mut body, "h1", SCALED), Decision::Keep);
        body["spec"]["worker"]["spec"]["containers"][0]["image"] = json!("b");
        let mut body2 = body.clone();
        assert_eq!(
            decide(Some(&kopf), &mut body2, "h1", SCALED),
            Decision::Apply
        );
        assert_eq!(body2["spec"]["worker"]["replicas"], 5);
    }
}
