//! The CPU twin of the γ_c MMD's pairwise row sums (`kernels/mmd.cu`
//! `mmd_row_norms` + `mmd_pairwise`; ARCHITECTURE §3): for deviations
//! δ: [N, G] and per-cell weights a, b,
//! u_i = Σ_{j≠i} k(δ_i, δ_j) a_j and v_i = Σ_{j≠i} k(δ_i, δ_j) b_j, with k
//! the linear kernel or a sum of RBFs, never storing the N×N matrix.
//!
//! The cells are cut into row tiles of T rows. Each tile I (one rayon task,
//! the analogue of one CUDA block) walks over every column tile J, computes
//! the T×T Gram block δ_I δ_Jᵀ with GEMM, turns it into kernel values
//! (squared distances from s_i + s_j − 2 δ_i·δ_j), and accumulates its
//! rows' sums in f64. A tile owns its rows, so there are no atomics and no
//! order-dependent reductions: results do not depend on the thread count.
//! Each pair is visited twice (k_ij from tile I, k_ji from tile J); the 2×
//! work buys that ownership. Memory: O(N) plus T² + 2·T·G per task.

use rayon::prelude::*;

/// Precision of the Gram blocks. Row sums are always accumulated in f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GramPrecision {
    /// f32 GEMM straight on the deviation rows (what the GPU kernel does).
    #[default]
    F32,
    /// Tiles converted to f64 first; twice the cost, for reference checks.
    F64,
}

/// Rows per tile of [`pairwise_row_sums`] as the scorer runs it.
pub const TILE: usize = 256;

/// `s_i = ‖δ_i‖²` in f64 for `data: [N, genes]`.
pub fn row_sq_norms(data: &[f32], genes: usize) -> Vec<f64> {
    data.par_chunks_exact(genes).map(|r| r.iter().map(|&x| (x as f64) * (x as f64)).sum()).collect()
}

/// The kernel as evaluated per pair from (Gram entry, s_i, s_j).
enum Eval<'a> {
    Linear,
    /// −1/(2h²) per bandwidth h.
    Rbf(&'a [f64]),
}

impl Eval<'_> {
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
pub fn gram<T: 'static + Copy>(xr: &[T], r: usize, xc: &[T], c: usize, g: usize, out: &mut [T], zero: T, one: T) {
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

/// `(u, v)` for `data: [cells, genes]` with row norms `s` (from
/// [`row_sq_norms`]): the linear kernel when `rbf_coefs` is empty, else
/// `k = Σ_c exp(c‖δ_i − δ_j‖²)` over the coefficients `c = −1/(2h²)`.
#[allow(clippy::too_many_arguments)]
pub fn pairwise_row_sums(
    data: &[f32],
    genes: usize,
    s: &[f64],
    a: &[f64],
    b: &[f64],
    rbf_coefs: &[f64],
    tile: usize,
    precision: GramPrecision,
) -> (Vec<f64>, Vec<f64>) {
    assert!(tile > 0 && genes > 0, "pairwise_row_sums: empty tile or row");
    let cells = data.len() / genes;
    assert!(s.len() == cells && a.len() == cells && b.len() == cells, "pairwise_row_sums: lengths");
    let eval = if rbf_coefs.is_empty() { Eval::Linear } else { Eval::Rbf(rbf_coefs) };
    let ctx = Ctx { s, a, b, eval: &eval };
    let t = tile.min(cells.max(1));
    let tiles = cells.div_ceil(t);

    let sums: Vec<(Vec<f64>, Vec<f64>)> = (0..tiles)
        .into_par_iter()
        .map(|ti| {
            let i0 = ti * t;
            let ri = t.min(cells - i0);
            let mut u = vec![0.0f64; ri];
            let mut v = vec![0.0f64; ri];
            let xi = &data[i0 * genes..(i0 + ri) * genes];
            match precision {
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
    (u, v)
}

/// What every tile reads: row norms, a, b and the kernel.
struct Ctx<'a> {
    s: &'a [f64],
    a: &'a [f64],
    b: &'a [f64],
    eval: &'a Eval<'a>,
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

