//! Symmetric eigen-solvers in f64 for the PCA baseline.
//!
//! - [`jacobi`]: cyclic Jacobi rotations on a dense symmetric matrix; every
//!   eigenpair to full accuracy; O(n³) per sweep, for n up to a few hundred
//!   (and for the small Rayleigh–Ritz problems of the subspace solver).
//! - [`subspace`]: block subspace iteration with Rayleigh–Ritz for the top k
//!   eigenpairs of a positive semi-definite operator given only by its
//!   product with a block of vectors; seeded random start, modified
//!   Gram–Schmidt (twice) for orthonormality, stops on Ritz residuals.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

/// Eigenvalues (descending) and eigenvectors of a symmetric n×n matrix
/// (row-major, consumed). Returns `(values, vectors)` with eigenvector `i`
/// in `vectors[i*n..(i+1)*n]`.
pub fn jacobi(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(a.len(), n * n);
    let mut v = vec![0.0f64; n * n]; // [n × n], columns are eigenvectors
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let frob: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let mut off = 0.0f64;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off.sqrt() <= 1e-15 * frob || frob == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                // Rotation J (c at pp, qq; s at pq; −s at qp) zeroing a_pq in JᵀAJ.
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0.0f64; n * n];
    for (r, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[r * n + k] = v[k * n + i];
        }
    }
    (values, vectors)
}

/// Result of [`subspace`].
pub struct TopEigen {
    /// Top-k eigenvalues, descending.
    pub values: Vec<f64>,
    /// k eigenvectors of length n, vector `i` at `[i*n..(i+1)*n]`.
    pub vectors: Vec<f64>,
    pub iterations: usize,
    /// All k Ritz residuals ‖Ax − θx‖ fell below `tol · θ₁`.
    pub converged: bool,
}

/// Orthonormalises the r columns (each contiguous, length n) of `q` in
/// place by two passes of modified Gram–Schmidt. A column that vanishes
/// (rank deficiency) is replaced by a fresh random direction.
fn orthonormalize(q: &mut [f64], n: usize, r: usize, rng: &mut Xoshiro256PlusPlus) {
    for j in 0..r {
        let mut attempts = 0;
        loop {
            let norm0: f64 = q[j * n..(j + 1) * n].iter().map(|x| x * x).sum::<f64>().sqrt();
            for _pass in 0..2 {
                for i in 0..j {
                    let (head, tail) = q.split_at_mut(j * n);
                    let qi = &head[i * n..(i + 1) * n];
                    let qj = &mut tail[..n];
                    let d: f64 = qi.iter().zip(qj.iter()).map(|(a, b)| a * b).sum();
                    for (y, x) in qj.iter_mut().zip(qi) {
                        *y -= d * x;
                    }
                }
            }
            let qj = &mut q[j * n..(j + 1) * n];
            let norm: f64 = qj.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-10 * norm0 && norm > 0.0 || attempts >= 3 {
                let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                qj.iter_mut().for_each(|x| *x *= inv);
                break;
            }
            attempts += 1;
            for x in qj.iter_mut() {
                *x = StandardNormal.sample(rng);
            }
        }
    }
}

/// A symmetric operator applied to r column-major columns: `(x, y, r)`
/// writes `A·x` (n×r) into `y`.
pub type BlockOp<'a> = dyn Fn(&[f64], &mut [f64], usize) + 'a;

/// Top-k eigenpairs of the symmetric PSD n×n operator `apply` (which maps
/// r column-major columns `x` (n×r) to `A x` written into `y`), with block
/// size r ≥ k (oversampling speeds convergence by the ratio
/// λ_{r+1}/λ_k per iteration).
pub fn subspace(
    n: usize,
    k: usize,
    r: usize,
    apply: &BlockOp<'_>,
    tol: f64,
    max_iter: usize,
    seed: u64,
) -> TopEigen {
    let r = r.max(k).min(n);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut q: Vec<f64> = (0..n * r).map(|_| StandardNormal.sample(&mut rng)).collect(); // [r cols × n]
    orthonormalize(&mut q, n, r, &mut rng);
    let mut y = vec![0.0f64; n * r]; // [r cols × n] A·Q
    let mut iterations = 0;
    loop {
        apply(&q, &mut y, r);
        iterations += 1;
        // Rayleigh–Ritz: H = Qᵀ A Q (r×r), H = W Θ Wᵀ.
        let mut h = vec![0.0f64; r * r];
        for i in 0..r {
            for j in i..r {
                let d: f64 = q[i * n..(i + 1) * n].iter().zip(&y[j * n..(j + 1) * n]).map(|(a, b)| a * b).sum();
                h[i * r + j] = d;
                h[j * r + i] = d;
            }
        }
        let (theta, w) = jacobi(h, r);
        // Ritz vectors X = Q W and A X = Y W (columns by the order of θ).
        let mut x = vec![0.0f64; n * r];
        let mut ax = vec![0.0f64; n * r];
        for c in 0..r {
            let wc = &w[c * r..(c + 1) * r];
            let (xc, axc) = (&mut x[c * n..(c + 1) * n], &mut ax[c * n..(c + 1) * n]);
            for (i, &wi) in wc.iter().enumerate() {
                for ((xv, av), (&qv, &yv)) in xc.iter_mut().zip(axc.iter_mut()).zip(q[i * n..(i + 1) * n].iter().zip(&y[i * n..(i + 1) * n])) {
                    *xv += wi * qv;
                    *av += wi * yv;
                }
            }
        }
        let scale = theta[0].abs().max(f64::MIN_POSITIVE);
        let worst = (0..k)
            .map(|c| {
                let t = theta[c];
                x[c * n..(c + 1) * n]
                    .iter()
                    .zip(&ax[c * n..(c + 1) * n])
                    .map(|(xv, av)| (av - t * xv).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0.0f64, f64::max);
        let converged = worst <= tol * scale;
        if converged || iterations >= max_iter {
            x.truncate(k * n);
            return TopEigen { values: theta[..k].to_vec(), vectors: x, iterations, converged };
        }
        // Next block: orthonormalised A·X (keeps the Ritz order).
        q = ax;
        orthonormalize(&mut q, n, r, &mut rng);
    }
}
