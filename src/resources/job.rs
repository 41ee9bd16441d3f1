//! A DaskJob's children: its DaskCluster `<job>` (unless it runs on an existing one, `clusterRef`) and
//! one runner Pod per attempt (`<job>-runner`, then `<job>-runner-<n>`).

use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};

use super::labels::{self, CLUSTER_NAME, COMPONENT, ISTIO_INJECT, component};
use super::{append_env, child_meta, controller_owner, names};
use crate::crd::{DaskCluster, DaskClusterSpec, DaskJob};

/// The DaskCluster the job runs on: the one `clusterRef` names, else its own `<job>`.
pub fn cluster_name(job: &DaskJob) -> String {
    match &job.spec.cluster_ref {
        Some(reference) => reference.name.clone(),
        None => job.name_any(),
    }
}

/// DaskCluster `<job>`: the job's scheduler and workers (`idleTimeout` does not apply to job
/// clusters). `None` for a job on an existing cluster (`clusterRef`).
pub fn job_cluster(job: &DaskJob) -> Option<DaskCluster> {
    if job.spec.cluster_ref.is_some() {
        return None;
    }
    let template = job.spec.cluster.clone().unwrap_or_default();
    let name = job.name_any();
    let (inherited, annotations) = labels::inherit(job.meta(), &template.metadata);
    let labels = labels::with_base(inherited, &[(CLUSTER_NAME, &name)]);
    let template = &template.spec;
    Some(DaskCluster {
        metadata: child_meta(
            name.clone(),
            job.meta(),
            controller_owner(job),
            labels,
            annotations,
        ),
        spec: DaskClusterSpec {
            idle_timeout: 0,
            scheduler: template.scheduler.clone(),
            worker: template.worker.clone(),
        },
        status: None,
    })
}

/// The runner Pod `pod` (named by [`names::runner_attempt`]): `spec.job.spec` with
/// `DASK_SCHEDULER_ADDRESS` of the cluster the job runs on appended, labelled with that cluster.
pub fn runner_pod(job: &DaskJob, pod: &str) -> Pod {
    let cluster = cluster_name(job);
    let (inherited, annotations) = labels::inherit(job.meta(), &job.spec.job.metadata);
    let labels = labels::with_base(
        inherited,
        &[
            (CLUSTER_NAME, &cluster),
            (COMPONENT, component::JOB_RUNNER),
            (ISTIO_INJECT, "false"),
        ],
    );
    let mut spec = job.spec.job.spec.clone();
    let address =
        names::scheduler_address(&cluster, job.namespace().as_deref().unwrap_or_default());
    append_env(&mut spec, &[("DASK_SCHEDULER_ADDRESS", &address)]);
    Pod {
        metadata: child_meta(
            pod.to_string(),
            job.meta(),
            controller_owner(job),
            labels,
            annotations,
        ),
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simplejob() -> DaskJob {
        let mut job: DaskJob =
            serde_saphyr::from_str(include_str!("../../tests/fixtures/simplejob.yaml")).unwrap();
        job.metadata.namespace = Some("ns1".into());
        job.metadata.uid = Some("uid-job".into());
        job
    }

    #[test]
    fn job_cluster_is_named_after_the_job_and_owned_by_it() {
        let job = simplejob();
        let c = job_cluster(&job).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("simple-job"));
        assert_eq!(
            c.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(CLUSTER_NAME)
                .map(String::as_str),
            Some("simple-job")
        );
        let annotations = c.metadata.annotations.unwrap();
        assert_eq!(
            annotations.get("test-annotation").map(String::as_str),
            Some("annotation-value")
        );
        assert!(
            !annotations.keys().any(
                |k| k.starts_with("kopf.zalando.org") || k.starts_with("kubectl.kubernetes.io")
            )
        );
        let template = job.spec.cluster.as_ref().unwrap();
        assert_eq!(c.spec.worker, template.spec.worker);
        assert_eq!(c.spec.scheduler, template.spec.scheduler);
        let owner = &c.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DaskJob", "uid-job")
        );
    }

    #[test]
    fn runner_pod_gets_scheduler_address_and_runner_labels() {
        let job = simplejob();
        let pod = runner_pod(&job, "simple-job-runner");
        assert_eq!(pod.metadata.name.as_deref(), Some("simple-job-runner"));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(
            labels.get(COMPONENT).map(String::as_str),
            Some("job-runner")
        );
        assert_eq!(
            labels.get(CLUSTER_NAME).map(String::as_str),
            Some("simple-job")
        );
        assert_eq!(labels.get(ISTIO_INJECT).map(String::as_str), Some("false"));
        assert_eq!(
            pod.metadata
                .annotations
                .unwrap()
                .get("test-annotation")
                .map(String::as_str),
            Some("annotation-value")
        );
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, "DASK_SCHEDULER_ADDRESS");
        assert_eq!(
            env[0].value.as_deref(),
            Some("tcp://simple-job-scheduler.ns1.svc.cluster.local:8786")
        );
    }

    #[test]
    fn a_job_on_an_existing_cluster_makes_none_and_its_runner_talks_to_that_one() {
        let mut job = simplejob();
        job.spec.cluster = None;
        job.spec.cluster_ref = Some(crate::crd::job::ClusterRef {
            name: "shared".into(),
        });
        assert!(job_cluster(&job).is_none());
        let pod = runner_pod(&job, &names::runner_attempt("simple-job", 2));
        assert_eq!(pod.metadata.name.as_deref(), Some("simple-job-runner-2"));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels.get(CLUSTER_NAME).map(String::as_str), Some("shared"));
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        assert_eq!(
            env[0].value.as_deref(),
            Some("tcp://shared-scheduler.ns1.svc.cluster.local:8786")
        );
    }
}
