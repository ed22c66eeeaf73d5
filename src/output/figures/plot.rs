//! The three figures of a run: score histogram by group, 2-D scatter by
//! label, ROC and precision–recall curves. Each checks its input (typed
//! [`Error::Invalid`] on empty input, length mismatch or non-finite values)
//! before drawing anything, and writes its PNG atomically.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{colour, group_digits, label_codes, label_colours, render, sample_indices, FAMILY};
use crate::error::{Error, Result};
use crate::metrics;

/// Most points a scatter plot draws; above this a fixed pseudo-random
/// subset is drawn and the title says so. 5·10^4 points already saturate a
/// 1100 px wide plot; drawing 10^6 would only cost time.
pub const MAX_SCATTER_POINTS: usize = 50_000;

/// Width of the legend column to the right of histogram and scatter plots.
const LEGEND_W: u32 = 260;
/// Legend rows that fit in the column (the rest are summarised).
const LEGEND_ROWS: usize = 28;

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Empty input and length mismatches, named after the plot.
fn check_lengths(what: &str, n: usize, m: usize, other: &str) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(format!("{what}: no cells to plot")));
    }
    if n != m {
        return Err(Error::invalid(format!("{what}: {n} values but {m} {other}")));
    }
    Ok(())
}

fn check_finite<'a>(what: &str, values: impl Iterator<Item = &'a f32>) -> Result<()> {
    for (i, v) in values.enumerate() {
        if !v.is_finite() {
            return Err(Error::invalid(format!("{what}: value {i} is {v}")));
        }
    }
    Ok(())
}

/// (min, max) of finite values, widened to a non-empty interval when all
/// values are equal.
fn value_range(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v as f64), hi.max(v as f64))
    });
    if hi > lo {
        (lo, hi)
    } else {
        let pad = 0.5f64.max(lo.abs() * 0.05);
        (lo - pad, hi + pad)
    }
}

/// Widens (lo, hi) by `frac` of its length on each side.
fn pad_range((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let d = (hi - lo) * frac;
    (lo - d, hi + d)
}

/// Tick labels for an axis over (lo, hi): as many decimals as a tenth of
/// the range needs (at most 6), and never "-0".
fn tick_format(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let step = ((hi - lo) / 10.0).max(f64::MIN_POSITIVE);
    let decimals = (-step.log10()).ceil().clamp(0.0, 6.0) as usize;
    move |v: &f64| {
        let s = format!("{v:.decimals$}");
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') { s[1..].to_string() } else { s }
    }
}

/// A legend label, "name (n = count)", with the name shortened (its middle
/// replaced by "…") to at most `chars` characters; empty names shown as "(none)".
fn legend_text(name: &str, count: usize, chars: usize) -> String {
    let name = if name.is_empty() { "(none)" } else { name };
    let len = name.chars().count();
    let short: String = if len > chars {
        // Keep both ends: labels often differ only in a trailing number.
        let keep = chars.saturating_sub(1);
        let (head, tail) = (keep - keep / 2, keep / 2);
        name.chars().take(head).chain(std::iter::once('…')).chain(name.chars().skip(len - tail)).collect()
    } else {
        name.to_string()
    };
    format!("{short} (n = {})", group_digits(count))
}

/// How a legend marks each entry.
#[derive(Clone, Copy)]
enum Marker {
    Box,
    Dot,
}

/// One legend row: group name, its number of cells, its colour.
type Entry = (String, usize, RGBColor);

fn legend_entries(names: &[String], sizes: &[usize]) -> Vec<Entry> {
    names.iter().zip(sizes).zip(label_colours(names)).map(|((n, &k), c)| (n.clone(), k, c)).collect()
}

/// Draws a legend column: one coloured marker and text per entry (names
/// shortened to fit the column), the entries beyond [`LEGEND_ROWS`]
/// summarised in a last line.
fn draw_legend(area: &DrawingArea<BitMapBackend, Shift>, entries: &[Entry], marker: Marker) -> DrawResult {
    let font = (FAMILY, 16).into_font();
    let style: TextStyle = font.clone().into();
    let (x0, mut y) = (12, 60);
    let room = area.dim_in_pixel().0.saturating_sub(x0 as u32 + 22 + 8);
    let shown = if entries.len() > LEGEND_ROWS { LEGEND_ROWS - 1 } else { entries.len() };
    for (name, count, c) in &entries[..shown] {
        match marker {
            Marker::Box => area.draw(&Rectangle::new([(x0, y - 6), (x0 + 14, y + 6)], c.filled()))?,
            Marker::Dot => area.draw(&Circle::new((x0 + 7, y), 5, c.filled()))?,
        }
        let mut chars = name.chars().count().max(6);
        let mut text = legend_text(name, *count, chars);
        while chars > 4 && area.estimate_text_size(&text, &style)?.0 > room {
            chars -= 1;
            text = legend_text(name, *count, chars);
        }
        area.draw(&Text::new(text, (x0 + 22, y - 8), font.clone()))?;
        y += 22;
    }
    if shown < entries.len() {
        let more = format!("… and {} more", entries.len() - shown);
        area.draw(&Text::new(more, (x0 + 22, y - 8), font))?;
    }
    Ok(())
}

/// Number of histogram bins for n values: about √n, between 10 and 60.
fn bin_count(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(10, 60)
}

/// Histogram of `scores`, one colour per distinct `groups` value (sorted by
/// name). Each group is normalised to its own size (the y axis is the
/// fraction of that group's cells per bin), so a small group of anomalies
/// stays visible beside a large normal one; group sizes are in the legend.
pub fn plot_score_histogram(path: &Path, scores: &[f32], groups: &[String], title: &str) -> Result<()> {
    plot_score_histogram_with(path, scores, groups, title, None)
}

/// [`plot_score_histogram`] with the call threshold marked: a dashed
/// vertical line at `threshold` (the lowest score called anomalous, see
/// [`call_threshold`]) and a legend row for it.
pub fn plot_score_histogram_with(path: &Path, scores: &[f32], groups: &[String], title: &str, threshold: Option<f32>) -> Result<()> {
    const WHAT: &str = "score histogram";
    if let Some(t) = threshold {
        check_finite(WHAT, std::iter::once(&t))?;
    }
    check_lengths(WHAT, scores.len(), groups.len(), "group labels")?;
    check_finite(WHAT, scores.iter())?;
    let (names, codes) = label_codes(groups);
    let (lo, hi) = value_range(scores.iter().copied().chain(threshold));
    let bins = bin_count(scores.len());
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![vec![0usize; bins]; names.len()]; // [groups][bins]
    let mut sizes = vec![0usize; names.len()];
    for (&s, &g) in scores.iter().zip(&codes) {
        let b = (((s as f64 - lo) / width) as usize).min(bins - 1);
        counts[g][b] += 1;
        sizes[g] += 1;
    }
    let fractions: Vec<Vec<f64>> = counts
        .iter()
        .zip(&sizes)
        .map(|(c, &n)| c.iter().map(|&k| k as f64 / n as f64).collect())
        .collect();
    let top = fractions.iter().flatten().fold(0.0f64, |m, &f| m.max(f)) * 1.08;
    let edge = |b: usize| lo + b as f64 * width;
    let entries = legend_entries(&names, &sizes);
    let colours = label_colours(&names);

    let size = (1100, 700);
    render(path, size, |buf| {
        let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, legend_area) = root.split_horizontally(size.0 - LEGEND_W);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, (FAMILY, 24))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(75)
            .build_cartesian_2d(lo..hi, 0.0..top)?;
        let fx = tick_format(lo, hi);
        chart
            .configure_mesh()
            .x_label_formatter(&fx)
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_desc("score")
            .y_desc("fraction of the group's cells")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 17))
            .draw()?;
        // Translucent bars first, then every group's outline on top.
        for (g, f) in fractions.iter().enumerate() {
            let fill = colours[g].mix(0.3).filled();
            chart.draw_series(
                f.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(b, &v)| {
                    Rectangle::new([(edge(b), 0.0), (edge(b + 1), v)], fill)
                }),
            )?;
        }
        for (g, f) in fractions.iter().enumerate() {
            let mut step = Vec::with_capacity(2 * bins + 2); // outline of the bars
            step.push((edge(0), 0.0));
            for (b, &v) in f.iter().enumerate() {
                step.push((edge(b), v));
                step.push((edge(b + 1), v));
            }
            step.push((edge(bins), 0.0));
            chart.draw_series(LineSeries::new(step, colours[g].stroke_width(2)))?;
        }
        if let Some(t) = threshold {
            let line = ShapeStyle::from(&BLACK).stroke_width(2);
            chart.draw_series(DashedLineSeries::new(vec![(t as f64, 0.0), (t as f64, top)], 10, 6, line))?;
        }
        draw_legend(&legend_area, &entries, Marker::Box)?;
        if let Some(t) = threshold {
            let y = 60 + 22 * entries.len().min(LEGEND_ROWS) as i32 + 8;
            legend_area.draw(&PathElement::new(vec![(12, y), (26, y)], BLACK.stroke_width(2)))?;
            let text = format!("called: score ≥ {}", tick_format(lo, hi)(&(t as f64)));
            legend_area.draw(&Text::new(text, (34, y - 8), (FAMILY, 16).into_font()))?;
        }
        root.present()?;
        Ok(())
    })
}

/// 2-D scatter of `xy` coloured by `labels` (sorted by name), with a
/// legend; axes described as "dimension 1" and "dimension 2". See
/// [`plot_scatter_with`].
pub fn plot_scatter(path: &Path, xy: &[[f32; 2]], labels: &[String], title: &str) -> Result<()> {
    plot_scatter_with(path, xy, labels, title, ("dimension 1", "dimension 2"))
}

/// [`plot_scatter`] with axis descriptions (e.g. `("PC 1", "PC 2")`).
///
/// Points are drawn in a fixed pseudo-random order so that no label is
/// systematically hidden under another. Above [`MAX_SCATTER_POINTS`] a fixed
/// pseudo-random subset is drawn (the same for the same input) and the
/// title says how many; the axes and legend counts still cover every point.
pub fn plot_scatter_with(
    path: &Path,
    xy: &[[f32; 2]],
    labels: &[String],
    title: &str,
    axes: (&str, &str),
) -> Result<()> {
    const WHAT: &str = "scatter plot";
    check_lengths(WHAT, xy.len(), labels.len(), "labels")?;
    check_finite(WHAT, xy.iter().flatten())?;
    let n = xy.len();
    let order = sample_indices(n, MAX_SCATTER_POINTS, 0);
    let title = if order.len() < n {
        format!("{title} ({} of {} points shown)", group_digits(order.len()), group_digits(n))
    } else {
        title.to_string()
    };
    let (x0, x1) = pad_range(value_range(xy.iter().map(|p| p[0])), 0.04);
    let (y0, y1) = pad_range(value_range(xy.iter().map(|p| p[1])), 0.04);
    let (names, codes) = label_codes(labels);
    let mut sizes = vec![0usize; names.len()];
    codes.iter().for_each(|&c| sizes[c] += 1);
    let entries = legend_entries(&names, &sizes);
    let colours = label_colours(&names);
    let radius = match order.len() {
        0..=2_000 => 3,
        2_001..=20_000 => 2,
        _ => 1,
    };

    let size = (1100, 800);
    render(path, size, |buf| {
        let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, legend_area) = root.split_horizontally(size.0 - LEGEND_W);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(&title, (FAMILY, 24))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(75)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let (fx, fy) = (tick_format(x0, x1), tick_format(y0, y1));
        chart
            .configure_mesh()
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 17))
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(order.iter().map(|&i| {
            Circle::new((xy[i][0] as f64, xy[i][1] as f64), radius, colours[codes[i]].filled())
        }))?;
        draw_legend(&legend_area, &entries, Marker::Dot)?;
        root.present()?;
        Ok(())
    })
}

/// Drops polyline points closer than `tol` (in both coordinates) to the
/// last kept one; first and last are kept. With `tol` below a pixel the
/// drawing is unchanged while a 10^6-cell curve shrinks to a few thousand
/// points.
fn thin(points: Vec<(f64, f64)>, tol: f64) -> Vec<(f64, f64)> {
    let Some(&last) = points.last() else { return points };
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in points {
        match out.last() {
            Some(q) if (p.0 - q.0).abs() < tol && (p.1 - q.1).abs() < tol => {}
            _ => out.push(p),
        }
    }
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// The PR curve as steps: sklearn's points (recall decreasing) drawn
/// "steps-post", precision p_k holding from recall r_k down to r_{k+1}.
/// Points at recall 0 (sklearn's closing convention, precision 1, and
/// thresholds above every true anomaly, precision 0) add no area to the
/// AP and only drew a vertical line along the axis: the last precision
/// at a positive recall runs on to recall 0 instead.
fn pr_steps(recall: &[f64], precision: &[f64]) -> Vec<(f64, f64)> {
    let m = match recall.iter().take_while(|&&r| r > 0.0).count() {
        0 => recall.len(),
        m => m,
    };
    let mut line = Vec::with_capacity(2 * m);
    for k in 0..m {
        line.push((recall[k], precision[k]));
        line.push((if k + 1 < m { recall[k + 1] } else { 0.0 }, precision[k]));
    }
    line
}

/// The score of the lowest-scoring cell called anomalous (`None` when
/// none is): the threshold the histogram marks.
pub fn call_threshold(scores: &[f32], calls: &[bool]) -> Option<f32> {
    scores.iter().zip(calls).filter(|p| *p.1).map(|p| *p.0).fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.min(s))))
}

/// A line and its legend label.
type Labelled = (Vec<(f64, f64)>, String);

/// One panel of the ROC/PR figure: axes over `(lo, hi)` × `(lo, top)`
/// (ticks above 1 left blank: the headroom holds the legend), a dashed
/// chance line and the curve, both in the legend.
fn curve_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    (lo, hi, top): (f64, f64, f64),
    (chance_line, chance_label): Labelled,
    (curve_line, curve_label): Labelled,
    (chance, curve): (ShapeStyle, ShapeStyle),
) -> DrawResult {
    let mut c = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 20))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(65)
        .build_cartesian_2d(lo..hi, lo..top)?;
    let unit_ticks = |v: &f64| if *v > 1.0 + 1e-9 { String::new() } else { format!("{v:.1}") };
    c.configure_mesh()
        .y_label_formatter(&unit_ticks)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 17))
        .draw()?;
    c.draw_series(DashedLineSeries::new(chance_line, 8, 6, chance))?
        .label(chance_label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], chance));
    c.draw_series(LineSeries::new(curve_line, curve))?
        .label(curve_label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], curve));
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// ROC curve (left) and precision–recall curve (right) of `scores` against
/// `truth` (`true` = anomalous, higher score = more anomalous), with AUROC
/// and average precision in the legends and the chance level of each.
/// The PR curve is drawn as steps, the curve whose area is the AP.
pub fn plot_roc_pr(path: &Path, scores: &[f32], truth: &[bool], title: &str) -> Result<()> {
    const WHAT: &str = "ROC/PR plot";
    check_lengths(WHAT, scores.len(), truth.len(), "truth labels")?;
    check_finite(WHAT, scores.iter())?;
    let s: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
    let roc = metrics::roc_curve(truth, &s)?;
    let pr = metrics::pr_curve(truth, &s)?;
    let auc = metrics::auroc(truth, &s)?;
    let ap = metrics::average_precision(truth, &s)?;
    let prevalence = truth.iter().filter(|&&t| t).count() as f64 / truth.len() as f64;

    const TOL: f64 = 5e-4;
    let roc_line = thin(roc.fpr.iter().copied().zip(roc.tpr.iter().copied()).collect(), TOL);
    // sklearn order (recall decreasing); "steps-post": precision p_k holds
    // from recall r_k down to r_{k+1}.
    let pr_line = thin(pr_steps(&pr.recall, &pr.precision), TOL);

    let size = (1400, 700);
    render(path, size, |buf| {
        let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, (FAMILY, 26))?;
        let panels = body.split_evenly((1, 2));
        // Headroom above 1 holds the legends, so they never cover a curve.
        let (lo, hi, top) = (-0.01, 1.01, 1.3);
        let curve = colour(0).stroke_width(3);
        let chance = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(2);

        let bounds = (lo, hi, top);
        let diagonal = (vec![(0.0, 0.0), (1.0, 1.0)], "chance (AUROC = 0.5)".to_string());
        let roc = (roc_line, format!("AUROC = {auc:.3}"));
        curve_panel(&panels[0], "ROC", ("false positive rate", "true positive rate"), bounds, diagonal, roc, (chance, curve))?;
        let level = (vec![(0.0, prevalence), (1.0, prevalence)], format!("chance (AP = {prevalence:.3})"));
        let pr = (pr_line, format!("AP = {ap:.3}"));
        curve_panel(&panels[1], "Precision–recall", ("recall", "precision"), bounds, level, pr, (chance, curve))?;
        root.present()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_values_get_a_nonempty_range() {
        let (lo, hi) = value_range([3.0f32, 3.0].into_iter());
        assert!(lo < 3.0 && hi > 3.0);
        assert_eq!(value_range([1.0f32, 2.0].into_iter()), (1.0, 2.0));
    }

    #[test]
    fn ticks_have_enough_decimals_and_no_negative_zero() {
        let f = tick_format(-0.25, 0.75);
        assert_eq!(f(&-0.0), "0.0");
        assert_eq!(f(&-1e-17), "0.0");
        assert_eq!(f(&0.3), "0.3");
        assert_eq!(f(&-0.2), "-0.2");
        assert_eq!(tick_format(0.0, 5000.0)(&1500.0), "1500");
        assert_eq!(tick_format(0.0, 0.01)(&0.002), "0.002");
    }

    #[test]
    fn thinning_keeps_ends_and_drops_near_points() {
        let pts: Vec<(f64, f64)> = (0..=1000).map(|i| (i as f64 / 1000.0, 0.0)).collect();
        let t = thin(pts, 0.01);
        assert_eq!(t.first(), Some(&(0.0, 0.0)));
        assert_eq!(t.last(), Some(&(1.0, 0.0)));
        assert!(t.len() <= 102, "{}", t.len());
        assert!(thin(vec![], 0.1).is_empty());
    }

    /// Issue 15 item 11: the PR panel drew a vertical line at recall 0
    /// (sklearn's closing point at precision 1).
    #[test]
    fn pr_steps_end_without_a_jump_at_recall_zero() {
        // sklearn's precision_recall_curve for y = [1, 0, 1, 0], s = [.9, .8, .3, .1], reversed.
        let (recall, precision) = ([1.0, 1.0, 0.5, 0.5, 0.0], [0.5, 2.0 / 3.0, 0.5, 1.0, 1.0]);
        let line = pr_steps(&recall, &precision);
        let at_zero: Vec<f64> = line.iter().filter(|p| p.0 == 0.0).map(|p| p.1).collect();
        assert_eq!(at_zero, [1.0], "{line:?}");
        // The top-scoring cell normal: a real point at (0, 0) before sklearn's (0, 1).
        let (recall, precision) = ([1.0, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 1.0]);
        let line = pr_steps(&recall, &precision);
        assert_eq!(line.last(), Some(&(0.0, 0.5)), "{line:?}");
        assert_eq!(line.iter().filter(|p| p.0 == 0.0).count(), 1, "{line:?}");
    }

    #[test]
    fn call_threshold_is_the_lowest_called_score() {
        assert_eq!(call_threshold(&[0.1, 0.9, 0.5, 0.7], &[false, true, false, true]), Some(0.7));
        assert_eq!(call_threshold(&[0.1, 0.9], &[false, false]), None);
    }

    #[test]
    fn legend_text_shortens_and_names_empty() {
        assert_eq!(legend_text("", 3, 10), "(none) (n = 3)");
        assert_eq!(legend_text("abcdefgh", 1234, 5), "ab…gh (n = 1,234)");
        assert_eq!(legend_text("abc", 1, 5), "abc (n = 1)");
    }
}
