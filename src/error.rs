//! Errors of a reconcile, named after the step that failed.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed; `what` names the step ("apply scheduler Deployment").
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The object is accepted by the schema but cannot be reconciled as it is; retried with backoff
    /// because the missing piece (for example the named cluster) may appear.
    #[error("{0}")]
    Unusable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Api { .. } => "api",
            Error::Unusable(_) => "unusable",
        }
    }
}

/// Exponential per-object backoff: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(10).saturating_sub(1)).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(50), Duration::from_secs(300));
    }
}
