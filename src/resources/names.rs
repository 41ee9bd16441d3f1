//! Child names, as upstream derives them, and the rules that keep every derived name and label
//! value within Kubernetes' limits.
//!
//! What each kind's name (and `spec.cluster`) becomes, and the limit that applies:
//!
//! | source | derived | limit |
//! | --- | --- | --- |
//! | DaskCluster `<c>` | Service `<c>-scheduler` | DNS-1035 label: ≤ 63, `[a-z]([-a-z0-9]*[a-z0-9])?` |
//! | | Deployment `<c>-scheduler`, DaskWorkerGroup `<c>-default` | DNS-1123 subdomain, ≤ 253 |
//! | | label `dask.org/cluster-name=<c>` on every child and pod | label value, ≤ 63 |
//! | DaskJob `<j>` | DaskCluster `<j>` (all of the above) | as a DaskCluster |
//! | | Pod `<j>-runner` | DNS-1123 subdomain, ≤ 253 |
//! | DaskWorkerGroup `<g>` | label `dask.org/workergroup-name=<g>` on its workers and pods | label value, ≤ 63 |
//! | | Deployments `<g>-worker-<10 hex>` (≤ 81 characters) | DNS-1123 subdomain, ≤ 253 |
//! | | label `dask.org/worker-name` | label value, ≤ 63: see [`worker_label`] |
//! | DaskWorkerGroup `spec.cluster` | label `dask.org/cluster-name`, `DASK_SCHEDULER_ADDRESS` | a cluster name |
//! | DaskAutoscaler | nothing (`spec.cluster` names the cluster to scale) | a cluster name |
//!
//! So a cluster name (upstream's rule, plus a leading letter for the Service) is at most
//! [`MAX_CLUSTER_NAME`] characters: every name and label derived from it then fits. A worker group
//! name is at most [`MAX_WORKER_GROUP_NAME`]. Pods made by a Deployment are named by the API server
//! (`<deployment>-<hash>-<5>`, ≤ 253) and need no rule.
//!
//! Where these are enforced (the CEL rules are in `crate::crd::schema`):
//! - DaskCluster: not in the schema. Upstream accepts any name and sets `status.phase: Error` for an
//!   invalid one (its tests create such clusters and expect `Error`), so the controller does the same,
//!   with a message and a Warning Event, and never retries (names are immutable).
//! - DaskJob: its name is rejected by a CEL rule on create (the message starts with `metadata.name:`),
//!   and a job stored before the rule existed fails at once (`Failed`, reason `InvalidName`).
//! - DaskWorkerGroup: its name and `spec.cluster` are checked by CEL rules, and the controller reports
//!   a group that got past them (stored earlier) in its status and a Warning Event, without retrying.
//! - DaskAutoscaler: a CEL rule on `spec.cluster`; it has no children.

use sha2::{Digest, Sha256};

/// Longest label value, DNS-1035 label (a Service name) and DNS-1123 label.
pub const MAX_LABEL_VALUE: usize = 63;

/// Longest DaskCluster name: `<name>-scheduler` must fit the 63 characters of a Service name.
pub const MAX_CLUSTER_NAME: usize = MAX_LABEL_VALUE - "-scheduler".len();

/// Longest DaskWorkerGroup name: it is the value of the label `dask.org/workergroup-name`.
pub const MAX_WORKER_GROUP_NAME: usize = MAX_LABEL_VALUE;

/// A valid cluster name as a regular expression (with [`MAX_CLUSTER_NAME`]), for the CRDs' CEL
/// rules: what [`validate_cluster_name`] accepts.
pub const CLUSTER_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

const CLUSTER_NAME_WHY: &str = "(it names the Service <name>-scheduler, a DNS-1035 label of at most 63 \
                                characters, and is the value of the label dask.org/cluster-name)";
const GROUP_NAME_WHY: &str =
    "(it is the value of the label dask.org/workergroup-name on the group's workers)";

/// Why a name cannot be used. The message starts with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("{field}: {name:?} is {len} characters long; at most {max} are allowed {why}")]
    TooLong {
        field: &'static str,
        name: String,
        len: usize,
        max: usize,
        why: &'static str,
    },
    #[error(
        "{field}: {name:?} must consist of lower case letters, digits or '-', start with a letter \
         and end with a letter or digit (no dots) {why}"
    )]
    Malformed {
        field: &'static str,
        name: String,
        why: &'static str,
    },
}

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

/// The runner Pod of a DaskJob's attempt (from 1): upstream's `<job>-runner` for the first, so that
/// a job without retries looks as upstream's; `<job>-runner-<attempt>` for a retry.
pub fn runner_attempt(job: &str, attempt: i32) -> String {
    if attempt <= 1 {
        runner(job)
    } else {
        format!("{job}-runner-{attempt}")
    }
}

/// `tcp://<cluster>-scheduler.<ns>.svc:8786`, the scheduler as a DaskJob's status shows it (short,
/// independent of the cluster's DNS domain).
pub fn scheduler_service_address(cluster: &str, namespace: &str) -> String {
    format!("tcp://{}.{namespace}.svc:8786", scheduler(cluster))
}

/// `http://<cluster>-scheduler.<ns>.svc:8787`, the scheduler's dashboard.
pub fn dashboard_url(cluster: &str, namespace: &str) -> String {
    format!("http://{}.{namespace}.svc:8787", scheduler(cluster))
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

/// The value of the label `dask.org/worker-name` of the worker Deployment `name`: the name itself
/// when it fits a label value, otherwise its first characters and its last 10 (the hex that tells the
/// group's workers apart), so `<group>-worker-<10 hex>` of a group with a name longer than 45
/// characters still gets a valid, unique label. Names that fit are kept as they are, so workers made
/// before this rule keep their (immutable) selectors.
pub fn worker_label(name: &str) -> String {
    if name.len() <= MAX_LABEL_VALUE || !name.is_ascii() {
        return name.to_string();
    }
    let (head, tail) = name.split_at(name.len() - 10);
    let head = head[..MAX_LABEL_VALUE - 11].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{tail}")
}

/// Upstream's rule (`dask_kubernetes/constants.py`: at most 53 characters of `[a-z0-9-]`, starting
/// and ending with an alphanumeric character), and a letter first: `<name>-scheduler` is a Service
/// name, a DNS-1035 label, which the API server rejects when it starts with a digit (upstream then
/// retries the Service forever).
pub fn validate_cluster_name(name: &str) -> Result<(), InvalidName> {
    check_cluster_name("metadata.name", name)
}

/// [`validate_cluster_name`] for the `spec.cluster` of a DaskWorkerGroup: a group of a cluster that
/// cannot have that name never runs (and its workers' `dask.org/cluster-name` label would not fit).
pub fn validate_cluster_reference(name: &str) -> Result<(), InvalidName> {
    check_cluster_name("spec.cluster", name)
}

fn check_cluster_name(field: &'static str, name: &str) -> Result<(), InvalidName> {
    if name.len() > MAX_CLUSTER_NAME {
        return Err(InvalidName::TooLong {
            field,
            name: name.to_string(),
            len: name.len(),
            max: MAX_CLUSTER_NAME,
            why: CLUSTER_NAME_WHY,
        });
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid_start = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let valid_end = name
        .bytes()
        .last()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid_chars || !valid_start || !valid_end {
        return Err(InvalidName::Malformed {
            field,
            name: name.to_string(),
            why: CLUSTER_NAME_WHY,
        });
    }
    Ok(())
}

/// A DaskWorkerGroup's name must fit the label `dask.org/workergroup-name` (the API server already
/// makes it a DNS-1123 subdomain, whose characters a label value allows).
pub fn validate_worker_group_name(name: &str) -> Result<(), InvalidName> {
    if name.len() > MAX_WORKER_GROUP_NAME {
        return Err(InvalidName::TooLong {
            field: "metadata.name",
            name: name.to_string(),
            len: name.len(),
            max: MAX_WORKER_GROUP_NAME,
            why: GROUP_NAME_WHY,
        });
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
        let long = validate_cluster_name(&"a".repeat(54))
            .unwrap_err()
            .to_string();
        assert!(long.starts_with("metadata.name: "), "{long}");
        assert!(long.contains("54 characters long; at most 53"), "{long}");
        let dots = validate_cluster_name("has.dots").unwrap_err().to_string();
        assert!(
            dots.contains("no dots") && dots.contains("\"has.dots\""),
            "{dots}"
        );
        assert!(validate_cluster_name("-leading").is_err());
        assert!(validate_cluster_name("trailing-").is_err());
        assert!(validate_cluster_name("Upper").is_err());
        assert!(validate_cluster_name("").is_err());
    }

    #[test]
    fn a_cluster_name_starts_with_a_letter_as_its_service_name_must() {
        // Upstream's rule lets this through; the API server then rejects Service `1abc-scheduler`
        // (DNS-1035) on every retry.
        let err = validate_cluster_name("1abc").unwrap_err();
        assert!(err.to_string().contains("start with a letter"), "{err}");
        assert!(validate_cluster_name("a1").is_ok());
    }

    #[test]
    fn a_valid_cluster_name_keeps_every_derived_name_and_label_within_limits() {
        let cluster = "c".repeat(MAX_CLUSTER_NAME);
        assert!(validate_cluster_name(&cluster).is_ok());
        // The Service name: a DNS-1035 label.
        assert!(scheduler(&cluster).len() <= MAX_LABEL_VALUE);
        // The default group's name is a label value on its workers, and fits a group name.
        let group = default_worker_group(&cluster);
        assert!(validate_worker_group_name(&group).is_ok());
        // Its worker Deployments are DNS-1123 subdomains, their worker-name label a label value.
        let worker = worker_deployment(&group, "uid", 0);
        assert!(worker.len() <= 253);
        assert!(worker_label(&worker).len() <= MAX_LABEL_VALUE);
        assert!(runner(&cluster).len() <= 253);
    }

    #[test]
    fn worker_group_names_and_cluster_references_are_checked_with_their_field() {
        assert!(validate_worker_group_name(&"g".repeat(63)).is_ok());
        let err = validate_worker_group_name(&"g".repeat(64)).unwrap_err();
        assert!(
            err.to_string().starts_with("metadata.name: \"gggg")
                && err.to_string().contains("64 characters long; at most 63")
                && err.to_string().contains("dask.org/workergroup-name"),
            "{err}"
        );
        assert!(validate_cluster_reference("simple").is_ok());
        let err = validate_cluster_reference(&"c".repeat(64)).unwrap_err();
        assert!(err.to_string().starts_with("spec.cluster: "), "{err}");
        let err = validate_cluster_reference("Simple").unwrap_err();
        assert!(err.to_string().starts_with("spec.cluster: "), "{err}");
    }

    #[test]
    fn worker_labels_fit_and_stay_unique() {
        // Short names are the label as they are (existing selectors hold them).
        let short = worker_deployment("simple-default", "uid", 0);
        assert_eq!(worker_label(&short), short);
        // A group of 63 characters: its workers' names are 81 characters long.
        let group = "c".repeat(MAX_WORKER_GROUP_NAME);
        let a = worker_deployment(&group, "uid", 0);
        let b = worker_deployment(&group, "uid", 1);
        assert_eq!(a.len(), 81);
        let (la, lb) = (worker_label(&a), worker_label(&b));
        assert_ne!(la, lb);
        for label in [&la, &lb] {
            assert!(label.len() <= MAX_LABEL_VALUE, "{label}");
            assert!(label.starts_with("ccc"));
            let valid = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            assert!(
                valid && label.as_bytes()[0].is_ascii_alphanumeric(),
                "{label}"
            );
            assert!(
                label.as_bytes()[label.len() - 1].is_ascii_alphanumeric(),
                "{label}"
            );
        }
        assert_eq!(
            &la[la.len() - 10..],
            &a[a.len() - 10..],
            "ends with the worker's hex"
        );
        // A cut that would end the head on a '-' or '.' drops it.
        let dotted = format!("{}.-worker-0123456789", "x".repeat(51));
        assert_eq!(
            worker_label(&dotted),
            format!("{}-0123456789", "x".repeat(51))
        );
    }
}
