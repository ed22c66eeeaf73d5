//! What an expression matrix and its obs columns look like: value kind
//! (raw counts, log-normalised, scaled, ...), ranges, library sizes, and
//! per-column category counts or numeric ranges. Used by `acsleuth inspect`
//! and by any code that must check "is this raw counts?" before a
//! count-based step.

use rayon::prelude::*;
use serde::Serialize;

use crate::data::{Matrix, ObsColumn};

/// What the values of a matrix look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Non-negative integers: raw UMI / read counts.
    RawCounts,
    /// Non-negative, non-integer, max below [`LOG_MAX`]: log1p of normalised data.
    LogNormalized,
    /// Non-negative, non-integer, large values: normalised but not logged (CPM, TPM).
    NormalizedLinear,
    /// Has negative values: scaled (z-scored) or otherwise centred data.
    Scaled,
    /// Nothing to judge by (all zero, or no finite values).
    Other,
}

impl ValueKind {
    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            ValueKind::RawCounts => "raw counts (non-negative integers)",
            ValueKind::LogNormalized => "log-normalized (non-negative, non-integer, small)",
            ValueKind::NormalizedLinear => {
                "normalized, not log-transformed (non-negative, non-integer, large; CPM/TPM-like)"
            }
            ValueKind::Scaled => "scaled or centred (has negative values)",
            ValueKind::Other => "unclear (all zero or not finite)",
        }
    }
}

/// Largest value that log1p-normalised expression plausibly reaches
/// (log1p(1e4 · 1) ≈ 9.2; even log1p(1e6) ≈ 13.8).
pub const LOG_MAX: f32 = 30.0;

/// Relative spread (max − min) / median under which expm1 row sums count as
/// constant, i.e. the data were `normalize_total`-ed before log1p.
pub const CONSTANT_SUM_SPREAD: f64 = 0.05;

/// Minimum, median and maximum of a set of numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Range {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Range {
    /// The range of the finite values, or `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Range> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        Some(Range {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }
}

/// Summary of an expression matrix (cells × genes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatrixSummary {
    pub rows: usize,
    pub cols: usize,
    /// Stored non-zero values.
    pub nnz: usize,
    /// Percentage of entries that are zero.
    pub sparsity_pct: f64,
    /// Smallest and largest finite value, implicit zeros included.
    pub min: f32,
    pub max: f32,
    /// NaN or infinite values found.
    pub non_finite: usize,
    /// Whether every finite value is a whole number.
    pub all_integer: bool,
    pub kind: ValueKind,
    /// Row sums (library sizes; for counts, the UMIs per cell).
    pub library_size: Option<Range>,
    /// Row sums of expm1(x): constant after normalize_total + log1p.
    /// Computed for log-normalised data only.
    pub expm1_row_sums: Option<Range>,
    /// Whether those expm1 row sums are constant within [`CONSTANT_SUM_SPREAD`].
    pub expm1_sums_constant: Option<bool>,
}

/// Per-row partial statistics, merged across rayon workers.
#[derive(Clone, Copy)]
struct Acc {
    min: f32,
    max: f32,
    non_finite: usize,
    non_integer: usize,
}

impl Acc {
    const EMPTY: Acc = Acc {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        non_finite: 0,
        non_integer: 0,
    };
    fn merge(a: Acc, b: Acc) -> Acc {
        Acc {
            min: a.min.min(b.min),
            max: a.max.max(b.max),
            non_finite: a.non_finite + b.non_finite,
            non_integer: a.non_integer + b.non_integer,
        }
    }
}

/// Statistics of one row's stored values plus its sum and expm1 sum.
fn row_stats(vals: &[f32]) -> (Acc, f64, f64) {
    let mut acc = Acc::EMPTY;
    let (mut sum, mut esum) = (0f64, 0f64);
    for &v in vals {
        if !v.is_finite() {
            acc.non_finite += 1;
            continue;
        }
        acc.min = acc.min.min(v);
        acc.max = acc.max.max(v);
        if v.fract() != 0.0 {
            acc.non_integer += 1;
        }
        sum += v as f64;
        esum += (v as f64).exp_m1();
    }
    (acc, sum, esum)
}

/// Summarises a matrix in one parallel pass over its rows.
pub fn summarize_matrix(m: &Matrix) -> MatrixSummary {
    match m {
        Matrix::Csr(c) => summarize_rows(c.rows, c.cols, c.nnz(), |i| row_stats(c.row(i).1)),
        Matrix::Dense(d) => summarize_rows(d.rows, d.cols, m.nnz(), |i| row_stats(d.row(i))),
    }
}

/// Summarises an on-disk store straight from its memory map (a
/// million-cell store is never loaded into memory).
pub fn summarize_store(st: &crate::data::store::Store) -> MatrixSummary {
    use crate::data::store::RowView;
    let nnz = st.nnz() as usize;
    summarize_rows(st.n_cells(), st.n_genes(), nnz, |i| match st.row(i) {
        RowView::Dense(v) => row_stats(v),
        RowView::Sparse(_, v) => row_stats(v),
    })
}

/// The shared body: `stats(i)` gives row `i`'s (stats, sum, expm1 sum) over
/// its stored values; `nnz` counts the stored non-zeros.
fn summarize_rows(rows: usize, cols: usize, nnz: usize, stats: impl Fn(usize) -> (Acc, f64, f64) + Sync + Send) -> MatrixSummary {
    // Per row: (stats, sum, expm1 sum).
    let per_row: Vec<(Acc, f64, f64)> = (0..rows).into_par_iter().map(stats).collect();
    let acc = per_row.iter().fold(Acc::EMPTY, |a, r| Acc::merge(a, r.0));
    let total = rows as f64 * cols as f64;
    let (mut min, mut max) = (acc.min, acc.max);
    if (nnz as f64) < total {
        // Implicit (or explicit) zeros are values too.
        min = min.min(0.0);
        max = max.max(0.0);
    }
    let has_finite = min.is_finite();
    if !has_finite {
        (min, max) = (0.0, 0.0);
    }
    let all_integer = acc.non_integer == 0;
    let kind = if !has_finite || (min == 0.0 && max == 0.0) {
        ValueKind::Other
    } else if min < 0.0 {
        ValueKind::Scaled
    } else if all_integer {
        ValueKind::RawCounts
    } else if max < LOG_MAX {
        ValueKind::LogNormalized
    } else {
        ValueKind::NormalizedLinear
    };
    let sums: Vec<f64> = per_row.iter().map(|r| r.1).collect();
    let (expm1_row_sums, expm1_sums_constant) = if kind == ValueKind::LogNormalized {
        let e: Vec<f64> = per_row.iter().map(|r| r.2).collect();
        let r = Range::of(&e);
        let constant =
            r.map(|r| r.median > 0.0 && (r.max - r.min) / r.median <= CONSTANT_SUM_SPREAD);
        (r, constant)
    } else {
        (None, None)
    };
    MatrixSummary {
        rows,
        cols,
        nnz,
        sparsity_pct: if total > 0.0 {
            100.0 * (1.0 - nnz as f64 / total)
        } else {
            0.0
        },
        min,
        max,
        non_finite: acc.non_finite,
        all_integer,
        kind,
        library_size: Range::of(&sums),
        expm1_row_sums,
        expm1_sums_constant,
    }
}

/// Whether every value is a finite non-negative whole number (raw counts).
/// Stops at the first value that is not.
pub fn looks_like_raw_counts(m: &Matrix) -> bool {
    let ok = |v: &[f32]| {
        v.iter()
            .all(|&x| x.is_finite() && x >= 0.0 && x.fract() == 0.0)
    };
    match m {
        Matrix::Csr(c) => c.data.par_chunks(1 << 16).all(ok),
        Matrix::Dense(d) => d.data.par_chunks(1 << 16).all(ok),
    }
}

/// Text columns with at most this many distinct values are listed by level.
pub const MAX_TEXT_LEVELS: usize = 50;

/// Summary of one obs column.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnSummary {
    /// Categorical, bool, or text with few distinct values: each level with
    /// its count, most frequent first (ties in category order).
    Levels {
        /// "categorical", "bool" or "text".
        source: &'static str,
        levels: Vec<(String, usize)>,
        /// Cells with no value (code −1).
        missing: usize,
    },
    /// Numbers: range of the finite values, and how many are NaN.
    Numeric {
        range: Option<Range>,
        missing: usize,
        all_integer: bool,
    },
    /// Text with many distinct values (names, barcodes).
    Text {
        distinct: usize,
        examples: Vec<String>,
    },
}

/// Summarises an obs column.
pub fn summarize_column(col: &ObsColumn) -> ColumnSummary {
    match col {
        ObsColumn::Categorical { categories, codes } => {
            let mut counts = vec![0usize; categories.len()];
            let mut missing = 0;
            for &c in codes {
                match usize::try_from(c).ok().and_then(|c| counts.get_mut(c)) {
                    Some(n) => *n += 1,
                    None => missing += 1,
                }
            }
            let levels = sorted_levels(categories.iter().cloned().zip(counts).collect());
            ColumnSummary::Levels {
                source: "categorical",
                levels,
                missing,
            }
        }
        ObsColumn::Bool(v) => {
            let t = v.iter().filter(|&&b| b).count();
            let levels = sorted_levels(vec![("False".into(), v.len() - t), ("True".into(), t)]);
            ColumnSummary::Levels {
                source: "bool",
                levels,
                missing: 0,
            }
        }
        ObsColumn::Numeric(v) => ColumnSummary::Numeric {
            range: Range::of(v),
            missing: v.iter().filter(|x| x.is_nan()).count(),
            all_integer: v.iter().filter(|x| x.is_finite()).all(|x| x.fract() == 0.0),
        },
        ObsColumn::Integer(v) => ColumnSummary::Numeric {
            range: Range::of(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()),
            missing: 0,
            all_integer: true,
        },
        ObsColumn::Text(v) => {
            // Counts in first-seen order.
            let mut index = std::collections::HashMap::new();
            let mut levels: Vec<(String, usize)> = Vec::new();
            for s in v {
                let k = *index.entry(s.as_str()).or_insert_with(|| {
                    levels.push((s.clone(), 0));
                    levels.len() - 1
                });
                levels[k].1 += 1;
            }
            if levels.len() <= MAX_TEXT_LEVELS {
                ColumnSummary::Levels {
                    source: "text",
                    levels: sorted_levels(levels),
                    missing: 0,
                }
            } else {
                let examples = levels.iter().take(3).map(|l| l.0.clone()).collect();
                ColumnSummary::Text {
                    distinct: levels.len(),
                    examples,
                }
            }
        }
    }
}

/// Most frequent first; the sort is stable, so ties keep their order.
fn sorted_levels(mut levels: Vec<(String, usize)>) -> Vec<(String, usize)> {
    levels.sort_by_key(|l| std::cmp::Reverse(l.1));
    levels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{CsrMatrix, DenseMatrix};

    fn dense(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        Matrix::Dense(DenseMatrix { rows, cols, data })
    }

    #[test]
    fn kinds() {
        assert_eq!(
            summarize_matrix(&dense(2, 2, vec![0., 3., 1., 0.])).kind,
            ValueKind::RawCounts
        );
        assert_eq!(
            summarize_matrix(&dense(2, 2, vec![0., -0.5, 1., 0.])).kind,
            ValueKind::Scaled
        );
        assert_eq!(
            summarize_matrix(&dense(1, 2, vec![0.5, 100.5])).kind,
            ValueKind::NormalizedLinear
        );
        assert_eq!(
            summarize_matrix(&dense(1, 2, vec![0., 0.])).kind,
            ValueKind::Other
        );
        assert!(looks_like_raw_counts(&dense(1, 2, vec![0., 7.])));
        assert!(!looks_like_raw_counts(&dense(1, 2, vec![0.5, 7.])));
        assert!(!looks_like_raw_counts(&dense(1, 2, vec![f32::NAN, 7.])));
    }

    #[test]
    fn log_normalized_with_constant_sums() {
        // Two cells normalised to a total of 10, then log1p.
        let rows = [[4.0f64, 6.0, 0.0], [1.0, 1.0, 8.0]];
        let data = rows.iter().flatten().map(|&v| v.ln_1p() as f32).collect();
        let m = Matrix::Csr(CsrMatrix::from_dense(&DenseMatrix {
            rows: 2,
            cols: 3,
            data,
        }));
        let s = summarize_matrix(&m);
        assert_eq!(s.kind, ValueKind::LogNormalized);
        assert_eq!(s.expm1_sums_constant, Some(true));
        assert!((s.expm1_row_sums.unwrap().median - 10.0).abs() < 1e-3);
        assert_eq!(s.nnz, 5);
        assert!((s.sparsity_pct - 100.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn column_levels() {
        let col = ObsColumn::Categorical {
            categories: vec!["a".into(), "b".into()],
            codes: vec![1, 1, 0, -1],
        };
        assert_eq!(
            summarize_column(&col),
            ColumnSummary::Levels {
                source: "categorical",
                levels: vec![("b".into(), 2), ("a".into(), 1)],
                missing: 1
            }
        );
        let num = summarize_column(&ObsColumn::Numeric(vec![3.0, f64::NAN, 1.0, 2.0]));
        assert_eq!(
            num,
            ColumnSummary::Numeric {
                range: Some(Range {
                    min: 1.0,
                    median: 2.0,
                    max: 3.0
                }),
                missing: 1,
                all_integer: true
            }
        );
    }
}
