//! PCA-reconstruction baseline: fit k principal axes on the reference cells
//! and score target cells by their squared reconstruction error
//! `‖x − μ − VᵀV(x − μ)‖²` (V: k×G, orthonormal rows). This is what the
//! README's accuracy comparisons call "PCA(50)", after scikit-learn's
//! `PCA(n_components=50)` fitted on the reference.
//!
//! Fitting: column means in f64; the G×G covariance `Xcᵀ Xc/(N−1)` by f64
//! GEMM over blocks of 512 centred rows, read from a [`RowSource`] one
//! block at a time ([`Pca::fit_rows`]: the rows need not be held dense);
//! then the top k eigenpairs (see [`eigen`]): all of them by Jacobi when
//! G ≤ 256, otherwise by block subspace iteration with Rayleigh–Ritz
//! (oversampled block, residual-based stop). Above G = 4096 the covariance
//! is never formed: the subspace iteration applies `Xcᵀ(Xc Q)/(N−1)` by
//! streaming row blocks. Components are signed like scikit-learn's
//! `svd_flip(u_based_decision=False)`: the largest-magnitude entry of each
//! component is positive.

pub mod eigen;

use crate::data::matrix::DenseMatrix;
use crate::error::{Error, Result};
use crate::model::source::RowSource;
use rayon::prelude::*;

/// Rows per block when centring and multiplying.
const BLOCK_ROWS: usize = 512;
/// Most parallel partial sums in the streamed (implicit) operator.
const IMPLICIT_TASKS: usize = 8;
/// Largest G solved exactly by Jacobi under [`PcaSolver::Auto`].
pub const EXACT_MAX_GENES: usize = 256;
/// Largest G for which the G×G covariance is formed.
pub const COVARIANCE_MAX_GENES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PcaSolver {
    /// Exact for G ≤ [`EXACT_MAX_GENES`], subspace iteration above.
    #[default]
    Auto,
    /// Jacobi on the full covariance (all eigenpairs, slow for large G).
    Exact,
    /// Block subspace iteration for the top k only (on the covariance when
    /// G ≤ [`COVARIANCE_MAX_GENES`], streamed above).
    Subspace,
    /// Block subspace iteration that never forms the covariance, whatever G.
    Streamed,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcaOptions {
    /// Number of components k (default 50, as the baseline).
    pub n_components: usize,
    pub solver: PcaSolver,
    /// Seed of the subspace iteration's random start block.
    pub seed: u64,
    /// Subspace iteration stops when every top-k Ritz residual
    /// ‖Cv − θv‖ ≤ tol·θ₁ ...
    pub tol: f64,
    /// ... or after this many operator applications.
    pub max_iter: usize,
}

impl Default for PcaOptions {
    fn default() -> Self {
        PcaOptions { n_components: 50, solver: PcaSolver::Auto, seed: 0, tol: 1e-8, max_iter: 500 }
    }
}

/// A fitted PCA.
#[derive(Clone, Debug)]
pub struct Pca {
    pub genes: usize,
    /// Column means of the reference, `[G]`.
    pub mean: Vec<f64>,
    /// Principal axes, [k × G] row-major, orthonormal rows.
    pub components: Vec<f64>,
    /// Variance along each axis (eigenvalues of the covariance, ddof 1), `[k]`.
    pub explained_variance: Vec<f64>,
    /// explained_variance / total variance, `[k]`.
    pub explained_variance_ratio: Vec<f64>,
    /// Operator applications used by subspace iteration (0 when exact).
    pub iterations: usize,
    /// False only when subspace iteration hit `max_iter` before `tol`.
    pub converged: bool,
}

/// Validates a row-major `rows × cols` f32 buffer.
fn check(x: &[f32], rows: usize, cols: usize, what: &str) -> Result<()> {
    if rows.checked_mul(cols) != Some(x.len()) {
        return Err(Error::invalid(format!("{what}: {} values for {rows} × {cols}", x.len())));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("{what}: non-finite value in row {}", i / cols.max(1))));
    }
    Ok(())
}

/// Centred copy of a block of rows: `out[r][g] = x[r][g] − μ[g]`.
fn centre<T: Copy>(rows: &[f32], mean: &[f64], out: &mut [T], cast: impl Fn(f64) -> T) {
    for (o, (x, m)) in out.iter_mut().zip(rows.iter().zip(mean.iter().cycle())) {
        *o = cast(*x as f64 - m);
    }
}

/// Row-major GEMM helper: C(m×n) = alpha·C + beta·op(A)·op(B), with each
/// operand given by (pointer, row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn gemm_raw<T: 'static + Copy>(
    m: usize, n: usize, k: usize,
    c: *mut T, c_rs: usize, c_cs: usize, read_c: bool,
    a: *const T, a_rs: usize, a_cs: usize,
    b: *const T, b_rs: usize, b_cs: usize,
    alpha: T, beta: T, par: gemm::Parallelism,
) {
    // SAFETY: every caller passes pointers into live slices whose extents
    // cover the strided m×k, k×n and m×n views; C does not alias A or B.
    unsafe {
        gemm::gemm(
            m, n, k, c, c_cs as isize, c_rs as isize, read_c, a, a_cs as isize, a_rs as isize,
            b, b_cs as isize, b_rs as isize, alpha, beta, false, false, false, par,
        )
    }
}

impl Pca {
    /// Fits k components on the rows of a dense reference matrix.
    pub fn fit_matrix(x: &DenseMatrix, opts: &PcaOptions) -> Result<Pca> {
        Pca::fit(&x.data, x.rows, x.cols, opts)
    }

    /// Fits k components on a row-major `rows × genes` f32 buffer.
    pub fn fit(x: &[f32], rows: usize, genes: usize, opts: &PcaOptions) -> Result<Pca> {
        if rows.checked_mul(genes) != Some(x.len()) {
            return Err(Error::invalid(format!("PCA reference: {} values for {rows} × {genes}", x.len())));
        }
        Pca::fit_source(&SliceRows { x, rows, genes }, Some(x), opts)
    }

    /// Fits k components on rows read from `x` in blocks of [`BLOCK_ROWS`]
    /// (the joint PCA's sample, standardised as it is read): the rows are
    /// never held dense all at once, except by the implicit solver (G >
    /// [`COVARIANCE_MAX_GENES`]), which reads them at every iteration.
    /// Gives the same bits as [`Pca::fit`] on the gathered rows.
    pub fn fit_rows(x: &dyn RowSource, opts: &PcaOptions) -> Result<Pca> {
        Pca::fit_source(x, None, opts)
    }

    /// The fit; `dense` is `x` as one buffer when the caller has it.
    fn fit_source(x: &dyn RowSource, dense: Option<&[f32]>, opts: &PcaOptions) -> Result<Pca> {
        let (rows, genes) = (x.n_rows(), x.n_cols());
        let k = opts.n_components;
        if k == 0 || k > rows.min(genes) {
            return Err(Error::Config(format!(
                "PCA with {k} components needs 1 ≤ k ≤ min(cells, genes) = {}",
                rows.min(genes)
            )));
        }
        if rows < 2 {
            return Err(Error::invalid("PCA needs at least 2 reference cells"));
        }
        let mean = column_means(x)?;
        let denom = (rows - 1) as f64;
        let exact = match opts.solver {
            PcaSolver::Exact => true,
            PcaSolver::Subspace | PcaSolver::Streamed => false,
            PcaSolver::Auto => genes <= EXACT_MAX_GENES,
        };
        let streamed = opts.solver == PcaSolver::Streamed || genes > COVARIANCE_MAX_GENES;
        let block = (k + (k / 2).max(10)).min(genes);
        let (total_var, values, mut vectors, iterations, converged) = if !streamed {
            let (cov, sum_sq) = covariance(x, &mean)?;
            let total_var = sum_sq / denom;
            if exact {
                let (vals, vecs) = eigen::jacobi(cov, genes);
                (total_var, vals[..k].to_vec(), vecs[..k * genes].to_vec(), 0, true)
            } else {
                let apply = |q: &[f64], y: &mut [f64], r: usize| {
                    // Y(G×r, col-major) = C(G×G) · Q(G×r, col-major)
                    gemm_raw(genes, r, genes, y.as_mut_ptr(), 1, genes, false, cov.as_ptr(), genes, 1,
                        q.as_ptr(), 1, genes, 0.0, 1.0, gemm::Parallelism::Rayon(0));
                };
                let t = eigen::subspace(genes, k, block, &apply, opts.tol, opts.max_iter, opts.seed);
                (total_var, t.values, t.vectors, t.iterations, t.converged)
            }
        } else {
            let owned;
            let x = match dense {
                Some(d) => d,
                None => {
                    let mut d = vec![0.0f32; rows * genes]; // [rows × G]
                    x.gather_range(0, rows, &mut d)?;
                    owned = d;
                    &owned
                }
            };
            let total_var = x
                .par_chunks(BLOCK_ROWS * genes)
                .map(|blk| blk.iter().zip(mean.iter().cycle()).map(|(v, m)| (*v as f64 - m).powi(2)).sum::<f64>())
                .collect::<Vec<f64>>()
                .iter()
                .sum::<f64>()
                / denom;
            let apply = |q: &[f64], y: &mut [f64], r: usize| implicit_apply(x, rows, genes, &mean, q, y, r);
            let t = eigen::subspace(genes, k, block, &apply, opts.tol, opts.max_iter, opts.seed);
            (total_var, t.values, t.vectors, t.iterations, t.converged)
        };
        // Sign convention of scikit-learn (largest |entry| positive).
        for comp in vectors.chunks_exact_mut(genes) {
            let big = comp.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            if big < 0.0 {
                comp.iter_mut().for_each(|v| *v = -*v);
            }
        }
        let explained_variance: Vec<f64> = values.iter().map(|v| v.max(0.0)).collect();
        let explained_variance_ratio =
            explained_variance.iter().map(|v| if total_var > 0.0 { v / total_var } else { 0.0 }).collect();
        Ok(Pca { genes, mean, components: vectors, explained_variance, explained_variance_ratio, iterations, converged })
    }

    pub fn n_components(&self) -> usize {
        self.explained_variance.len()
    }

    /// Projections `(x − μ)Vᵀ` of row-major `rows × G` data, [rows × k].
    pub fn transform(&self, x: &[f32], rows: usize) -> Result<Vec<f64>> {
        check(x, rows, self.genes, "PCA input")?;
        let (g, k) = (self.genes, self.n_components());
        let mut out = vec![0.0f64; rows * k];
        x.par_chunks(BLOCK_ROWS * g).zip(out.par_chunks_mut(BLOCK_ROWS * k)).for_each(|(blk, o)| {
            let r = blk.len() / g;
            let mut y = vec![0.0f64; r * g]; // [r × G] centred
            centre(blk, &self.mean, &mut y, |v| v);
            gemm_raw(r, k, g, o.as_mut_ptr(), k, 1, false, y.as_ptr(), g, 1,
                self.components.as_ptr(), 1, g, 0.0, 1.0, gemm::Parallelism::None);
        });
        Ok(out)
    }

    /// Squared reconstruction error `‖x − μ − VᵀV(x − μ)‖²` of every row
    /// of row-major `rows × G` data (the baseline's anomaly score), `[rows]`.
    pub fn reconstruction_error(&self, x: &[f32], rows: usize) -> Result<Vec<f64>> {
        check(x, rows, self.genes, "PCA input")?;
        let (g, k) = (self.genes, self.n_components());
        let mut out = vec![0.0f64; rows];
        x.par_chunks(BLOCK_ROWS * g).zip(out.par_chunks_mut(BLOCK_ROWS)).for_each(|(blk, o)| {
            let r = blk.len() / g;
            let mut y = vec![0.0f64; r * g]; // [r × G] centred, then residual
            let mut t = vec![0.0f64; r * k]; // [r × k] projections
            centre(blk, &self.mean, &mut y, |v| v);
            let v = &self.components;
            gemm_raw(r, k, g, t.as_mut_ptr(), k, 1, false, y.as_ptr(), g, 1, v.as_ptr(), 1, g, 0.0, 1.0,
                gemm::Parallelism::None);
            // y ← y − T·V
            gemm_raw(r, g, k, y.as_mut_ptr(), g, 1, true, t.as_ptr(), k, 1, v.as_ptr(), g, 1, 1.0, -1.0,
                gemm::Parallelism::None);
            for (e, row) in o.iter_mut().zip(y.chunks_exact(g)) {
                *e = row.iter().map(|v| v * v).sum();
            }
        });
        Ok(out)
    }
}

/// Column means in f64; fixed row blocks, reduced in order (deterministic).
/// Each block is read in pieces of [`BLOCK_ROWS`] rows, which are checked
/// finite (the first bad row is named).
fn column_means(x: &dyn RowSource) -> Result<Vec<f64>> {
    let (rows, genes) = (x.n_rows(), x.n_cols());
    let block = rows.div_ceil(64).max(BLOCK_ROWS);
    let parts: Vec<Result<Vec<f64>>> = (0..rows.div_ceil(block))
        .into_par_iter()
        .map(|p| {
            let (start, end) = (p * block, ((p + 1) * block).min(rows));
            let mut s = vec![0.0f64; genes];
            let mut buf = vec![0.0f32; BLOCK_ROWS.min(end - start) * genes]; // [≤ BLOCK_ROWS × G]
            for r0 in (start..end).step_by(BLOCK_ROWS) {
                let n = BLOCK_ROWS.min(end - r0);
                let blk = &mut buf[..n * genes];
                x.gather_range(r0, n, blk)?;
                if let Some(i) = blk.iter().position(|v| !v.is_finite()) {
                    return Err(Error::invalid(format!("PCA reference: non-finite value in row {}", r0 + i / genes)));
                }
                for row in blk.chunks_exact(genes) {
                    for (a, &v) in s.iter_mut().zip(row) {
                        *a += v as f64;
                    }
                }
            }
            Ok(s)
        })
        .collect();
    let mut mean = vec![0.0f64; genes];
    for p in parts {
        for (m, v) in mean.iter_mut().zip(&p?) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    Ok(mean)
}

/// Covariance `Xcᵀ Xc/(N−1)`, [G × G] row-major f64, by f64 GEMM over
/// blocks of centred rows accumulated in place (f32 GEMM was measured to
/// leave ~5e-7 relative error in the eigenvalues; the baseline is compared
/// against scikit-learn's f64 PCA, so the covariance is formed in f64).
fn covariance(x: &dyn RowSource, mean: &[f64]) -> Result<(Vec<f64>, f64)> {
    let (rows, genes) = (x.n_rows(), x.n_cols());
    let mut acc = vec![0.0f64; genes * genes]; // [G × G]
    let mut blk = vec![0.0f32; BLOCK_ROWS.min(rows) * genes]; // [r × G] as read
    let mut blk_c = vec![0.0f64; BLOCK_ROWS.min(rows) * genes]; // [r × G] centred
    let mut sum_sq = Vec::with_capacity(rows.div_ceil(BLOCK_ROWS)); // per block, summed in order
    for (b, r0) in (0..rows).step_by(BLOCK_ROWS).enumerate() {
        let r = BLOCK_ROWS.min(rows - r0);
        x.gather_range(r0, r, &mut blk[..r * genes])?;
        let c = &mut blk_c[..r * genes];
        centre(&blk[..r * genes], mean, c, |v| v);
        sum_sq.push(c.iter().map(|v| v.powi(2)).sum::<f64>());
        // acc += Bᵀ B: A = Bᵀ (G×r: row stride 1, col stride G), B (r×G).
        gemm_raw(genes, genes, r, acc.as_mut_ptr(), genes, 1, b > 0, c.as_ptr(), 1, genes,
            c.as_ptr(), genes, 1, 1.0, 1.0, gemm::Parallelism::Rayon(0));
        // The GEMM's freed packing buffer (see the function's doc).
        crate::allocator::release_free_memory();
    }
    let inv = 1.0 / (rows - 1) as f64;
    acc.par_iter_mut().for_each(|a| *a *= inv);
    Ok((acc, sum_sq.iter().sum::<f64>()))
}

/// A row-major `rows × genes` buffer read as a [`RowSource`].
struct SliceRows<'a> {
    x: &'a [f32],
    rows: usize,
    genes: usize,
}

impl RowSource for SliceRows<'_> {
    fn n_rows(&self) -> usize {
        self.rows
    }
    fn n_cols(&self) -> usize {
        self.genes
    }
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        let g = self.genes;
        if out.len() != rows.len() * g || rows.iter().any(|&r| r >= self.rows) {
            return Err(Error::invalid("PCA: row gather out of range"));
        }
        for (dst, &r) in out.chunks_exact_mut(g).zip(rows) {
            dst.copy_from_slice(&self.x[r * g..(r + 1) * g]);
        }
        Ok(())
    }
    fn gather_range(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let g = self.genes;
        match self.x.get(start * g..(start + count) * g) {
            Some(src) if out.len() == src.len() => {
                out.copy_from_slice(src);
                Ok(())
            }
            _ => Err(Error::invalid("PCA: row range out of range")),
        }
    }
}

/// `Y = Xcᵀ(Xc Q)/(N−1)` by streaming row blocks (no G×G matrix);
/// Q and Y are G×r column-major. At most [`IMPLICIT_TASKS`] tasks, each
/// with one G×r partial sum, reduced in a fixed order (deterministic).
fn implicit_apply(x: &[f32], rows: usize, genes: usize, mean: &[f64], q: &[f64], y: &mut [f64], r: usize) {
    let per_task = rows.div_ceil(IMPLICIT_TASKS).max(BLOCK_ROWS);
    let parts: Vec<Vec<f64>> = x
        .par_chunks(per_task * genes)
        .map(|task| {
            let mut part = vec![0.0f64; genes * r]; // [G × r] col-major partial Xcᵀ·(Xc·Q)
            let mut c = vec![0.0f64; BLOCK_ROWS * genes]; // [b × G] centred
            let mut t = vec![0.0f64; BLOCK_ROWS * r]; // [b × r] = Xc·Q
            for blk in task.chunks(BLOCK_ROWS * genes) {
                let b = blk.len() / genes;
                centre(blk, mean, &mut c[..b * genes], |v| v);
                gemm_raw(b, r, genes, t.as_mut_ptr(), r, 1, false, c.as_ptr(), genes, 1, q.as_ptr(), 1, genes,
                    0.0, 1.0, gemm::Parallelism::None);
                gemm_raw(genes, r, b, part.as_mut_ptr(), 1, genes, true, c.as_ptr(), 1, genes, t.as_ptr(), r, 1,
                    1.0, 1.0, gemm::Parallelism::None);
            }
            part
        })
        .collect();
    y.iter_mut().for_each(|v| *v = 0.0);
    for p in &parts {
        for (a, v) in y.iter_mut().zip(p) {
            *a += v;
        }
    }
    let inv = 1.0 / (rows - 1) as f64;
    y.iter_mut().for_each(|v| *v *= inv);
}
