//! `bench --plot`: the latency histogram and the latency over time, drawn
//! to a PNG with plotters.

use std::{path::Path, time::Duration};

use ferrogrpc::Code;
use plotters::prelude::*;

use crate::error::Error;

/// One call as the plot sees it: when it started (seconds into the run),
/// its latency (ms) and whether it ended OK.
pub struct Point {
    pub start: f64,
    pub latency_ms: f64,
    pub code: Code,
}

/// Where plotters finds a font for the labels: `FERROGRPC_PLOT_FONT`, then
/// the usual places of a sans-serif TrueType font on Linux, macOS and
/// Windows.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn load_font() -> Result<(), Error> {
    // The font lives as long as the process; plotters wants 'static.
    let register = |bytes: Vec<u8>| {
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    };
    if let Some(path) = std::env::var_os("FERROGRPC_PLOT_FONT") {
        let path = Path::new(&path);
        let bytes = std::fs::read(path).map_err(|err| {
            Error::new(format!(
                "FERROGRPC_PLOT_FONT: cannot read {}: {err}",
                path.display()
            ))
        })?;
        if register(bytes) {
            return Ok(());
        }
        return Err(Error::new(format!(
            "FERROGRPC_PLOT_FONT: {} is not a TrueType or OpenType font",
            path.display()
        )));
    }
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            if register(bytes) {
                return Ok(());
            }
        }
    }
    Err(Error::new(
        "--plot: no TrueType font found for the labels; set FERROGRPC_PLOT_FONT to a .ttf file \
         (e.g. DejaVuSans.ttf from the fonts-dejavu-core package)",
    ))
}

/// Draws `points` (in start order) to `path`: a histogram of latencies on
/// top, each call's latency at its start time below (failed calls in red).
pub fn draw(path: &Path, points: &[Point], total: Duration) -> Result<(), Error> {
    load_font()?;
    let fail = |err: &dyn std::fmt::Display| {
        Error::new(format!("--plot: cannot draw {}: {err}", path.display()))
    };
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(430);
    let max_ms = points
        .iter()
        .map(|p| p.latency_ms)
        .fold(0.0_f64, f64::max)
        .max(0.001);

    // The histogram: 50 equal buckets from 0 to the slowest call.
    const BUCKETS: usize = 50;
    let width = max_ms / BUCKETS as f64;
    let mut counts = [0u32; BUCKETS];
    for p in points {
        let i = ((p.latency_ms / width) as usize).min(BUCKETS - 1);
        counts[i] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("Latency histogram ({} calls)", points.len()),
            ("sans-serif", 24),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_ms, 0u32..most + most / 10 + 1)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("calls")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &n)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width, n)], BLUE.mix(0.7).filled())
        }))
        .map_err(|e| fail(&e))?;

    // Latency over time: a dot per call (at most 50,000, evenly thinned).
    let step = points.len().div_ceil(50_000).max(1);
    let seconds = total.as_secs_f64().max(0.001);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("Latency over time", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds, 0.0..max_ms * 1.05)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(points.iter().step_by(step).map(|p| {
            let color = if p.code == Code::Ok { BLUE } else { RED };
            Circle::new((p.start, p.latency_ms), 2, color.mix(0.5).filled())
        }))
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
