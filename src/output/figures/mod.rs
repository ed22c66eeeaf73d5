//! Figures of a run: PNG plots of the scores, of an embedding and of the
//! detection curves, plus the 2-D projection they draw.
//!
//! Drawing is pure Rust: `plotters` renders into an RGB buffer (its bitmap
//! backend, no system library), text uses DejaVu Sans embedded in the binary
//! (`assets/fonts/`, Bitstream Vera licence) through `ab_glyph` (no
//! fontconfig/freetype), and `png` encodes the buffer with `flate2` and
//! `crc32fast`. The whole PNG is built in memory and then written
//! atomically, so a failed plot never leaves a partial file.

mod plot;
mod png;
mod project;

pub use plot::{
    call_threshold, plot_roc_pr, plot_scatter, plot_scatter_with, plot_score_histogram, plot_score_histogram_with,
    MAX_SCATTER_POINTS,
};
pub use project::{categorical_column, project_2d, PROJECT_FIT_ROWS};

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// DejaVu Sans, embedded so that plots have text on any machine.
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// The family name plots ask plotters for.
const FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters once per process.
fn ensure_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, plotters::style::FontStyle::Normal, FONT).is_ok()
    });
    if ok { Ok(()) } else { Err(Error::Other("internal: the embedded plot font does not parse".into())) }
}

/// Categorical colours (matplotlib's tab20 order: the ten strong hues,
/// then their light variants), cycled beyond 20 groups.
const PALETTE: [(u8, u8, u8); 20] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
];

/// The one colour of cells called or known normal, whatever other labels
/// a plot has (the palette's other greys are skipped for the rest).
pub(crate) const NORMAL_GREY: (u8, u8, u8) = (170, 170, 170);

/// Whether a label names normal cells ("normal", "called normal", "truly
/// normal", any case): those are always drawn in [`NORMAL_GREY`].
pub(crate) fn is_normal_label(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n == "normal" || n.ends_with(" normal")
}

/// Colour of each of the sorted distinct `names`: normal labels in
/// [`NORMAL_GREY`], the others through the palette without its greys, in
/// order, so that "normal" never changes colour with the number of
/// subtypes and no subtype looks like it.
pub(crate) fn label_colours(names: &[String]) -> Vec<plotters::style::RGBColor> {
    let hues: Vec<(u8, u8, u8)> = PALETTE.iter().copied().filter(|&(r, g, b)| !(r == g && g == b)).collect();
    let mut k = 0;
    names
        .iter()
        .map(|n| {
            let (r, g, b) = if is_normal_label(n) {
                NORMAL_GREY
            } else {
                k += 1;
                hues[(k - 1) % hues.len()]
            };
            plotters::style::RGBColor(r, g, b)
        })
        .collect()
}

fn colour(i: usize) -> plotters::style::RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    plotters::style::RGBColor(r, g, b)
}

/// Renders a `w × h` plot with `draw` (which gets the RGB buffer) and
/// writes it to `path` as PNG, atomically.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&mut [u8]) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    ensure_font()?;
    let mut rgb = vec![255u8; w as usize * h as usize * 3]; // [h × w × RGB]
    draw(&mut rgb).map_err(|e| Error::Other(format!("{}: cannot draw the plot: {e}", path.display())))?;
    let bytes = png::encode_rgb(&rgb, w, h)?;
    crate::output::write_atomic(path, |out| {
        out.write_all(&bytes).map_err(crate::output::io_at(path))
    })
}

/// `k` distinct indices of `0..n` in a pseudo-random order fixed by `seed`
/// (partial Fisher–Yates over SplitMix64): the same input always gives the
/// same subsample and the same drawing order.
pub(crate) fn sample_indices(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let k = k.min(n);
    let mut idx: Vec<usize> = (0..n).collect();
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    for i in 0..k {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Uniform in i..n by multiply-shift (bias < n / 2^64).
        let j = i + ((z as u128 * (n - i) as u128) >> 64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// Distinct labels in natural order ([`natural_cmp`]) and each item's
/// index into them.
fn label_codes(labels: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = labels.to_vec();
    names.sort_unstable_by(|a, b| natural_cmp(a, b));
    names.dedup();
    let codes = labels
        .iter()
        .map(|l| names.binary_search_by(|n| natural_cmp(n, l)).unwrap_or(0))
        .collect();
    (names, codes)
}

/// Orders text with runs of digits compared as numbers, so that cluster
/// "2" comes before cluster "10"; ties (e.g. "01" and "1") fall back to
/// plain byte order, keeping the order total.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (m, n) = (run(x), run(y));
                let trim = |s: &'_ [u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
                let (dx, dy) = (&x[trim(&x[..m]).min(m)..m], &y[trim(&y[..n]).min(n)..n]);
                let ord = dx.len().cmp(&dy.len()).then_with(|| dx.cmp(dy));
                if ord != Ordering::Equal {
                    return ord;
                }
                (x, y) = (&x[m..], &y[n..]);
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

/// Thousands separators for counts in titles and legends.
fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_distinct_deterministic_and_in_range() {
        let a = sample_indices(1000, 100, 7);
        assert_eq!(a, sample_indices(1000, 100, 7));
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 100);
        assert!(a.iter().all(|&i| i < 1000));
        let mut all = sample_indices(10, 50, 1);
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    /// Issue 15 item 11: "normal" was grey, pink or red depending on how
    /// many subtypes sorted before it.
    #[test]
    fn normal_keeps_one_colour_whatever_the_other_labels() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let grey = plotters::style::RGBColor(NORMAL_GREY.0, NORMAL_GREY.1, NORMAL_GREY.2);
        for labels in [&["S1", "normal"][..], &["S1", "S2", "S3", "S4", "S5", "S6", "normal"], &["called anomalous", "called normal"], &["truly anomalous", "truly normal"]] {
            let c = label_colours(&names(labels));
            let last = c.len() - 1;
            assert_eq!(c[last], grey, "{labels:?}");
            assert!(c[..last].iter().all(|&x| x != grey && !(x.0 == x.1 && x.1 == x.2)), "{labels:?}: {c:?}");
        }
        let c = label_colours(&names(&["S1", "S2"]));
        assert_ne!(c[0], c[1]);
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
    }

    #[test]
    fn labels_get_sorted_codes() {
        let l: Vec<String> = ["b", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (names, codes) = label_codes(&l);
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(codes, [1, 0, 1, 2]);
        let l: Vec<String> = ["c10", "c2", "c1", "", "c02", "b"].iter().map(|s| s.to_string()).collect();
        let (names, codes) = label_codes(&l);
        assert_eq!(names, ["", "b", "c1", "c02", "c2", "c10"]);
        assert_eq!(codes, [5, 4, 2, 0, 3, 1]);
    }
}
