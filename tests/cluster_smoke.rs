//! Smoke tests of the local cluster (`make cluster-up`): the API server, etcd, the
//! controller-manager's controllers, the scheduler and node, ServiceAccount tokens and RBAC all work.
//! Each test runs in its own namespace; the tests run in parallel.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, gone, with_namespace};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn crd_becomes_established_and_custom_object_round_trips() {
    with_namespace("smoke-crd", |client, ns| async move {
        // The CRD is cluster-scoped: give it a group unique to this namespace so parallel runs never meet.
        let group = format!("{ns}.smoke.dask.org");
        let crd_name = format!("widgets.{group}");
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {
                "group": group,
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "default": 3},
                            "colour": {"type": "string"}
                        }}
                    }}}
                }]
            }
        }))
        .unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &crd).await.unwrap();

        let established = tokio::time::timeout(
            TIMEOUT,
            await_condition(crds.clone(), &crd_name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD Established within the timeout")
        .unwrap();
        assert!(established.is_some());

        let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
        let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
        let mut widget = DynamicObject::new("w1", &resource).within(&ns);
        widget.data = json!({"spec": {"colour": "blue", "unknown": "pruned"}});
        widgets
            .create(&PostParams::default(), &widget)
            .await
            .unwrap();

        let read = widgets.get("w1").await.unwrap();
        // Round trip: our field is kept, the default is applied, the unknown field is pruned.
        assert_eq!(read.data["spec"], json!({"colour": "blue", "size": 3}));
        assert!(read.uid().is_some());

        crds.delete(&crd_name, &DeleteParams::default())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn deployment_gets_replicaset_and_pending_pods() {
    with_namespace("smoke-deploy", |client, ns| async move {
        let labels: BTreeMap<String, String> = [("app".to_string(), "smoke".to_string())].into();
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "smoke", "namespace": ns},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": "localhost/none:never", "imagePullPolicy": "Never"}]}
                }
            }
        }))
        .unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let created = deployments.create(&PostParams::default(), &deployment).await.unwrap();

        let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let rs = eventually("a ReplicaSet owned by the Deployment", TIMEOUT, || async {
            let list = replicasets.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|rs| {
                rs.owner_references().iter().any(|o| Some(&o.uid) == created.meta().uid.as_ref())
            })
        })
        .await;
        assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(2));

        // The scheduler places both pods on the local node, whose kubelet never pulls: an image that is
        // not in containerd leaves the pod Pending with ErrImageNeverPull.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pending = eventually("two Pending pods on node1 that never pull", TIMEOUT, || async {
            let list = pods.list(&ListParams::default().labels("app=smoke")).await.ok()?;
            let never_pulled = list
                .items
                .iter()
                .filter(|p| {
                    let status = p.status.as_ref();
                    status.and_then(|s| s.phase.as_deref()) == Some("Pending")
                        && status.and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
                            cs.iter().any(|c| {
                                c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
                                    == Some("ErrImageNeverPull")
                            })
                        })
                })
                .count();
            (list.items.len() == 2 && never_pulled == 2).then_some(list.items)
        })
        .await;
        for pod in &pending {
            assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("node1"));
            assert!(pod.owner_references().iter().any(|o| o.kind == "ReplicaSet"));
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    with_namespace("smoke-gc", |client, ns| async move {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let owner = configmaps
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: meta("owner", &ns),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut dependent = ConfigMap {
            metadata: meta("dependent", &ns),
            ..Default::default()
        };
        dependent.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
        configmaps
            .create(&PostParams::default(), &dependent)
            .await
            .unwrap();
        let unrelated = ConfigMap {
            metadata: meta("unrelated", &ns),
            ..Default::default()
        };
        configmaps
            .create(&PostParams::default(), &unrelated)
            .await
            .unwrap();

        configmaps
            .delete("owner", &DeleteParams::background())
            .await
            .unwrap();
        gone(&configmaps, "dependent", TIMEOUT).await;
        assert!(
            configmaps.get_opt("unrelated").await.unwrap().is_some(),
            "GC must not touch unrelated objects"
        );
    })
    .await;
}

#[tokio::test]
async fn service_account_token_authenticates_and_rbac_denies_what_was_not_granted() {
    with_namespace("smoke-rbac", |admin, ns| async move {
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
        accounts
            .create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: meta("reader", &ns),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
        configmaps
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: meta("visible", &ns),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        // Grant get on ConfigMaps only.
        let role = Role {
            metadata: meta("configmap-reader", &ns),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
        };
        Api::<Role>::namespaced(admin.clone(), &ns)
            .create(&PostParams::default(), &role)
            .await
            .unwrap();
        let binding = RoleBinding {
            metadata: meta("reader", &ns),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "configmap-reader".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: "reader".into(),
                namespace: Some(ns.clone()),
                ..Default::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(admin.clone(), &ns)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();

        let request: TokenRequest =
            serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}}))
                .unwrap();
        let token = accounts
            .create_token_request("reader", &PostParams::default(), &request)
            .await
            .expect("TokenRequest for a new ServiceAccount")
            .status
            .expect("token in status")
            .token;
        assert!(!token.is_empty());

        let mut config = common::config().await;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        let reader = Client::try_from(config).unwrap();

        let as_reader: Api<ConfigMap> = Api::namespaced(reader.clone(), &ns);
        // RoleBindings take effect through the authorizer's informer: poll until the grant is seen.
        let cm = eventually("the granted get to be allowed", TIMEOUT, || async {
            as_reader.get("visible").await.ok()
        })
        .await;
        assert_eq!(cm.name_any(), "visible");

        let forbidden =
            |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
        assert!(
            forbidden(as_reader.list(&ListParams::default()).await.map(|_| ())),
            "list was not granted"
        );
        assert!(
            forbidden(
                as_reader
                    .delete("visible", &DeleteParams::default())
                    .await
                    .map(|_| ())
            ),
            "delete was not granted"
        );
        let pods: Api<Pod> = Api::namespaced(reader.clone(), &ns);
        assert!(
            forbidden(pods.list(&ListParams::default()).await.map(|_| ())),
            "pods were not granted"
        );
        let other_ns: Api<ConfigMap> = Api::namespaced(reader, "default");
        assert!(
            forbidden(other_ns.get("kube-root-ca.crt").await.map(|_| ())),
            "other namespaces were not granted"
        );
    })
    .await;
}
