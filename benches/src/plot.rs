//! The capacity run's plot: latency percentiles (log scale) against offered rate, with the SLO
//! and the highest rate that met it.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::step::Step;

const PERCENTILES: [(&str, RGBColor); 4] = [
    ("p50", RGBColor(0x1f, 0x77, 0xb4)),
    ("p90", RGBColor(0x2c, 0xa0, 0x2c)),
    ("p99", RGBColor(0xd6, 0x27, 0x28)),
    ("p99.9", RGBColor(0x94, 0x67, 0xbd)),
];

/// Writes the SVG; `slo_rps` marks the highest passing rate, when there is one.
pub fn write(path: &Path, steps: &[Step], slo_p99_ms: f64, slo_rps: Option<f64>) -> Result<()> {
    let mut points: Vec<&Step> = steps.iter().collect();
    points.sort_by_key(|s| s.report.offered_rps);
    let rate_max = points
        .last()
        .map(|s| s.report.offered_rps as f64)
        .unwrap_or(1.0)
        * 1.05;
    let latencies = || {
        points
            .iter()
            .flat_map(|s| PERCENTILES.iter().map(|(k, _)| s.report.latency(k)))
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let low = latencies().fold(slo_p99_ms, f64::min) * 0.7;
    let high = latencies().fold(slo_p99_ms, f64::max) * 1.5;

    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("plotting: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("beacon: latency against offered rate", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..rate_max, (low..high).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered rate, requests/s (open loop)")
        .y_desc("latency, ms (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(err)?;
    for (key, color) in PERCENTILES {
        let series: Vec<(f64, f64, bool)> = points
            .iter()
            .map(|s| (s.report.offered_rps as f64, s.report.latency(key), s.passed))
            .filter(|(_, v, _)| v.is_finite() && *v > 0.0)
            .collect();
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|(x, y, _)| (*x, *y)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(key)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            // Passing steps are dots, failing ones rings.
            .draw_series(series.into_iter().map(|(x, y, passed)| {
                let style = if passed {
                    color.filled()
                } else {
                    color.stroke_width(1)
                };
                Circle::new((x, y), 3, style)
            }))
            .map_err(err)?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, slo_p99_ms), (rate_max, slo_p99_ms)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label(format!("SLO: p99 ≤ {slo_p99_ms} ms"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    if let Some(rate) = slo_rps {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(rate, low), (rate, high)],
                6,
                4,
                RGBColor(0x7f, 0x7f, 0x7f).stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("highest rate within the SLO: {rate:.0} req/s"))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(0x7f, 0x7f, 0x7f))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
