//! `results.svg`: time to every job `ClusterCreated` (the raw client: to every object) and the
//! operator's peak RSS, against N, for each runner. Drawn with plotters' SVG backend only: text is
//! SVG `<text>`, so no font files are needed.

use plotters::prelude::*;

use super::config::Runner;
use super::report::{Results, SizeRun};

const RUNNERS: [(Runner, RGBColor); 3] = [
    (Runner::Ours, RGBColor(0xd6, 0x27, 0x28)),
    (Runner::Kopf, RGBColor(0x1f, 0x77, 0xb4)),
    (Runner::Raw, RGBColor(0x7f, 0x7f, 0x7f)),
];

/// (N, seconds, reached) of the runner's runs: seconds to all ClusterCreated (raw: all objects);
/// a state not reached is drawn at the time the bench waited, as a cross.
pub fn time_points(results: &Results, runner: Runner) -> Vec<(f64, f64, bool)> {
    let mut points: Vec<(f64, f64, bool)> = results
        .runs
        .iter()
        .filter(|r| r.runner == runner)
        .filter_map(|r: &SizeRun| {
            let n = r.jobs as f64;
            match &r.cluster_created {
                Some(m) => Some(match m.seconds {
                    Some(s) => (n, s, true),
                    None => (n, m.waited_seconds, false),
                }),
                None => r.all_objects_seconds().map(|s| (n, s, true)),
            }
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// (N, MiB) of the runner's runs that have a peak RSS.
pub fn rss_points(results: &Results, runner: Runner) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = results
        .runs
        .iter()
        .filter(|r| r.runner == runner)
        .filter_map(|r| Some((r.jobs as f64, r.peak_rss_kib? as f64 / 1024.0)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The plot as SVG text.
pub fn svg(results: &Results) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (1100, 470)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (charts, footer) = root.split_vertically(440);
        let (left, right) = charts.split_horizontally(560);
        let max_n = results.runs.iter().map(|r| r.jobs).max().unwrap_or(1) as f64 * 1.08;

        let times: Vec<f64> = RUNNERS
            .iter()
            .flat_map(|(r, _)| time_points(results, *r))
            .map(|(_, s, _)| s)
            .filter(|s| *s > 0.0)
            .collect();
        let t_min = times.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) / 1.5;
        let t_max = times.iter().copied().fold(0.0, f64::max).max(1.0) * 1.5;
        let mut chart = ChartBuilder::on(&left)
            .caption(
                "time to every job ClusterCreated (raw client: every object)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_n, (t_min..t_max).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .x_desc("N (DaskJobs applied at once)")
            .y_desc("seconds (log)")
            .draw()
            .map_err(err)?;
        for (runner, color) in RUNNERS {
            let points = time_points(results, runner);
            if points.is_empty() {
                continue;
            }
            let reached: Vec<(f64, f64)> =
                points.iter().filter(|p| p.2).map(|p| (p.0, p.1)).collect();
            chart
                .draw_series(LineSeries::new(reached.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(runner.title())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(reached.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| !p.2)
                        .map(|p| Cross::new((p.0, p.1), 6, color.stroke_width(2))),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(err)?;

        let rss_max = RUNNERS
            .iter()
            .flat_map(|(r, _)| rss_points(results, *r))
            .map(|p| p.1)
            .fold(0.0, f64::max)
            .max(10.0)
            * 1.2;
        let mut chart = ChartBuilder::on(&right)
            .caption("operator peak RSS (VmHWM)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_n, 0f64..rss_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .x_desc("N (DaskJobs applied at once)")
            .y_desc("MiB")
            .draw()
            .map_err(err)?;
        for (runner, color) in RUNNERS {
            let points = rss_points(results, runner);
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(runner.title())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        footer.titled_area_note(results).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(text)
}

trait Note {
    fn titled_area_note(&self, results: &Results) -> Result<(), String>;
}

impl<DB: DrawingBackend> Note for DrawingArea<DB, plotters::coord::Shift> {
    /// The footer line: a cross is a state not reached (drawn at the time waited).
    fn titled_area_note(&self, results: &Results) -> Result<(), String> {
        let any_cross = RUNNERS
            .iter()
            .any(|(r, _)| time_points(results, *r).iter().any(|p| !p.2));
        if any_cross {
            self.draw(&Text::new(
                "× : not reached; drawn at the time the bench waited",
                (70, 8),
                ("sans-serif", 15),
            ))
            .map_err(err)?;
        }
        Ok(())
    }
}
