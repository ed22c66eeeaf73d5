//! Harmony-style integration (Korsunsky et al., Nat Methods 2019) of the
//! joint PCA coordinates, so that a shift shared by the target's normal
//! cells (a condition, a batch, a technology) stops reading as novelty.
//!
//! Soft k-means on cosine-normalised coordinates with Harmony's diversity
//! penalty (each cluster is pushed to hold every batch in proportion), then
//! a per-cluster ridge regression of the coordinates on the batch removes
//! each batch's offset within each cluster, weighted by the soft
//! assignments. Defaults as harmonypy: θ = 2, σ = 0.1, λ = 1,
//! K = min(100, N/30).
//!
//! Our one change is `fit` weights: cells with `fit = false` (cells a
//! first pass found likely anomalous) take no part in the diversity
//! penalty nor in the regression, so a cell state found only in the target
//! is not forced into a reference cluster; they are still assigned and
//! corrected like their neighbours. Anomalies are, by definition, the cells
//! whose batch mixing must *not* be enforced.

use rayon::prelude::*;

use crate::data::matrix::DenseMatrix;
use crate::error::{Error, Result};
use crate::model::subtype::kmeans::{kmeans, Uniforms};

use super::embed::sample_rows;

/// Settings of [`harmonize`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HarmonyConfig {
    /// Diversity penalty θ.
    pub theta: f64,
    /// Soft-assignment width σ (on cosine distance).
    pub sigma: f64,
    /// Ridge penalty λ of the batch coefficients.
    pub lambda: f64,
    /// Clusters K (0 = min(100, N/30), as harmonypy).
    pub n_clusters: usize,
    /// Rounds of clustering + correction.
    pub iterations: usize,
    /// Soft k-means sweeps per round.
    pub cluster_iterations: usize,
    /// Cells with `fit = false` still take part in the regression (they
    /// are only spared the diversity penalty).
    pub regress_unfitted: bool,
}

impl Default for HarmonyConfig {
    fn default() -> Self {
        HarmonyConfig { theta: 2.0, sigma: 0.1, lambda: 1.0, n_clusters: 0, iterations: 2, cluster_iterations: 10, regress_unfitted: false }
    }
}

impl HarmonyConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("harmony: {m}")));
        if !(self.theta.is_finite() && self.theta >= 0.0) {
            return bad("theta must be a finite number >= 0");
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad("sigma must be a finite number > 0");
        }
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return bad("lambda must be a finite number > 0");
        }
        if self.iterations == 0 || self.cluster_iterations == 0 {
            return bad("iterations and cluster_iterations must be at least 1");
        }
        Ok(())
    }
}

/// Most cells the initial k-means runs on.
const KMEANS_SAMPLE: usize = 20_000;
/// Fraction of cells updated per block of the soft k-means (harmonypy's 0.05).
const BLOCK_FRACTION: f64 = 0.05;

/// Cosine-normalised copy (the kin pairing's row normalisation).
fn l2_normalised(z: &DenseMatrix) -> DenseMatrix {
    let mut out = z.clone();
    crate::model::kin::normalize_rows(&mut out);
    out
}

/// Soft assignments of some cells: `r ∝ exp(−2(1 − z·y)/σ) · penalty`.
fn assign(zc: &[f32], y: &[f64], k: usize, sigma: f64, pen: Option<&[f64]>, out: &mut [f64]) {
    let d = zc.len();
    let mut best = f64::NEG_INFINITY;
    for c in 0..k {
        let dot: f64 = zc.iter().zip(&y[c * d..(c + 1) * d]).map(|(&a, &b)| a as f64 * b).sum();
        out[c] = -2.0 * (1.0 - dot) / sigma;
        best = best.max(out[c]);
    }
    let mut s = 0.0;
    for c in 0..k {
        out[c] = (out[c] - best).exp() * pen.map_or(1.0, |p| p[c]);
        s += out[c];
    }
    out.iter_mut().for_each(|v| *v /= s);
}

/// Cells per partial sum of [`centroids`]: fixed, and the partial sums
/// added in order, so the result's bits depend neither on the number of
/// threads nor on their scheduling (rayon's `fold`/`reduce` split where
/// work was stolen: two runs of a 10^5-cell detection differed in the 13th
/// digit).
const CENTROID_BLOCK: usize = 2048;

/// Centroids `normalise(Rᵀ Zc)`, [k × d].
fn centroids(zc: &DenseMatrix, r: &[f64], k: usize) -> Vec<f64> {
    let d = zc.cols.max(1);
    let parts: Vec<Vec<f64>> = zc
        .data
        .par_chunks(d * CENTROID_BLOCK)
        .zip(r.par_chunks(k.max(1) * CENTROID_BLOCK))
        .map(|(zb, rb)| {
            let mut acc = vec![0.0f64; k * d]; // [k × d]
            for (z, ri) in zb.chunks_exact(d).zip(rb.chunks_exact(k.max(1))) {
                for c in 0..k {
                    let w = ri[c];
                    acc[c * d..(c + 1) * d].iter_mut().zip(z).for_each(|(a, &v)| *a += w * v as f64);
                }
            }
            acc
        })
        .collect();
    let mut y = vec![0.0f64; k * d];
    for p in &parts {
        y.iter_mut().zip(p).for_each(|(x, v)| *x += v);
    }
    for c in 0..k {
        let row = &mut y[c * d..(c + 1) * d];
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
    y
}

/// Solves the small dense system `a x = b` (n × n, b: n × m) in place by
/// Gaussian elimination with partial pivoting; `a` is symmetric positive
/// definite here (ridge), so pivots are safe.
fn solve(a: &mut [f64], b: &mut [f64], n: usize, m: usize) {
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs())).unwrap_or(col);
        if piv != col {
            for j in 0..n {
                a.swap(col * n + j, piv * n + j);
            }
            for j in 0..m {
                b.swap(col * m + j, piv * m + j);
            }
        }
        let p = a[col * n + col];
        if p.abs() < 1e-300 {
            continue;
        }
        for i in 0..n {
            if i == col {
                continue;
            }
            let f = a[i * n + col] / p;
            if f == 0.0 {
                continue;
            }
            for j in 0..n {
                a[i * n + j] -= f * a[col * n + j];
            }
            for j in 0..m {
                b[i * m + j] -= f * b[col * m + j];
            }
        }
    }
    for i in 0..n {
        let p = a[i * n + i];
        for j in 0..m {
            b[i * m + j] = if p.abs() < 1e-300 { 0.0 } else { b[i * m + j] / p };
        }
    }
}

/// What [`harmonize`] did, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HarmonyReport {
    pub n_clusters: usize,
    pub n_batches: usize,
    pub n_fit_cells: usize,
}

/// Corrected coordinates of `z` ([n × d]; `batch[i] < n_batches`), fitting
/// the penalty and the regression on the cells with `fit[i]`.
pub fn harmonize(
    z: &DenseMatrix,
    batch: &[u32],
    n_batches: usize,
    fit: &[bool],
    cfg: &HarmonyConfig,
    seed: u64,
) -> Result<(DenseMatrix, HarmonyReport)> {
    cfg.validate()?;
    let (n, d) = (z.rows, z.cols);
    if batch.len() != n || fit.len() != n {
        return Err(Error::invalid("harmony: one batch label and one fit flag per cell"));
    }
    if batch.iter().any(|&b| b as usize >= n_batches) {
        return Err(Error::invalid("harmony: batch label out of range"));
    }
    let nb = n_batches;
    let k = if cfg.n_clusters > 0 { cfg.n_clusters } else { (n as f64 / 30.0).round().clamp(1.0, 100.0) as usize };
    let k = k.min(n);
    let w: Vec<f64> = fit.iter().map(|&f| if f { 1.0 } else { 0.0 }).collect();
    let mut pr = vec![0.0f64; nb];
    for i in 0..n {
        pr[batch[i] as usize] += w[i];
    }
    let nfit: f64 = pr.iter().sum();
    if nfit == 0.0 {
        return Err(Error::invalid("harmony: no cell to fit on"));
    }
    pr.iter_mut().for_each(|p| *p /= nfit);

    // Initial centroids: k-means on a sample of the cosine-normalised cells.
    let mut zc = l2_normalised(z);
    let rows = sample_rows(n, KMEANS_SAMPLE, seed ^ 0x4A12);
    let sample = DenseMatrix { rows: rows.len(), cols: d, data: rows.iter().flat_map(|&i| zc.row(i).to_vec()).collect() };
    let km = kmeans(&sample, k, 3, seed)?;
    let mut y: Vec<f64> = km.centroids.data.iter().map(|&v| v as f64).collect();
    for c in 0..k {
        let row = &mut y[c * d..(c + 1) * d];
        let s = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    let mut u = Uniforms::new(seed ^ 0x9E37);
    let mut r = vec![0.0f64; n * k]; // [n × K] soft assignments
    let mut corrected = z.clone();
    let block = ((n as f64 * BLOCK_FRACTION).ceil() as usize).max(1);
    for _round in 0..cfg.iterations {
        r.par_chunks_mut(k).zip(zc.data.par_chunks(d)).for_each(|(ri, zi)| assign(zi, &y, k, cfg.sigma, None, ri));
        // E[c][b] expected and O[c][b] observed fitted mass per cluster and batch.
        let (mut e, mut o) = (vec![0.0f64; k * nb], vec![0.0f64; k * nb]);
        let add = |e: &mut [f64], o: &mut [f64], i: usize, ri: &[f64], sign: f64| {
            if w[i] == 0.0 {
                return;
            }
            for c in 0..k {
                for b in 0..nb {
                    e[c * nb + b] += sign * ri[c] * pr[b];
                }
                o[c * nb + batch[i] as usize] += sign * ri[c];
            }
        };
        for i in 0..n {
            add(&mut e, &mut o, i, &r[i * k..(i + 1) * k], 1.0);
        }
        for _ in 0..cfg.cluster_iterations {
            y = centroids(&zc, &r, k);
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, u.below(i + 1));
            }
            for blk in order.chunks(block) {
                for &i in blk {
                    add(&mut e, &mut o, i, &r[i * k..(i + 1) * k], -1.0);
                }
                let pen: Vec<f64> = e.iter().zip(&o).map(|(e, o)| ((e + 1.0) / (o + 1.0)).powf(cfg.theta)).collect();
                let news: Vec<(usize, Vec<f64>)> = blk
                    .par_iter()
                    .map(|&i| {
                        let mut ri = vec![0.0; k];
                        let p: Option<Vec<f64>> =
                            (w[i] > 0.0).then(|| (0..k).map(|c| pen[c * nb + batch[i] as usize]).collect());
                        assign(zc.row(i), &y, k, cfg.sigma, p.as_deref(), &mut ri);
                        (i, ri)
                    })
                    .collect();
                for (i, ri) in news {
                    r[i * k..(i + 1) * k].copy_from_slice(&ri);
                    add(&mut e, &mut o, i, &ri, 1.0);
                }
            }
        }
        // Ridge per cluster: design φ_i = [1, onehot(batch_i)], weights r_ic·w_i.
        let p = nb + 1;
        corrected = z.clone();
        let mut shift = vec![0.0f64; n * d];
        for c in 0..k {
            let mut a = vec![0.0f64; p * p];
            let mut rhs = vec![0.0f64; p * d];
            for i in 0..n {
                let wi = r[i * k + c] * if cfg.regress_unfitted { 1.0 } else { w[i] };
                if wi == 0.0 {
                    continue;
                }
                let bi = 1 + batch[i] as usize;
                a[0] += wi;
                a[bi] += wi;
                a[bi * p] += wi;
                a[bi * p + bi] += wi;
                for (j, &v) in z.row(i).iter().enumerate() {
                    rhs[j] += wi * v as f64;
                    rhs[bi * d + j] += wi * v as f64;
                }
            }
            for b in 1..p {
                a[b * p + b] += cfg.lambda;
            }
            solve(&mut a, &mut rhs, p, d);
            // Coefficient rows 1..p are the batch offsets (row 0, the
            // intercept, is kept).
            shift.par_chunks_mut(d).enumerate().for_each(|(i, s)| {
                let ric = r[i * k + c];
                let bi = 1 + batch[i] as usize;
                s.iter_mut().zip(&rhs[bi * d..(bi + 1) * d]).for_each(|(s, &beta)| *s += ric * beta);
            });
        }
        corrected.data.par_iter_mut().zip(shift.par_iter()).for_each(|(v, s)| *v = (*v as f64 - s) as f32);
        zc = l2_normalised(&corrected);
    }
    Ok((corrected, HarmonyReport { n_clusters: k, n_batches: nb, n_fit_cells: nfit as usize }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the centroids were summed by rayon's fold/reduce, whose
    /// order follows work stealing, so repeated runs differed in the last
    /// digits. Now the bits are the same on 1, 2 or 3 threads.
    #[test]
    fn centroids_do_not_depend_on_the_threads() {
        let (n, d, k) = (5000, 7, 4); // three blocks of cells, the last partial
        let mut state = 1u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let zc = DenseMatrix { rows: n, cols: d, data: (0..n * d).map(|_| (next() - 0.5) as f32).collect() };
        let r: Vec<f64> = (0..n * k).map(|_| next()).collect();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| centroids(&zc, &r, k))
        };
        let one = on(1);
        assert_eq!(one.len(), k * d);
        for threads in [2, 3] {
            for _ in 0..5 {
                assert_eq!(on(threads), one, "{threads} threads");
            }
        }
    }
}
