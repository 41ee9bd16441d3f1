//! Which CRDs a cluster has, compared with ours: the operator checks them at start and refuses to
//! run on CRDs it cannot work with (dask-kubernetes' lack the `/status` subresource it writes through).
//!
//! Every CRD we generate carries two annotations: the operator version that made it and a hash of
//! its spec, so a CRD that differs from ours in any way is told apart from ours without comparing
//! schemas field by field.

use std::cmp::Ordering;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use sha2::{Digest, Sha256};

/// The operator version that generated a CRD.
pub const VERSION_ANNOTATION: &str = "kubernetes.dask.org/operator-version";
/// A hash of the CRD's spec as generated.
pub const HASH_ANNOTATION: &str = "kubernetes.dask.org/schema-hash";

/// Adds [`VERSION_ANNOTATION`] and [`HASH_ANNOTATION`] to a generated CRD.
pub(crate) fn stamp(crd: &mut CustomResourceDefinition) {
    let hash = spec_hash(crd);
    let annotations = crd
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(VERSION_ANNOTATION.into(), env!("CARGO_PKG_VERSION").into());
    annotations.insert(HASH_ANNOTATION.into(), hash);
}

fn spec_hash(crd: &CustomResourceDefinition) -> String {
    let bytes = serde_json::to_vec(&crd.spec).expect("CRD spec serializes");
    hex::encode(Sha256::digest(&bytes))[..16].to_string()
}

/// What the cluster has, compared with `ours`.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// Exactly ours.
    Current,
    /// dask-kubernetes' own CRD (no status subresource): the operator cannot write status.
    Upstream,
    /// Made by an older (or a different build of the same) version of this operator.
    Older(String),
    /// Made by a newer version of this operator: left alone (a newer replica may be rolling out).
    Newer(String),
}

impl Found {
    /// Whether the CRD must be replaced by ours before the operator can run.
    pub fn needs_upgrade(&self) -> bool {
        matches!(self, Found::Missing | Found::Upstream | Found::Older(_))
    }
}

/// Compares the CRD found in the cluster with ours.
pub fn assess(found: Option<&CustomResourceDefinition>, ours: &CustomResourceDefinition) -> Found {
    let Some(found) = found else {
        return Found::Missing;
    };
    let annotation = |crd: &CustomResourceDefinition, key: &str| {
        crd.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key).cloned())
    };
    let has_status = found
        .spec
        .versions
        .iter()
        .any(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some()));
    if !has_status {
        return Found::Upstream;
    }
    if annotation(found, HASH_ANNOTATION) == annotation(ours, HASH_ANNOTATION) {
        return Found::Current;
    }
    let theirs = annotation(found, VERSION_ANNOTATION).unwrap_or_else(|| "unknown".into());
    let mine = annotation(ours, VERSION_ANNOTATION).unwrap_or_default();
    match compare_versions(&theirs, &mine) {
        Some(Ordering::Greater) => Found::Newer(theirs),
        _ => Found::Older(theirs),
    }
}

/// Compares dotted numeric versions (`0.10.1` > `0.9.3`); `None` when either is not one.
fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let parse = |v: &str| {
        v.split(['-', '+'])
            .next()?
            .split('.')
            .map(|n| n.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()
    };
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::crds;

    #[test]
    fn generated_crds_are_stamped_and_current() {
        for crd in crds() {
            let a = crd.metadata.annotations.as_ref().unwrap();
            assert_eq!(a[VERSION_ANNOTATION], env!("CARGO_PKG_VERSION"));
            assert_eq!(a[HASH_ANNOTATION].len(), 16);
            assert_eq!(assess(Some(&crd), &crd), Found::Current);
            assert_eq!(assess(None, &crd), Found::Missing);
        }
    }

    #[test]
    fn upstream_older_and_newer_crds_are_told_apart() {
        let ours = crds().remove(0);
        let mut upstream = ours.clone();
        upstream.metadata.annotations = None;
        for v in &mut upstream.spec.versions {
            v.subresources = None;
        }
        assert_eq!(assess(Some(&upstream), &ours), Found::Upstream);
        assert!(Found::Upstream.needs_upgrade());

        let with = |version: &str| {
            let mut crd = ours.clone();
            let a = crd.metadata.annotations.as_mut().unwrap();
            a.insert(VERSION_ANNOTATION.into(), version.into());
            a.insert(HASH_ANNOTATION.into(), "0000000000000000".into());
            crd
        };
        assert_eq!(
            assess(Some(&with("0.0.1")), &ours),
            Found::Older("0.0.1".into())
        );
        // Same version, different schema: a development build; ours wins.
        let same = env!("CARGO_PKG_VERSION");
        assert_eq!(assess(Some(&with(same)), &ours), Found::Older(same.into()));
        let newer = assess(Some(&with("999.0.0")), &ours);
        assert_eq!(newer, Found::Newer("999.0.0".into()));
        assert!(!newer.needs_upgrade());
        // Status subresource but no annotations: an unknown older copy.
        let mut bare = ours.clone();
        bare.metadata.annotations = None;
        assert_eq!(assess(Some(&bare), &ours), Found::Older("unknown".into()));
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("0.10.0", "0.9.9"), Some(Ordering::Greater));
        assert_eq!(
            compare_versions("1.0.0-rc1", "1.0.0"),
            Some(Ordering::Equal)
        );
        assert_eq!(compare_versions("x", "1.0.0"), None);
    }
}
