//! Tiled pairwise form for any kernel, never storing an N×N matrix: the
//! row sums u, v come from [`cpu_mmd::pairwise_row_sums`] (where the tiling
//! is described; the CPU twin of `kernels/mmd.cu`), then [`finish`].

use super::{eval_ab, finish, groups, Counts, Deviations, Kernel, MmdValue, Real};
use crate::backend::cpu_mmd::{self, gram};
pub use crate::backend::cpu_mmd::GramPrecision;
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairwiseOptions {
    /// Rows per tile (T).
    pub tile: usize,
    pub precision: GramPrecision,
}

impl Default for PairwiseOptions {
    fn default() -> Self {
        PairwiseOptions { tile: cpu_mmd::TILE, precision: GramPrecision::F32 }
    }
}

/// The RBF coefficients `−1/(2h²)` of a kernel (empty: linear), checked.
pub fn rbf_coefs(kernel: &Kernel) -> Result<Vec<f64>> {
    match kernel {
        Kernel::Linear => Ok(Vec::new()),
        Kernel::Rbf { bandwidths } => {
            if bandwidths.is_empty() {
                return Err(Error::Config("RBF kernel needs at least one bandwidth".into()));
            }
            if let Some(h) = bandwidths.iter().find(|h| !(h.is_finite() && **h > 0.0)) {
                return Err(Error::Config(format!("RBF bandwidth {h} is not a positive number")));
            }
            Ok(bandwidths.iter().map(|h| -0.5 / (h * h)).collect())
        }
    }
}

/// Loss and ∂L/∂p for any [`Kernel`], by tiles of the pairwise kernel.
pub fn pairwise<P: Real>(
    delta: Deviations<'_>,
    p: &[P],
    counts: Counts,
    kernel: &Kernel,
    opts: &PairwiseOptions,
) -> Result<MmdValue> {
    let (cells, genes) = (delta.cells(), delta.genes());
    if opts.tile == 0 {
        return Err(Error::Config("pairwise tile size must be positive".into()));
    }
    let ab = eval_ab(p, cells)?;
    let grp = groups(p, counts)?;
    let coefs = rbf_coefs(kernel)?;
    let s = cpu_mmd::row_sq_norms(delta.data(), genes); // [N] ‖δ_i‖²
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("deviation row {i} holds a non-finite value")));
    }
    let a: Vec<f64> = ab.iter().map(|x| x.a).collect(); // [N]
    let b: Vec<f64> = ab.iter().map(|x| x.b).collect(); // [N]
    let (u, v) = cpu_mmd::pairwise_row_sums(delta.data(), genes, &s, &a, &b, &coefs, opts.tile, opts.precision);
    Ok(finish(&ab, &u, &v, &grp))
}

/// Median heuristic for the RBF bandwidth: the median Euclidean distance
/// ‖δ_i − δ_j‖ over all pairs i < j of a uniform random subsample of at
/// most `max_cells` cells (all cells when N ≤ max_cells), drawn with a
/// Xoshiro256++ generator seeded by `seed` (reproducible across platforms).
/// For an even number of pairs the two middle distances are averaged (as
/// `numpy.median`). Pairwise distances come from one f64 Gram matrix of the
/// subsample (max_cells² doubles: 32 MB at the suggested 2,000).
pub fn median_bandwidth(delta: Deviations<'_>, max_cells: usize, seed: u64) -> Result<f64> {
    let (cells, genes) = (delta.cells(), delta.genes());
    if max_cells < 2 || cells < 2 {
        return Err(Error::invalid("the median heuristic needs at least 2 cells"));
    }
    let idx: Vec<usize> = if cells <= max_cells {
        (0..cells).collect()
    } else {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v = rand::seq::index::sample(&mut rng, cells, max_cells).into_vec();
        v.sort_unstable();
        v
    };
    let k = idx.len();
    let mut x = Vec::with_capacity(k * genes); // [k × G] subsample in f64
    for &i in &idx {
        x.extend(delta.row(i).iter().map(|&v| v as f64));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("deviations hold a non-finite value"));
    }
    let s: Vec<f64> = x.chunks_exact(genes).map(|r| r.iter().map(|v| v * v).sum()).collect();
    let mut g = vec![0.0f64; k * k]; // [k × k]
    // Row blocks of the Gram matrix in parallel.
    let rows_per = 64;
    g.par_chunks_mut(rows_per * k).enumerate().for_each(|(b, out)| {
        let r0 = b * rows_per;
        let r = out.len() / k;
        gram(&x[r0 * genes..(r0 + r) * genes], r, &x, k, genes, out, 0.0, 1.0);
    });
    let mut d: Vec<f64> = Vec::with_capacity(k * (k - 1) / 2);
    for i in 0..k {
        for j in i + 1..k {
            d.push((s[i] + s[j] - 2.0 * g[i * k + j]).max(0.0).sqrt());
        }
    }
    drop(g);
    let len = d.len();
    let mid = len / 2;
    let (_, &mut hi, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    let med = if len % 2 == 1 {
        hi
    } else {
        let lo = d[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    };
    if med.is_nan() || med <= 0.0 {
        return Err(Error::invalid(
            "median pairwise deviation distance is zero: RBF bandwidth undefined (all deviations equal?)",
        ));
    }
    Ok(med)
}

impl Kernel {
    /// RBF kernel with bandwidths `scale × h_med`, h_med from
    /// [`median_bandwidth`] (e.g. scales `[1.0]`, or `[0.5, 1.0, 2.0]`).
    pub fn rbf_median(delta: Deviations<'_>, scales: &[f64], max_cells: usize, seed: u64) -> Result<Kernel> {
        let h = median_bandwidth(delta, max_cells, seed)?;
        Ok(Kernel::Rbf { bandwidths: scales.iter().map(|s| s * h).collect() })
    }
}
