//! A DaskJob's children: its DaskCluster `<job>` and the runner Pod `<job>-runner`.

use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};

use super::labels::{self, CLUSTER_NAME, COMPONENT, ISTIO_INJECT, component};
use super::{append_env, child_meta, controller_owner, names};
use crate::crd::{DaskCluster, DaskClusterSpec, DaskJob};

/// DaskCluster `<job>`: the job's scheduler and workers (`idleTimeout` does not apply to job clusters).
pub fn job_cluster(job: &DaskJob) -> DaskCluster {
    let name = job.name_any();
    let (inherited, annotations) = labels::inherit(job.meta(), &job.spec.cluster.metadata);
    let labels = labels::with_base(inherited, &[(CLUSTER_NAME, &name)]);
    let template = &job.spec.cluster.spec;
    DaskCluster {
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
    }
}

/// Pod `<job>-runner`: `spec.job.spec` with `DASK_SCHEDULER_ADDRESS` appended.
pub fn runner_pod(job: &DaskJob) -> Pod {
    let name = job.name_any();
    let (inherited, annotations) = labels::inherit(job.meta(), &job.spec.job.metadata);
    let labels = labels::with_base(
        inherited,
        &[
            (CLUSTER_NAME, &name),
            (COMPONENT, component::JOB_RUNNER),
            (ISTIO_INJECT, "false"),
        ],
    );
    let mut spec = job.spec.job.spec.clone();
    let address = names::scheduler_address(&name, job.namespace().as_deref().unwrap_or_default());
    append_env(&mut spec, &[("DASK_SCHEDULER_ADDRESS", &address)]);
    Pod {
        metadata: child_meta(
            names::runner(&name),
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
        let c = job_cluster(&job);
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
        assert_eq!(c.spec.worker, job.spec.cluster.spec.worker);
        assert_eq!(c.spec.scheduler, job.spec.cluster.spec.scheduler);
        let owner = &c.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DaskJob", "uid-job")
        );
    }

    #[test]
    fn runner_pod_gets_scheduler_address_and_runner_labels() {
        let job = simplejob();
        let pod = runner_pod(&job);
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
}
