//! `acsleuth inspect`: what a data file holds (shape, sparsity, what kind of
//! values, library sizes, obs columns) so a user can pick the right input
//! and options before a run.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::data::h5ad::{self, H5adLayout, H5adOptions};
use crate::data::io::{self, Format, ReadOptions};
use crate::data::summary::{self, ColumnSummary, MatrixSummary, ValueKind};
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An .h5ad file, a 10x folder (matrix.mtx[.gz]) or an acsleuth store.
    pub input: PathBuf,
    /// For .h5ad: inspect `.raw/X` (with `.raw/var` names) instead of `X`.
    #[arg(long)]
    pub raw: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Levels listed per categorical column; the rest are summed up.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub max_levels: usize,
}

/// Everything `inspect` reports (the `--json` output).
#[derive(Serialize)]
struct Report {
    path: String,
    format: &'static str,
    /// "X" or ".raw/X".
    matrix: &'static str,
    /// Layout details for .h5ad input.
    h5ad: Option<H5adLayout>,
    summary: MatrixSummary,
    /// Things that would stop a run (duplicated names, ...).
    problems: Vec<String>,
    obs: Vec<ColumnReport>,
}

#[derive(Serialize)]
struct ColumnReport {
    name: String,
    #[serde(flatten)]
    summary: ColumnSummary,
}

pub fn run(args: Args) -> Result<()> {
    let path = &args.input;
    let format = io::detect(path)?;
    let (ds, layout, problems) = match format {
        Format::H5ad => {
            // Read without the strict validation, so that duplicated names
            // are reported as a problem instead of hiding everything else.
            let ds = h5ad::read_h5ad(path, &H5adOptions { use_raw: args.raw })?;
            let problems = ds.validate().err().map(problem_text).into_iter().collect();
            (ds, Some(h5ad::describe_h5ad(path)?), problems)
        }
        Format::Store => {
            if args.raw {
                return Err(Error::Config("--raw applies to .h5ad input only".into()));
            }
            // Summarised from the memory map: a million-cell store is never loaded.
            let st = crate::data::store::Store::open(path)?;
            let summary = summary::summarize_store(&st);
            let report = build_report(&args, format, summary, st.obs(), None, vec![]);
            return print_report(&args, &report);
        }
        _ => (
            io::read_dataset(path, &ReadOptions { use_raw: args.raw })?,
            None,
            vec![],
        ),
    };
    let summary = summary::summarize_matrix(&ds.x);
    let report = build_report(&args, format, summary, &ds.obs, layout, problems);
    print_report(&args, &report)
}

fn print_report(args: &Args, report: &Report) -> Result<()> {
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Other(format!("cannot encode the report as JSON: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", render(report, args.max_levels));
    }
    Ok(())
}

fn problem_text(e: Error) -> String {
    match e {
        Error::Invalid(m) => m,
        e => e.to_string(),
    }
}

fn build_report(
    args: &Args,
    format: Format,
    summary: summary::MatrixSummary,
    obs: &[(String, crate::data::ObsColumn)],
    layout: Option<H5adLayout>,
    problems: Vec<String>,
) -> Report {
    let obs = obs
        .iter()
        .map(|(name, col)| ColumnReport {
            name: name.clone(),
            summary: summary::summarize_column(col),
        })
        .collect();
    Report {
        path: args.input.display().to_string(),
        format: match format {
            Format::H5ad => "h5ad",
            Format::TenX => "10x",
            Format::Store => "store",
        },
        matrix: if args.raw { ".raw/X" } else { "X" },
        h5ad: layout,
        summary,
        problems,
        obs,
    }
}

/// The human-readable report.
fn render(r: &Report, max_levels: usize) -> String {
    let s = &r.summary;
    let mut o = String::new();
    let _ = writeln!(o, "{}", r.path);
    let format = match (&r.h5ad, r.format) {
        (Some(l), _) => {
            let raw = match (l.has_raw, l.raw_shape) {
                (true, Some((a, b))) => format!(".raw {} × {}", group(a as f64), group(b as f64)),
                (true, None) => ".raw present".into(),
                (false, _) => "no .raw".into(),
            };
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            format!(
                ".h5ad, reading {} (X stored as {}; {raw}; obsm: {}; layers: {})",
                r.matrix,
                l.x_encoding,
                list(&l.obsm),
                list(&l.layers)
            )
        }
        (None, "10x") => "10x Matrix Market folder".into(),
        (None, _) => "acsleuth store".into(),
    };
    let _ = writeln!(o, "  format      {format}");
    let _ = writeln!(
        o,
        "  shape       {} cells × {} genes",
        group(s.rows as f64),
        group(s.cols as f64)
    );
    let _ = writeln!(
        o,
        "  non-zeros   {} (sparsity {:.2} %)",
        group(s.nnz as f64),
        s.sparsity_pct
    );
    let _ = writeln!(
        o,
        "  values      min {}, max {}: {}",
        num(s.min as f64),
        num(s.max as f64),
        s.kind.describe()
    );
    if s.non_finite > 0 {
        let _ = writeln!(
            o,
            "  warning     {} NaN or infinite values",
            group(s.non_finite as f64)
        );
    }
    if let Some(l) = s.library_size {
        let what = if s.kind == ValueKind::RawCounts {
            "counts/cell"
        } else {
            "row sums"
        };
        let _ = writeln!(
            o,
            "  {what:<12}min {}, median {}, max {}",
            num(l.min),
            num(l.median),
            num(l.max)
        );
    }
    if let (Some(e), Some(constant)) = (s.expm1_row_sums, s.expm1_sums_constant) {
        let verdict = if constant {
            format!(
                "constant, as after normalize_total(target_sum≈{}) + log1p",
                num(e.median)
            )
        } else {
            "not constant (normalised over other genes, or not by total)".into()
        };
        let _ = writeln!(
            o,
            "  expm1 sums  min {}, median {}, max {}: {verdict}",
            num(e.min),
            num(e.median),
            num(e.max)
        );
    }
    if let Some(l) = &r.h5ad
        && l.has_raw
        && r.matrix == "X"
        && s.kind != ValueKind::RawCounts
    {
        let _ = writeln!(
            o,
            "  hint        .raw holds another matrix: inspect it with --raw"
        );
    }
    for p in &r.problems {
        let _ = writeln!(o, "  problem     {p}");
    }
    let _ = writeln!(o, "obs columns: {}", r.obs.len());
    for c in &r.obs {
        render_column(&mut o, c, max_levels);
    }
    o
}

fn render_column(o: &mut String, c: &ColumnReport, max_levels: usize) {
    match &c.summary {
        ColumnSummary::Levels {
            source,
            levels,
            missing,
        } => {
            let miss = if *missing > 0 {
                format!(", {} missing", group(*missing as f64))
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {} ({source}, {} levels{miss})", c.name, levels.len());
            let width = levels
                .iter()
                .take(max_levels)
                .map(|l| l.0.chars().count())
                .max()
                .unwrap_or(0);
            for (name, n) in levels.iter().take(max_levels) {
                let _ = writeln!(o, "      {name:<width$}  {:>10}", group(*n as f64));
            }
            if levels.len() > max_levels {
                let rest: usize = levels[max_levels..].iter().map(|l| l.1).sum();
                let _ = writeln!(
                    o,
                    "      ... {} more levels ({} cells)",
                    levels.len() - max_levels,
                    group(rest as f64)
                );
            }
        }
        ColumnSummary::Numeric {
            range,
            missing,
            all_integer,
        } => {
            let kind = if *all_integer { "integer" } else { "numeric" };
            let miss = if *missing > 0 {
                format!(", {} missing", group(*missing as f64))
            } else {
                String::new()
            };
            match range {
                Some(r) => {
                    let _ = writeln!(
                        o,
                        "  {} ({kind}{miss}): min {}, median {}, max {}",
                        c.name,
                        num(r.min),
                        num(r.median),
                        num(r.max)
                    );
                }
                None => {
                    let _ = writeln!(o, "  {} ({kind}{miss}): no finite values", c.name);
                }
            }
        }
        ColumnSummary::Text { distinct, examples } => {
            let _ = writeln!(
                o,
                "  {} (text, {} distinct, e.g. {})",
                c.name,
                group(*distinct as f64),
                examples.join(", ")
            );
        }
    }
}

/// An integer with thousands separators ("13,999").
fn group(v: f64) -> String {
    let digits = format!("{}", v.abs().round() as u64);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0.0 && v.round() != 0.0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A number for people: whole numbers grouped, others to 4 significant digits.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return group(v);
    }
    if v.abs() >= 1000.0 {
        return format!(
            "{}{}",
            group(v.trunc()),
            &format!("{:.1}", v.fract().abs())[1..]
        );
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(group(13999.0), "13,999");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(-1234567.0), "-1,234,567");
        assert_eq!(num(3173.0), "3,173");
        assert_eq!(num(-2.032), "-2.032");
        assert_eq!(num(28.40812), "28.41");
        assert_eq!(num(0.0238), "0.02380");
        assert_eq!(num(1092.56), "1,092.6");
    }
}
