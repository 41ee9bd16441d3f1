//! The Dask scheduler's HTTP API, as `distributed.http.scheduler.api` serves it on the dashboard port
//! (8787, the Service port `http-dashboard`) when that module is in the scheduler's
//! `distributed.scheduler.http.routes` (see [`crate::resources::scheduler_api`]):
//!
//! | call | route | request | answer |
//! | --- | --- | --- | --- |
//! | [`Scheduler::adaptive_target`] | `GET /api/v1/adaptive_target` | | `{"workers": <int>}` |
//! | [`Scheduler::check_idle`] | `GET /api/v1/check_idle` | | `{"idle_since": <unix seconds, float> \| null}` |
//! | [`Scheduler::workers`] | `GET /api/v1/get_workers` | | `{"num_workers": <int>, "workers": [{"name": …, "address": "tcp://…"}]}` |
//! | [`Scheduler::retire_workers`] | `POST /api/v1/retire_workers` | `{"n": <int>}` or `{"workers": ["<address>", …]}` | `{"<address>": {"name": …, "id": …, "host": …, …}}`: the workers retired |
//!
//! Every handler answers `500` with the Python exception as the status line's reason and the body
//! `{"Error": "Internal Server Error"}` when the scheduler call raises. A route that is not enabled is
//! tornado's `404`. `retire_workers` takes worker *addresses* (or a count, for which the scheduler
//! picks the workers, [`workers_to_close`]); retiring by name looks the addresses up first. It
//! answers once the retired workers' unique data has been copied to other workers and they are
//! removed from the scheduler; a worker whose data could not be moved anywhere is not retired and is
//! not in the answer. The scheduler does not close the retired worker processes (`close_workers` is
//! false): the operator deletes their Deployments.
//!
//! Two transports behind one type ([`Route`], picked by [`pick_route`]): straight to the scheduler
//! Service over the pod network (`http://<cluster>-scheduler.<ns>.svc:8787`), or through the API
//! server's service proxy
//! (`/api/v1/namespaces/<ns>/services/<cluster>-scheduler:http-dashboard/proxy/…`) with the
//! operator's own [`kube::Client`], for an operator running outside the cluster.
//!
//! [`workers_to_close`]: https://distributed.dask.org/en/stable/scheduling-policies.html

mod transport;

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use transport::{Answer, Transport};
pub use transport::{Route, pick_route, route_from_environment};

use crate::resources::names;

/// The scheduler Service port the API server proxies to (upstream's name for the dashboard port).
pub const DASHBOARD_PORT_NAME: &str = "http-dashboard";
/// A call's bound, connecting included, unless [`Scheduler::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound of [`Scheduler::retire_workers`]: the scheduler answers only once the workers' data has
/// moved, which takes as long as copying it. The retirement goes on if the call gives up.
pub const DEFAULT_RETIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong talking to the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the scheduler at {target} did not answer {what} within {timeout:?}")]
    Timeout {
        target: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error("cannot reach the scheduler at {target}: {message}")]
    Unreachable { target: String, message: String },
    /// The API server answered for the scheduler: the Service or its port does not exist, it has no
    /// ready endpoint, or the operator may not use the proxy.
    #[error("the API server cannot proxy to the scheduler at {target}: {status} {message}")]
    Proxy {
        target: String,
        status: u16,
        message: String,
    },
    #[error(
        "the scheduler at {target} does not serve {path} (404): its HTTP API is not enabled; add \
         distributed.http.scheduler.api to distributed.scheduler.http.routes \
         (DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES)"
    )]
    ApiNotEnabled { target: String, path: &'static str },
    #[error("the scheduler at {target} answered {path} with {status}: {message}")]
    Status {
        target: String,
        path: &'static str,
        status: u16,
        message: String,
    },
    #[error(
        "the scheduler at {target} answered {path} with something unexpected ({problem}): {body}"
    )]
    Decode {
        target: String,
        path: &'static str,
        problem: String,
        body: String,
    },
    #[error("invalid scheduler URL {url}: {message}")]
    InvalidUrl { url: String, message: String },
}

impl SchedulerError {
    /// The scheduler could not be asked at all (as opposed to answering something wrong): no
    /// connection, no answer in time, or no endpoint behind the proxy.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::Proxy { .. }
        )
    }
}

pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

/// One worker as the scheduler knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    /// The worker's name (`DASK_WORKER_NAME`: for the operator's workers, their Deployment's name).
    /// A name that is not a string (a Python int) is given as its JSON text, as the scheduler's
    /// `str(name)` would.
    pub name: String,
    /// `tcp://<pod IP>:<port>`.
    pub address: String,
}

/// Which workers [`Scheduler::retire_workers`] retires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retire {
    /// This many, chosen by the scheduler (idle ones holding the least data).
    Count(u32),
    /// These addresses.
    Addresses(Vec<String>),
    /// These names (looked up with [`Scheduler::workers`]; names the scheduler does not know are
    /// skipped).
    Names(Vec<String>),
}

/// A client of one scheduler's HTTP API. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    transport: Transport,
    timeout: Duration,
    retire_timeout: Duration,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("target", &self.target())
            .field("timeout", &self.timeout)
            .field("retire_timeout", &self.retire_timeout)
            .finish()
    }
}

impl Scheduler {
    /// The scheduler of DaskCluster `cluster` in `namespace`, reached the way `route` says
    /// (`client` is used only by [`Route::ApiServerProxy`]).
    pub fn for_cluster(
        route: Route,
        client: &kube::Client,
        cluster: &str,
        namespace: &str,
    ) -> Self {
        match route {
            Route::Direct => Self::direct(cluster, namespace),
            Route::ApiServerProxy => Self::proxy(client.clone(), cluster, namespace),
        }
    }

    /// Straight to `http://<cluster>-scheduler.<ns>.svc:8787` (the operator runs in the cluster).
    pub fn direct(cluster: &str, namespace: &str) -> Self {
        Self::with_transport(Transport::direct(&names::dashboard_url(cluster, namespace)))
    }

    /// Straight to the dashboard at `base` (`http://host:port`, optionally with a path prefix).
    pub fn direct_url(base: &str) -> Result<Self> {
        let uri: http::Uri =
            base.parse()
                .map_err(|e: http::uri::InvalidUri| SchedulerError::InvalidUrl {
                    url: base.into(),
                    message: e.to_string(),
                })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(SchedulerError::InvalidUrl {
                url: base.into(),
                message: "expected http://host:port".into(),
            });
        }
        Ok(Self::with_transport(Transport::direct(base)))
    }

    /// Through the API server's service proxy, with the operator's credentials (the operator runs
    /// outside the cluster; it needs `get` and `create` on `services/proxy`: `create` for the
    /// POST of `retire_workers`). Best with a client from [`Self::proxy_client`]: a default client
    /// retries the proxy's `503 no endpoints available` for up to 15 times with growing pauses,
    /// which a call's bound then cuts short as a [`SchedulerError::Timeout`].
    pub fn proxy(client: kube::Client, cluster: &str, namespace: &str) -> Self {
        Self::with_transport(Transport::proxy(
            client,
            proxy_path(cluster, namespace, DASHBOARD_PORT_NAME),
        ))
    }

    /// A client for [`Self::proxy`] from the operator's `config`, without kube's retries of `503`
    /// and `429` (a scheduler without a ready pod answers at once as [`SchedulerError::Proxy`]).
    pub fn proxy_client(mut config: kube::Config) -> kube::Result<kube::Client> {
        config.default_retry = false;
        kube::Client::try_from(config)
    }

    fn with_transport(transport: Transport) -> Self {
        Self {
            transport,
            timeout: DEFAULT_TIMEOUT,
            retire_timeout: DEFAULT_RETIRE_TIMEOUT,
        }
    }

    /// Bounds every call but [`Self::retire_workers`] by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bounds [`Self::retire_workers`] by `timeout`.
    pub fn with_retire_timeout(mut self, timeout: Duration) -> Self {
        self.retire_timeout = timeout;
        self
    }

    /// Where the calls go, for messages.
    pub fn target(&self) -> String {
        self.transport.target()
    }

    /// How many workers the scheduler wants for its current load (`Scheduler.adaptive_target()`:
    /// the tasks' expected run time over `distributed.adaptive.target-duration`, more when memory is
    /// 60% full; fewer than now when it can close idle workers).
    pub async fn adaptive_target(&self) -> Result<u32> {
        const PATH: &str = "/api/v1/adaptive_target";
        let body = self.get(PATH).await?;
        parse_adaptive_target(&body).map_err(|problem| self.decode(PATH, problem, &body))
    }

    /// Since when the scheduler has been idle (no task queued, processing or unrunnable), or `None`
    /// when it is busy. The scheduler only counts from the first call that finds it idle with no
    /// task transition since the previous call, so this must be called repeatedly.
    pub async fn check_idle(&self) -> Result<Option<Timestamp>> {
        const PATH: &str = "/api/v1/check_idle";
        let body = self.get(PATH).await?;
        parse_check_idle(&body).map_err(|problem| self.decode(PATH, problem, &body))
    }

    /// The workers connected to the scheduler, with their names and addresses.
    pub async fn workers(&self) -> Result<Vec<Worker>> {
        const PATH: &str = "/api/v1/get_workers";
        let body = self.get(PATH).await?;
        parse_workers(&body).map_err(|problem| self.decode(PATH, problem, &body))
    }

    /// Retires workers gracefully: their unique data moves to other workers, then the scheduler
    /// forgets them. Returns the workers retired (possibly fewer than asked: a worker whose data
    /// has nowhere to go stays). Their processes keep running until their Deployments are deleted.
    pub async fn retire_workers(&self, which: Retire) -> Result<Vec<Worker>> {
        const PATH: &str = "/api/v1/retire_workers";
        let request = match which {
            Retire::Count(0) => return Ok(Vec::new()),
            Retire::Count(n) => json!({ "n": n }),
            Retire::Addresses(addresses) if addresses.is_empty() => return Ok(Vec::new()),
            Retire::Addresses(addresses) => json!({ "workers": addresses }),
            Retire::Names(wanted) if wanted.is_empty() => return Ok(Vec::new()),
            Retire::Names(wanted) => {
                let addresses: Vec<String> = self
                    .workers()
                    .await?
                    .into_iter()
                    .filter(|w| wanted.contains(&w.name))
                    .map(|w| w.address)
                    .collect();
                if addresses.is_empty() {
                    return Ok(Vec::new());
                }
                json!({ "workers": addresses })
            }
        };
        let body = self
            .call(
                http::Method::POST,
                PATH,
                Some(request.to_string()),
                self.retire_timeout,
            )
            .await?;
        parse_retired(&body).map_err(|problem| self.decode(PATH, problem, &body))
    }

    async fn get(&self, path: &'static str) -> Result<String> {
        self.call(http::Method::GET, path, None, self.timeout).await
    }

    async fn call(
        &self,
        method: http::Method,
        path: &'static str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<String> {
        let target = self.target();
        let answer = tokio::time::timeout(timeout, self.transport.send(method, path, body))
            .await
            .map_err(|_| SchedulerError::Timeout {
                target: target.clone(),
                what: path,
                timeout,
            })??;
        classify(&target, path, self.transport.is_proxy(), answer)
    }

    fn decode(&self, path: &'static str, problem: String, body: &str) -> SchedulerError {
        SchedulerError::Decode {
            target: self.target(),
            path,
            problem,
            body: truncate(body),
        }
    }
}

/// The API server's path to the scheduler Service's `port` of `cluster` in `namespace`; the API
/// routes follow it.
pub fn proxy_path(cluster: &str, namespace: &str, port: &str) -> String {
    format!(
        "/api/v1/namespaces/{namespace}/services/{}:{port}/proxy",
        names::scheduler(cluster)
    )
}

/// Turns an answer into its body, or the error its status means.
fn classify(target: &str, path: &'static str, proxied: bool, answer: Answer) -> Result<String> {
    let Answer {
        status,
        reason,
        body,
    } = answer;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    // Through the proxy, an answer of the API server itself is a `Status` object; the scheduler's
    // own answers are tornado's HTML or the API's `{"Error": …}`.
    if proxied && let Some(message) = kubernetes_status_message(&body) {
        return Err(SchedulerError::Proxy {
            target: target.into(),
            status,
            message,
        });
    }
    if status == 404 {
        return Err(SchedulerError::ApiNotEnabled {
            target: target.into(),
            path,
        });
    }
    // The API puts the Python exception in the reason phrase (the API server's proxy drops it).
    let message = match reason {
        Some(reason) if !reason.is_empty() && reason != "Internal Server Error" => reason,
        _ => truncate(&body),
    };
    Err(SchedulerError::Status {
        target: target.into(),
        path,
        status,
        message,
    })
}

/// The message of a Kubernetes `Status` object, if `body` is one.
fn kubernetes_status_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    (value.get("kind")?.as_str()? == "Status").then(|| {
        value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    })
}

fn truncate(body: &str) -> String {
    const LIMIT: usize = 512;
    let body = body.trim();
    match body.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}

/// `{"workers": <int>}`; a target beyond `u32` is `u32::MAX`.
pub(crate) fn parse_adaptive_target(body: &str) -> Result<u32, String> {
    #[derive(Deserialize)]
    struct Answer {
        workers: Value,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|e| e.to_string())?;
    match answer.workers {
        Value::Number(n) if n.as_u64().is_some() => {
            Ok(u32::try_from(n.as_u64().unwrap_or_default()).unwrap_or(u32::MAX))
        }
        other => Err(format!("workers is {other}, not a non-negative integer")),
    }
}

/// `{"idle_since": <unix seconds> | null}`.
pub(crate) fn parse_check_idle(body: &str) -> Result<Option<Timestamp>, String> {
    #[derive(Deserialize)]
    struct Answer {
        idle_since: Option<f64>,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|e| e.to_string())?;
    answer
        .idle_since
        .map(|seconds| {
            SignedDuration::try_from_secs_f64(seconds)
                .ok()
                .and_then(|d| Timestamp::from_duration(d).ok())
                .ok_or_else(|| format!("idle_since {seconds} is not a time"))
        })
        .transpose()
}

/// `{"num_workers": n, "workers": [{"name": …, "address": …}]}`.
pub(crate) fn parse_workers(body: &str) -> Result<Vec<Worker>, String> {
    #[derive(Deserialize)]
    struct Entry {
        name: Value,
        address: String,
    }
    #[derive(Deserialize)]
    struct Answer {
        workers: Vec<Entry>,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(answer
        .workers
        .into_iter()
        .map(|e| Worker {
            name: name_text(&e.name),
            address: e.address,
        })
        .collect())
}

/// `{"<address>": {"name": …, …}}`, sorted by address.
pub(crate) fn parse_retired(body: &str) -> Result<Vec<Worker>, String> {
    let answer: serde_json::Map<String, Value> =
        serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut retired: Vec<Worker> = answer
        .into_iter()
        .map(|(address, info)| {
            let name = info
                .get("name")
                .map(name_text)
                .unwrap_or_else(|| address.clone());
            Worker { name, address }
        })
        .collect();
    retired.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(retired)
}

/// A worker name as the scheduler compares names (`str(name)`): strings as they are, anything else
/// as its JSON text.
fn name_text(name: &Value) -> String {
    match name {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
