//! Shared helpers for the integration tests: a client for the local cluster, a namespace per
//! test that is always deleted afterwards, polling with a deadline, and the operator run in-process
//! with its own identity (not the admin's), so that its RBAC is what the tests exercise.
#![allow(dead_code)] // each test binary uses a different subset

pub mod faultproxy;
pub mod jobs;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Label put on every namespace a test creates, so leftovers can be found and removed.
pub const TEST_LABEL: &str = "dask-operator.dask.org/test";

/// The admin kubeconfig written by `make cluster-up`, or `$KUBECONFIG` when set by the Makefile.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/kubeconfig"))
}

pub async fn config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "integration tests need the local cluster: cannot read {} ({e}); run `make cluster-up` first",
            path.display()
        )
    });
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is valid")
}

pub async fn client() -> Client {
    Client::try_from(config().await).expect("client from kubeconfig")
}

/// The operator's own identity: `$DASK_OPERATOR_TEST_KUBECONFIG`, else `operator.kubeconfig` next to
/// the admin kubeconfig (user `dask-operator`, written by `make cluster-up`, bound to the rules of
/// `deploy/rbac.yaml`). Set the variable to the admin kubeconfig to run the operator as admin.
pub fn operator_kubeconfig_path() -> PathBuf {
    std::env::var_os("DASK_OPERATOR_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| kubeconfig_path().with_file_name("operator.kubeconfig"))
}

/// The configuration of the operator's own identity ([`operator_kubeconfig_path`]).
pub async fn operator_config() -> Config {
    let path = operator_kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "the operator runs with its own identity: cannot read {} ({e}); run `make cluster-up`, \
             or set DASK_OPERATOR_TEST_KUBECONFIG",
            path.display()
        )
    });
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("operator kubeconfig is valid")
}

/// A client with the operator's own identity ([`operator_kubeconfig_path`]).
pub async fn operator_client() -> Client {
    Client::try_from(operator_config().await).expect("client from the operator kubeconfig")
}

/// Applies `deploy/rbac.yaml` (the operator identity's ClusterRole and binding, generated from the
/// chart's rules) with the admin `client`, as `make cluster-up` does and with its field manager (so
/// that neither conflicts with the other), so that a cluster brought up before the rules last changed
/// runs the tests with the current ones; then waits until the API server's authorizer grants every
/// rule to the operator in `namespace`. Once per test process (tests starting at once may both do it:
/// it is idempotent).
pub async fn apply_operator_rbac(client: &Client, namespace: &str) {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Patch, PatchParams};
    static APPLIED: AtomicBool = AtomicBool::new(false);
    if APPLIED.load(Ordering::Acquire) {
        return;
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("deploy/rbac.yaml is YAML");
    let params = PatchParams::apply("cluster-up").force();
    let mut checks = Vec::new();
    for doc in docs {
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let kind = doc["kind"].as_str().unwrap().to_string();
        let applied = match kind.as_str() {
            "ClusterRole" => {
                let role: ClusterRole = serde_json::from_value(doc.clone()).unwrap();
                // What the operator may do in a namespace (rules not limited to named objects).
                for rule in role
                    .rules
                    .iter()
                    .flatten()
                    .filter(|r| r.resource_names.is_none())
                {
                    for group in rule.api_groups.iter().flatten() {
                        for resource in rule.resources.iter().flatten() {
                            let (resource, subresource) = match resource.split_once('/') {
                                Some((r, s)) => (r, Some(s.to_string())),
                                None => (resource.as_str(), None),
                            };
                            for verb in &rule.verbs {
                                checks.push(ResourceAttributes {
                                    group: Some(group.clone()),
                                    resource: Some(resource.to_string()),
                                    subresource: subresource.clone(),
                                    verb: Some(verb.clone()),
                                    namespace: Some(namespace.to_string()),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
                Api::<ClusterRole>::all(client.clone())
                    .patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .map(|_| ())
            }
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                .patch(&name, &params, &Patch::Apply(&doc))
                .await
                .map(|_| ()),
            other => panic!("deploy/rbac.yaml: unexpected kind {other}"),
        };
        applied.unwrap_or_else(|e| panic!("apply {kind} {name} from deploy/rbac.yaml: {e}"));
    }
    assert!(!checks.is_empty(), "deploy/rbac.yaml grants nothing");
    // The authorizer's cache follows within moments: ask it, as the operator.
    let reviews = Api::<SelfSubjectAccessReview>::all(operator_client().await);
    eventually(
        "the operator identity to be granted the rules of deploy/rbac.yaml",
        Duration::from_secs(30),
        || async {
            for attributes in &checks {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(attributes.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let answer = reviews.create(&PostParams::default(), &review).await.ok()?;
                answer.status?.allowed.then_some(())?;
            }
            Some(())
        },
    )
    .await;
    APPLIED.store(true, Ordering::Release);
}

/// A namespace name unique to this process and call: `<prefix>-<time><counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{:x}{n}",
        (nanos as u64 ^ std::process::id() as u64) & 0xff_ffff
    )
}

/// Runs `body` with a fresh namespace and deletes the namespace afterwards, also when `body` panics.
/// Its pods run on the local node.
pub async fn with_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    namespace(prefix, false, body).await
}

/// Like [`with_namespace`], but no pod of the namespace is ever scheduled (a node selector no node
/// matches, set through the PodNodeSelector admission plugin): the test itself reports pod phases,
/// the way a kubelet would, without a real kubelet competing.
pub async fn with_unscheduled_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    namespace(prefix, true, body).await
}

async fn namespace<F, Fut>(prefix: &str, unscheduled: bool, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = client().await;
    let name = unique_name(prefix);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    ns.metadata.labels = Some([(TEST_LABEL.to_string(), "true".to_string())].into());
    if unscheduled {
        let selector = (
            "scheduler.alpha.kubernetes.io/node-selector".to_string(),
            format!("{TEST_LABEL}=no-node"),
        );
        ns.metadata.annotations = Some([selector].into());
    }
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create test namespace");
    let outcome = AssertUnwindSafe(body(client.clone(), name.clone()))
        .catch_unwind()
        .await;
    if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
        eprintln!("warning: could not delete test namespace {name}: {e}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs (server-side applies) the four CRDs and waits until they are Established.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::runtime::wait::{await_condition, conditions};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in dask_operator::crd::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("dask-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established"))
        .unwrap();
    }
}

/// The operator, running in this process and watching one namespace. Dropping it stops it abruptly
/// (as a crash would); [`Operator::stop`] stops it the same way and waits until it is gone.
pub struct Operator {
    task: tokio::task::JoinHandle<()>,
    /// What its controllers remember per object (`tracked_objects()`).
    pub bookkeeping: std::sync::Arc<dask_operator::controller::Bookkeeping>,
}

impl Operator {
    /// Starts the controllers for `namespace` with the operator's own identity
    /// ([`operator_client`]); `client` (the admin) installs the CRDs and the operator's RBAC.
    pub async fn start(client: &Client, namespace: &str) -> Operator {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .with_test_writer()
            .try_init();
        install_crds(client).await;
        apply_operator_rbac(client, namespace).await;
        // Schedulers through the API server's proxy, as the operator does outside the cluster.
        let proxy = dask_operator::scheduler::Scheduler::proxy_client(operator_config().await)
            .expect("a client for the schedulers");
        let settings = dask_operator::controller::Settings {
            namespace: Some(namespace.to_string()),
            scheduler: Some(dask_operator::controller::SchedulerAccess::new(proxy)),
            ..Default::default()
        };
        let bookkeeping = std::sync::Arc::default();
        let task = tokio::spawn(dask_operator::controller::run_with_bookkeeping(
            operator_client().await,
            settings,
            std::sync::Arc::clone(&bookkeeping),
            std::future::pending(),
        ));
        Operator { task, bookkeeping }
    }

    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates an object from a YAML manifest exactly as written (no Rust type in between), in `namespace`.
pub async fn create_from_yaml(
    client: &Client,
    namespace: &str,
    yaml: &str,
) -> kube::api::DynamicObject {
    try_create_from_yaml(client, namespace, yaml)
        .await
        .unwrap_or_else(|e| {
            let kind = yaml.lines().find(|l| l.starts_with("kind:"));
            panic!("create {}: {e}", kind.unwrap_or_default())
        })
}

/// [`create_from_yaml`] that returns the API server's refusal instead of panicking.
pub async fn try_create_from_yaml(
    client: &Client,
    namespace: &str,
    yaml: &str,
) -> Result<kube::api::DynamicObject, kube::Error> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("manifest is YAML");
    let mut obj: DynamicObject = serde_json::from_value(value).expect("manifest is an object");
    let types = obj.types.clone().expect("manifest has apiVersion and kind");
    let (group, version) = types
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &types.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let plural = format!("{}s", types.kind.to_lowercase());
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    obj.metadata.namespace = Some(namespace.to_string());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    api.create(&PostParams::default(), &obj).await
}

/// Runs the local cluster's kubectl with the test kubeconfig; returns stdout, panics on failure.
pub fn kubectl(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(root.join(".cluster/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .output()
        .expect("run .cluster/bin/kubectl");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Reports the `n` pods matching `selector` Running and Ready, as a kubelet would.
pub async fn report_pods_ready(client: &Client, ns: &str, selector: &str, n: usize) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let lp = kube::api::ListParams::default().labels(selector);
    let found = eventually(
        &format!("{n} pods {selector}"),
        Duration::from_secs(30),
        || async {
            let items = pods.list(&lp).await.ok()?.items;
            (items.len() == n).then_some(items)
        },
    )
    .await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let conditions: Vec<_> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| serde_json::json!({"type": t, "status": "True", "lastTransitionTime": now}))
        .collect();
    let patch = serde_json::json!({"status": {"phase": "Running", "conditions": conditions}});
    for pod in found {
        pods.patch_status(
            &kube::ResourceExt::name_any(&pod),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    }
}

/// Waits until the object `name` of `api` no longer exists (deleted, its finalizers done).
pub async fn gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{} {name} to be gone", K::kind(&()));
    eventually(&what, timeout, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
}

/// The Events about `name` with `reason`, once there is at least one (waits up to 30 s): the operator
/// publishes an Event after the status write a test waits for, so it may not be there yet.
pub async fn events(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    let lp = kube::api::ListParams::default()
        .fields(&format!("involvedObject.name={name},reason={reason}"));
    let api = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns);
    eventually(
        &format!("a {reason} event about {name}"),
        Duration::from_secs(30),
        || async {
            let items = api.list(&lp).await.ok()?.items;
            (!items.is_empty()).then_some(items)
        },
    )
    .await
}
