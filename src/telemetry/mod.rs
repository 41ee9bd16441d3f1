//! What the operator tells about itself: logs, Prometheus metrics, health and readiness probes,
//! and the leader lease that decides which replica reconciles.

pub mod http;
pub mod lease;
pub mod logging;
pub mod metrics;

pub use http::Readiness;
pub use metrics::Metrics;
