//! Shared helpers for the integration tests: a client for the local cluster, a namespace per
//! test that is always deleted afterwards, and polling with a deadline.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
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
pub async fn with_namespace<F, Fut>(prefix: &str, body: F)
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
