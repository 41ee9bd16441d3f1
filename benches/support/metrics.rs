//! What the bench reads from the API server's `/metrics` text and from `/proc/<pid>/status`.

/// The API server's priority-and-fairness counter of the requests it dispatched per flow schema.
pub const DISPATCHED: &str = "apiserver_flowcontrol_dispatched_requests_total";

/// The sum of `apiserver_flowcontrol_dispatched_requests_total` over the series whose label
/// `flow_schema` is exactly `schema` (one per priority level). 0 when there is none: a flow schema
/// counts nothing until its first request.
pub fn dispatched_requests(metrics_text: &str, schema: &str) -> f64 {
    metrics_text
        .lines()
        .filter_map(|line| line.strip_prefix(DISPATCHED)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once('}')?;
            let value = value.split_whitespace().next()?.parse::<f64>().ok()?;
            (label(labels, "flow_schema")? == schema).then_some(value)
        })
        .sum()
}

/// The value of label `name` in a Prometheus label set `a="x",b="y"` (values without escapes, as
/// the API server writes these).
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        if key.trim() == name {
            return Some(value);
        }
        rest = after.trim_start_matches(',');
    }
    None
}

/// A process's peak resident set size (`VmHWM`, in KiB) from the text of `/proc/<pid>/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// The CPU model from the text of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// `MemTotal` in KiB from the text of `/proc/meminfo`.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}
