//! The operator's Prometheus metrics (`/metrics`), all named `dask_operator_*`.
//!
//! Counters and histograms are updated where things happen (every reconcile goes through
//! [`Metrics::reconciled`]); the DaskJobs-by-phase gauge is computed at scrape time from the
//! controllers' own stores, so it is never stale and costs nothing between scrapes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::DaskJob;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// Every metric the operator exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Family<KindLabel, Histogram>,
    job_duration: Family<OutcomeLabel, Histogram>,
    leader: Gauge,
    jobs: Arc<JobPhases>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dask_operator");
        let reconciles = Family::<KindLabel, Counter>::default();
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and error kind",
            errors.clone(),
        );
        let reconcile_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            reconcile_duration.clone(),
        );
        let job_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        registry.register(
            "daskjob_duration_seconds",
            "Time from a DaskJob's start to its end, by outcome (Successful, Failed)",
            job_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without leader election), else 0",
            leader.clone(),
        );
        let jobs = Arc::new(JobPhases::default());
        registry.register_collector(Box::new(jobs.clone()));
        Metrics {
            registry,
            reconciles,
            errors,
            reconcile_duration,
            job_duration,
            leader,
            jobs,
        }
    }

    /// Records one reconcile of `kind` that took `took`, and its error kind if it failed.
    pub fn reconciled(&self, kind: &'static str, took: Duration, error: Option<&'static str>) {
        let label = KindLabel { kind };
        self.reconciles.get_or_create(&label).inc();
        self.reconcile_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.errors
                .get_or_create(&ErrorLabels { kind, error })
                .inc();
        }
    }

    /// Records a DaskJob that ended with `outcome` after `seconds`.
    pub fn job_finished(&self, outcome: &str, seconds: f64) {
        self.job_duration
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .observe(seconds.max(0.0));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Counts the DaskJobs in `store` (by phase) at every scrape until the returned guard is dropped.
    pub fn watch_jobs(&self, store: Store<DaskJob>) -> JobStoreGuard {
        let id = self.jobs.next.fetch_add(1, Ordering::Relaxed);
        self.jobs.stores.lock().unwrap().insert(id, store);
        JobStoreGuard {
            phases: self.jobs.clone(),
            id,
        }
    }

    /// The text exposition format (OpenMetrics), as served on `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The stores of the controllers that run now (one per watched namespace).
#[derive(Debug, Default)]
struct JobPhases {
    next: AtomicU64,
    stores: Mutex<BTreeMap<u64, Store<DaskJob>>>,
}

/// Removes a store from the DaskJob gauge when the controllers that own it stop.
pub struct JobStoreGuard {
    phases: Arc<JobPhases>,
    id: u64,
}

impl Drop for JobStoreGuard {
    fn drop(&mut self) {
        self.phases.stores.lock().unwrap().remove(&self.id);
    }
}

impl Collector for JobPhases {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for store in self.stores.lock().unwrap().values() {
            for job in store.state() {
                let phase = job
                    .status
                    .as_ref()
                    .and_then(|s| s.job_status.clone())
                    .unwrap_or_else(|| "None".into());
                *counts.entry(phase).or_default() += 1;
            }
        }
        let mut family = encoder.encode_descriptor(
            "daskjobs",
            "DaskJobs this replica reconciles, by status.jobStatus (None before the first status)",
            None,
            MetricType::Gauge,
        )?;
        for (phase, count) in counts {
            let labels = PhaseLabel { phase };
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_labelled() {
        let metrics = Metrics::new();
        metrics.reconciled("DaskJob", Duration::from_millis(3), None);
        metrics.reconciled("DaskJob", Duration::from_millis(5), Some("api"));
        metrics.job_finished("Successful", 12.0);
        metrics.set_leader(true);
        let text = metrics.encode();
        assert!(
            text.contains("dask_operator_reconciles_total{kind=\"DaskJob\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dask_operator_reconcile_errors_total{kind=\"DaskJob\",error=\"api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dask_operator_reconcile_duration_seconds_count{kind=\"DaskJob\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dask_operator_daskjob_duration_seconds_count{outcome=\"Successful\"} 1"),
            "{text}"
        );
        assert!(text.contains("dask_operator_leader 1"), "{text}");
    }

    #[test]
    fn jobs_are_counted_by_phase_from_the_stores() {
        use kube::runtime::reflector::store;
        use kube::runtime::watcher::Event;

        let metrics = Metrics::new();
        let (reader, mut writer) = store::<DaskJob>();
        let job = |name: &str, phase: Option<&str>| {
            let mut job: DaskJob = serde_json::from_value(serde_json::json!({
                "apiVersion": "kubernetes.dask.org/v1", "kind": "DaskJob",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"job": {"spec": {"containers": []}}, "cluster": {"spec": {
                    "worker": {"spec": {"containers": []}},
                    "scheduler": {"spec": {"containers": []}, "service": {}}}}}
            }))
            .unwrap();
            if let Some(p) = phase {
                job.status = Some(crate::crd::DaskJobStatus {
                    job_status: Some(p.into()),
                    ..Default::default()
                });
            }
            job
        };
        writer.apply_watcher_event(&Event::Apply(job("a", Some("Running"))));
        writer.apply_watcher_event(&Event::Apply(job("b", Some("Running"))));
        writer.apply_watcher_event(&Event::Apply(job("c", None)));
        let guard = metrics.watch_jobs(reader);
        let text = metrics.encode();
        assert!(
            text.contains("dask_operator_daskjobs{phase=\"Running\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dask_operator_daskjobs{phase=\"None\"} 1"),
            "{text}"
        );
        drop(guard);
        assert!(!metrics.encode().contains("phase=\"Running\""));
    }
}
