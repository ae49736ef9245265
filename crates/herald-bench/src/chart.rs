//! The PNG chart: throughput per workload beside latency per workload, a bar
//! per target, both on log scales (the figures span several decades).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::BenchResult;
use crate::plan::{Target, Workload};
use crate::report::{Figure, Report};

/// Where a sans-serif TrueType font usually is on Linux; ab_glyph needs one
/// for the labels.
const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

const WIDTH: u32 = 1500;
const HEIGHT: u32 = 640;
/// The strip under both panels that says which colour is which target.
const LEGEND_HEIGHT: u32 = 44;

/// Draws the chart of `report` into `path`.
pub(crate) fn draw(report: &Report, path: &Path) -> BenchResult<()> {
    load_font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (body, footer) = root.split_vertically(HEIGHT - LEGEND_HEIGHT);
    let (left, right) = body.split_horizontally(WIDTH * 3 / 5);

    let throughput: Vec<(String, Workload, Figure)> = report
        .plan
        .workloads
        .iter()
        .filter(|&&w| !matches!(w, Workload::F | Workload::G50 | Workload::G2000))
        .map(|&w| (short_title(w), w, Figure::Rate))
        .collect();
    panel(
        &left,
        report,
        "Throughput, messages/s (higher is better)",
        "msgs/s",
        &throughput,
    )?;

    let mut latency = Vec::new();
    for &w in &report.plan.workloads {
        match w {
            Workload::A | Workload::B64 | Workload::C1000 => latency.push((format!("{} p99", tag(w)), w, Figure::P99)),
            Workload::F => {
                latency.push(("(f) p50".to_string(), w, Figure::P50));
                latency.push(("(f) p99".to_string(), w, Figure::P99));
                latency.push(("(f) p999".to_string(), w, Figure::P999));
            }
            Workload::G50 | Workload::G2000 => {
                latency.push((format!("{} p50", tag(w)), w, Figure::P50));
                latency.push((format!("{} p99", tag(w)), w, Figure::P99));
            }
            _ => {}
        }
    }
    panel(&right, report, "Latency, ms (lower is better)", "ms", &latency)?;
    legend(&footer, &report.plan.targets)?;
    root.present()?;
    Ok(())
}

fn short_title(w: Workload) -> String {
    match w {
        Workload::A => "(a) 1 pub".into(),
        Workload::B16 => "(b) 16 pubs".into(),
        Workload::B64 => "(b) 64 pubs".into(),
        Workload::C100 => "(c) batch 100".into(),
        Workload::C1000 => "(c) batch 1k".into(),
        Workload::D => "(d) catch-up".into(),
        Workload::D1 => "(d1) plain loop".into(),
        Workload::E => "(e) group of 4".into(),
        Workload::F => "(f) delivery".into(),
        Workload::G50 => "(g) live 50/s".into(),
        Workload::G2000 => "(g) live 2k/s".into(),
    }
}

/// The workload's letter and size, for the crowded latency panel.
fn tag(w: Workload) -> &'static str {
    match w {
        Workload::A => "(a)",
        Workload::B16 => "(b16)",
        Workload::B64 => "(b64)",
        Workload::C100 => "(c100)",
        Workload::C1000 => "(c1k)",
        Workload::D => "(d)",
        Workload::D1 => "(d1)",
        Workload::E => "(e)",
        Workload::F => "(f)",
        Workload::G50 => "(g50)",
        Workload::G2000 => "(g2k)",
    }
}

/// A swatch and a name per target, in one row.
fn legend(area: &DrawingArea<BitMapBackend<'_>, Shift>, targets: &[Target]) -> BenchResult<()> {
    let slot = 240;
    let start = (WIDTH as i32 - slot * targets.len() as i32) / 2;
    for (i, &target) in targets.iter().enumerate() {
        let x = start + slot * i as i32;
        area.draw(&Rectangle::new([(x, 12), (x + 18, 30)], colour(target).filled()))?;
        area.draw(&Text::new(target.label(), (x + 26, 12), ("sans-serif", 17)))?;
    }
    Ok(())
}

fn colour(target: Target) -> RGBColor {
    match target {
        Target::HeraldDurable => RGBColor(31, 119, 180),
        Target::HeraldRelaxed => RGBColor(120, 180, 230),
        Target::NatsAlways => RGBColor(214, 39, 40),
        Target::NatsDefault => RGBColor(255, 152, 150),
        Target::HeraldNats => RGBColor(44, 160, 44),
    }
}

/// One panel: a group of bars per entry, a bar per target.
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    report: &Report,
    caption: &str,
    unit: &str,
    groups: &[(String, Workload, Figure)],
) -> BenchResult<()> {
    let targets = &report.plan.targets;
    let values: Vec<Vec<Option<f64>>> = groups
        .iter()
        .map(|(_, w, figure)| {
            targets
                .iter()
                .map(|&t| report.get(*w, t).and_then(|o| figure.value(o)).filter(|v| *v > 0.0))
                .collect()
        })
        .collect();
    let present = values.iter().flatten().flatten().copied();
    let (lo, hi) = present.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if groups.is_empty() || lo > hi {
        return Ok(());
    }
    let (lo, hi) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(if groups.len() > CROWDED { 57 } else { 40 })
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..groups.len() as f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(unit)
        .y_label_formatter(&|v| format_axis(*v))
        .draw()?;
    let width = 0.8 / targets.len() as f64;
    for (t, &target) in targets.iter().enumerate() {
        let bars = values.iter().enumerate().filter_map(|(g, row)| {
            row[t].map(|v| {
                let x0 = g as f64 + 0.1 + t as f64 * width;
                Rectangle::new([(x0, lo), (x0 + width * 0.92, v)], colour(target).filled())
            })
        });
        chart.draw_series(bars)?;
    }
    // Group names under the axis, centred on their bars; in a crowded panel
    // every other one a line lower, so neighbours do not overlap.
    let crowded = groups.len() > CROWDED;
    for (g, (name, _, _)) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, lo));
        let style = TextStyle::from(("sans-serif", 14)).pos(Pos::new(HPos::Center, VPos::Top));
        let (bx, by) = area.get_base_pixel();
        let lower = if crowded && g % 2 == 1 { 17 } else { 0 };
        area.draw(&Text::new(name.clone(), (x - bx, y - by + 8 + lower), style))?;
    }
    Ok(())
}

/// More groups than this in a panel and their names take two rows.
const CROWDED: usize = 8;

fn format_axis(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Registers the first font found as "sans-serif" (once per process).
pub(crate) fn load_font() -> BenchResult<()> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let loaded = FONT.get_or_init(|| {
        let path = FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no TrueType font found for the chart's labels (Debian: apt-get install fonts-dejavu-core)")?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        register_font("sans-serif", FontStyle::Normal, Vec::leak(bytes))
            .map_err(|_| format!("{} is not a usable font", path.display()))?;
        Ok(path)
    });
    loaded.as_ref().map(|_| ()).map_err(|e| e.clone().into())
}
