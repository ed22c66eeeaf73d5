//! One-dimensional loess exactly as netlib `dloess` computes it with its
//! defaults (`surface = "interpolate"`, `cell = 0.2`, family gaussian, no
//! robustness iterations), which is what scikit-misc's `loess` (and so
//! scanpy's `seurat_v3` HVG flavour) runs.
//!
//! Why not a direct local fit at every point: `dloess` does not fit at the
//! data points. It builds a k-d tree over x (cells of at most
//! ⌊n·span·cell⌋ points, split at the median with ties kept together), fits
//! the local quadratic only at the cell vertices — keeping the value and
//! the slope there — and evaluates every point by cubic Hermite
//! interpolation between the two vertices of its cell. On a 500-cell PBMC
//! sample this differs from the direct fit by up to 0.7 % in log10
//! variance, far above scanpy-matching tolerance, so the tree and the
//! interpolation are reproduced here (1-D case of `ehg126`, `ehg124`,
//! `ehg129`, `ehg127`, `ehg128`).
//!
//! The local fit at a vertex q: the nf = ⌊n·span + 1e-5⌋ nearest points,
//! tricube weights (1 − (d/h)³)³ with h the nf-th smallest distance (points
//! at exactly h get weight 0), least squares on [1, x−q, (x−q)²] with
//! equilibrated columns solved through QR and an SVD of R, singular values
//! below 100·ε·σ₁ dropped (pseudo-inverse). `dloess` prints a warning for
//! such near-singular fits, which scikit-misc turns into an error (so scanpy
//! fails there); here they are counted and the pseudo-inverse answer is used.

use crate::error::{Error, Result};

/// The fitted values at the data points and the number of near-singular
/// local fits (0 on well-spread data).
pub struct LoessFit {
    pub fitted: Vec<f64>,
    pub singular_fits: usize,
}

struct Cell {
    /// Inclusive range of sorted point positions (lo > hi: empty cell).
    lo: i64,
    hi: i64,
    /// Vertex indices of the lower and upper ends.
    vlo: usize,
    vhi: usize,
    /// Split value and the two children, for inner cells.
    split: Option<(f64, usize, usize)>,
}

/// Fits `y ~ x` by degree-2 loess with the given span, `dloess` cell 0.2.
pub fn loess_1d(x: &[f64], y: &[f64], span: f64) -> Result<LoessFit> {
    loess_1d_cell(x, y, span, 0.2)
}

pub fn loess_1d_cell(x: &[f64], y: &[f64], span: f64, cell: f64) -> Result<LoessFit> {
    let n = x.len();
    if y.len() != n {
        return Err(Error::invalid(format!("loess: {} x values for {} y values", n, y.len())));
    }
    if let Some(i) = x.iter().chain(y).position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("loess: non-finite input value at position {i}")));
    }
    if span.is_nan() || span <= 0.0 {
        return Err(Error::Config(format!("loess span must be > 0, got {span}")));
    }
    let nf = n.min((n as f64 * span + 1e-5).floor() as usize);
    // Three local coefficients need at least four neighbours (dloess error 104).
    if nf < 4 {
        return Err(Error::invalid(format!(
            "loess: span {span} over {n} points leaves {nf} neighbours per fit; need at least 4"
        )));
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (verts, cells) = build_tree(&sorted, (n as f64 * (span * cell)).floor() as i64);

    // Vertex values and slopes: [verts] each (value, slope).
    let mut singular_fits = 0usize;
    let mut vval = Vec::with_capacity(verts.len());
    let mut dist = vec![0.0f64; n];
    let mut scratch = vec![0.0f64; n];
    for &q in &verts {
        let (fit, singular) = local_fit(x, y, q, nf, span, &mut dist, &mut scratch)?;
        singular_fits += singular as usize;
        vval.push(fit);
    }

    let fitted = x
        .iter()
        .map(|&z| {
            let mut c = &cells[0];
            while let Some((xi, lo, hi)) = c.split {
                c = if z <= xi { &cells[lo] } else { &cells[hi] };
            }
            let (v0, v1) = (verts[c.vlo], verts[c.vhi]);
            let ((g0, d0), (g1, d1)) = (vval[c.vlo], vval[c.vhi]);
            let h = (z - v0) / (v1 - v0);
            let phi0 = (1.0 - h) * (1.0 - h) * (1.0 + 2.0 * h);
            let phi1 = h * h * (3.0 - 2.0 * h);
            let psi0 = h * (1.0 - h) * (1.0 - h);
            let psi1 = h * h * (h - 1.0);
            phi0 * g0 + phi1 * g1 + (psi0 * d0 + psi1 * d1) * (v1 - v0)
        })
        .collect();
    Ok(LoessFit { fitted, singular_fits })
}

/// The k-d tree of `ehg124` in one dimension over sorted values: cells are
/// processed breadth-first and split at the median position, moved to the
/// nearest position (order 0, +1, −1, +2, …) where the value changes so
/// that ties stay in one cell; a cell is a leaf when it holds ≤ `fc` points,
/// when the split value equals one of its ends, or when the tree is full.
fn build_tree(s: &[f64], fc: i64) -> (Vec<f64>, Vec<Cell>) {
    let n = s.len();
    let (alpha, beta) = (s[0], s[n - 1]);
    let mu = 0.005 * (beta - alpha).max(1e-10 * alpha.abs().max(beta.abs()) + 1e-30);
    let mut verts = vec![alpha - mu, beta + mu];
    let mut cells = vec![Cell { lo: 0, hi: n as i64 - 1, vlo: 0, vhi: 1, split: None }];
    let cap = n.max(200); // nvmax = ncmax = max(200, n)
    let mut p = 0;
    while p < cells.len() {
        let (l, u, vlo, vhi) = (cells[p].lo, cells[p].hi, cells[p].vlo, cells[p].vhi);
        let diam = verts[vhi] - verts[vlo];
        let mut leaf = u - l < fc || diam <= 0.0;
        if !leaf {
            leaf = cap < cells.len() + 2 || (cap as f64) < verts.len() as f64 + 1.0;
        }
        let mut m = (l + u) / 2;
        if !leaf {
            let mut offset: i64 = 0;
            while m + offset < u && m + offset >= l {
                let k = (m + offset) as usize;
                if s[k] == s[k + 1] {
                    offset = -offset;
                    if offset >= 0 {
                        offset += 1;
                    }
                } else {
                    m += offset;
                    break;
                }
            }
            let xm = s[m as usize];
            leaf = verts[vlo] == xm || verts[vhi] == xm;
        }
        if !leaf {
            let xi = s[m as usize];
            verts.push(xi);
            let nv = verts.len() - 1;
            let (a, b) = (cells.len(), cells.len() + 1);
            cells.push(Cell { lo: l, hi: m, vlo, vhi: nv, split: None });
            cells.push(Cell { lo: m + 1, hi: u, vlo: nv, vhi, split: None });
            cells[p].split = Some((xi, a, b));
        }
        p += 1;
    }
    (verts, cells)
}

/// The local quadratic fit at `q` (`ehg127`): returns (value, slope) and
/// whether the fit was near-singular.
fn local_fit(
    x: &[f64],
    y: &[f64],
    q: f64,
    nf: usize,
    span: f64,
    dist: &mut [f64],
    scratch: &mut [f64],
) -> Result<((f64, f64), bool)> {
    for (d, &xi) in dist.iter_mut().zip(x) {
        *d = (xi - q) * (xi - q);
    }
    scratch.copy_from_slice(dist);
    let (_, nth, _) = scratch.select_nth_unstable_by(nf - 1, f64::total_cmp);
    let rho = *nth * span.max(1.0);
    if rho.is_nan() || rho <= 0.0 {
        return Err(Error::invalid(format!(
            "loess: zero-width neighbourhood at x = {q} (too many identical x values for the span)"
        )));
    }
    // Weighted design rows [w, w(x−q), w(x−q)²] and w·y for points inside
    // the neighbourhood (the rest have weight 0).
    let mut b: Vec<[f64; 3]> = Vec::with_capacity(nf);
    let mut eta: Vec<f64> = Vec::with_capacity(nf);
    for i in 0..x.len() {
        if dist[i] < rho {
            let r = (dist[i] / rho).sqrt();
            let w = ((1.0 - r * r * r).powi(3)).sqrt();
            let t = x[i] - q;
            b.push([w, w * t, w * t * t]);
            eta.push(w * y[i]);
        }
    }
    // Equilibrate columns.
    let mut colnor = [1.0f64; 3];
    for j in 0..3 {
        let s = b.iter().map(|r| r[j] * r[j]).sum::<f64>().sqrt();
        if s > 0.0 {
            colnor[j] = s;
            b.iter_mut().for_each(|r| r[j] /= s);
        }
    }
    let (r, qte) = householder_qr(&mut b, &mut eta);
    let (u, sigma, v) = svd3(r);
    let tol = sigma[0] * (100.0 * f64::EPSILON);
    let singular = sigma[2] <= tol;
    let mut gamma = [0.0f64; 3];
    for j in 0..3 {
        if tol < sigma[j] {
            gamma[j] = (0..3).map(|i| u[i][j] * qte[i]).sum::<f64>() / sigma[j];
        }
    }
    let coef = |j: usize| (0..3).map(|i| v[j][i] * gamma[i]).sum::<f64>() / colnor[j];
    Ok(((coef(0), coef(1)), singular))
}

/// Householder QR of the m×3 matrix `b` (in place); returns R (3×3, upper)
/// and the first three entries of Qᵀ·eta.
#[allow(clippy::needless_range_loop)] // index loops as in the math (LAPACK's dqrdc)
fn householder_qr(b: &mut [[f64; 3]], eta: &mut [f64]) -> ([[f64; 3]; 3], [f64; 3]) {
    let m = b.len();
    let mut r = [[0.0f64; 3]; 3];
    for k in 0..3.min(m) {
        let norm = (k..m).map(|i| b[i][k] * b[i][k]).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if b[k][k] > 0.0 { -norm } else { norm };
        // v = x − alpha·e1, stored in column k.
        b[k][k] -= alpha;
        let vnorm2: f64 = (k..m).map(|i| b[i][k] * b[i][k]).sum();
        if vnorm2 > 0.0 {
            for j in k + 1..3 {
                let d: f64 = (k..m).map(|i| b[i][k] * b[i][j]).sum::<f64>() * 2.0 / vnorm2;
                for i in k..m {
                    b[i][j] -= d * b[i][k];
                }
            }
            let d: f64 = (k..m).map(|i| b[i][k] * eta[i]).sum::<f64>() * 2.0 / vnorm2;
            for i in k..m {
                eta[i] -= d * b[i][k];
            }
        }
        r[k][k] = alpha;
        for j in k + 1..3 {
            r[k][j] = b[k][j];
        }
    }
    let qte = [eta.first().copied().unwrap_or(0.0), eta.get(1).copied().unwrap_or(0.0), eta.get(2).copied().unwrap_or(0.0)];
    (r, qte)
}

/// SVD of a 3×3 matrix by one-sided Jacobi: A = U·diag(σ)·Vᵀ with σ
/// descending. Returns (U, σ, V) with U[i][j], V[i][j] row i, column j.
fn svd3(a: [[f64; 3]; 3]) -> ([[f64; 3]; 3], [f64; 3], [[f64; 3]; 3]) {
    let mut w = a;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..2 {
            for q in p + 1..3 {
                let alpha: f64 = (0..3).map(|i| w[i][p] * w[i][p]).sum();
                let beta: f64 = (0..3).map(|i| w[i][q] * w[i][q]).sum();
                let gamma: f64 = (0..3).map(|i| w[i][p] * w[i][q]).sum();
                if gamma.abs() <= 1e-300 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for row in w.iter_mut().chain(v.iter_mut()) {
                    let (x, y) = (row[p], row[q]);
                    row[p] = c * x - s * y;
                    row[q] = s * x + c * y;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..3).map(|j| (0..3).map(|i| w[i][j] * w[i][j]).sum::<f64>().sqrt()).collect();
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    let (mut u, mut sv, mut vs) = ([[0.0f64; 3]; 3], [0.0f64; 3], [[0.0f64; 3]; 3]);
    for (k, &j) in order.iter().enumerate() {
        sv[k] = norms[j];
        for i in 0..3 {
            u[i][k] = if norms[j] > 0.0 { w[i][j] / norms[j] } else { 0.0 };
            vs[i][k] = v[i][j];
        }
    }
    (u, sv, vs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_a_quadratic_exactly() {
        let x: Vec<f64> = (0..200).map(|i| i as f64 / 10.0).collect();
        let y: Vec<f64> = x.iter().map(|&t| 1.0 + 0.5 * t - 0.02 * t * t).collect();
        let f = loess_1d(&x, &y, 0.3).unwrap();
        for (a, b) in f.fitted.iter().zip(&y) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        assert_eq!(f.singular_fits, 0);
    }

    #[test]
    fn svd_of_diagonal() {
        let (_, s, _) = svd3([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 2.0]]);
        assert!((s[0] - 3.0).abs() < 1e-12 && (s[1] - 2.0).abs() < 1e-12 && (s[2] - 1.0).abs() < 1e-12);
    }
}
