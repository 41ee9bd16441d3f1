//! The pure parts of `benches/daskjobs.rs`, unit-tested without a cluster by `tests/bench_support.rs`
//! (which includes this folder with `#[path]`): settings, statistics, the API server's metrics text,
//! `/proc` parsing, the result format, the Markdown report, the goals and the plot.
#![allow(dead_code)] // each includer uses its own part

pub mod config;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod stats;
