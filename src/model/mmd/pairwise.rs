//! Tiled pairwise form for any kernel, never storing an N×N matrix.
//!
//! The cells are cut into row tiles of T rows. Each tile I (one rayon task,
//! the analogue of one CUDA block) walks over every column tile J, computes
//! the T×T Gram block δ_I δ_Jᵀ with GEMM, turns it into kernel values
//! (squared distances from s_i + s_j − 2 δ_i·δ_j), and accumulates the
//! off-diagonal row sums u_i = Σ_{j≠i} k_ij a_j and v_i = Σ_{j≠i} k_ij b_j
//! in f64. A tile owns its rows, so there are no atomics and no
//! order-dependent reductions: results do not depend on the thread count.
//! Each pair is visited twice (k_ij from tile I, k_ji from tile J); the 2×
//! work buys that ownership. Memory: O(N) plus T² + 2·T·G per task.

use super::{eval_ab, finish, groups, Counts, Deviations, Kernel, MmdValue, Real};
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rayon::prelude::*;

/// Precision of the Gram blocks. Row sums are always accumulated in f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GramPrecision {
    /// f32 GEMM straight on the deviation rows (what a GPU kernel does).
    #[default]
    F32,
    /// Tiles converted to f64 first; twice the cost, for reference checks.
    F64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairwiseOptions {
    /// Rows per tile (T).
    pub tile: usize,
    pub precision: GramPrecision,
}

impl Default for PairwiseOptions {
    fn default() -> Self {
        PairwiseOptions { tile: 256, precision: GramPrecision::F32 }
    }
}

/// The kernel as evaluated per pair from (Gram entry, s_i, s_j).
enum Eval {
    Linear,
    /// −1/(2h²) per bandwidth.
    Rbf(Vec<f64>),
}

impl Eval {
    fn new(kernel: &Kernel) -> Result<Self> {
        match kernel {
            Kernel::Linear => Ok(Eval::Linear),
            Kernel::Rbf { bandwidths } => {
                if bandwidths.is_empty() {
                    return Err(Error::Config("RBF kernel needs at least one bandwidth".into()));
                }
                if let Some(h) = bandwidths.iter().find(|h| !(h.is_finite() && **h > 0.0)) {
                    return Err(Error::Config(format!("RBF bandwidth {h} is not a positive number")));
                }
                Ok(Eval::Rbf(bandwidths.iter().map(|h| -0.5 / (h * h)).collect()))
            }
        }
    }
    #[inline]
    fn k(&self, dot: f64, si: f64, sj: f64) -> f64 {
        match self {
            Eval::Linear => dot,
            Eval::Rbf(coef) => {
                let d2 = (si + sj - 2.0 * dot).max(0.0);
                coef.iter().map(|c| (c * d2).exp()).sum()
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// C (r×c, row-major, ld = c) = X_r X_cᵀ for row-major X_r (r×g), X_c (c×g).
fn gram<T: 'static + Copy>(xr: &[T], r: usize, xc: &[T], c: usize, g: usize, out: &mut [T], zero: T, one: T) {
    debug_assert!(xr.len() >= r * g && xc.len() >= c * g && out.len() >= r * c);
    // SAFETY: the slices cover the strided extents checked above; out does
    // not alias the inputs (it is a separate &mut).
    unsafe {
        gemm::gemm(
            r, c, g,
            out.as_mut_ptr(), 1, c as isize, false,
            xr.as_ptr(), 1, g as isize,
            xc.as_ptr(), g as isize, 1,
            zero, one, false, false, false,
            gemm::Parallelism::None,
        );
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
    let eval = Eval::new(kernel)?;
    let data = delta.data();
    let s: Vec<f64> = data
        .par_chunks_exact(genes)
        .map(|r| r.iter().map(|&x| (x as f64) * (x as f64)).sum())
        .collect(); // [N] ‖δ_i‖²
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("deviation row {i} holds a non-finite value")));
    }
    let a: Vec<f64> = ab.iter().map(|x| x.a).collect(); // [N]
    let b: Vec<f64> = ab.iter().map(|x| x.b).collect(); // [N]
    let ctx = Ctx { s: &s, a: &a, b: &b, eval: &eval };
    let t = opts.tile.min(cells.max(1));
    let tiles = cells.div_ceil(t);

    let sums: Vec<(Vec<f64>, Vec<f64>)> = (0..tiles)
        .into_par_iter()
        .map(|ti| {
            let i0 = ti * t;
            let ri = t.min(cells - i0);
            let mut u = vec![0.0f64; ri];
            let mut v = vec![0.0f64; ri];
            let xi = &data[i0 * genes..(i0 + ri) * genes];
            match opts.precision {
                GramPrecision::F32 => {
                    let mut blk = vec![0.0f32; t * t]; // [ri × rj]
                    for tj in 0..tiles {
                        let j0 = tj * t;
                        let rj = t.min(cells - j0);
                        gram(xi, ri, &data[j0 * genes..(j0 + rj) * genes], rj, genes, &mut blk, 0.0, 1.0);
                        ctx.accumulate(&blk, |x| x as f64, i0, ri, j0, rj, &mut u, &mut v);
                    }
                }
                GramPrecision::F64 => {
                    let xi64: Vec<f64> = xi.iter().map(|&x| x as f64).collect(); // [ri × G]
                    let mut xj64 = vec![0.0f64; t * genes]; // [rj × G]
                    let mut blk = vec![0.0f64; t * t];
                    for tj in 0..tiles {
                        let j0 = tj * t;
                        let rj = t.min(cells - j0);
                        for (d, &x) in xj64.iter_mut().zip(&data[j0 * genes..(j0 + rj) * genes]) {
                            *d = x as f64;
                        }
                        gram(&xi64, ri, &xj64, rj, genes, &mut blk, 0.0, 1.0);
                        ctx.accumulate(&blk, |x| x, i0, ri, j0, rj, &mut u, &mut v);
                    }
                }
            }
            (u, v)
        })
        .collect();
    let mut u = Vec::with_capacity(cells);
    let mut v = Vec::with_capacity(cells);
    for (tu, tv) in sums {
        u.extend(tu);
        v.extend(tv);
    }
    Ok(finish(&ab, &u, &v, &grp))
}

/// What every tile reads: row norms, a, b and the kernel.
struct Ctx<'a> {
    s: &'a [f64],
    a: &'a [f64],
    b: &'a [f64],
    eval: &'a Eval,
}

impl Ctx<'_> {
    /// Adds one Gram block's kernel values (rows i0.., columns j0..) into
    /// the tile's row sums. The diagonal i = j is summed with the rest (so
    /// the inner loop has no branch) and subtracted afterwards, using the
    /// same Gram entry.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn accumulate<T: Copy>(
        &self,
        blk: &[T],
        to64: impl Fn(T) -> f64,
        i0: usize,
        ri: usize,
        j0: usize,
        rj: usize,
        u: &mut [f64],
        v: &mut [f64],
    ) {
        let (sj, aj, bj) = (&self.s[j0..j0 + rj], &self.a[j0..j0 + rj], &self.b[j0..j0 + rj]);
        for r in 0..ri {
            let i = i0 + r;
            let si = self.s[i];
            let row = &blk[r * rj..(r + 1) * rj];
            let (mut su, mut sv) = (0.0f64, 0.0f64);
            match self.eval {
                Eval::Linear => {
                    for ((&g, &a), &b) in row.iter().zip(aj).zip(bj) {
                        let k = to64(g);
                        su += k * a;
                        sv += k * b;
                    }
                }
                Eval::Rbf(_) => {
                    for (((&g, &s), &a), &b) in row.iter().zip(sj).zip(aj).zip(bj) {
                        let k = self.eval.k(to64(g), si, s);
                        su += k * a;
                        sv += k * b;
                    }
                }
            }
            if (j0..j0 + rj).contains(&i) {
                let k = self.eval.k(to64(row[i - j0]), si, si);
                su -= k * self.a[i];
                sv -= k * self.b[i];
            }
            u[r] += su;
            v[r] += sv;
        }
    }
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
