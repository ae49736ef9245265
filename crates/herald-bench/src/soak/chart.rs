//! The soak's PNG chart: the server's resident memory and the publish p99
//! of each row over the run, with a line at each kill.

use std::path::Path;

use plotters::prelude::*;

use super::stats::Row;
use crate::BenchResult;
use crate::chart::load_font;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 520;

/// Draws `rows`, and kills at `kills` (seconds from the start), into `path`.
pub(super) fn draw(rows: &[Row], kills: &[f64], path: &Path) -> BenchResult<()> {
    if rows.is_empty() {
        return Err("no rows to draw".into());
    }
    load_font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(WIDTH / 2);
    let minutes = |r: &Row| r.elapsed / 60.0;
    let rss: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((minutes(r), r.server_mib?))).collect();
    let p99: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((minutes(r), f64::from(r.p99?))))
        .collect();
    let killed: Vec<f64> = kills.iter().map(|s| s / 60.0).collect();
    let end = rows.last().map_or(1.0, minutes).max(1.0 / 60.0);
    line(
        &left,
        "herald serve resident memory, MiB",
        "MiB",
        &rss,
        &killed,
        end,
        RGBColor(31, 119, 180),
    )?;
    line(
        &right,
        "publish p99 per row, ms",
        "ms",
        &p99,
        &killed,
        end,
        RGBColor(214, 39, 40),
    )?;
    root.present()?;
    Ok(())
}

/// One panel: a line over minutes from zero, and a vertical line at each kill.
fn line(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    points: &[(f64, f64)],
    killed: &[f64],
    end: f64,
    colour: RGBColor,
) -> BenchResult<()> {
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("minutes (orange: a kill -9)")
        .y_desc(unit)
        .light_line_style(WHITE)
        .draw()?;
    let orange = RGBColor(255, 127, 14);
    chart.draw_series(
        killed
            .iter()
            .map(|&x| PathElement::new(vec![(x, 0.0), (x, top)], orange.stroke_width(1))),
    )?;
    chart.draw_series(std::iter::once(PathElement::new(
        points.to_vec(),
        colour.stroke_width(2),
    )))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    Ok(())
}
