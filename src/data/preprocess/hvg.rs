//! Highly variable genes, as scanpy 1.11's `sc.pp.highly_variable_genes`
//! computes them for one batch:
//! - `seurat_v3` on raw counts (`_highly_variable_genes_seurat_v3`);
//! - `seurat` on log1p-normalized data (`_highly_variable_genes_single_batch`).

use rayon::prelude::*;
use serde::Serialize;

use super::loess::loess_1d;
use crate::data::CsrMatrix;
use crate::error::{Error, Result};

/// Which HVG method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HvgFlavor {
    /// Seurat v3 / scanpy `flavor="seurat_v3"`: variance of
    /// clipped standardized counts around a loess fit of log variance on
    /// log mean. Needs raw counts.
    SeuratV3,
    /// Seurat's dispersion method / scanpy `flavor="seurat"`: log
    /// dispersion z-scored within 20 bins of mean expression. Needs log1p
    /// normalized data.
    Seurat,
}

impl std::fmt::Display for HvgFlavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HvgFlavor::SeuratV3 => "seurat_v3",
            HvgFlavor::Seurat => "seurat",
        })
    }
}

/// Per-gene HVG statistics (one entry per column of the input) and the
/// selection.
#[derive(Clone, Debug, Serialize)]
pub struct HvgResult {
    pub flavor: HvgFlavor,
    /// seurat_v3: mean count; seurat: log1p of the mean of expm1(data).
    pub means: Vec<f64>,
    /// seurat_v3 only (empty for seurat): unbiased variance of the counts.
    pub variances: Vec<f64>,
    /// seurat only (empty for seurat_v3): ln(variance / mean) of
    /// expm1(data), NaN where the variance is 0.
    pub dispersions: Vec<f64>,
    /// seurat_v3: `variances_norm`; seurat: `dispersions_norm` (NaN possible).
    pub normalized: Vec<f64>,
    /// 0-based rank by `normalized`, most variable first (NaN last; exact
    /// ties in index order: numpy's unstable argsort may order them
    /// differently, which can matter only for a tie at the cutoff).
    pub rank: Vec<usize>,
    /// Selected gene indices in increasing (original) order.
    pub selected: Vec<usize>,
    /// Near-singular local fits in the loess (seurat_v3; see `loess`).
    pub loess_singular_fits: usize,
}

/// Cells per partial sum of [`column_mean_var`] (a partial holds 2 × genes
/// f64: 300,000 cells × 30,000 genes keep 74 of them, 35 MB).
const MEAN_VAR_CHUNK: usize = 4096;

/// Column means and unbiased variances as scanpy's `_get_mean_var` on CSR:
/// f64 sums, squares formed in f32 as numba does for f32 data. The cells
/// are summed in fixed chunks of [`MEAN_VAR_CHUNK`] whose sums are added in
/// order, so the bits depend neither on the thread count nor on scheduling.
pub fn column_mean_var(x: &CsrMatrix, values: impl Fn(f32) -> f32 + Sync) -> (Vec<f64>, Vec<f64>) {
    let g = x.cols;
    let chunk = MEAN_VAR_CHUNK;
    let (sum, sq) = (0..x.rows)
        .into_par_iter()
        .chunks(chunk)
        .map(|rows| {
            let (mut s, mut q) = (vec![0.0f64; g], vec![0.0f64; g]);
            for r in rows {
                let (idx, val) = x.row(r);
                for (&j, &v) in idx.iter().zip(val) {
                    let v = values(v);
                    s[j as usize] += v as f64;
                    q[j as usize] += (v * v) as f64;
                }
            }
            (s, q)
        })
        // Added in order: rayon's `reduce` combines where work was stolen,
        // so its bits would vary from run to run.
        .collect::<Vec<_>>()
        .into_iter()
        .fold((vec![0.0f64; g], vec![0.0f64; g]), |(mut a, mut b), (c, d)| {
            a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
            b.iter_mut().zip(d).for_each(|(x, y)| *x += y);
            (a, b)
        });
    let n = x.rows as f64;
    let mut mean = vec![0.0f64; g];
    let mut var = vec![0.0f64; g];
    for j in 0..g {
        mean[j] = sum[j] / n;
        var[j] = sq[j] / n - mean[j] * mean[j];
        if x.rows != 1 {
            var[j] *= n / (n - 1.0);
        }
    }
    (mean, var)
}

fn check_n_top(n_top: Option<usize>, n_genes: usize) -> Result<usize> {
    match n_top {
        Some(0) => Err(Error::Config("the number of highly variable genes must be > 0".into())),
        Some(k) => Ok(k.min(n_genes)),
        None => Ok(n_genes),
    }
}

/// Ranks by decreasing value (NaN last, ties in index order).
fn rank_desc(v: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| match (v[a].is_nan(), v[b].is_nan()) {
        (false, false) => v[b].total_cmp(&v[a]),
        (x, y) => x.cmp(&y),
    });
    let mut rank = vec![0usize; v.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    rank
}

/// scanpy `flavor="seurat_v3"` (span 0.3) on raw counts; `n_top = None`
/// selects every gene.
pub fn seurat_v3(counts: &CsrMatrix, n_top: Option<usize>) -> Result<HvgResult> {
    if counts.rows < 2 || counts.cols == 0 {
        return Err(Error::invalid(format!(
            "seurat_v3 highly variable genes need at least 2 cells and 1 gene, got {} x {}",
            counts.rows, counts.cols
        )));
    }
    let k = check_n_top(n_top, counts.cols)?;
    let (mean, var) = column_mean_var(counts, |v| v);
    let not_const: Vec<usize> = (0..counts.cols).filter(|&j| var[j] > 0.0).collect();
    if not_const.len() < 4 {
        return Err(Error::invalid(format!(
            "only {} genes vary across the cells; seurat_v3 needs more",
            not_const.len()
        )));
    }
    let lx: Vec<f64> = not_const.iter().map(|&j| mean[j].log10()).collect();
    let ly: Vec<f64> = not_const.iter().map(|&j| var[j].log10()).collect();
    let fit = loess_1d(&lx, &ly, 0.3)?;
    // Fitted log10 variance; 0 for constant genes (so their sd is 1).
    let mut estimated = vec![0.0f64; counts.cols];
    for (&j, &f) in not_const.iter().zip(&fit.fitted) {
        estimated[j] = f;
    }
    let n = counts.rows as f64;
    let reg_std: Vec<f64> = estimated.iter().map(|&e| 10f64.powf(e).sqrt()).collect();
    let clip: Vec<f64> = (0..counts.cols).map(|j| reg_std[j] * n.sqrt() + mean[j]).collect();
    // Sums of clipped counts and of their squares.
    let (mut s, mut q) = (vec![0.0f64; counts.cols], vec![0.0f64; counts.cols]);
    for (&j, &v) in counts.indices.iter().zip(&counts.data) {
        let j = j as usize;
        let e = (v as f64).min(clip[j]);
        s[j] += e;
        q[j] += e * e;
    }
    let normalized: Vec<f64> = (0..counts.cols)
        .map(|j| {
            (1.0 / ((n - 1.0) * reg_std[j] * reg_std[j]))
                * (n * mean[j] * mean[j] + q[j] - 2.0 * s[j] * mean[j])
        })
        .collect();
    let rank = rank_desc(&normalized);
    let selected = (0..counts.cols).filter(|&j| rank[j] < k).collect();
    Ok(HvgResult {
        flavor: HvgFlavor::SeuratV3,
        means: mean,
        variances: var,
        dispersions: Vec::new(),
        normalized,
        rank,
        selected,
        loess_singular_fits: fit.singular_fits,
    })
}

/// scanpy `flavor="seurat"` (20 bins) on log1p-normalized data; with
/// `n_top`, every gene whose normalized dispersion is >= the n-th highest
/// is selected (ties at the cutoff all selected, as scanpy does); `None`
/// selects every gene.
pub fn seurat(lognorm: &CsrMatrix, n_top: Option<usize>) -> Result<HvgResult> {
    const N_BINS: usize = 20;
    if lognorm.rows < 2 || lognorm.cols == 0 {
        return Err(Error::invalid(format!(
            "seurat highly variable genes need at least 2 cells and 1 gene, got {} x {}",
            lognorm.rows, lognorm.cols
        )));
    }
    let k = check_n_top(n_top, lognorm.cols)?;
    let (mut mean, var) = column_mean_var(lognorm, |v| v.exp_m1());
    let mut disp = vec![0.0f64; lognorm.cols];
    for j in 0..lognorm.cols {
        if mean[j] == 0.0 {
            mean[j] = 1e-12;
        }
        let d = var[j] / mean[j];
        disp[j] = if d == 0.0 { f64::NAN } else { d.ln() };
        mean[j] = mean[j].ln_1p();
    }
    let bins = cut_equal_width(&mean, N_BINS);
    // Per-bin mean and sample sd of the non-NaN dispersions.
    let mut cnt = [0usize; N_BINS];
    let mut sum = [0.0f64; N_BINS];
    for (j, &b) in bins.iter().enumerate() {
        if !disp[j].is_nan() {
            cnt[b] += 1;
            sum[b] += disp[j];
        }
    }
    let avg: Vec<f64> = (0..N_BINS).map(|b| if cnt[b] > 0 { sum[b] / cnt[b] as f64 } else { f64::NAN }).collect();
    let mut ss = [0.0f64; N_BINS];
    for (j, &b) in bins.iter().enumerate() {
        if !disp[j].is_nan() {
            ss[b] += (disp[j] - avg[b]) * (disp[j] - avg[b]);
        }
    }
    let (mut bin_avg, mut bin_dev) = (avg.clone(), vec![f64::NAN; N_BINS]);
    for b in 0..N_BINS {
        if cnt[b] >= 2 {
            bin_dev[b] = (ss[b] / (cnt[b] - 1) as f64).sqrt();
        } else {
            // A bin with a single gene: scanpy sets its normalized
            // dispersion to 1 (dev = avg, avg = 0).
            bin_dev[b] = avg[b];
            bin_avg[b] = 0.0;
        }
    }
    let normalized: Vec<f64> = (0..lognorm.cols).map(|j| (disp[j] - bin_avg[bins[j]]) / bin_dev[bins[j]]).collect();
    let valid: Vec<f64> = normalized.iter().copied().filter(|v| !v.is_nan()).collect();
    let selected = if n_top.is_none() {
        (0..lognorm.cols).collect()
    } else if valid.is_empty() {
        Vec::new()
    } else {
        let mut sorted = valid;
        sorted.sort_by(|a, b| b.total_cmp(a));
        let cutoff = sorted[k.min(sorted.len()) - 1];
        (0..lognorm.cols).filter(|&j| !normalized[j].is_nan() && normalized[j] >= cutoff).collect()
    };
    Ok(HvgResult {
        flavor: HvgFlavor::Seurat,
        means: mean,
        variances: Vec::new(),
        dispersions: disp,
        rank: rank_desc(&normalized),
        normalized,
        selected,
        loess_singular_fits: 0,
    })
}

/// Bin index of each value for `pandas.cut(values, bins=n)`: n equal-width
/// right-closed bins over [min, max], the lowest edge lowered by 0.1 % of
/// the range (edges as `numpy.linspace` computes them).
fn cut_equal_width(v: &[f64], n: usize) -> Vec<usize> {
    let mn = v.iter().copied().fold(f64::INFINITY, f64::min);
    let mx = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if mn == mx {
        return vec![0; v.len()];
    }
    let step = (mx - mn) / n as f64;
    let mut edges: Vec<f64> = (0..=n).map(|i| i as f64 * step + mn).collect();
    edges[n] = mx;
    edges[0] -= (mx - mn) * 0.001;
    v.iter()
        .map(|&x| {
            // searchsorted(edges, x, side="left") - 1: first edge >= x.
            let i = edges.partition_point(|&e| e < x);
            i.clamp(1, n) - 1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statistics of log-like values (sums that are not exact) come
    /// out with the same bits on 1, 2 or 3 threads.
    #[test]
    fn mean_var_do_not_depend_on_the_threads() {
        let (rows, cols) = (10_000, 5); // three chunks, the last partial
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut x = CsrMatrix::empty(cols);
        for _ in 0..rows {
            let vals: Vec<f32> = (0..cols).map(|_| (1.0 + 5.0 * next()).ln()).collect();
            x.push_row(&(0..cols as u32).collect::<Vec<_>>(), &vals);
        }
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| column_mean_var(&x, |v| v.exp_m1()))
        };
        let one = on(1);
        for threads in [2, 3] {
            for _ in 0..3 {
                assert_eq!(on(threads), one, "{threads} threads");
            }
        }
    }
}
