//! Child names, as upstream derives them, and the cluster-name rule.

use sha2::{Digest, Sha256};

/// Longest DaskCluster name: `<name>-scheduler` must fit the 63 characters of a Service name.
pub const MAX_CLUSTER_NAME: usize = 63 - "-scheduler".len();

/// `<cluster>-scheduler`: the scheduler Deployment and Service.
pub fn scheduler(cluster: &str) -> String {
    format!("{cluster}-scheduler")
}

/// `<cluster>-default`: the default DaskWorkerGroup.
pub fn default_worker_group(cluster: &str) -> String {
    format!("{cluster}-default")
}

/// `<job>-runner`: the job's runner Pod.
pub fn runner(job: &str) -> String {
    format!("{job}-runner")
}

/// `tcp://<cluster>-scheduler.<ns>.svc.cluster.local:8786`, the address every worker and runner gets.
pub fn scheduler_address(cluster: &str, namespace: &str) -> String {
    format!(
        "tcp://{}.{namespace}.svc.cluster.local:8786",
        scheduler(cluster)
    )
}

/// `<group>-worker-<10 hex>`, upstream's shape. The hex part is derived from the group's UID and a
/// slot number rather than drawn at random, so that creating a worker is idempotent: a reconcile
/// that runs twice (after a crash, or on a stale cache) names the same Deployment and cannot add a
/// second one.
pub fn worker_deployment(group: &str, group_uid: &str, slot: u32) -> String {
    let digest = Sha256::digest(format!("{group_uid}/{slot}").as_bytes());
    format!("{group}-worker-{}", &hex::encode(digest)[..10])
}

/// Upstream's rule (`dask_kubernetes/constants.py`): at most 53 characters of `[a-z0-9-]`, starting
/// and ending with an alphanumeric character. Returns why a name is invalid.
pub fn validate_cluster_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_CLUSTER_NAME {
        return Err(format!(
            "cluster name {name:?} is {} characters long; at most {MAX_CLUSTER_NAME} are allowed so that \
             {name:?}-scheduler is a valid Service name",
            name.len()
        ));
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid_ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid_chars || !valid_ends {
        return Err(format!(
            "cluster name {name:?} must consist of lower case alphanumeric characters or '-', and start \
             and end with an alphanumeric character (no dots)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream() {
        assert_eq!(scheduler("simple"), "simple-scheduler");
        assert_eq!(default_worker_group("simple"), "simple-default");
        assert_eq!(runner("simple-job"), "simple-job-runner");
        assert_eq!(
            scheduler_address("simple", "ns1"),
            "tcp://simple-scheduler.ns1.svc.cluster.local:8786"
        );
    }

    #[test]
    fn worker_names_are_ten_hex_and_stable_per_slot() {
        let a = worker_deployment("simple-default", "uid-1", 0);
        assert_eq!(a, worker_deployment("simple-default", "uid-1", 0));
        assert_ne!(a, worker_deployment("simple-default", "uid-1", 1));
        assert_ne!(a, worker_deployment("simple-default", "uid-2", 0));
        let suffix = a.strip_prefix("simple-default-worker-").unwrap();
        assert_eq!(suffix.len(), 10);
        assert!(
            suffix
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn cluster_names_are_validated_like_upstream() {
        assert!(validate_cluster_name("simple").is_ok());
        assert!(validate_cluster_name(&"a".repeat(53)).is_ok());
        assert!(
            validate_cluster_name(&"a".repeat(54))
                .unwrap_err()
                .contains("54 characters")
        );
        assert!(
            validate_cluster_name("has.dots")
                .unwrap_err()
                .contains("no dots")
        );
        assert!(validate_cluster_name("-leading").is_err());
        assert!(validate_cluster_name("Upper").is_err());
    }
}
