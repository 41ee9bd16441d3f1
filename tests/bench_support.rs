//! Unit tests of the bench's pure parts (`benches/support/`): settings, statistics, metrics text,
//! `/proc` parsing, the report, the goals and the plot. No cluster needed.

#[path = "../benches/support/mod.rs"]
mod support;

use support::config::{Runner, Settings, parse_operators, parse_sizes};
use support::metrics::{cpu_model, dispatched_requests, label, mem_total_kib, vm_hwm_kib};
use support::report::{
    self, Environment, Milestone, Results, SizeRun, SteadyRun, Verdict, check_failures, goals,
    replace_between_markers,
};
use support::stats::{latencies_ms, percentile, summarize, time_to_nth};

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn settings_defaults_match_the_issue() {
    let s = Settings::from(env(&[]), &[]).unwrap();
    assert_eq!(s.sizes, vec![100, 500, 1000]);
    assert_eq!(s.operators, vec![Runner::Ours, Runner::Kopf]);
    assert!(s.raw && !s.check);
    assert_eq!(
        (s.idle_seconds, s.rate, s.rate_seconds, s.timeout_seconds),
        (60, 20.0, 60, 300)
    );
    assert_eq!(s.steady_jobs(), 1200);
}

#[test]
fn settings_from_env_and_args() {
    let s = Settings::from(
        env(&[
            ("BENCH_SIZES", " 10, 20 ,"),
            ("BENCH_OPERATORS", "kopf,ours,kopf"),
            ("BENCH_RAW", "0"),
            ("BENCH_IDLE_SECONDS", "20"),
            ("BENCH_RATE_SECONDS", "0"),
            ("BENCH_OUT", "/tmp/x"),
        ]),
        &["--bench".into(), "--check".into()],
    )
    .unwrap();
    assert_eq!(s.sizes, vec![10, 20]);
    assert_eq!(s.operators, vec![Runner::Kopf, Runner::Ours]);
    assert!(!s.raw && s.check);
    assert_eq!(s.idle_seconds, 20);
    assert_eq!(s.steady_jobs(), 0);
    assert_eq!(s.out.as_deref(), Some(std::path::Path::new("/tmp/x")));
    // The old `make bench JOBS=500` form: a bare number is the one size.
    let s = Settings::from(env(&[("BENCH_SIZES", "1,2")]), &["500".into()]).unwrap();
    assert_eq!(s.sizes, vec![500]);
}

#[test]
fn settings_reject_nonsense() {
    assert!(parse_sizes("").is_err());
    assert!(parse_sizes("10,0").is_err());
    assert!(parse_sizes("ten").is_err());
    assert!(parse_operators("ours,python").is_err());
    assert!(parse_operators(" , ").is_err());
    assert!(Settings::from(env(&[("BENCH_RATE", "0")]), &[]).is_err());
    assert!(Settings::from(env(&[("BENCH_RAW", "maybe")]), &[]).is_err());
    assert!(Settings::from(env(&[("BENCH_TIMEOUT_SECONDS", "0")]), &[]).is_err());
    assert!(Settings::from(env(&[]), &["--fast".into()]).is_err());
}

#[test]
fn percentile_is_nearest_rank() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&values, 50.0), Some(50.0));
    assert_eq!(percentile(&values, 99.0), Some(99.0));
    assert_eq!(percentile(&values, 100.0), Some(100.0));
    assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
    assert_eq!(percentile(&[5.0], 99.0), Some(5.0));
    // 10 values: p99 is the largest, p50 the fifth.
    let ten: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    assert_eq!(percentile(&ten, 99.0), Some(10.0));
    assert_eq!(percentile(&ten, 50.0), Some(5.0));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&[1.0], 0.0), None);
    assert_eq!(percentile(&[1.0, f64::NAN], 50.0), None);
}

#[test]
fn percentile_on_a_missing_runner_is_not_reached() {
    let mut values: Vec<f64> = (1..=99).map(f64::from).collect();
    values.push(f64::INFINITY);
    assert_eq!(percentile(&values, 99.0), Some(99.0));
    assert_eq!(percentile(&values, 100.0), None);
    values.push(f64::INFINITY);
    assert_eq!(percentile(&values, 99.0), None);
    let s = summarize(&values);
    assert_eq!((s.seen, s.expected, s.p50_ms), (99, 101, Some(51.0)));
    assert_eq!((s.p99_ms, s.max_ms), (None, None));
}

#[test]
fn time_to_nth_event() {
    assert_eq!(time_to_nth(&[3.0, 1.0, 2.0], 2), Some(2.0));
    assert_eq!(time_to_nth(&[3.0, 1.0, 2.0], 3), Some(3.0));
    assert_eq!(time_to_nth(&[3.0, 1.0], 3), None);
    assert_eq!(time_to_nth(&[1.0], 0), None);
}

#[test]
fn latencies_from_create_to_runner() {
    let created = vec![
        ("a".to_string(), 1.0),
        ("b".to_string(), 2.0),
        ("c".to_string(), 3.0),
    ];
    let seen = |job: &str| match job {
        "a" => Some(1.25),
        "b" => Some(1.9), // seen before the create call returned: 0
        _ => None,
    };
    let l = latencies_ms(&created, seen);
    assert_eq!(l[0], 250.0);
    assert_eq!(l[1], 0.0);
    assert!(l[2].is_infinite());
}

const METRICS: &str = r#"# HELP apiserver_flowcontrol_dispatched_requests_total [BETA] Number of requests executed by API Priority and Fairness subsystem.
# TYPE apiserver_flowcontrol_dispatched_requests_total counter
apiserver_flowcontrol_dispatched_requests_total{flow_schema="dask-operator",priority_level="global-default"} 1234
apiserver_flowcontrol_dispatched_requests_total{flow_schema="dask-operator",priority_level="workload-low"} 6
apiserver_flowcontrol_dispatched_requests_total{flow_schema="dask-operator-x",priority_level="global-default"} 99
apiserver_flowcontrol_dispatched_requests_total{priority_level="global-default",flow_schema="dask-bench-kopf"} 5.5e+02
apiserver_flowcontrol_dispatched_requests_total_other{flow_schema="dask-operator"} 1000
apiserver_flowcontrol_current_inqueue_requests{flow_schema="dask-operator",priority_level="global-default"} 7
"#;

#[test]
fn dispatched_requests_of_one_flow_schema() {
    assert_eq!(dispatched_requests(METRICS, "dask-operator"), 1240.0);
    assert_eq!(dispatched_requests(METRICS, "dask-bench-kopf"), 550.0);
    assert_eq!(dispatched_requests(METRICS, "dask-operator-x"), 99.0);
    assert_eq!(dispatched_requests(METRICS, "nobody"), 0.0);
    assert_eq!(dispatched_requests("", "dask-operator"), 0.0);
}

#[test]
fn prometheus_labels() {
    let l = r#"flow_schema="a",priority_level="b""#;
    assert_eq!(label(l, "flow_schema"), Some("a"));
    assert_eq!(label(l, "priority_level"), Some("b"));
    assert_eq!(label(l, "verb"), None);
    assert_eq!(label("", "x"), None);
}

#[test]
fn proc_parsing() {
    let status =
        "Name:\tdask-operator\nVmPeak:\t  100 kB\nVmHWM:\t   23456 kB\nVmRSS:\t 20000 kB\n";
    assert_eq!(vm_hwm_kib(status), Some(23456));
    assert_eq!(vm_hwm_kib("Name: x\n"), None);
    assert_eq!(
        cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n").as_deref(),
        Some("AMD EPYC 7B13")
    );
    assert_eq!(
        mem_total_kib("MemTotal:       24578532 kB\nMemFree: 1 kB\n"),
        Some(24578532)
    );
}

fn milestone(expected: usize, seconds: Option<f64>) -> Milestone {
    Milestone {
        expected,
        reached: if seconds.is_some() {
            expected
        } else {
            expected / 2
        },
        seconds,
        waited_seconds: seconds.unwrap_or(300.0),
        stalled: false,
    }
}

fn run(
    runner: Runner,
    jobs: usize,
    created: Option<f64>,
    rss_mib: u64,
    idle_writes: f64,
) -> SizeRun {
    let operator = runner != Runner::Raw;
    SizeRun {
        runner,
        jobs,
        apply_seconds: 1.0,
        cluster_created: operator.then(|| milestone(jobs, created)),
        running: operator.then(|| milestone(jobs, created.map(|s| s + 1.0))),
        worker_deployments: milestone(jobs * 2, created.map(|s| s + 0.5).or(Some(2.0))),
        runner_pods: milestone(jobs, created.or(Some(1.5))),
        latency: summarize(&[100.0, 200.0, 900.0]),
        peak_rss_kib: operator.then_some(rss_mib * 1024),
        requests: Some(jobs as f64 * 8.0),
        writes: Some(jobs as f64 * 6.0),
        idle_seconds: if operator { 60 } else { 0 },
        idle_requests: operator.then_some(2.0),
        idle_writes: operator.then_some(idle_writes),
        notes: vec![],
    }
}

fn results() -> Results {
    Results {
        environment: Environment {
            date: "2026-01-01".into(),
            cpu: "Test CPU".into(),
            cores: 2,
            memory_gib: 23.0,
            kernel: "6.1".into(),
            kubernetes: "v1.34.1".into(),
            operator: "0.1.0".into(),
            dask_kubernetes: "2026.3.0".into(),
            kopf: "1.45.2".into(),
            rustc: "rustc 1.95.0".into(),
        },
        timeout_seconds: 300,
        stall_seconds: 90,
        runs: vec![
            run(Runner::Ours, 100, Some(1.0), 20, 0.0),
            run(Runner::Kopf, 100, Some(40.0), 120, 3.0),
            run(Runner::Raw, 100, None, 0, 0.0),
            run(Runner::Ours, 500, Some(5.0), 30, 0.0),
            run(Runner::Kopf, 500, None, 300, 5.0),
            run(Runner::Ours, 1000, Some(10.0), 45, 0.0),
        ],
        steady: vec![SteadyRun {
            runner: Runner::Ours,
            rate: 20.0,
            seconds: 60,
            jobs: 1200,
            achieved_rate: 19.9,
            latency: summarize(&[100.0; 100]),
            peak_rss_kib: Some(30 * 1024),
            requests: Some(9600.0),
            notes: vec![],
        }],
    }
}

#[test]
fn goals_met_and_not() {
    let g = goals(&results());
    assert_eq!(g.len(), 5);
    let verdicts: Vec<Verdict> = g.iter().map(|g| g.verdict).collect();
    // RSS 45 MiB ≤ 50; 0 idle writes; p99 100 ms; per job 10 ms at 100 and 10 ms at 1000; kopf did not
    // reach ClusterCreated in 300 s at 500, ours took 5 s: ≥ 60×.
    assert_eq!(verdicts, vec![Verdict::Met; 5], "{g:#?}");

    let mut r = results();
    r.runs[5].peak_rss_kib = Some(51 * 1024);
    r.runs[3].idle_writes = Some(1.0);
    r.runs[5].cluster_created = Some(milestone(1000, Some(20.0))); // 20 ms per job vs 10
    r.steady[0].latency = summarize(&[1500.0; 10]);
    r.runs[4].cluster_created = Some(milestone(500, Some(50.0))); // 10× only
    let verdicts: Vec<Verdict> = goals(&r).iter().map(|g| g.verdict).collect();
    assert_eq!(verdicts, vec![Verdict::NotMet; 5]);

    // Nothing measured: no N=1000, no steady run, one size, no kopf.
    let mut r = results();
    r.runs.retain(|x| x.runner == Runner::Ours && x.jobs == 100);
    r.runs[0].idle_writes = None;
    r.steady.clear();
    let verdicts: Vec<Verdict> = goals(&r).iter().map(|g| g.verdict).collect();
    assert_eq!(verdicts, vec![Verdict::NotMeasured; 5]);

    // kopf gave up too early to tell a 20× speed-up.
    let mut r = results();
    r.runs[4].cluster_created.as_mut().unwrap().waited_seconds = 50.0;
    assert_eq!(goals(&r)[4].verdict, Verdict::NotMeasured);
}

#[test]
fn check_fails_on_missing_cluster_created_and_idle_writes() {
    let mut r = results();
    r.runs.remove(4); // kopf at 500 did not make it
    assert!(check_failures(&r).is_empty(), "{:?}", check_failures(&r));
    let f = check_failures(&results());
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains(
            "dask-kubernetes (kopf) at N=500: ClusterCreated not reached in 300 s (250/500)"
        ),
        "{f:?}"
    );
    let mut r = results();
    r.runs[0].idle_writes = Some(2.0);
    r.runs.remove(4);
    let f = check_failures(&r);
    assert_eq!(
        f,
        vec!["dask-operator (Rust) at N=100: 2 writes in the 60 s idle window".to_string()]
    );
    // kopf's idle writes are reported, never checked.
    let mut r = results();
    r.runs.remove(4);
    r.runs[1].idle_writes = Some(100.0);
    assert!(check_failures(&r).is_empty());
}

#[test]
fn markdown_report() {
    let r = results();
    let md = report::markdown(&r, Some("benches/results.svg"));
    assert!(
        md.starts_with(
            "Measured 2026-01-01 on Test CPU (2 cores, 23 GiB, Linux 6.1); Kubernetes v1.34.1"
        ),
        "{md}"
    );
    // One row per run, sorted by N then runner; columns line up with the header.
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| 100 ") || l.starts_with("| 500 ") || l.starts_with("| 1000 "))
        .collect();
    assert_eq!(rows.len(), 6, "{md}");
    assert!(rows[0].starts_with("| 100 | dask-operator (Rust) | 1.00 s | 2.00 s | 1.50 s | 1.00 s | 10 ms | 200 ms | 900 ms | 20.0 MiB | 8.0 (6.0) | 2 (0) in 60 s | 0.8× |"), "{}", rows[0]);
    assert!(
        rows[1].contains("| dask-kubernetes (kopf) | 40.0 s |"),
        "{}",
        rows[1]
    );
    assert!(rows[1].ends_with("| 20.2× |"), "{}", rows[1]);
    assert!(
        rows[2].starts_with("| 100 | raw client | — | — | 2.00 s | 1.50 s | 20 ms |"),
        "{}",
        rows[2]
    );
    assert!(
        rows[4].contains("not reached in 300 s (250/500)"),
        "{}",
        rows[4]
    );
    let header = md.lines().find(|l| l.starts_with("| N |")).unwrap();
    for row in &rows {
        assert_eq!(
            row.matches(" | ").count(),
            header.matches(" | ").count(),
            "{row}"
        );
    }
    assert!(md.contains("| dask-operator (Rust) | 20 jobs/s for 60 s (achieved 19.9/s) | 1200 | 100 ms | 100 ms | 100 ms | 100/100 | 30.0 MiB | 8.0 |"), "{md}");
    assert!(
        md.contains("| peak RSS at N=1000 ≤ 50.0 MiB | 45.0 MiB | met |"),
        "{md}"
    );
    assert!(
        md.trim_end()
            .ends_with("![time and peak RSS against N](benches/results.svg)")
    );
    // A stalled state says so.
    let m = Milestone {
        expected: 10,
        reached: 0,
        seconds: None,
        waited_seconds: 95.0,
        stalled: true,
    };
    assert_eq!(
        report::milestone(&m),
        "not reached (0/10; no progress for the stall window, gave up at 95 s)"
    );
}

#[test]
fn results_round_trip_as_json() {
    let r = results();
    let text = serde_json::to_string_pretty(&r).unwrap();
    assert!(text.contains("\"runner\": \"kopf\""));
    let back: Results = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}

#[test]
fn readme_markers() {
    let text = "# x\n\n## Benchmark\n\nintro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\n## Next\n";
    let new = replace_between_markers(text, "new table\n").unwrap();
    assert_eq!(
        new,
        "# x\n\n## Benchmark\n\nintro\n\n<!-- bench:begin -->\nnew table\n<!-- bench:end -->\n\n## Next\n"
    );
    assert_eq!(
        replace_between_markers(&new, "new table").unwrap(),
        new,
        "idempotent"
    );
    assert!(replace_between_markers("no markers", "x").is_none());
    assert!(replace_between_markers("<!-- bench:end --> <!-- bench:begin -->", "x").is_none());
}

#[test]
fn plot_is_an_svg_with_both_operators() {
    let r = results();
    let svg = support::plot::svg(&r).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for text in [
        "dask-operator (Rust)",
        "dask-kubernetes (kopf)",
        "raw client",
        "MiB",
        "not reached",
    ] {
        assert!(svg.contains(text), "no {text:?} in the plot");
    }
    assert_eq!(
        support::plot::time_points(&r, Runner::Kopf),
        vec![(100.0, 40.0, true), (500.0, 300.0, false)]
    );
    assert_eq!(
        support::plot::rss_points(&r, Runner::Ours),
        vec![(100.0, 20.0), (500.0, 30.0), (1000.0, 45.0)]
    );
    // No run at all: still a valid (empty) plot.
    let mut empty = r.clone();
    empty.runs.clear();
    assert!(support::plot::svg(&empty).unwrap().contains("</svg>"));
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn simplejob_gets_distinct_names_and_stays_a_daskjob() {
    let template: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/simplejob.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(support::config::workers_per_job(&template), 2);
    let value = support::config::simplejob(&template, "bench-ours-10-1", "job-7");
    let job: dask_operator::crd::DaskJob = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some("job-7"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("bench-ours-10-1"));
    assert_eq!(
        value.pointer("/spec/cluster/spec/scheduler/service/selector/dask.org~1cluster-name"),
        Some(&serde_json::json!("job-7"))
    );
    // The template itself is untouched.
    assert_eq!(template["metadata"]["name"], "simple-job");
}

#[test]
fn identities_are_the_bench_own_and_cover_the_flow_schemas() {
    let text = std::fs::read_to_string(repo().join("benches/identities.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let docs: Vec<&serde_json::Value> = docs.iter().filter(|d| d.is_object()).collect();
    let name = |d: &serde_json::Value| d["metadata"]["name"].as_str().unwrap().to_string();
    for d in &docs {
        let n = name(d);
        assert!(
            n.starts_with("dask-bench-") || n.starts_with("bench-"),
            "{n} is not the bench's own name"
        );
    }
    let flow_schemas: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "FlowSchema")
        .map(|d| name(d))
        .collect();
    for runner in [Runner::Ours, Runner::Kopf, Runner::Raw] {
        let (all, writes) = runner.flow_schemas();
        for schema in all.iter().chain(writes.unwrap_or_default()) {
            // `dask-operator` is hack/local-operator.yaml's (make cluster-up applies it).
            assert!(
                *schema == "dask-operator" || flow_schemas.contains(&schema.to_string()),
                "{schema}"
            );
        }
        if let Some(writes) = writes {
            assert!(
                writes.iter().all(|w| all.contains(w)),
                "writes are part of all requests"
            );
        }
    }
    // The writes schemas are matched before the general ones and only take writes.
    for d in docs.iter().filter(|d| d["kind"] == "FlowSchema") {
        let precedence = d["spec"]["matchingPrecedence"].as_u64().unwrap();
        if name(d).ends_with("-writes") {
            assert!(precedence < 500);
            let verbs = &d["spec"]["rules"][0]["resourceRules"][0]["verbs"];
            assert!(
                !verbs
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v == "get" || v == "list" || v == "watch" || v == "*")
            );
        }
    }
    // kopf may set blockOwnerDeletion (OwnerReferencesPermissionEnforcement) and write status
    // through the subresources of our CRDs.
    let kopf_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && name(d) == "dask-bench-kopf")
        .unwrap();
    let resources: Vec<&str> = kopf_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
        })
        .collect();
    for needed in [
        "daskclusters/finalizers",
        "daskjobs/finalizers",
        "daskclusters/status",
        "daskjobs/status",
        "pods",
        "deployments",
        "services",
        "events",
    ] {
        assert!(resources.contains(&needed), "kopf's role lacks {needed}");
    }
}
