//! The bench's settings, from the environment and the command line (`make bench` and `make test`
//! set them).
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `BENCH_SIZES` | `100,500,1000` | numbers of DaskJobs applied at once, one run per size and operator |
//! | `BENCH_OPERATORS` | `ours,kopf` | which operators run |
//! | `BENCH_RAW` | `1` | also run the raw client (the objects of a job, created directly) at each size |
//! | `BENCH_IDLE_SECONDS` | `60` | the idle window after a run settled, in which requests are counted |
//! | `BENCH_RATE` | `20` | steady mode: jobs per second |
//! | `BENCH_RATE_SECONDS` | `60` | steady mode: for how long (0: no steady mode) |
//! | `BENCH_TIMEOUT_SECONDS` | `300` | how long a state is waited for, from the first create |
//! | `BENCH_STALL_SECONDS` | `90` | a state is given up earlier when nothing at all changed for this long |
//! | `BENCH_CONCURRENCY` | `32` | creates in flight at once (the apply, and the raw client) |
//! | `BENCH_OUT` | none | folder for `RESULTS.md`, `results.json` and `results.svg` |
//! | `BENCH_README` | none | a README whose `<!-- bench:begin -->`…`<!-- bench:end -->` part gets the tables |
//! | `BENCH_CHECK` / `--check` | off | exit 1 unless every operator brought every job to `ClusterCreated` and ours wrote nothing in the idle windows |
//!
//! A bare number on the command line (`cargo bench --bench daskjobs -- 500`) is one size.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    /// This operator: the release binary, user `dask-operator`.
    Ours,
    /// dask-kubernetes' kopf operator from the pinned wheel, ServiceAccount `dask-bench-kopf`.
    Kopf,
    /// No operator: the bench creates a job's objects itself, ServiceAccount `dask-bench-raw`.
    Raw,
}

impl Runner {
    pub fn as_str(self) -> &'static str {
        match self {
            Runner::Ours => "ours",
            Runner::Kopf => "kopf",
            Runner::Raw => "raw",
        }
    }

    /// The flow schemas (`benches/identities.yaml`, and `dask-operator` of
    /// `hack/local-operator.yaml`) whose dispatched requests are the runner's: all of them, and the
    /// writes only (`None`: not told apart).
    pub fn flow_schemas(self) -> (&'static [&'static str], Option<&'static [&'static str]>) {
        match self {
            Runner::Ours => (
                &["dask-operator", "dask-bench-ours-writes"],
                Some(&["dask-bench-ours-writes"]),
            ),
            Runner::Kopf => (
                &["dask-bench-kopf", "dask-bench-kopf-writes"],
                Some(&["dask-bench-kopf-writes"]),
            ),
            Runner::Raw => (&["dask-bench-raw"], None),
        }
    }

    /// How it is named in the tables.
    pub fn title(self) -> &'static str {
        match self {
            Runner::Ours => "dask-operator (Rust)",
            Runner::Kopf => "dask-kubernetes (kopf)",
            Runner::Raw => "raw client",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub sizes: Vec<usize>,
    pub operators: Vec<Runner>,
    pub raw: bool,
    pub idle_seconds: u64,
    pub rate: f64,
    pub rate_seconds: u64,
    pub timeout_seconds: u64,
    pub stall_seconds: u64,
    pub concurrency: usize,
    pub out: Option<PathBuf>,
    pub readme: Option<PathBuf>,
    pub check: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sizes: vec![100, 500, 1000],
            operators: vec![Runner::Ours, Runner::Kopf],
            raw: true,
            idle_seconds: 60,
            rate: 20.0,
            rate_seconds: 60,
            timeout_seconds: 300,
            stall_seconds: 90,
            concurrency: 32,
            out: None,
            readme: None,
            check: false,
        }
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}={value:?} is not a number"))
}

fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{name}={value:?}: expected 1 or 0")),
    }
}

/// A list like `100,500, 1000`: positive numbers, at least one.
pub fn parse_sizes(value: &str) -> Result<Vec<usize>, String> {
    let sizes = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| number::<usize>("BENCH_SIZES", s))
        .collect::<Result<Vec<_>, _>>()?;
    if sizes.is_empty() || sizes.contains(&0) {
        return Err(format!(
            "BENCH_SIZES={value:?}: expected positive numbers, e.g. 100,500,1000"
        ));
    }
    Ok(sizes)
}

/// A list like `ours,kopf` (no duplicates; `raw` is `BENCH_RAW`).
pub fn parse_operators(value: &str) -> Result<Vec<Runner>, String> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let runner = match name {
            "ours" | "dask-operator" => Runner::Ours,
            "kopf" | "dask-kubernetes" => Runner::Kopf,
            _ => {
                return Err(format!(
                    "BENCH_OPERATORS: unknown operator {name:?} (ours, kopf)"
                ));
            }
        };
        if !out.contains(&runner) {
            out.push(runner);
        }
    }
    if out.is_empty() {
        return Err("BENCH_OPERATORS is empty: name ours, kopf or both".into());
    }
    Ok(out)
}

impl Settings {
    /// Settings from `env` (a lookup such as `std::env::var(..).ok()`) and the command-line
    /// arguments after the program name (`--check`, a bare number; cargo's own `--bench` is
    /// ignored).
    pub fn from(env: impl Fn(&str) -> Option<String>, args: &[String]) -> Result<Settings, String> {
        let mut s = Settings::default();
        if let Some(v) = env("BENCH_SIZES") {
            s.sizes = parse_sizes(&v)?;
        }
        if let Some(v) = env("BENCH_OPERATORS") {
            s.operators = parse_operators(&v)?;
        }
        if let Some(v) = env("BENCH_RAW") {
            s.raw = flag("BENCH_RAW", &v)?;
        }
        if let Some(v) = env("BENCH_IDLE_SECONDS") {
            s.idle_seconds = number("BENCH_IDLE_SECONDS", &v)?;
        }
        if let Some(v) = env("BENCH_RATE") {
            s.rate = number("BENCH_RATE", &v)?;
            if !(s.rate > 0.0 && s.rate.is_finite()) {
                return Err(format!("BENCH_RATE={v:?}: expected a positive rate"));
            }
        }
        if let Some(v) = env("BENCH_RATE_SECONDS") {
            s.rate_seconds = number("BENCH_RATE_SECONDS", &v)?;
        }
        if let Some(v) = env("BENCH_TIMEOUT_SECONDS") {
            s.timeout_seconds = number("BENCH_TIMEOUT_SECONDS", &v)?;
        }
        if let Some(v) = env("BENCH_STALL_SECONDS") {
            s.stall_seconds = number("BENCH_STALL_SECONDS", &v)?;
        }
        if let Some(v) = env("BENCH_CONCURRENCY") {
            s.concurrency = number::<usize>("BENCH_CONCURRENCY", &v)?.max(1);
        }
        s.out = env("BENCH_OUT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        s.readme = env("BENCH_README")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Some(v) = env("BENCH_CHECK") {
            s.check = flag("BENCH_CHECK", &v)?;
        }
        let mut positional = Vec::new();
        for arg in args {
            match arg.as_str() {
                "--check" => s.check = true,
                "--bench" => {}
                a if a.starts_with('-') => return Err(format!("unknown option {a}")),
                a => positional.push(number::<usize>("JOBS", a)?),
            }
        }
        if !positional.is_empty() {
            if positional.contains(&0) {
                return Err("JOBS must be positive".into());
            }
            s.sizes = positional;
        }
        if s.timeout_seconds == 0 {
            return Err("BENCH_TIMEOUT_SECONDS must be positive".into());
        }
        Ok(s)
    }

    /// Jobs the steady mode creates (0: no steady mode).
    pub fn steady_jobs(&self) -> usize {
        (self.rate * self.rate_seconds as f64).round() as usize
    }
}

/// Upstream's simplejob (`tests/fixtures/simplejob.yaml`, as JSON) renamed `name` in namespace
/// `namespace`: its scheduler Service selects the scheduler of the job's own cluster.
pub fn simplejob(template: &serde_json::Value, namespace: &str, name: &str) -> serde_json::Value {
    let mut value = template.clone();
    value["metadata"]["name"] = name.into();
    value["metadata"]["namespace"] = namespace.into();
    if let Some(selector) = value
        .pointer_mut("/spec/cluster/spec/scheduler/service/selector")
        .and_then(|s| s.as_object_mut())
    {
        selector.insert("dask.org/cluster-name".into(), name.into());
    }
    value
}

/// Worker Deployments a job's cluster gets: its default group's replicas.
pub fn workers_per_job(template: &serde_json::Value) -> usize {
    template
        .pointer("/spec/cluster/spec/worker/replicas")
        .and_then(|r| r.as_u64())
        .unwrap_or(1) as usize
}
