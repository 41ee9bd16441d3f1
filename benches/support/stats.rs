//! Percentiles and milestone times.

/// The `p`-th percentile (0 < p ≤ 100) by the nearest-rank method: the smallest value such that at
/// least `p` % of the values are at or below it. `f64::INFINITY` stands for "never happened" (a job
/// whose runner pod was not seen before the timeout): a percentile that lands on one is `None`.
/// `None` too for no values or a `p` out of range.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() || !(p > 0.0 && p <= 100.0) || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let value = sorted[rank.clamp(1, sorted.len()) - 1];
    value.is_finite().then_some(value)
}

/// When the `n`-th of a set of events happened (seconds after the start), given when each one
/// happened: the time at which `n` of them had happened. `None` if fewer than `n` happened (or `n`
/// is 0).
pub fn time_to_nth(offsets: &[f64], n: usize) -> Option<f64> {
    if n == 0 || offsets.len() < n {
        return None;
    }
    let mut sorted = offsets.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted[n - 1])
}

/// Per-job latencies in milliseconds: for every created job, the time from its create to its
/// runner pod being seen; a job whose runner was never seen counts as `f64::INFINITY`. A runner
/// seen before the create call returned counts as 0.
pub fn latencies_ms(
    created: &[(String, f64)],
    runner_seen: impl Fn(&str) -> Option<f64>,
) -> Vec<f64> {
    created
        .iter()
        .map(|(job, at)| match runner_seen(job) {
            Some(seen) => ((seen - at) * 1000.0).max(0.0),
            None => f64::INFINITY,
        })
        .collect()
}

/// p50, p99 and max of latencies (see [`percentile`]) and how many of them are finite.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub seen: usize,
    pub expected: usize,
}

pub fn summarize(latencies_ms: &[f64]) -> LatencySummary {
    LatencySummary {
        p50_ms: percentile(latencies_ms, 50.0),
        p99_ms: percentile(latencies_ms, 99.0),
        max_ms: percentile(latencies_ms, 100.0),
        seen: latencies_ms.iter().filter(|v| v.is_finite()).count(),
        expected: latencies_ms.len(),
    }
}
