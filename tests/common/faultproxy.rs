//! A fault-injecting proxy between an operator and the API server, for the chaos tests.
//!
//! The operator talks plain HTTP to the proxy on 127.0.0.1 (no credentials); the proxy forwards each
//! request with its own [`Client`] (TLS and the identity it was built with) and streams the answer
//! back. On the way it injects what a real network and a loaded API server do: connections reset
//! when opened, answers aborted half-way, 429/500/503 answers, requests that hang and then time out,
//! latency, watches cut short, and first lists that are slow. It counts what it forwarded per verb,
//! so a test can also assert that an operator made no write at all.
//!
//! Why not a TCP-level tool such as toxiproxy: the connection is TLS, so a TCP proxy can delay, cut
//! or reset it but cannot answer with an HTTP status — and 429/500/503 are the faults a controller
//! must handle differently from a broken connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use futures::StreamExt;
use kube::Client;
use tokio::net::{TcpListener, TcpStream};

/// What to inject, each as a share of requests (0.0–1.0) unless said otherwise. Can be changed while
/// the proxy runs ([`FaultProxy::set_faults`]).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// New connections reset (RST) as soon as they are accepted.
    pub reset: f64,
    /// Requests answered 429 (with `Retry-After: 1`), 500 or 503 without reaching the API server.
    pub error: f64,
    /// Requests forwarded, whose answer is then aborted after its headers: the client sees the
    /// connection break, though the API server may have done what was asked.
    pub abort: f64,
    /// Requests held for [`Faults::hang`] and then answered 504, without reaching the API server.
    pub timeout: f64,
    pub hang: Duration,
    /// Extra latency on every request, uniform between the two.
    pub latency: (Duration, Duration),
    /// Watches end after a time uniform between the two (as if the connection dropped).
    pub watch_cut: Option<(Duration, Duration)>,
    /// LISTs of a resource (the plural, e.g. `daskclusters`) held this long before being forwarded.
    pub slow_lists: Vec<(String, Duration)>,
}

/// What the proxy did, by kind.
#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<String, u64>>,
    /// The writes forwarded, as `METHOD path`.
    writes: Mutex<Vec<String>>,
}

impl Stats {
    fn add(&self, what: &str) {
        *self
            .counters
            .lock()
            .unwrap()
            .entry(what.to_string())
            .or_default() += 1;
    }

    /// How often `what` happened: a verb forwarded (`get`, `list`, `watch`, `create`, `patch`,
    /// `update`, `delete`) or a fault injected (`reset`, `error-429`, `error-500`, `error-503`,
    /// `abort`, `timeout`, `watch-cut`, `slow-list`).
    pub fn count(&self, what: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(what)
            .copied()
            .unwrap_or(0)
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters.lock().unwrap().clone()
    }

    /// Faults injected, all kinds together.
    pub fn faults(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| {
                k.starts_with("error-")
                    || ["reset", "abort", "timeout", "watch-cut", "slow-list"].contains(&k.as_str())
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// The writes forwarded since the last call, as `METHOD path`.
    pub fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut self.writes.lock().unwrap())
    }
}

struct Inner {
    upstream: Client,
    faults: RwLock<Faults>,
    stats: Arc<Stats>,
    rng: AtomicU64,
}

impl Inner {
    /// A uniform number in [0, 1) (SplitMix64; good enough to pick faults).
    fn random(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&self, share: f64) -> bool {
        share > 0.0 && self.random() < share
    }

    fn between(&self, (low, high): (Duration, Duration)) -> Duration {
        low + (high.saturating_sub(low)).mul_f64(self.random())
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 that forwards with `upstream`.
    pub async fn start(upstream: Client, faults: Faults, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let inner = Arc::new(Inner {
            upstream,
            faults: RwLock::new(faults),
            stats: stats.clone(),
            rng: AtomicU64::new(seed),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(inner.clone());
        let listener = Resetting {
            listener,
            inner: inner.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            addr,
            stats,
            inner,
            task,
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.write().unwrap() = faults;
    }

    /// A kubeconfig that points at the proxy (plain HTTP, no credentials), for an operator process.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: proxy\n  user: {{}}\ncontexts:\n- name: proxy\n  context:\n    cluster: proxy\n    \
             user: proxy\n    namespace: {namespace}\ncurrent-context: proxy\n",
            addr = self.addr
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listener that resets a share of new connections at once.
struct Resetting {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl axum::serve::Listener for Resetting {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.listener.accept().await else {
                continue;
            };
            let reset = self.inner.faults.read().unwrap().reset;
            if self.inner.chance(reset) {
                self.inner.stats.add("reset");
                // Linger 0: closing sends RST rather than FIN.
                let _ = stream.set_zero_linger();
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The Kubernetes verb of a request, from its method and URL.
pub fn verb(method: &Method, path: &str, query: &str) -> &'static str {
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    match *method {
        Method::GET if watch => "watch",
        Method::GET if is_collection(path) => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// Whether `path` names a collection (`/api/v1/namespaces/ns/pods`, `/apis/g/v/pods`) rather than
/// one object: the segments after the group version alternate `namespaces/<ns>`, then a plural.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[segments.len().min(2)..],
        Some(&"apis") => &segments[segments.len().min(3)..],
        _ => return false,
    };
    matches!(rest, [_] | ["namespaces", _, _])
}

fn status_response(code: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("injected by the chaos proxy: {reason}"), "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if code == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response<Body> {
    let faults = inner.faults.read().unwrap().clone();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let verb = verb(&parts.method, &path, &query);

    tokio::time::sleep(inner.between(faults.latency)).await;
    if inner.chance(faults.error) {
        let (code, reason) = match (inner.random() * 3.0) as u32 {
            0 => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            1 => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        };
        inner.stats.add(&format!("error-{}", code.as_u16()));
        return status_response(code, reason);
    }
    if inner.chance(faults.timeout) {
        inner.stats.add("timeout");
        tokio::time::sleep(faults.hang).await;
        return status_response(StatusCode::GATEWAY_TIMEOUT, "Timeout");
    }
    if verb == "list"
        && let Some((_, delay)) = faults
            .slow_lists
            .iter()
            .find(|(plural, _)| path.ends_with(&format!("/{plural}")))
    {
        inner.stats.add("slow-list");
        tokio::time::sleep(*delay).await;
    }

    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return status_response(StatusCode::BAD_REQUEST, "BadRequest");
    };
    let uri = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(uri);
    for (name, value) in &parts.headers {
        if ![header::HOST, header::AUTHORIZATION, header::CONTENT_LENGTH].contains(name) {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream
        .body(kube::client::Body::from(bytes.to_vec()))
        .expect("a valid request");
    let response = match inner.upstream.send(upstream).await {
        Ok(response) => response,
        Err(e) => {
            inner.stats.add("upstream-error");
            return status_response(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"));
        }
    };
    inner.stats.add(verb);
    if matches!(verb, "create" | "patch" | "update" | "delete") {
        inner
            .stats
            .writes
            .lock()
            .unwrap()
            .push(format!("{} {path}", parts.method));
    }

    let (parts, body) = response.into_parts();
    let data = Body::new(body).into_data_stream();
    if inner.chance(faults.abort) {
        inner.stats.add("abort");
        let broken = futures::stream::once(async {
            Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("injected abort"))
        });
        return Response::from_parts(parts, Body::from_stream(broken));
    }
    if verb == "watch"
        && let Some(range) = faults.watch_cut
    {
        let cut = inner.between(range);
        let stats = inner.stats.clone();
        let deadline = async move {
            tokio::time::sleep(cut).await;
            stats.add("watch-cut");
        };
        return Response::from_parts(
            parts,
            Body::from_stream(data.take_until(Box::pin(deadline))),
        );
    }
    Response::from_parts(parts, Body::from_stream(data))
}
