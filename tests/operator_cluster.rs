//! DaskCluster and DaskWorkerGroup against the local cluster: upstream's example manifests applied
//! unchanged, the children they get, scaling, adoption, spec rollouts and bad input.
//! Each test runs its own operator, watching only the test's namespace.

mod common;

use std::time::Duration;

use common::{
    Operator, create_from_yaml, eventually, fixture, gone, kubectl, report_pods_ready,
    try_create_from_yaml, with_unscheduled_namespace,
};
use dask_operator::crd::{DaskCluster, DaskWorkerGroup};
use dask_operator::resources::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

fn env_of(d: &Deployment) -> Vec<(String, String)> {
    let spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

async fn workers(client: &Client, ns: &str, group: &str) -> Vec<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("dask.org/workergroup-name={group}"));
    api.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn wait_workers(client: &Client, ns: &str, group: &str, n: usize) -> Vec<Deployment> {
    eventually(
        &format!("{n} worker Deployments in {group}"),
        TIMEOUT,
        || async {
            let w = workers(client, ns, group).await;
            (w.len() == n).then_some(w)
        },
    )
    .await
}

async fn wait_phase(client: &Client, ns: &str, name: &str, phase: &str) -> DaskCluster {
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("DaskCluster {name} phase {phase}"),
        TIMEOUT,
        || async {
            let c = clusters.get_opt(name).await.ok()??;
            (c.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(c)
        },
    )
    .await
}

/// The condition of `type_` among `conditions`.
fn condition(conditions: Option<&Vec<Condition>>, type_: &str) -> Option<Condition> {
    conditions?.iter().find(|c| c.type_ == type_).cloned()
}

fn cluster_condition(c: &DaskCluster, type_: &str) -> Option<Condition> {
    condition(c.status.as_ref()?.conditions.as_ref(), type_)
}

fn group_condition(g: &DaskWorkerGroup, type_: &str) -> Option<Condition> {
    condition(g.status.as_ref()?.conditions.as_ref(), type_)
}

/// Waits until the DaskCluster `name` has the condition `type_` with `status`, and returns it.
async fn wait_cluster_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
) -> DaskCluster {
    let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("DaskCluster {name} {type_}={status}"),
        TIMEOUT,
        || async {
            let c = clusters.get_opt(name).await.ok()??;
            (cluster_condition(&c, type_)?.status == status).then_some(c)
        },
    )
    .await
}

async fn warning_events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.name={name},reason={reason},type=Warning"
    ));
    events.list(&lp).await.unwrap().items
}

#[tokio::test]
async fn simplecluster_gets_upstream_children_and_runs() {
    with_unscheduled_namespace("op-simple", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let cluster = wait_phase(&client, &ns, "simple", "Running").await;
        let uid = cluster.uid().unwrap();

        // Scheduler Deployment and Service: upstream names, labels, annotations, owner.
        let deployment = Api::<Deployment>::namespaced(client.clone(), &ns).get("simple-scheduler").await.unwrap();
        let labels = deployment.labels();
        for (k, v) in [
            ("dask.org/cluster-name", "simple"),
            ("dask.org/component", "scheduler"),
            ("sidecar.istio.io/inject", "false"),
            ("test-label", "label-value"),
            ("scheduler-sublabel", "label-value"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "scheduler Deployment label {k}");
        }
        let annotations = deployment.annotations();
        assert_eq!(annotations.get("test-annotation").map(String::as_str), Some("annotation-value"));
        assert_eq!(annotations.get("scheduler-subannotation").map(String::as_str), Some("annotation-value"));
        assert!(!annotations.keys().any(|k| k.starts_with("kopf.zalando.org") || k.starts_with("kubectl.kubernetes.io")));
        assert_eq!(deployment.owner_references()[0].uid, uid);
        assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(1));
        // The scheduler's env is the user's, plus the HTTP API routes the operator talks to (the user
        // set none; docs/autoscaling.md).
        let env = env_of(&deployment);
        assert_eq!(env[0], ("SCHEDULER_ENV".to_string(), "hello-world".to_string()));
        assert_eq!(env.len(), 2, "{env:?}");
        assert_eq!(env[1].0, "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES");
        assert!(env[1].1.contains("\"distributed.http.scheduler.api\""), "{env:?}");

        let service = Api::<Service>::namespaced(client.clone(), &ns).get("simple-scheduler").await.unwrap();
        assert_eq!(service.labels().get("dask.org/component").map(String::as_str), Some("scheduler"));
        let ports: Vec<_> = service.spec.unwrap().ports.unwrap().into_iter().map(|p| (p.name.unwrap(), p.port)).collect();
        assert_eq!(ports, [("tcp-comm".to_string(), 8786), ("http-dashboard".to_string(), 8787)]);

        // Default worker group, owned by the cluster, and its two workers.
        let group = Api::<DaskWorkerGroup>::namespaced(client.clone(), &ns).get("simple-default").await.unwrap();
        assert_eq!(group.labels().get("dask.org/component").map(String::as_str), Some("workergroup"));
        assert_eq!(group.owner_references()[0].uid, uid);
        let workers = wait_workers(&client, &ns, "simple-default", 2).await;
        let mut names = Vec::new();
        for w in &workers {
            let name = w.name_any();
            assert!(name.starts_with("simple-default-worker-") && name.len() == "simple-default-worker-".len() + 10, "{name}");
            let env = env_of(w);
            assert_eq!(env[0].0, "WORKER_ENV", "user env first");
            assert!(env.contains(&("DASK_WORKER_NAME".into(), name.clone())));
            assert!(env.contains(&("DASK_SCHEDULER_ADDRESS".into(), format!("tcp://simple-scheduler.{ns}.svc.cluster.local:8786"))));
            assert_eq!(w.labels().get("worker-sublabel").map(String::as_str), Some("label-value"));
            assert_eq!(w.labels().get("test-label").map(String::as_str), Some("label-value"));
            assert_eq!(w.owner_references()[0].uid, group.uid().unwrap());
            names.push(name);
        }
        names.dedup();
        assert_eq!(names.len(), 2, "worker names are unique");

        // Scale subresource status for kubectl and HorizontalPodAutoscalers.
        let cluster = eventually("DaskCluster status.replicas 2", TIMEOUT, || async {
            let c = Api::<DaskCluster>::namespaced(client.clone(), &ns).get("simple").await.ok()?;
            (c.status.as_ref()?.replicas == Some(2)).then_some(c)
        })
        .await;
        assert_eq!(
            cluster.status.unwrap().selector.as_deref(),
            Some("dask.org/cluster-name=simple,dask.org/component=worker,dask.org/workergroup-name=simple-default")
        );
        assert!(kubectl(&["get", "dask", "-n", &ns]).contains("simple"), "category dask lists the cluster");
        // The scale subresource, as `kubectl scale` and a HorizontalPodAutoscaler read it.
        for path in ["daskclusters/simple", "daskworkergroups/simple-default"] {
            let raw = kubectl(&["get", "--raw", &format!("/apis/kubernetes.dask.org/v1/namespaces/{ns}/{path}/scale")]);
            let scale: serde_json::Value = serde_json::from_str(&raw).unwrap();
            assert_eq!(scale["kind"], "Scale");
            assert_eq!(scale["spec"]["replicas"], 2, "{path}: {scale}");
            assert_eq!(scale["status"]["replicas"], 2, "{path}: {scale}");
            assert_eq!(
                scale["status"]["selector"],
                "dask.org/cluster-name=simple,dask.org/component=worker,dask.org/workergroup-name=simple-default",
                "{path}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn kubectl_scale_daskcluster_and_daskworkergroup() {
    with_unscheduled_namespace("op-scale", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        wait_workers(&client, &ns, "simple-default", 2).await;

        kubectl(&["scale", "-n", &ns, "daskcluster", "simple", "--replicas=4"]);
        wait_workers(&client, &ns, "simple-default", 4).await;
        kubectl(&[
            "scale",
            "-n",
            &ns,
            "daskworkergroup",
            "simple-default",
            "--replicas=1",
        ]);
        wait_workers(&client, &ns, "simple-default", 1).await;
        kubectl(&[
            "scale",
            "-n",
            &ns,
            "daskworkergroup",
            "simple-default",
            "--replicas=3",
        ]);
        wait_workers(&client, &ns, "simple-default", 3).await;
        let group = eventually("group status.replicas 3", TIMEOUT, || async {
            let g = Api::<DaskWorkerGroup>::namespaced(client.clone(), &ns)
                .get("simple-default")
                .await
                .ok()?;
            (g.status.as_ref()?.replicas == Some(3)).then_some(g)
        })
        .await;
        assert!(
            group
                .status
                .unwrap()
                .selector
                .unwrap()
                .contains("dask.org/workergroup-name=simple-default")
        );
    })
    .await;
}

#[tokio::test]
async fn user_created_worker_group_is_adopted_without_labels() {
    with_unscheduled_namespace("op-usergroup", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let cluster = wait_phase(&client, &ns, "simple", "Running").await;
        create_from_yaml(&client, &ns, &fixture("simpleworkergroup.yaml")).await;

        let workers = wait_workers(&client, &ns, "simple-additional", 1).await;
        let env = env_of(&workers[0]);
        assert!(
            env.contains(&("DASK_WORKER_NAME".into(), "test-worker".into())),
            "the user's worker name is kept"
        );
        assert_eq!(
            env.iter().filter(|(k, _)| k == "DASK_WORKER_NAME").count(),
            1
        );
        assert!(env.contains(&(
            "DASK_SCHEDULER_ADDRESS".into(),
            format!("tcp://simple-scheduler.{ns}.svc.cluster.local:8786")
        )));

        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        let group = eventually("the group to be owned by its cluster", TIMEOUT, || async {
            let g = groups.get("simple-additional").await.ok()?;
            g.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == cluster.uid().as_ref())
                .then_some(g)
        })
        .await;
        assert!(
            group.labels().is_empty(),
            "user-created groups gain no labels: {:?}",
            group.labels()
        );
        // The default group is still the only one labelled with the cluster name.
        let labelled = groups
            .list(&ListParams::default().labels("dask.org/cluster-name=simple"))
            .await
            .unwrap();
        assert_eq!(labelled.items.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn spec_edits_are_rolled_out_and_deleted_children_recreated() {
    with_unscheduled_namespace("op-rollout", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        wait_workers(&client, &ns, "simple-default", 2).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

        let patch = json!({"spec": {
            "scheduler": {"spec": {"containers": [{"name": "scheduler", "image": "dask-kubernetes:v2", "args": ["dask-scheduler"]}]}},
            "worker": {"spec": {"containers": [{"name": "worker", "image": "dask-kubernetes:v2", "args": ["dask-worker"]}]}}
        }});
        clusters.patch("simple", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let image = |d: &Deployment| d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone();
        eventually("the scheduler Deployment to use the new image", TIMEOUT, || async {
            let d = deployments.get("simple-scheduler").await.ok()?;
            (image(&d).as_deref() == Some("dask-kubernetes:v2")).then_some(())
        })
        .await;
        eventually("both workers to use the new image", TIMEOUT, || async {
            let w = workers(&client, &ns, "simple-default").await;
            (w.len() == 2 && w.iter().all(|d| image(d).as_deref() == Some("dask-kubernetes:v2"))).then_some(())
        })
        .await;

        let old_uid = deployments.get("simple-scheduler").await.unwrap().uid();
        deployments.delete("simple-scheduler", &DeleteParams::default()).await.unwrap();
        eventually("the scheduler Deployment to be recreated", TIMEOUT, || async {
            let d = deployments.get_opt("simple-scheduler").await.ok()??;
            (d.uid() != old_uid && d.metadata.deletion_timestamp.is_none()).then_some(())
        })
        .await;
        let victim = workers(&client, &ns, "simple-default").await[0].name_any();
        deployments.delete(&victim, &DeleteParams::default()).await.unwrap();
        eventually("a replacement worker", TIMEOUT, || async {
            let w = workers(&client, &ns, "simple-default").await;
            (w.len() == 2 && w.iter().all(|d| d.uid().is_some())).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn invalid_cluster_names_end_in_error_with_a_message() {
    with_unscheduled_namespace("op-badname", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let base = fixture("simplecluster.yaml");
        // Upstream's rule rejects the first two; the third passes it, but its Service
        // `1-starts-with-a-digit-scheduler` is not a DNS-1035 label, which the API server rejects.
        for name in ["a.dotted.name", &"x".repeat(54), "1-starts-with-a-digit"] {
            create_from_yaml(
                &client,
                &ns,
                &base.replacen("name: simple\n", &format!("name: {name}\n"), 1),
            )
            .await;
            let cluster = wait_phase(&client, &ns, name, "Error").await;
            let message = cluster.status.unwrap().message.unwrap();
            assert!(message.contains(name), "{message}");
            eventually("a Warning event InvalidName", TIMEOUT, || async {
                (!warning_events(&client, &ns, name, "InvalidName")
                    .await
                    .is_empty())
                .then_some(())
            })
            .await;
            let scheduler = format!("{name}-scheduler");
            assert!(
                Api::<Deployment>::namespaced(client.clone(), &ns)
                    .get_opt(&scheduler)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        // A valid cluster next to them is not held up.
        create_from_yaml(&client, &ns, &base).await;
        wait_phase(&client, &ns, "simple", "Running").await;
    })
    .await;
}

#[tokio::test]
async fn worker_group_for_a_missing_cluster_reports_and_recovers() {
    with_unscheduled_namespace("op-orphan", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simpleworkergroup.yaml")).await;
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        let group = eventually(
            "a status message about the missing cluster",
            TIMEOUT,
            || async {
                let g = groups.get("simple-additional").await.ok()?;
                g.status.as_ref()?.message.as_ref()?;
                Some(g)
            },
        )
        .await;
        let message = group.status.as_ref().unwrap().message.clone().unwrap();
        assert!(message.contains("\"simple\" does not exist"), "{message}");
        let degraded = group_condition(&group, "Degraded").expect("a Degraded condition");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ClusterNotFound")
        );
        assert!(degraded.message.contains("\"simple\" does not exist"));
        let available = group_condition(&group, "Available").unwrap();
        assert_eq!(available.status, "False");
        eventually("a Warning event ClusterNotFound", TIMEOUT, || async {
            (!warning_events(&client, &ns, "simple-additional", "ClusterNotFound")
                .await
                .is_empty())
            .then_some(())
        })
        .await;
        assert!(workers(&client, &ns, "simple-additional").await.is_empty());

        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        wait_workers(&client, &ns, "simple-additional", 1).await;
        let group = eventually("the message and Degraded to clear", TIMEOUT, || async {
            let g = groups.get("simple-additional").await.ok()?;
            let clear = g.status.as_ref()?.message.is_none()
                && group_condition(&g, "Degraded")?.status == "False";
            clear.then_some(g)
        })
        .await;
        let degraded = group_condition(&group, "Degraded").unwrap();
        assert_eq!(degraded.reason, "AsExpected");
        assert_eq!(group.status.unwrap().replicas, Some(1));
    })
    .await;
}

#[tokio::test]
async fn schema_rejects_bad_fields_with_their_path() {
    with_unscheduled_namespace("op-schema", |client, ns| async move {
        common::install_crds(&client).await;
        let yaml = fixture("simplecluster.yaml").replacen("replicas: 2", "replicas: two", 1);
        let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        let cluster: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &kube::api::ApiResource::erase::<DaskCluster>(&()),
        );
        let obj: kube::api::DynamicObject = serde_json::from_value(value).unwrap();
        let err = cluster
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("spec.worker.replicas"), "{text}");

        let negative = fixture("simplecluster.yaml").replacen("replicas: 2", "replicas: -1", 1);
        let obj: kube::api::DynamicObject =
            serde_json::from_value(serde_saphyr::from_str(&negative).unwrap()).unwrap();
        let text = cluster
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("spec.worker.replicas"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn kopf_finalizer_is_removed_so_deletion_completes() {
    with_unscheduled_namespace("op-kopf", |client, ns| async move {
        common::install_crds(&client).await;
        let yaml = fixture("simplecluster.yaml").replacen(
            "metadata:\n",
            "metadata:\n  finalizers: [kopf.zalando.org/KopfFinalizerMarker]\n",
            1,
        );
        create_from_yaml(&client, &ns, &yaml).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        assert_eq!(
            clusters.get("simple").await.unwrap().finalizers(),
            ["kopf.zalando.org/KopfFinalizerMarker"]
        );
        let _operator = Operator::start(&client, &ns).await;
        eventually("the kopf finalizer to be removed", TIMEOUT, || async {
            clusters
                .get("simple")
                .await
                .ok()?
                .finalizers()
                .is_empty()
                .then_some(())
        })
        .await;
        clusters
            .delete("simple", &DeleteParams::default())
            .await
            .unwrap();
        gone(&clusters, "simple", TIMEOUT).await;
    })
    .await;
}

#[tokio::test]
async fn cluster_conditions_follow_the_scheduler_and_keep_their_transition_times() {
    with_unscheduled_namespace("op-conditions", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;

        // The scheduler pod is never scheduled: Running (upstream's phase: the Service exists) but
        // not Available.
        let waiting = wait_cluster_condition(&client, &ns, "simple", "Available", "False").await;
        assert_eq!(
            waiting.status.as_ref().unwrap().phase.as_deref(),
            Some("Running")
        );
        let available = cluster_condition(&waiting, "Available").unwrap();
        assert_eq!(available.reason, "SchedulerNotReady");
        assert_eq!(available.observed_generation, waiting.metadata.generation);
        let degraded = cluster_condition(&waiting, "Degraded").unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("False", "AsExpected")
        );

        report_pods_ready(
            &client,
            &ns,
            "dask.org/cluster-name=simple,dask.org/component=scheduler",
            1,
        )
        .await;
        let ready = wait_cluster_condition(&client, &ns, "simple", "Available", "True").await;
        let available = cluster_condition(&ready, "Available").unwrap();
        assert_eq!(available.reason, "SchedulerReady");
        assert!(
            available.last_transition_time.0
                >= cluster_condition(&waiting, "Available")
                    .unwrap()
                    .last_transition_time
                    .0
        );
        let table = kubectl(&["get", "daskcluster", "simple", "-n", &ns]);
        let (header, row) = table.split_once('\n').unwrap();
        assert!(
            header.contains("STATUS") && header.contains("AVAILABLE"),
            "{table}"
        );
        assert!(row.contains("Running") && row.contains("True"), "{table}");

        // A scale is a reconcile that changes the status (replicas) but not the scheduler: Available
        // and Degraded keep their lastTransitionTime.
        // Times have whole seconds: let the clock pass the transition's second first, so that a time
        // rewritten by the scale would differ.
        let since = available.last_transition_time.0.as_second();
        eventually(
            "the clock to pass the transition's second",
            TIMEOUT,
            || async { (k8s_openapi::jiff::Timestamp::now().as_second() > since).then_some(()) },
        )
        .await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"spec": {"worker": {"replicas": 3}}});
        clusters
            .patch("simple", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let scaled = eventually(
            "status.replicas 3 and Progressing=False",
            TIMEOUT,
            || async {
                let c = clusters.get("simple").await.ok()?;
                let settled = c.status.as_ref()?.replicas == Some(3)
                    && cluster_condition(&c, "Progressing")?.status == "False";
                settled.then_some(c)
            },
        )
        .await;
        let after = cluster_condition(&scaled, "Available").unwrap();
        assert_eq!(
            (after.status.as_str(), &after.last_transition_time),
            ("True", &available.last_transition_time)
        );
        assert_eq!(
            after.observed_generation, scaled.metadata.generation,
            "recomputed for the new generation"
        );
        assert_ne!(scaled.metadata.generation, ready.metadata.generation);
        let degraded_after = cluster_condition(&scaled, "Degraded").unwrap();
        assert_eq!(
            degraded_after.last_transition_time,
            degraded.last_transition_time
        );

        // The default group: Available once every wanted worker is ready.
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        let group = eventually(
            "the group to report 0 of 3 workers ready",
            TIMEOUT,
            || async {
                let g = groups.get("simple-default").await.ok()?;
                (group_condition(&g, "Available")?.message == "0 of 3 workers ready").then_some(g)
            },
        )
        .await;
        assert_eq!(
            group_condition(&group, "Available").unwrap().reason,
            "WorkersNotReady"
        );
        report_pods_ready(&client, &ns, "dask.org/workergroup-name=simple-default", 3).await;
        let group = eventually("the group Available=True", TIMEOUT, || async {
            let g = groups.get("simple-default").await.ok()?;
            (group_condition(&g, "Available")?.status == "True").then_some(g)
        })
        .await;
        let available = group_condition(&group, "Available").unwrap();
        assert_eq!(
            (available.reason.as_str(), available.message.as_str()),
            ("WorkersReady", "3 of 3 workers ready")
        );
    })
    .await;
}

#[tokio::test]
async fn a_scheduler_that_cannot_create_pods_makes_the_cluster_degraded() {
    with_unscheduled_namespace("op-quota", |client, ns| async move {
        let quota = ResourceQuota {
            metadata: ObjectMeta {
                name: Some("no-pods".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::ResourceQuotaSpec {
                hard: Some(
                    [(
                        "pods".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity("0".into()),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        Api::<ResourceQuota>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &quota)
            .await
            .unwrap();
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;

        let cluster = wait_cluster_condition(&client, &ns, "simple", "Degraded", "True").await;
        let degraded = cluster_condition(&cluster, "Degraded").unwrap();
        assert_eq!(degraded.reason, "ReplicaFailure", "{degraded:?}");
        assert!(
            degraded.message.contains("simple-scheduler"),
            "{degraded:?}"
        );
        assert_eq!(
            cluster_condition(&cluster, "Available").unwrap().status,
            "False"
        );
        // Upstream's phase is unchanged by it.
        assert_eq!(cluster.status.unwrap().phase.as_deref(), Some("Running"));
    })
    .await;
}

#[tokio::test]
async fn a_persistent_reconcile_error_shows_in_status_and_as_a_warning_event() {
    with_unscheduled_namespace("op-rejected", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        // Accepted by the DaskCluster schema, rejected by the API server's Deployment validation.
        let yaml = fixture("simplecluster.yaml").replacen(
            "        - name: scheduler\n",
            "        - name: Bad_Scheduler\n",
            1,
        );
        create_from_yaml(&client, &ns, &yaml).await;

        let cluster = wait_cluster_condition(&client, &ns, "simple", "Degraded", "True").await;
        let degraded = cluster_condition(&cluster, "Degraded").unwrap();
        assert_eq!(degraded.reason, "ReconcileError");
        assert!(
            degraded.message.contains("scheduler Deployment")
                && degraded.message.contains("Bad_Scheduler"),
            "{degraded:?}"
        );
        let events = eventually("a Warning event ReconcileError", TIMEOUT, || async {
            let e = warning_events(&client, &ns, "simple", "ReconcileError").await;
            (!e.is_empty()).then_some(e)
        })
        .await;
        assert!(
            events[0]
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("Bad_Scheduler"),
            "{events:?}"
        );
        assert!(
            cluster.status.unwrap().phase.is_none(),
            "no phase until the children exist"
        );

        // Fixed: the next successful reconcile clears it.
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let fix = json!({"spec": {"scheduler": {"spec": {"containers": [
            {"name": "scheduler", "image": "dask-kubernetes:dev", "args": ["dask-scheduler"]}
        ]}}}});
        clusters
            .patch("simple", &PatchParams::default(), &Patch::Merge(&fix))
            .await
            .unwrap();
        let fixed = wait_cluster_condition(&client, &ns, "simple", "Degraded", "False").await;
        assert_eq!(
            cluster_condition(&fixed, "Degraded").unwrap().reason,
            "AsExpected"
        );
        assert_eq!(fixed.status.unwrap().phase.as_deref(), Some("Running"));
    })
    .await;
}

fn image(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .image
        .clone()
}

fn ports_of(service: &Service) -> Vec<(String, i32)> {
    let spec = service.spec.as_ref().unwrap();
    spec.ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect()
}

#[tokio::test]
async fn children_changed_by_hand_are_restored_and_additions_kept() {
    with_unscheduled_namespace("op-drift", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        wait_phase(&client, &ns, "simple", "Running").await;
        let worker = wait_workers(&client, &ns, "simple-default", 2).await[0].name_any();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);

        // The scheduler's image and env, and a worker's image, changed by hand; an env var added.
        let scheduler = "deployment/simple-scheduler";
        kubectl(&["-n", &ns, "set", "image", scheduler, "scheduler=drifted:1"]);
        kubectl(&["-n", &ns, "set", "env", scheduler, "SCHEDULER_ENV=changed", "ADDED=by-hand"]);
        kubectl(&["-n", &ns, "set", "image", &format!("deployment/{worker}"), "worker=drifted:1"]);
        // The Service's port number changed by hand.
        kubectl(&[
            "-n", &ns, "patch", "service", "simple-scheduler", "--type=json",
            "-p", r#"[{"op": "replace", "path": "/spec/ports/0/port", "value": 9999}]"#,
        ]);

        let d = eventually("the scheduler's image and env to be restored", TIMEOUT, || async {
            let d = deployments.get("simple-scheduler").await.ok()?;
            let env = env_of(&d);
            (image(&d).as_deref() == Some("dask-kubernetes:dev")
                && env.contains(&("SCHEDULER_ENV".into(), "hello-world".into())))
            .then_some(d)
        })
        .await;
        assert!(
            env_of(&d).contains(&("ADDED".into(), "by-hand".into())),
            "an env var someone added is theirs: {:?}",
            env_of(&d)
        );
        eventually("the worker's image to be restored", TIMEOUT, || async {
            let d = deployments.get(&worker).await.ok()?;
            (image(&d).as_deref() == Some("dask-kubernetes:dev")).then_some(())
        })
        .await;
        eventually("the Service's ports to be restored", TIMEOUT, || async {
            let s = services.get("simple-scheduler").await.ok()?;
            (ports_of(&s) == [("tcp-comm".to_string(), 8786), ("http-dashboard".to_string(), 8787)])
                .then_some(())
        })
        .await;
        // Each repair is told on the child.
        for name in ["simple-scheduler", worker.as_str()] {
            common::events(&client, &ns, name, "Restored").await;
        }

        // The default group's worker template changed by hand: restored by the cluster.
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"spec": {"worker": {"spec": {"containers": [{"name": "worker", "image": "drifted:1"}]}}}});
        groups.patch("simple-default", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        eventually("the default group's worker template to be restored", TIMEOUT, || async {
            let g = groups.get("simple-default").await.ok()?;
            let containers = &g.spec.worker.spec.containers;
            (containers.len() == 1
                && containers[0].image.as_deref() == Some("dask-kubernetes:dev")
                && containers[0].env.as_ref().is_some_and(|e| e[0].name == "WORKER_ENV"))
            .then_some(())
        })
        .await;
        eventually("both workers to keep (or get back) their image", TIMEOUT, || async {
            let w = workers(&client, &ns, "simple-default").await;
            (w.len() == 2 && w.iter().all(|d| image(d).as_deref() == Some("dask-kubernetes:dev"))).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_scaled_default_group_keeps_its_replicas_until_the_cluster_is_scaled() {
    with_unscheduled_namespace("op-scalekeep", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        wait_workers(&client, &ns, "simple-default", 2).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);

        kubectl(&[
            "-n",
            &ns,
            "scale",
            "daskworkergroup",
            "simple-default",
            "--replicas=3",
        ]);
        wait_workers(&client, &ns, "simple-default", 3).await;
        // Something else of the cluster's worker template changes: the group follows it, and keeps 3.
        let patch = json!({"spec": {"worker": {"metadata": {"labels": {"added": "later"}}}}});
        clusters
            .patch("simple", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let group = eventually("the group to get the new worker label", TIMEOUT, || async {
            let g = groups.get("simple-default").await.ok()?;
            let labels = g.spec.worker.metadata.as_ref()?.labels.as_ref()?;
            (labels.get("added").map(String::as_str) == Some("later")).then_some(g)
        })
        .await;
        assert_eq!(
            group.spec.worker.replicas, 3,
            "the replicas scaled by hand stay"
        );
        eventually("the workers to get the new label", TIMEOUT, || async {
            let w = workers(&client, &ns, "simple-default").await;
            (w.len() == 3
                && w.iter()
                    .all(|d| d.labels().get("added").map(String::as_str) == Some("later")))
            .then_some(())
        })
        .await;

        // The cluster's own replicas change: they win.
        kubectl(&["-n", &ns, "scale", "daskcluster", "simple", "--replicas=1"]);
        wait_workers(&client, &ns, "simple-default", 1).await;
        assert_eq!(
            groups
                .get("simple-default")
                .await
                .unwrap()
                .spec
                .worker
                .replicas,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn an_autoscaler_is_adopted_by_its_cluster() {
    with_unscheduled_namespace("op-autoscaler", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let cluster = wait_phase(&client, &ns, "simple", "Running").await;
        create_from_yaml(
            &client,
            &ns,
            "apiVersion: kubernetes.dask.org/v1\nkind: DaskAutoscaler\nmetadata:\n  name: simple\n\
             spec:\n  cluster: simple\n  minimum: 1\n  maximum: 3\n",
        )
        .await;
        let autoscalers: Api<dask_operator::crd::DaskAutoscaler> =
            Api::namespaced(client.clone(), &ns);
        // Changing an object's owner references needs delete on it, and blockOwnerDeletion update on
        // the owner's finalizers, under OwnerReferencesPermissionEnforcement.
        let owner = eventually(
            "the autoscaler to be owned by its cluster",
            TIMEOUT,
            || async {
                let a = autoscalers.get("simple").await.ok()?;
                a.owner_references()
                    .iter()
                    .find(|o| Some(&o.uid) == cluster.uid().as_ref())
                    .cloned()
            },
        )
        .await;
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
    })
    .await;
}

/// The scheduler and worker Deployments of cluster `simple` and their pods, once there are three of
/// each and the Deployment controller has seen every Deployment's current generation.
async fn settled_children(client: &Client, ns: &str) -> (Vec<Deployment>, Vec<Pod>) {
    let lp = ListParams::default().labels("dask.org/cluster-name=simple");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(
        "the scheduler and two workers, seen by the Deployment controller, with a pod each",
        TIMEOUT,
        || async {
            let mut ds = deployments.list(&lp).await.ok()?.items;
            let ps: Vec<Pod> = pods.list(&lp).await.ok()?.items;
            let seen = ds.iter().all(|d| {
                d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
            });
            let live = ps.iter().all(|p| p.metadata.deletion_timestamp.is_none());
            ds.sort_by_key(|d| d.name_any());
            (ds.len() == 3 && seen && ps.len() == 3 && live).then_some((ds, ps))
        },
    )
    .await
}

fn uids(pods: &[Pod]) -> Vec<String> {
    let mut uids: Vec<String> = pods.iter().filter_map(|p| p.uid()).collect();
    uids.sort();
    uids
}

#[tokio::test]
async fn metadata_edits_of_a_running_cluster_restart_no_pod() {
    with_unscheduled_namespace("op-metadata", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        wait_phase(&client, &ns, "simple", "Running").await;
        let (before, pods) = settled_children(&client, &ns).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let lp = ListParams::default().labels("dask.org/cluster-name=simple");

        // What a GitOps tool does: a label, then an annotation, on the DaskCluster only.
        let label = "gitops.example.com/revision";
        let patch = json!({"metadata": {"labels": {label: "r2"}}});
        clusters.patch("simple", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let relabelled = eventually("the new label on the scheduler and both workers", TIMEOUT, || async {
            let mut ds = deployments.list(&lp).await.ok()?.items;
            ds.sort_by_key(|d| d.name_any());
            (ds.len() == 3 && ds.iter().all(|d| d.labels().get(label).map(String::as_str) == Some("r2"))).then_some(ds)
        })
        .await;
        // The template is what decides a rollout. `metadata.generation` is not compared: the operator
        // records a new spec hash in an annotation with every write, and the API server bumps a
        // Deployment's generation on any annotation change (without a template change that starts
        // no rollout; the pods are compared at the end).
        for (old, new) in before.iter().zip(&relabelled) {
            assert_eq!(old.name_any(), new.name_any());
            assert_eq!(
                old.spec.as_ref().unwrap().template,
                new.spec.as_ref().unwrap().template,
                "{}: the pod template must not change",
                new.name_any()
            );
            assert!(
                !new.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.as_ref().unwrap().contains_key(label),
                "{}: the pods do not get the new label",
                new.name_any()
            );
        }
        // The other children follow the cluster's metadata too.
        let service = Api::<Service>::namespaced(client.clone(), &ns).get("simple-scheduler").await.unwrap();
        assert_eq!(service.labels().get(label).map(String::as_str), Some("r2"));
        let group = Api::<DaskWorkerGroup>::namespaced(client.clone(), &ns).get("simple-default").await.unwrap();
        assert_eq!(group.labels().get(label).map(String::as_str), Some("r2"));

        let annotation = "argocd.argoproj.io/tracking-id";
        let patch = json!({"metadata": {"annotations": {annotation: "simple:kubernetes.dask.org/DaskCluster"}}});
        clusters.patch("simple", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let annotated = eventually("the new annotation on the scheduler and both workers", TIMEOUT, || async {
            let mut ds = deployments.list(&lp).await.ok()?.items;
            ds.sort_by_key(|d| d.name_any());
            (ds.len() == 3 && ds.iter().all(|d| d.annotations().contains_key(annotation))).then_some(ds)
        })
        .await;
        for (old, new) in before.iter().zip(&annotated) {
            assert_eq!(
                old.spec.as_ref().unwrap().template,
                new.spec.as_ref().unwrap().template,
                "{}: the pod template must not change",
                new.name_any()
            );
        }

        // Once the Deployment controller has seen all of it, the same pods are still there: none was
        // replaced or is being stopped.
        let (_, after) = settled_children(&client, &ns).await;
        assert_eq!(uids(&after), uids(&pods));
    })
    .await;
}

#[tokio::test]
async fn the_longest_cluster_and_group_names_get_workers() {
    with_unscheduled_namespace("op-longnames", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        // The longest cluster name: its workers are `<53>-default-worker-<10 hex>`, 79 characters, too
        // long for a label value, and were rejected by the API server (retried forever) when that was
        // their dask.org/worker-name label.
        let cluster = format!("longest-{}", "c".repeat(names::MAX_CLUSTER_NAME - 8));
        assert_eq!(cluster.len(), 53);
        let yaml = fixture("simplecluster.yaml").replace("simple", &cluster);
        create_from_yaml(&client, &ns, &yaml).await;
        wait_phase(&client, &ns, &cluster, "Running").await;
        let default_group = format!("{cluster}-default");
        let mut all = wait_workers(&client, &ns, &default_group, 2).await;

        // A group of the longest name (63 characters: a label value) on it.
        let group = format!("{cluster}-{}", "g".repeat(63 - 54));
        assert_eq!(group.len(), 63);
        let yaml = fixture("simpleworkergroup.yaml")
            .replace("name: simple-additional", &format!("name: {group}"))
            .replace("cluster: simple", &format!("cluster: {cluster}"));
        create_from_yaml(&client, &ns, &yaml).await;
        all.extend(wait_workers(&client, &ns, &group, 1).await);

        for worker in &all {
            let name = worker.name_any();
            assert!(name.len() > 63, "{name}");
            let spec = worker.spec.as_ref().unwrap();
            let pod_labels = spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap();
            for labels in [
                worker.labels(),
                pod_labels,
                spec.selector.match_labels.as_ref().unwrap(),
            ] {
                assert_eq!(labels["dask.org/worker-name"], names::worker_label(&name));
                assert!(labels.values().all(|v| v.len() <= 63), "{labels:?}");
            }
            if name.starts_with(&default_group) {
                // (The other group's fixture sets its own DASK_WORKER_NAME, which is kept.)
                assert!(env_of(worker).contains(&("DASK_WORKER_NAME".into(), name.clone())));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn names_no_worker_could_be_labelled_with_are_rejected_with_their_field() {
    with_unscheduled_namespace("op-cel", |client, ns| async move {
        common::install_crds(&client).await;
        let group = fixture("simpleworkergroup.yaml");
        let refused = |yaml: String| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                match try_create_from_yaml(&client, &ns, &yaml).await {
                    Err(kube::Error::Api(status)) => {
                        assert_eq!(status.code, 422, "{status:?}");
                        status.message
                    }
                    other => panic!("expected a refusal, got {other:?}"),
                }
            }
        };

        let long = "g".repeat(64);
        let message = refused(group.replace("name: simple-additional", &format!("name: {long}"))).await;
        assert!(message.contains("metadata.name: at most 63 characters"), "{message}");
        for cluster in ["c".repeat(54), "Simple.Cluster".to_string(), "1-digit".to_string()] {
            let message = refused(group.replace("cluster: simple", &format!("cluster: {cluster}"))).await;
            assert!(message.contains("spec.cluster"), "{message}");
            assert!(message.contains("name of a DaskCluster"), "{message}");
        }
        let autoscaler = "apiVersion: kubernetes.dask.org/v1\nkind: DaskAutoscaler\nmetadata:\n  name: a\n\
                          spec:\n  cluster: Not-A-Cluster-Name\n  minimum: 0\n  maximum: 1\n";
        let message = refused(autoscaler.to_string()).await;
        assert!(message.contains("spec.cluster"), "{message}");
        let inverted = autoscaler.replace("Not-A-Cluster-Name", "simple").replace("minimum: 0", "minimum: 3");
        let message = refused(inverted).await;
        assert!(message.contains("spec.minimum: must not be greater than spec.maximum"), "{message}");
        let negative = autoscaler.replace("Not-A-Cluster-Name", "simple").replace("minimum: 0", "minimum: -1");
        let message = refused(negative).await;
        assert!(message.contains("spec.minimum"), "{message}");
        // The rules reject exactly these: the same group with valid names is accepted.
        try_create_from_yaml(&client, &ns, &group).await.unwrap();
        try_create_from_yaml(&client, &ns, &autoscaler.replace("Not-A-Cluster-Name", "simple")).await.unwrap();
    })
    .await;
}
