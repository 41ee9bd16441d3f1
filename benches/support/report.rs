//! The result format (`results.json`), the Markdown report (stdout, `RESULTS.md`, the README), the
//! goals of issue 13 as met / not met, and what `--check` fails on.

use serde::{Deserialize, Serialize};

use super::config::Runner;
use super::stats::LatencySummary;

/// A state every job (or object) of a run must reach: when the last one got there, or how far it
/// got before the bench stopped waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    pub expected: usize,
    pub reached: usize,
    /// Seconds from the first create until `expected` had got there; `None`: not reached.
    pub seconds: Option<f64>,
    /// Not reached: seconds from the first create until the bench stopped waiting.
    pub waited_seconds: f64,
    /// Not reached: the bench stopped early because nothing changed for the stall window, rather
    /// than at the timeout.
    pub stalled: bool,
}

impl Milestone {
    pub fn reached(&self) -> bool {
        self.seconds.is_some()
    }
}

/// One operator (or the raw client) at one size: N jobs applied at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeRun {
    pub runner: Runner,
    pub jobs: usize,
    /// Client side: seconds from the first create until the last create returned.
    pub apply_seconds: f64,
    /// `None` for the raw client (it writes no status).
    pub cluster_created: Option<Milestone>,
    pub running: Option<Milestone>,
    pub worker_deployments: Milestone,
    pub runner_pods: Milestone,
    pub latency: LatencySummary,
    pub peak_rss_kib: Option<u64>,
    /// Requests of the runner's identity from just before the first create until it settled.
    pub requests: Option<f64>,
    /// Of which writes (create, update, patch, delete).
    pub writes: Option<f64>,
    pub idle_seconds: u64,
    pub idle_requests: Option<f64>,
    pub idle_writes: Option<f64>,
    /// Something that went wrong (the operator exited, a namespace did not go), for the notes.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl SizeRun {
    /// Every object of every job exists (worker Deployments and runner pods): what the raw client
    /// is timed on.
    pub fn all_objects_seconds(&self) -> Option<f64> {
        Some(
            self.worker_deployments
                .seconds?
                .max(self.runner_pods.seconds?),
        )
    }
}

/// Jobs created at a steady rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyRun {
    pub runner: Runner,
    pub rate: f64,
    pub seconds: u64,
    pub jobs: usize,
    /// The rate the creates actually went out at.
    pub achieved_rate: f64,
    pub latency: LatencySummary,
    pub peak_rss_kib: Option<u64>,
    pub requests: Option<f64>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub kubernetes: String,
    pub operator: String,
    pub dask_kubernetes: String,
    pub kopf: String,
    pub rustc: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub environment: Environment,
    pub timeout_seconds: u64,
    pub stall_seconds: u64,
    pub runs: Vec<SizeRun>,
    pub steady: Vec<SteadyRun>,
}

// --- formatting ---------------------------------------------------------------------------------

pub fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `12.3 s`, or what was reached and for how long the bench waited.
pub fn milestone(m: &Milestone) -> String {
    match m.seconds {
        Some(s) => seconds(s),
        None if m.stalled => format!(
            "not reached ({}/{}; no progress for the stall window, gave up at {:.0} s)",
            m.reached, m.expected, m.waited_seconds
        ),
        None => format!(
            "not reached in {:.0} s ({}/{})",
            m.waited_seconds, m.reached, m.expected
        ),
    }
}

fn optional_milestone(m: &Option<Milestone>) -> String {
    m.as_ref().map_or_else(|| "—".into(), milestone)
}

/// A latency percentile, or "not reached" when it falls on a job whose runner never came.
fn latency(value: Option<f64>, summary: &LatencySummary) -> String {
    match value {
        Some(ms) => millis(ms),
        None if summary.expected == 0 => "—".into(),
        None => format!("> wait ({}/{} runners)", summary.seen, summary.expected),
    }
}

fn count(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Milliseconds per job to all `ClusterCreated` (the raw client: to all objects).
pub fn per_job_ms(run: &SizeRun) -> Option<f64> {
    let total = match &run.cluster_created {
        Some(m) => m.seconds?,
        None => run.all_objects_seconds()?,
    };
    Some(total * 1000.0 / run.jobs as f64)
}

/// How many times longer than the raw client at the same size the runner took until every object
/// of every job existed.
pub fn versus_raw(run: &SizeRun, runs: &[SizeRun]) -> Option<f64> {
    if run.runner == Runner::Raw {
        return None;
    }
    let raw = runs
        .iter()
        .find(|r| r.runner == Runner::Raw && r.jobs == run.jobs)?
        .all_objects_seconds()?;
    (raw > 0.0).then(|| run.all_objects_seconds().map(|s| s / raw))?
}

pub fn size_table(results: &Results) -> String {
    let mut out = String::from(
        "| N | runner | all ClusterCreated | all DaskClusters Running | all worker Deployments | all runner pods | per job | apply→runner p50 | p99 | peak RSS | API requests / job (writes) | idle window: requests (writes) | time to all objects vs raw client |\n\
         | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut runs: Vec<&SizeRun> = results.runs.iter().collect();
    runs.sort_by_key(|r| (r.jobs, r.runner as u8));
    for r in runs {
        let per_job = per_job_ms(r).map_or("—".into(), millis);
        let rss = r.peak_rss_kib.map_or("—".into(), mib);
        let requests = match (r.requests, r.writes) {
            (Some(q), Some(w)) => format!("{:.1} ({:.1})", q / r.jobs as f64, w / r.jobs as f64),
            (Some(q), None) => format!("{:.1}", q / r.jobs as f64),
            _ => "—".into(),
        };
        let idle = match (r.idle_requests, r.idle_writes) {
            _ if r.runner == Runner::Raw => "—".into(),
            (Some(q), Some(w)) => format!("{} ({}) in {} s", count(q), count(w), r.idle_seconds),
            (Some(q), None) => format!("{} in {} s", count(q), r.idle_seconds),
            _ => "—".into(),
        };
        let vs = match (r.runner, versus_raw(r, &results.runs)) {
            (Runner::Raw, _) => "1×".into(),
            (_, Some(x)) => format!("{x:.1}×"),
            _ => "—".into(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.jobs,
            r.runner.title(),
            optional_milestone(&r.cluster_created),
            optional_milestone(&r.running),
            milestone(&r.worker_deployments),
            milestone(&r.runner_pods),
            per_job,
            latency(r.latency.p50_ms, &r.latency),
            latency(r.latency.p99_ms, &r.latency),
            rss,
            requests,
            idle,
            vs,
        );
    }
    out
}

pub fn steady_table(results: &Results) -> String {
    let mut out = String::from(
        "| runner | rate | jobs | apply→runner p50 | p99 | max | runners seen | peak RSS | API requests / job |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for s in &results.steady {
        out += &format!(
            "| {} | {:.0} jobs/s for {} s (achieved {:.1}/s) | {} | {} | {} | {} | {}/{} | {} | {} |\n",
            s.runner.title(),
            s.rate,
            s.seconds,
            s.achieved_rate,
            s.jobs,
            latency(s.latency.p50_ms, &s.latency),
            latency(s.latency.p99_ms, &s.latency),
            latency(s.latency.max_ms, &s.latency),
            s.latency.seen,
            s.latency.expected,
            s.peak_rss_kib.map_or("—".into(), mib),
            s.requests
                .map_or("—".into(), |q| format!("{:.1}", q / s.jobs.max(1) as f64)),
        );
    }
    out
}

// --- goals --------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Met,
    NotMet,
    /// The run that would tell was not made (or could not tell).
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub verdict: Verdict,
}

pub const RSS_GOAL_KIB: u64 = 50 * 1024;
pub const RSS_GOAL_JOBS: usize = 1000;
pub const LATENCY_GOAL_MS: f64 = 1000.0;
pub const LATENCY_GOAL_RATE: f64 = 20.0;
pub const SPEEDUP_GOAL: f64 = 20.0;
pub const SPEEDUP_GOAL_JOBS: usize = 500;
/// "Flat": the per-job time at the largest N is at most this many times the one at the smallest.
pub const FLAT_FACTOR: f64 = 1.25;

fn ours(results: &Results) -> impl Iterator<Item = &SizeRun> {
    results.runs.iter().filter(|r| r.runner == Runner::Ours)
}

pub fn goals(results: &Results) -> Vec<Goal> {
    let mut goals = Vec::new();

    let goal = format!("peak RSS at N={RSS_GOAL_JOBS} ≤ {}", mib(RSS_GOAL_KIB));
    goals.push(
        match ours(results)
            .find(|r| r.jobs == RSS_GOAL_JOBS)
            .and_then(|r| r.peak_rss_kib)
        {
            Some(kib) => Goal {
                goal,
                measured: mib(kib),
                verdict: if kib <= RSS_GOAL_KIB {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
            },
            None => Goal {
                goal,
                measured: format!("no run at N={RSS_GOAL_JOBS}"),
                verdict: Verdict::NotMeasured,
            },
        },
    );

    let goal = "0 writes in the idle window after a run settled (every N)".to_string();
    let idle: Vec<(usize, Option<f64>, u64)> = ours(results)
        .map(|r| (r.jobs, r.idle_writes, r.idle_seconds))
        .collect();
    goals.push(
        if idle.is_empty() || idle.iter().any(|(_, w, s)| w.is_none() || *s == 0) {
            Goal {
                goal,
                measured: "no idle window measured".into(),
                verdict: Verdict::NotMeasured,
            }
        } else {
            let measured = idle
                .iter()
                .map(|(n, w, s)| format!("N={n}: {} in {s} s", count(w.unwrap_or_default())))
                .collect::<Vec<_>>()
                .join(", ");
            let met = idle.iter().all(|(_, w, _)| *w == Some(0.0));
            Goal {
                goal,
                measured,
                verdict: if met { Verdict::Met } else { Verdict::NotMet },
            }
        },
    );

    let goal = format!(
        "p99 apply→runner ≤ {} at {LATENCY_GOAL_RATE:.0} jobs/s",
        millis(LATENCY_GOAL_MS)
    );
    let steady = results
        .steady
        .iter()
        .find(|s| s.runner == Runner::Ours && (s.rate - LATENCY_GOAL_RATE).abs() < 1e-9);
    goals.push(match steady {
        None => Goal {
            goal,
            measured: format!("no steady run at {LATENCY_GOAL_RATE:.0} jobs/s"),
            verdict: Verdict::NotMeasured,
        },
        Some(s) => match s.latency.p99_ms {
            Some(p99) => Goal {
                goal,
                measured: format!("{} over {} s", millis(p99), s.seconds),
                verdict: if p99 <= LATENCY_GOAL_MS {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
            },
            None => Goal {
                goal,
                measured: format!("{}/{} runners seen", s.latency.seen, s.latency.expected),
                verdict: Verdict::NotMet,
            },
        },
    });

    let goal = format!(
        "time per job flat as N grows (to all ClusterCreated; at the largest N ≤ {FLAT_FACTOR}× the smallest N's)"
    );
    let mut per_job: Vec<(usize, Option<f64>)> =
        ours(results).map(|r| (r.jobs, per_job_ms(r))).collect();
    per_job.sort_by_key(|(n, _)| *n);
    goals.push(match (per_job.first(), per_job.last()) {
        (Some((small, Some(a))), Some((large, Some(b)))) if large > small => Goal {
            goal,
            measured: per_job
                .iter()
                .map(|(n, t)| format!("N={n}: {}", t.map_or("—".into(), millis)))
                .collect::<Vec<_>>()
                .join(", "),
            verdict: if *b <= a * FLAT_FACTOR {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
        },
        (Some(_), Some((_, None))) if per_job.len() > 1 => Goal {
            goal,
            measured: "the largest N did not reach all ClusterCreated".into(),
            verdict: Verdict::NotMet,
        },
        _ => Goal {
            goal,
            measured: "needs runs at two sizes or more".into(),
            verdict: Verdict::NotMeasured,
        },
    });

    let goal = format!(
        "≥ {SPEEDUP_GOAL:.0}× faster than kopf to all ClusterCreated at N={SPEEDUP_GOAL_JOBS}"
    );
    let at = |runner: Runner| {
        results
            .runs
            .iter()
            .find(|r| r.runner == runner && r.jobs == SPEEDUP_GOAL_JOBS)
            .and_then(|r| r.cluster_created.clone())
    };
    goals.push(match (at(Runner::Ours), at(Runner::Kopf)) {
        (Some(o), Some(k)) => match (o.seconds, k.seconds) {
            (Some(a), Some(b)) => Goal {
                goal,
                measured: format!("{:.1}× ({} vs {})", b / a, seconds(a), seconds(b)),
                verdict: if b >= a * SPEEDUP_GOAL {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
            },
            // kopf never got there: its time is at least the wait.
            (Some(a), None) if k.waited_seconds >= a * SPEEDUP_GOAL => Goal {
                goal,
                measured: format!("≥ {:.1}× (kopf: {})", k.waited_seconds / a, milestone(&k)),
                verdict: Verdict::Met,
            },
            (Some(a), None) => Goal {
                goal,
                measured: format!(
                    "≥ {:.1}× only (kopf: {}); cannot tell",
                    k.waited_seconds / a,
                    milestone(&k)
                ),
                verdict: Verdict::NotMeasured,
            },
            (None, _) => Goal {
                goal,
                measured: format!("ours: {}", milestone(&o)),
                verdict: Verdict::NotMet,
            },
        },
        _ => Goal {
            goal,
            measured: format!("needs both operators at N={SPEEDUP_GOAL_JOBS}"),
            verdict: Verdict::NotMeasured,
        },
    });
    goals
}

pub fn goals_table(goals: &[Goal]) -> String {
    let mut out = String::from("| goal (dask-operator) | measured | |\n| --- | --- | --- |\n");
    for g in goals {
        out += &format!("| {} | {} | {} |\n", g.goal, g.measured, g.verdict.as_str());
    }
    out
}

/// What `--check` fails on: an operator that did not bring every job to `ClusterCreated`, ours
/// writing in an idle window (or its writes not measured).
pub fn check_failures(results: &Results) -> Vec<String> {
    let mut failures = Vec::new();
    for r in &results.runs {
        if r.runner == Runner::Raw {
            continue;
        }
        match &r.cluster_created {
            Some(m) if m.reached() => {}
            Some(m) => failures.push(format!(
                "{} at N={}: ClusterCreated {}",
                r.runner.title(),
                r.jobs,
                milestone(m)
            )),
            None => failures.push(format!(
                "{} at N={}: ClusterCreated not measured",
                r.runner.title(),
                r.jobs
            )),
        }
        if r.runner == Runner::Ours && r.idle_seconds > 0 {
            match r.idle_writes {
                Some(0.0) => {}
                Some(w) => failures.push(format!(
                    "{} at N={}: {} writes in the {} s idle window",
                    r.runner.title(),
                    r.jobs,
                    count(w),
                    r.idle_seconds
                )),
                None => failures.push(format!(
                    "{} at N={}: idle writes not measured",
                    r.runner.title(),
                    r.jobs
                )),
            }
        }
    }
    failures
}

// --- the document -------------------------------------------------------------------------------

pub fn environment_lines(e: &Environment) -> String {
    format!(
        "Measured {} on {} ({} cores, {:.0} GiB, Linux {}); Kubernetes {} (one local node, pods never \
         scheduled); dask-operator {}; dask-kubernetes {} with kopf {}; {}.\n",
        e.date,
        e.cpu,
        e.cores,
        e.memory_gib,
        e.kernel,
        e.kubernetes,
        e.operator,
        e.dask_kubernetes,
        e.kopf,
        e.rustc
    )
}

/// The report: machine and versions, the size table, the steady table, the goals, the notes.
/// `plot` is the link to the plot, relative to where the text goes.
pub fn markdown(results: &Results, plot: Option<&str>) -> String {
    let mut out = environment_lines(&results.environment);
    out += &format!(
        "\nN DaskJobs (upstream's simplejob, 2 workers each, distinct names) applied at once; times from the \
         first create. A state is waited for at most {} s, or until nothing changed for {} s. Requests are the API \
         server's count for the operator's identity; the idle window starts once the operator made no write for 5 s \
         (at most 60 s after the run).\n\n",
        results.timeout_seconds, results.stall_seconds
    );
    out += &size_table(results);
    if !results.steady.is_empty() {
        out += "\nSteady rate:\n\n";
        out += &steady_table(results);
    }
    out += "\nGoals (issue 13):\n\n";
    out += &goals_table(&goals(results));
    let notes: Vec<String> = results
        .runs
        .iter()
        .flat_map(|r| {
            r.notes
                .iter()
                .map(move |n| format!("{} at N={}: {n}", r.runner.title(), r.jobs))
        })
        .chain(results.steady.iter().flat_map(|s| {
            s.notes
                .iter()
                .map(move |n| format!("{} steady: {n}", s.runner.title()))
        }))
        .collect();
    if !notes.is_empty() {
        out += "\nNotes:\n\n";
        for n in notes {
            out += &format!("- {n}\n");
        }
    }
    if let Some(plot) = plot {
        out += &format!("\n![time and peak RSS against N]({plot})\n");
    }
    out
}

pub const README_BEGIN: &str = "<!-- bench:begin -->";
pub const README_END: &str = "<!-- bench:end -->";

/// `text` with what lies between the markers replaced by `body`; `None` if the markers are missing
/// or out of order.
pub fn replace_between_markers(text: &str, body: &str) -> Option<String> {
    let start = text.find(README_BEGIN)? + README_BEGIN.len();
    let end = start + text[start..].find(README_END)?;
    Some(format!(
        "{}\n{}\n{}",
        &text[..start],
        body.trim_end(),
        &text[end..]
    ))
}
