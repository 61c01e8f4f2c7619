//! Charts of measured runs, drawn as one SVG file with [plotters].
//!
//! [`write_svg`] puts two charts side by side under a common title, with one shared legend
//! below them (a run has the same colour in both charts):
//!
//! * **Throughput over time**: operations per second in each 100 ms sample interval of
//!   [`RunResult::timeline`], against seconds since the run started.
//! * **Commit latency by percentile**: [`RunResult::latency_ns`] as a percentile curve. The
//!   x axis counts "nines" (`-log10(1 - q)`, so 90, 99, 99.9, ... are evenly spaced) and the
//!   y axis is logarithmic, so runs whose latencies differ by orders of magnitude stay
//!   readable. Each curve ends at its run's maximum, which is as far as its samples reach.
//!
//! Both axes of the latency chart use `TickedAxis`, a small coordinate type with grid lines
//! picked here, because plotters' own log axis labels nothing when the range holds no power
//! of ten.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::run::{RunResult, SAMPLE_INTERVAL};
use crate::AnyResult;

/// Width of the whole image, in pixels.
const WIDTH: u32 = 1200;
/// Height of the title and both charts; the legend's rows come on top of this.
const CHARTS_HEIGHT: u32 = 470;
/// Height of one legend row, in pixels.
const LEGEND_ROW: u32 = 22;
/// Font size of legend entries.
const LEGEND_FONT: u32 = 14;
/// A generous estimate of one legend character's width (plotters cannot measure SVG text).
const LEGEND_CHAR_WIDTH: u32 = 8;
/// Legend labels longer than this are cut short with an ellipsis.
const LEGEND_MAX_CHARS: usize = 120;
/// The font every text uses.
const FONT: &str = "sans-serif";

/// Distinct line colours (matplotlib's "tab10"), used in turn; runs 11-20 reuse them with
/// dashed lines, runs 21-30 solid again, and so on (see [`dashed`]).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The latency chart shows at least this many nines (99 %), even for short runs ...
const MIN_NINES: f64 = 2.0;
/// ... and at most this many (99.99999 %), however many samples a run has.
const MAX_NINES: f64 = 7.0;
/// Spacing of the points of a latency curve, in nines.
const NINES_STEP: f64 = 0.02;

/// Draws one SVG at `path`, 1200 pixels wide and about 500 high, with two charts side by
/// side, titled `title`:
///
/// 1. throughput over time: one line per run, ops/s in each sample interval
///    (`ops / 0.1 s`) against seconds since the start;
/// 2. commit-latency distribution: one line per run, latency in microseconds (log axis)
///    against the percentile on a "nines" axis (`-log10(1 - q)`, labelled 50, 90, 99, 99.9,
///    ...), each line ending at its run's maximum.
///
/// One legend below both charts names the runs: ten colours, solid for runs 1-10, dashed for
/// 11-20, then again. Runs without
/// samples get a legend entry but no line; a chart with nothing to draw says "no samples".
pub fn write_svg(path: &Path, title: &str, runs: &[&RunResult]) -> AnyResult<()> {
    let legend = LegendLayout::new(runs);
    let height = CHARTS_HEIGHT + legend.height();
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let body = root.titled(title, (FONT, 22))?;
    let (_, body_height) = body.dim_in_pixel();
    let (charts, legend_area) = body.split_vertically(body_height - legend.height());
    let (left, right) = charts.split_horizontally(WIDTH / 2);
    draw_throughput(&left, runs)?;
    draw_latency(&right, runs)?;
    legend.draw(&legend_area, runs)?;
    root.present()?;
    Ok(())
}

/// The colour of the `i`-th run.
fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Whether the `i`-th run is drawn dashed: every second pass through the palette, so 20
/// runs (a `--peers` run with 4 writer counts has 16) still look different from each other.
fn dashed(i: usize) -> bool {
    (i / PALETTE.len()) % 2 == 1
}

/// Dash and gap length of a dashed line, in pixels.
const DASH_PX: u32 = 6;

/// Line width: thinner when many noisy lines share a chart.
fn stroke(runs: usize) -> u32 {
    if runs <= 3 {
        2
    } else {
        1
    }
}

/// A part of the SVG being drawn.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Writes "no samples" across the middle of a chart's plotting area.
fn no_samples<DB: DrawingBackend, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
) -> AnyResult<()>
where
    DB::ErrorType: 'static,
{
    let area = chart.plotting_area().strip_coord_spec();
    let (w, h) = area.dim_in_pixel();
    let style = (FONT, 18)
        .into_font()
        .color(&RGBColor(120, 120, 120))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        "no samples",
        (w as i32 / 2, h as i32 / 2),
        style,
    ))?;
    Ok(())
}

/// Chart 1: ops/s per sample interval against seconds since the start.
fn draw_throughput(area: &Area<'_>, runs: &[&RunResult]) -> AnyResult<()> {
    let per_second = 1.0 / SAMPLE_INTERVAL.as_secs_f64();
    let lines: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|run| {
            run.timeline
                .iter()
                .filter(|(t, _)| t.is_finite() && *t >= 0.0)
                .map(|&(t, ops)| (t, ops as f64 * per_second))
                .collect()
        })
        .collect();
    let points = || lines.iter().flatten();
    let t_max = points().map(|p| p.0).fold(0.0, f64::max);
    let rate_max = points().map(|p| p.1).fold(0.0, f64::max);
    let x = 0.0..if t_max > 0.0 { t_max } else { 1.0 };
    let y = 0.0..if rate_max > 0.0 {
        rate_max * 1.08
    } else {
        10.0
    };

    let mut chart = ChartBuilder::on(area)
        .caption("Throughput over time", (FONT, 17))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_max_light_lines(4)
        .y_max_light_lines(4)
        .x_desc("seconds since start")
        .y_desc("ops/s (per 100 ms sample)")
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format_rate(*v))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    let width = stroke(runs.len());
    for (i, line) in lines.iter().enumerate() {
        draw_line(&mut chart, line, color(i).stroke_width(width), dashed(i))?;
    }
    if points().next().is_none() {
        no_samples(&mut chart)?;
    }
    Ok(())
}

/// Chart 2: latency (µs, log axis) against the percentile (nines axis).
fn draw_latency(area: &Area<'_>, runs: &[&RunResult]) -> AnyResult<()> {
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|run| latency_curve(run)).collect();
    let points = || curves.iter().flatten();
    let reach = points().map(|p| p.0).fold(0.0, f64::max);
    let nines = reach.clamp(MIN_NINES, MAX_NINES);
    let lo = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points().map(|p| p.1).fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        (lo, hi)
    } else {
        (1.0, 1000.0)
    };
    // Pad the latency range by a few percent of its span (at least 20 %) on both sides.
    let (log_lo, log_hi) = (lo.log10(), hi.log10());
    let pad = ((log_hi - log_lo) * 0.06).max(0.08);
    let y_range = 10f64.powf(log_lo - pad)..10f64.powf(log_hi + pad);

    let x_axis = TickedAxis::nines(nines);
    let y_axis = TickedAxis::log(y_range);
    let mut chart = ChartBuilder::on(area)
        .caption("Commit latency by percentile", (FONT, 17))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x_axis, y_axis)?;
    chart
        .configure_mesh()
        .x_desc("percentile (each line ends at its run's maximum)")
        .y_desc("commit latency")
        .x_label_formatter(&|v| format_percentile(*v))
        .y_label_formatter(&|v| format_latency_us(*v))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    let width = stroke(runs.len()).max(2);
    for (i, curve) in curves.iter().enumerate() {
        let shown: Vec<(f64, f64)> = curve.iter().copied().filter(|p| p.0 <= nines).collect();
        draw_line(&mut chart, &shown, color(i).stroke_width(width), dashed(i))?;
    }
    if points().next().is_none() {
        no_samples(&mut chart)?;
    }
    Ok(())
}

/// Draws `points` as a line (dashed or solid), or as a dot when there is only one.
fn draw_line<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    points: &[(f64, f64)],
    style: ShapeStyle,
    dashed: bool,
) -> AnyResult<()>
where
    DB::ErrorType: 'static,
{
    match points {
        [] => {}
        [only] => {
            chart.draw_series(std::iter::once(Circle::new(*only, 3, style.filled())))?;
        }
        _ if dashed => {
            let series = DashedLineSeries::new(points.iter().copied(), DASH_PX, DASH_PX, style);
            chart.draw_series(series)?;
        }
        _ => {
            chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
        }
    }
    Ok(())
}

/// `(nines, latency in µs)` points of a run's latency percentiles, from the minimum (0 nines)
/// to the maximum, which is drawn at `log10(samples)` nines: the last rank a run's samples
/// can tell apart. Empty when the run recorded no latencies.
fn latency_curve(run: &RunResult) -> Vec<(f64, f64)> {
    let h = &run.latency_ns;
    if h.is_empty() {
        return Vec::new();
    }
    let us = |ns: u64| ns.max(1) as f64 / 1000.0;
    let reach = (h.len() as f64).log10();
    let steps = (reach.min(MAX_NINES) / NINES_STEP).floor() as usize;
    let mut curve: Vec<(f64, f64)> = (0..=steps)
        .map(|i| {
            let nines = i as f64 * NINES_STEP;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, us(h.value_at_quantile(q)))
        })
        .collect();
    if reach <= MAX_NINES {
        // Replace the last step when it lies (almost) on top of the maximum.
        if curve.last().is_some_and(|p| reach - p.0 < NINES_STEP / 2.0) {
            curve.pop();
        }
        curve.push((reach, us(h.max())));
    }
    curve
}

/// A linear or base-10 logarithmic axis over `f64` whose grid lines are chosen up front:
/// `bold` ones get a label, `light` ones only a faint line.
struct TickedAxis {
    range: Range<f64>,
    log: bool,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl TickedAxis {
    /// The percentile axis, in nines from 0 (the minimum) to `nines`: labels at 50, 90, 99,
    /// 99.9, ...; faint lines at 75, 95, 99.5, 99.95, ...
    fn nines(nines: f64) -> TickedAxis {
        let half = 2f64.log10();
        let whole = (1..=MAX_NINES as u32).map(f64::from);
        let bold = std::iter::once(half).chain(whole.clone());
        let light = [0.0, 4f64.log10()]
            .into_iter()
            .chain(whole.map(|k| k + half));
        let inside = |v: &f64| *v <= nines + 1e-9;
        TickedAxis {
            range: 0.0..nines,
            log: false,
            bold: bold.filter(inside).collect(),
            light: light.filter(inside).collect(),
        }
    }

    /// A logarithmic axis over `range` (both ends positive), labelled at round values:
    /// powers of ten when it spans a few decades, else 1-2-5 steps, else finer steps (the
    /// coarsest of these that leaves no long stretch unlabelled).
    fn log(range: Range<f64>) -> TickedAxis {
        const STEPS: [&[f64]; 4] = [
            &[1.0],
            &[1.0, 2.0, 5.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            &[
                1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0,
            ],
        ];
        let ticks = |mantissas: &[f64]| -> Vec<f64> {
            let first = range.start.log10().floor() as i32;
            let last = range.end.log10().ceil() as i32;
            (first..=last)
                .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                .filter(|v| range.contains(v))
                .collect()
        };
        // Labels are spread well when no stretch of the axis (ends included) without one is
        // longer than about a third of the axis.
        let span = (range.end / range.start).log10();
        let evenly_spread = |ticks: &[f64]| {
            let marks = std::iter::once(range.start)
                .chain(ticks.iter().copied())
                .chain(std::iter::once(range.end))
                .map(f64::log10)
                .collect::<Vec<_>>();
            ticks.len() >= 2 && marks.windows(2).all(|w| w[1] - w[0] <= 0.36 * span)
        };
        let chosen = (0..STEPS.len())
            .find(|&i| evenly_spread(&ticks(STEPS[i])))
            .unwrap_or(STEPS.len() - 1);
        let light = if chosen <= 1 { STEPS[2] } else { STEPS[3] };
        TickedAxis {
            bold: ticks(STEPS[chosen]),
            light: ticks(light),
            range,
            log: true,
        }
    }

    /// Where `v` lies on the axis scale (its log when logarithmic).
    fn scale(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = (self.scale(self.range.start), self.scale(self.range.end));
        let t = if hi > lo {
            (self.scale(*value) - lo) / (hi - lo)
        } else {
            0.5
        };
        // `as` saturates, so points far off the chart stay far off without overflowing.
        (f64::from(limit.0) + t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let mut points = self.bold.clone();
        if hint.weight().allow_light_points() {
            points.extend(&self.light);
            points.sort_by(f64::total_cmp);
        }
        points
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// Where the shared legend's entries go: as many equal columns as fit, row by row.
struct LegendLayout {
    columns: usize,
    rows: usize,
    column_width: u32,
}

impl LegendLayout {
    /// Space for a swatch and label per run.
    const SWATCH: u32 = 26;

    fn new(runs: &[&RunResult]) -> LegendLayout {
        let longest = runs
            .iter()
            .map(|r| legend_label(&r.label).chars().count())
            .max()
            .unwrap_or(0) as u32;
        let column_width = Self::SWATCH + 8 + longest * LEGEND_CHAR_WIDTH + 24;
        let fit = ((WIDTH - 40) / column_width).max(1) as usize;
        let columns = fit.min(runs.len()).max(1);
        LegendLayout {
            columns,
            rows: runs.len().div_ceil(columns),
            column_width,
        }
    }

    /// Pixels the legend takes below the charts.
    fn height(&self) -> u32 {
        if self.rows == 0 {
            0
        } else {
            self.rows as u32 * LEGEND_ROW + 14
        }
    }

    /// Draws a coloured swatch and the label of every run, centred in `area`.
    fn draw(&self, area: &Area<'_>, runs: &[&RunResult]) -> AnyResult<()> {
        let (area_width, _) = area.dim_in_pixel();
        let block = self.columns as u32 * self.column_width;
        let left = area_width.saturating_sub(block) / 2;
        let style = TextStyle::from((FONT, LEGEND_FONT).into_font())
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, run) in runs.iter().enumerate() {
            let x = (left + (i % self.columns) as u32 * self.column_width) as i32;
            let y = ((i / self.columns) as u32 * LEGEND_ROW + LEGEND_ROW / 2 + 4) as i32;
            let swatch = color(i).stroke_width(3);
            let end = x + Self::SWATCH as i32;
            if dashed(i) {
                let mut from = x;
                while from < end {
                    let to = (from + DASH_PX as i32).min(end);
                    area.draw(&PathElement::new(vec![(from, y), (to, y)], swatch))?;
                    from = to + DASH_PX as i32;
                }
            } else {
                area.draw(&PathElement::new(vec![(x, y), (end, y)], swatch))?;
            }
            area.draw(&Text::new(
                legend_label(&run.label),
                (x + Self::SWATCH as i32 + 8, y),
                style.clone(),
            ))?;
        }
        Ok(())
    }
}

/// `label`, cut to [`LEGEND_MAX_CHARS`] characters.
fn legend_label(label: &str) -> String {
    if label.chars().count() <= LEGEND_MAX_CHARS {
        label.to_string()
    } else {
        let cut: String = label.chars().take(LEGEND_MAX_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// `v` with three significant digits and no trailing zeros: 0.25, 12.5, 300, 12345.
fn format_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An ops/s figure with a k, M or G suffix: 850, 12.5k, 1.2M.
fn format_rate(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    format!("{}{suffix}", format_number(scaled))
}

/// A latency given in microseconds, in the unit that suits it: 250 ns, 12 µs, 1.5 ms, 2 s.
fn format_latency_us(us: f64) -> String {
    let (scaled, unit) = match us {
        v if v >= 1e6 => (v / 1e6, "s"),
        v if v >= 1e3 => (v / 1e3, "ms"),
        v if v >= 1.0 => (v, "µs"),
        v => (v * 1e3, "ns"),
    };
    format!("{} {unit}", format_number(scaled))
}

/// The percentile at `nines` (`-log10(1 - q)`): 0 → "0", log10(2) → "50", 3 → "99.9".
fn format_percentile(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.round() as i32 - 2).clamp(0, 12) as usize;
    let s = format!("{percent:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_runs_get_twenty_looks_and_all_reach_the_svg() {
        let looks: std::collections::HashSet<_> = (0..20)
            .map(|i| {
                let c = color(i);
                (c.0, c.1, c.2, dashed(i))
            })
            .collect();
        assert_eq!(looks.len(), 20);
        let runs: Vec<RunResult> = (0..16)
            .map(|i| {
                let mut r =
                    RunResult::new(format!("run number {i}"), crate::run::RunKind::Peer, 1.0);
                r.timeline = (0..10)
                    .map(|t| (t as f64 * 0.1, 100 * (i + 1) as u64))
                    .collect();
                for ns in 1..1000u64 {
                    r.latency_ns.record(ns * 1000 * (i + 1) as u64).unwrap();
                }
                r
            })
            .collect();
        let refs: Vec<&RunResult> = runs.iter().collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        write_svg(&path, "sixteen runs", &refs).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for i in 0..16 {
            // Each label is a text element of its own line (so "1" does not match "10").
            assert!(svg.contains(&format!("run number {i}\n")), "legend {i}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(format_percentile(2f64.log10()), "50");
        assert_eq!(format_percentile(1.0), "90");
        assert_eq!(format_percentile(2.0), "99");
        assert_eq!(format_percentile(3.0), "99.9");
        assert_eq!(format_percentile(5.0), "99.999");
        assert_eq!(format_rate(1_250_000.0), "1.25M");
        assert_eq!(format_rate(800.0), "800");
        assert_eq!(format_rate(200_000.00000001), "200k");
        assert_eq!(format_latency_us(0.25), "250 ns");
        assert_eq!(format_latency_us(1500.0), "1.5 ms");
        assert_eq!(format_latency_us(100.0), "100 µs");
        assert_eq!(format_number(0.30000000000000004), "0.3");
    }

    #[test]
    fn log_ticks_never_empty() {
        for (lo, hi) in [(1.0, 1.5), (120.0, 900.0), (0.01, 1e8), (80.0, 120.0)] {
            let axis = TickedAxis::log(lo..hi);
            assert!(axis.bold.len() >= 2, "{lo}..{hi}: {:?}", axis.bold);
        }
    }
}
