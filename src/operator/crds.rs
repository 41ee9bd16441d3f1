//! The start-up check of the CRDs (see [`crate::crd::install`]): run on CRDs that are ours, replace
//! them when allowed, or stop with one line that says what to do.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::crd::SERVED;
use crate::crd::install::{Found, HASH_ANNOTATION, assess};

/// How long a start-up check keeps retrying an API server that answers 429/5xx or cannot be reached.
const TRANSIENT_FOR: Duration = Duration::from_secs(60);

/// Why a check did not pass: worth another try, or not.
enum Failure {
    Transient(String),
    Fatal(String),
}

/// An API error as a [`Failure`]: 429, 5xx and connection errors pass (a restarting or overloaded API
/// server, a flaky network); anything else is an answer.
fn failure(what: String) -> impl FnOnce(kube::Error) -> Failure {
    move |e| {
        let message = format!("{what}: {e}");
        match &e {
            kube::Error::Api(s) if s.code == 429 || s.code >= 500 => Failure::Transient(message),
            kube::Error::Api(_) => Failure::Fatal(message),
            _ => Failure::Transient(message),
        }
    }
}

/// Checks the four CRDs; with `upgrade`, creates or replaces those that need it. Transient failures
/// are retried with backoff for up to a minute, so a blip at start-up is not a crash loop. The error
/// is the one-line reason the operator exits with.
pub async fn ensure(client: &Client, upgrade: bool) -> Result<(), String> {
    let deadline = Instant::now() + TRANSIENT_FOR;
    let mut delay = Duration::from_millis(250);
    loop {
        match check(client, upgrade).await {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(message)) => return Err(message),
            Err(Failure::Transient(message)) if Instant::now() + delay > deadline => {
                return Err(message);
            }
            Err(Failure::Transient(message)) => {
                warn!(error = %message, retry_in = ?delay, "CRD check failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
        }
    }
}

async fn check(client: &Client, upgrade: bool) -> Result<(), Failure> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut stale = Vec::new();
    for make in SERVED {
        let ours = make();
        let name = ours.name_any();
        // Most starts find our own CRDs: their annotations say so, read without the schemas (a
        // CRD's full object is hundreds of kilobytes of JSON, and several MiB once parsed).
        match api.get_metadata_opt(&name).await {
            Ok(Some(meta)) if same_hash(meta.annotations(), ours.annotations()) => continue,
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 403 => {
                warn!(crd = %name, "not allowed to read CRDs; skipping the CRD check");
                return Ok(());
            }
            Err(e) => return Err(failure(format!("cannot read CRD {name}"))(e)),
        }
        let found = match api.get_opt(&name).await {
            Ok(found) => found,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                // Not every installation grants this; the operator still works on correct CRDs.
                warn!(crd = %name, "not allowed to read CRDs; skipping the CRD check");
                return Ok(());
            }
            Err(e) => return Err(failure(format!("cannot read CRD {name}"))(e)),
        };
        let state = assess(found.as_ref(), &ours);
        match &state {
            Found::Current => continue,
            Found::Newer(v) => {
                warn!(crd = %name, version = %v, "CRD comes from a newer dask-operator; leaving it as it is");
                continue;
            }
            _ if !upgrade => {
                stale.push(format!("{name} ({})", describe(&state)));
                continue;
            }
            _ => {}
        }
        replace(&api, ours, found).await?;
        info!(crd = %name, was = describe(&state), "installed this operator's CRD");
    }
    if stale.is_empty() {
        return Ok(());
    }
    Err(Failure::Fatal(format!(
        "CRDs this operator cannot run on: {}; install its own with `kubectl replace -f crds/dask-operator.yaml` \
         (`kubectl create -f` where missing), `helm upgrade` with crds.install=true, or start it with \
         --upgrade-crds (DASK_OPERATOR_UPGRADE_CRDS=true)",
        stale.join(", ")
    )))
}

/// Whether both carry the same [`HASH_ANNOTATION`] (a CRD without one is never ours).
fn same_hash(
    found: &std::collections::BTreeMap<String, String>,
    ours: &std::collections::BTreeMap<String, String>,
) -> bool {
    found
        .get(HASH_ANNOTATION)
        .is_some_and(|h| ours.get(HASH_ANNOTATION) == Some(h))
}

fn describe(found: &Found) -> String {
    match found {
        Found::Missing => "missing".into(),
        Found::Current => "current".into(),
        Found::Upstream => "dask-kubernetes' CRD without the status subresource".into(),
        // No version annotation: dask-kubernetes' DaskJob CRD (the one of its four with a status
        // subresource) or a copy of ours from before the annotations.
        Found::Older(v) if v == "unknown" => {
            "dask-kubernetes' CRD or an early copy of this operator's (no version annotation)"
                .into()
        }
        Found::Older(v) => format!("from dask-operator {v}"),
        Found::Newer(v) => format!("from newer dask-operator {v}"),
    }
}

/// Creates `ours`, or replaces the whole object (a merge would keep fields of upstream's schema that
/// ours does not have). Stored objects are untouched: the served version stays `v1`.
async fn replace(
    api: &Api<CustomResourceDefinition>,
    mut ours: CustomResourceDefinition,
    found: Option<CustomResourceDefinition>,
) -> Result<(), Failure> {
    let name = ours.name_any();
    let pp = PostParams {
        field_manager: Some(crate::controller::MANAGER.into()),
        ..Default::default()
    };
    let result = match found {
        None => match api.create(&pp, &ours).await {
            Ok(_) => return established(api, &name).await.map_err(Failure::Fatal),
            Err(e) => Err(e),
        },
        Some(found) => {
            ours.metadata.resource_version = found.resource_version();
            // Keep what others put on the object (labels such as Helm's, other annotations).
            let mut labels = found.labels().clone();
            labels.extend(ours.labels().clone());
            *ours.labels_mut() = labels;
            let mut annotations = found.annotations().clone();
            annotations.extend(ours.annotations().clone());
            *ours.annotations_mut() = annotations;
            api.replace(&name, &pp, &ours).await.map(|_| ())
        }
    };
    result.map_err(failure(format!("cannot install CRD {name}")))
}

/// Waits (up to 30 s) until a CRD just created is served.
async fn established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<(), String> {
    let cond = kube::runtime::conditions::is_crd_established();
    let wait = kube::runtime::wait::await_condition(api.clone(), name, cond);
    match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("waiting for CRD {name}: {e}")),
        Err(_) => Err(format!("CRD {name} was not Established within 30 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_and_outages_are_retried_answers_are_not() {
        let api = |code: u16| {
            let status = kube::core::Status {
                code,
                ..Default::default()
            };
            failure("read".into())(kube::Error::Api(Box::new(status)))
        };
        for code in [429, 500, 503, 504] {
            assert!(matches!(api(code), Failure::Transient(_)), "{code}");
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(matches!(api(code), Failure::Fatal(_)), "{code}");
        }
        let refused = kube::Error::Service("connection refused".into());
        assert!(matches!(
            failure("read".into())(refused),
            Failure::Transient(_)
        ));
    }

    #[test]
    fn a_crd_without_our_version_annotation_is_not_called_ours() {
        assert_eq!(
            describe(&Found::Older("unknown".into())),
            "dask-kubernetes' CRD or an early copy of this operator's (no version annotation)"
        );
        assert_eq!(
            describe(&Found::Older("0.0.1".into())),
            "from dask-operator 0.0.1"
        );
    }
}
