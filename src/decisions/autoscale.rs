//! A DaskAutoscaler's decision as pure functions: [`decide`] turns the scheduler's adaptive target and
//! what the controller observed ([`Observed`]) into the replicas to set, if any, and the reason for
//! the status ([`Decision`]); [`fallback_victims`] and [`retired_victims`] name the worker
//! Deployments a scale-down deletes.
//!
//! The rules, in order (each has its rows in `autoscale_tests.rs`):
//! 1. `minimum` or `maximum` negative, or `minimum > maximum`: nothing changes, a warning says why.
//! 2. The bounds hold whatever the scheduler says and whatever the cooldowns: fewer workers than
//!    `minimum` scale up to it (or to the target, if higher), more than `maximum` scale down to it.
//! 3. A scheduler that cannot be reached changes nothing else, and the stabilization window starts
//!    again once it answers (what it wanted meanwhile is unknown).
//! 4. The target, clamped to `[minimum, maximum]`, above the current count: scale up at once
//!    (unless `scale_up_cooldown` since the last change has not passed; zero by default).
//! 5. Below the current count: scale down only when `scale_down_cooldown` has passed since the last
//!    change and the target stayed below the current count for the whole `scale_down_window`, and
//!    then only to the highest target seen in that window (the HPA's scale-down stabilization).
//!    A target that rises again within the window cancels the scale-down.
//!
//! The targets seen ([`Observed::recent`], [`Decision::recent`]) are kept by the controller (in the
//! status) between reconciles: one [`Sample`] per change of the target, the latest one older than
//! the window included, so that the whole window is known.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Reasons, for the status and events.
pub mod reasons {
    pub const INVALID_BOUNDS: &str = "InvalidBounds";
    pub const BELOW_MINIMUM: &str = "BelowMinimum";
    pub const ABOVE_MAXIMUM: &str = "AboveMaximum";
    pub const SCHEDULER_UNREACHABLE: &str = "SchedulerUnreachable";
    pub const SCALING_UP: &str = "ScalingUp";
    pub const SCALING_DOWN: &str = "ScalingDown";
    pub const AT_TARGET: &str = "AtTarget";
    pub const COOLDOWN: &str = "Cooldown";
    pub const STABILIZING: &str = "Stabilizing";
}

/// At most this many samples are kept; beyond, the oldest go (which can only delay a scale-down).
pub const MAX_SAMPLES: usize = 64;

/// What the scheduler said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `adaptive_target`: the workers it wants.
    Workers(u32),
    /// It could not be asked; why.
    Unreachable(String),
}

/// How eagerly the autoscaler follows the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// After a change, no scale-up before this long.
    pub scale_up_cooldown: Duration,
    /// After a change, no scale-down before this long (new workers get work first).
    pub scale_down_cooldown: Duration,
    /// A scale-down needs the target below the current count for this long.
    pub scale_down_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scale_up_cooldown: Duration::ZERO,
            scale_down_cooldown: Duration::from_secs(30),
            scale_down_window: Duration::from_secs(60),
        }
    }
}

/// The scheduler's target (before clamping) from `at` until the next sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Timestamp,
    pub target: i32,
}

/// What a reconcile observed about one DaskAutoscaler.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub target: Target,
    /// The replicas of the cluster's default worker group (`spec.worker.replicas`).
    pub current: i32,
    pub minimum: i32,
    pub maximum: i32,
    /// When the autoscaler last changed the replicas.
    pub last_change: Option<Timestamp>,
    /// The samples the previous decision returned ([`Decision::recent`]), oldest first.
    pub recent: &'a [Sample],
    pub now: Timestamp,
    pub settings: Settings,
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Set the replicas to this; `None`: leave them.
    pub replicas: Option<i32>,
    pub reason: &'static str,
    pub message: String,
    /// Worth a Warning event (bad bounds, an unreachable scheduler).
    pub warning: bool,
    /// The scheduler's target clamped to the bounds, when it answered (the status's last target).
    pub target: Option<i32>,
    /// The samples to keep for the next decision.
    pub recent: Vec<Sample>,
    /// A change held back by a cooldown or the window may happen after this long.
    pub wake: Option<Duration>,
}

impl Decision {
    fn new(reason: &'static str, message: String, recent: Vec<Sample>) -> Self {
        Self {
            replicas: None,
            reason,
            message,
            warning: false,
            target: None,
            recent,
            wake: None,
        }
    }

    fn scale(mut self, replicas: i32) -> Self {
        self.replicas = Some(replicas);
        self
    }
}

/// The replicas the cluster's default worker group should have, and why.
pub fn decide(o: &Observed) -> Decision {
    let (current, min, max) = (o.current, o.minimum, o.maximum);
    if min < 0 || max < 0 || min > max {
        let message = if min > max {
            format!(
                "spec.minimum ({min}) is greater than spec.maximum ({max}); nothing is scaled until \
                 the bounds are fixed"
            )
        } else {
            format!(
                "spec.minimum ({min}) and spec.maximum ({max}) must not be negative; nothing is \
                 scaled until the bounds are fixed"
            )
        };
        let mut d = Decision::new(reasons::INVALID_BOUNDS, message, o.recent.to_vec());
        d.warning = true;
        return d;
    }
    let window = o.settings.scale_down_window;
    let (recent, target) = match &o.target {
        Target::Workers(n) => {
            let raw = i32::try_from(*n).unwrap_or(i32::MAX);
            (record(o.recent, raw, o.now, window), Some(raw))
        }
        Target::Unreachable(_) => (Vec::new(), None),
    };
    let clamped = target.map(|t| t.clamp(min, max));

    // The bounds first.
    if current < min {
        let to = clamped.unwrap_or(min).max(min);
        let mut d = Decision::new(
            reasons::BELOW_MINIMUM,
            format!(
                "{} is below spec.minimum ({min}): scaling up to {to}",
                workers(current)
            ),
            recent,
        )
        .scale(to);
        d.target = clamped;
        return d;
    }
    if current > max {
        let mut d = Decision::new(
            reasons::ABOVE_MAXIMUM,
            format!(
                "{} is above spec.maximum ({max}): scaling down to {max}",
                workers(current)
            ),
            recent,
        )
        .scale(max);
        d.target = clamped;
        return d;
    }
    let (Some(raw), Some(desired)) = (target, clamped) else {
        let why = match &o.target {
            Target::Unreachable(why) => why.as_str(),
            Target::Workers(_) => "",
        };
        let mut d = Decision::new(
            reasons::SCHEDULER_UNREACHABLE,
            format!(
                "keeping {}: the scheduler cannot be reached: {why}",
                workers(current)
            ),
            recent,
        );
        d.warning = true;
        return d;
    };
    let wanted = if raw == desired {
        format!("the scheduler wants {}", workers(raw))
    } else {
        format!(
            "the scheduler wants {}, {desired} within [{min}, {max}]",
            workers(raw)
        )
    };
    let since_change = o.last_change.map(|t| elapsed(t, o.now));
    let cooling = |cooldown: Duration| {
        since_change
            .filter(|since| *since < cooldown)
            .map(|since| cooldown - since)
    };
    let mut d = if desired > current {
        match cooling(o.settings.scale_up_cooldown) {
            Some(left) => {
                let mut d = Decision::new(
                    reasons::COOLDOWN,
                    format!(
                        "{wanted}; keeping {current} for {}s more (scale-up cooldown)",
                        ceil_secs(left)
                    ),
                    recent,
                );
                d.wake = Some(left);
                d
            }
            None => Decision::new(
                reasons::SCALING_UP,
                format!("{wanted}: scaling up from {current} to {desired}"),
                recent,
            )
            .scale(desired),
        }
    } else if desired == current {
        Decision::new(
            reasons::AT_TARGET,
            format!("{wanted}; {} now", workers(current)),
            recent,
        )
    } else if let Some(left) = cooling(o.settings.scale_down_cooldown) {
        let mut d = Decision::new(
            reasons::COOLDOWN,
            format!(
                "{wanted}; keeping {current} for {}s more (scale-down cooldown)",
                ceil_secs(left)
            ),
            recent,
        );
        d.wake = Some(left);
        d
    } else {
        scale_down(o, &wanted, recent)
    };
    d.target = Some(desired);
    d
}

/// The target is below `current` and no cooldown holds: the stabilization window decides.
fn scale_down(o: &Observed, wanted: &str, recent: Vec<Sample>) -> Decision {
    let (current, min, max) = (o.current, o.minimum, o.maximum);
    let window = o.settings.scale_down_window;
    let start = o.now - signed(window);
    // The whole window is known once a sample is at least as old as it.
    let Some(first) = recent.first().filter(|s| s.at <= start) else {
        let known_since = recent.first().map_or(o.now, |s| s.at);
        let left = window.saturating_sub(elapsed(known_since, o.now));
        let mut d = Decision::new(
            reasons::STABILIZING,
            format!(
                "{wanted}; keeping {current} until the target has stayed lower for {}s ({}s more)",
                window.as_secs(),
                ceil_secs(left)
            ),
            recent,
        );
        d.wake = Some(left);
        return d;
    };
    let highest = recent
        .iter()
        .map(|s| s.target)
        .max()
        .unwrap_or(first.target);
    let to = highest.clamp(min, max);
    if to >= current {
        // The target was last at or above the current count until the sample after it; that
        // stretch leaves the window `window` later.
        let high_until = recent
            .iter()
            .rposition(|s| s.target.clamp(min, max) >= current)
            .and_then(|i| recent.get(i + 1))
            .map_or(o.now, |s| s.at);
        let left = window.saturating_sub(elapsed(high_until, o.now));
        let mut d = Decision::new(
            reasons::STABILIZING,
            format!(
                "{wanted}; keeping {current}: the target was {highest} within the last {}s",
                window.as_secs()
            ),
            recent,
        );
        d.wake = Some(left.max(Duration::from_secs(1)));
        return d;
    }
    Decision::new(
        reasons::SCALING_DOWN,
        format!(
            "{wanted}; it stayed at most {to} for {}s: scaling down from {current} to {to}",
            window.as_secs()
        ),
        recent,
    )
    .scale(to)
}

/// `recent` with `target` seen at `now`: a sample only when the target changed, and only what the
/// window needs (the samples inside it and the latest one before it).
fn record(recent: &[Sample], target: i32, now: Timestamp, window: Duration) -> Vec<Sample> {
    let mut samples: Vec<Sample> = recent.iter().copied().filter(|s| s.at <= now).collect();
    if samples.last().is_none_or(|s| s.target != target) {
        samples.push(Sample { at: now, target });
    }
    let start = now - signed(window);
    let before = samples.iter().rposition(|s| s.at <= start).unwrap_or(0);
    let mut kept = samples.split_off(before);
    if kept.len() > MAX_SAMPLES {
        kept.drain(..kept.len() - MAX_SAMPLES);
    }
    kept
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// How long from `since` to `now`, zero if `since` is later.
fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// `1 worker`, `3 workers`.
fn workers(n: i32) -> String {
    format!("{n} worker{}", if n == 1 { "" } else { "s" })
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One worker Deployment of the group being scaled down, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSeen {
    /// The Deployment's name, which is also the Dask worker's name (`DASK_WORKER_NAME`).
    pub name: String,
    /// Its pod is ready.
    pub ready: bool,
    pub created: Option<Timestamp>,
    /// Being deleted already: neither counted nor chosen.
    pub deleting: bool,
}

/// The workers to delete so that `wanted` are left when the scheduler cannot choose: not-ready
/// workers first (they hold no results), then the newest (the least work done; a worker not yet
/// created in the API counts as newest), names breaking ties.
pub fn fallback_victims(workers: &[WorkerSeen], wanted: usize) -> Vec<String> {
    let mut live: Vec<&WorkerSeen> = workers.iter().filter(|w| !w.deleting).collect();
    live.sort_by(|a, b| {
        a.ready
            .cmp(&b.ready)
            .then_with(|| match (a.created, b.created) {
                (Some(x), Some(y)) => y.cmp(&x),
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| b.name.cmp(&a.name))
    });
    let excess = live.len().saturating_sub(wanted);
    live.iter().take(excess).map(|w| w.name.clone()).collect()
}

/// The scheduler retired workers by name; which Deployments go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// The retired workers' Deployments (not already being deleted), in `workers`' order.
    pub delete: Vec<String>,
    /// Retired names that are no Deployment of the group (a worker started by hand, or another
    /// group's): nothing to delete, worth a message.
    pub unknown: Vec<String>,
}

/// The Deployments of the workers the scheduler `retired` (by worker name, which is the
/// Deployment's name).
pub fn retired_victims(workers: &[WorkerSeen], retired: &[String]) -> Retired {
    let delete = workers
        .iter()
        .filter(|w| !w.deleting && retired.contains(&w.name))
        .map(|w| w.name.clone())
        .collect();
    let unknown = retired
        .iter()
        .filter(|name| !workers.iter().any(|w| &&w.name == name))
        .cloned()
        .collect();
    Retired { delete, unknown }
}

#[cfg(test)]
#[path = "autoscale_tests.rs"]
mod tests;
