//! How requests reach the scheduler: straight over the pod network, or through the API server's
//! service proxy.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Result, SchedulerError};

/// The service account token every pod gets unless it opts out.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How the operator reaches schedulers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Over the pod network, by the scheduler Service's DNS name: the operator runs in the cluster.
    Direct,
    /// Through the API server's service proxy: the operator runs on a host outside the pod network
    /// (a developer's machine), where the Service's DNS name does not resolve.
    ApiServerProxy,
}

/// In the cluster (the kubelet set `KUBERNETES_SERVICE_HOST` and mounted a service account token):
/// [`Route::Direct`]; anywhere else, [`Route::ApiServerProxy`].
pub fn pick_route(kubernetes_service_host: Option<&str>, token_present: bool) -> Route {
    match kubernetes_service_host {
        Some(host) if !host.trim().is_empty() && token_present => Route::Direct,
        _ => Route::ApiServerProxy,
    }
}

/// [`pick_route`] for this process.
pub fn route_from_environment() -> Route {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    pick_route(
        host.as_deref(),
        std::path::Path::new(SERVICE_ACCOUNT_TOKEN).is_file(),
    )
}

/// A status, its reason phrase when it is not the standard one, and the body.
pub(super) struct Answer {
    pub status: u16,
    pub reason: Option<String>,
    pub body: String,
}

#[derive(Clone)]
pub(super) enum Transport {
    /// `base` is `http://host:port` with an optional path prefix, without a trailing slash.
    Direct {
        base: String,
        client: Client<HttpConnector, Full<Bytes>>,
    },
    /// `path` is the service proxy's path, without a trailing slash.
    Proxy { client: kube::Client, path: String },
}

/// One connection pool for every direct call.
fn direct_client() -> Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(super::DEFAULT_TIMEOUT));
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .build(connector)
        })
        .clone()
}

impl Transport {
    pub fn direct(base: &str) -> Self {
        Self::Direct {
            base: base.trim_end_matches('/').to_string(),
            client: direct_client(),
        }
    }

    pub fn proxy(client: kube::Client, path: String) -> Self {
        Self::Proxy {
            client,
            path: path.trim_end_matches('/').to_string(),
        }
    }

    pub fn is_proxy(&self) -> bool {
        matches!(self, Self::Proxy { .. })
    }

    pub fn target(&self) -> String {
        match self {
            Self::Direct { base, .. } => base.clone(),
            Self::Proxy { path, .. } => format!("API server {path}"),
        }
    }

    pub async fn send(
        &self,
        method: http::Method,
        api_path: &str,
        body: Option<String>,
    ) -> Result<Answer> {
        let unreachable = |message: String| SchedulerError::Unreachable {
            target: self.target(),
            message,
        };
        let request = |uri: String| {
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(uri)
                .header(http::header::ACCEPT, "application/json");
            if body.is_some() {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
            }
            builder
        };
        let payload = Bytes::from(body.clone().unwrap_or_default());
        match self {
            Self::Direct { base, client } => {
                let uri = format!("{base}{api_path}");
                let request = request(uri.clone()).body(Full::new(payload)).map_err(|e| {
                    SchedulerError::InvalidUrl {
                        url: uri,
                        message: e.to_string(),
                    }
                })?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| unreachable(error_chain(&e)))?;
                answer(response).await.map_err(unreachable)
            }
            Self::Proxy { client, path } => {
                let uri = format!("{path}{api_path}");
                let request = request(uri.clone())
                    .body(kube::client::Body::from(payload.to_vec()))
                    .map_err(|e| SchedulerError::InvalidUrl {
                        url: uri,
                        message: e.to_string(),
                    })?;
                let response = client
                    .send(request)
                    .await
                    .map_err(|e| unreachable(error_chain(&e)))?;
                answer(response).await.map_err(unreachable)
            }
        }
    }
}

/// A response read in full: status, reason phrase (when the server sent one), body as text.
async fn answer<B>(response: http::Response<B>) -> std::result::Result<Answer, String>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let status = response.status();
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            format!("reading the answer: {}", error_chain(&*e))
        })?
        .to_bytes();
    Ok(Answer {
        status: status.as_u16(),
        reason,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An error and its sources, `: `-separated (hyper's own messages say little: "client error (Connect)").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}
