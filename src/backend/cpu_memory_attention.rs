//! Memory attention of Module I's memory block (ARCHITECTURE §3), the CPU twin
//! of the fused kernel: per row of logits `l = z Qᵀ`,
//!
//! ```text
//! w  = softmax(l / τ)
//! w' = relu(w − λ) · w / (|w − λ| + ε)        hard shrinkage, ε = 1e-12
//! ŵ  = w' / max(Σ_k |w'_k|, 1e-12)             L1 renormalisation (F.normalize p=1)
//! ```
//!
//! One pass per row forward; the backward recomputes w' and its sum from
//! the saved softmax `w`, so only `w` is kept between the passes.

use rayon::prelude::*;

/// ε inside the shrinkage (as the authors' code).
pub const SHRINK_EPS: f32 = 1e-12;
/// Floor of the L1 norm in the renormalisation (as `F.normalize`).
pub const NORM_EPS: f32 = 1e-12;

#[inline(always)]
fn shrink(w: f32, lambda: f32) -> f32 {
    let d = w - lambda;
    d.max(0.0) * w / (d.abs() + SHRINK_EPS)
}

/// d shrink / d w, as autograd differentiates the expression above
/// (0 where `w ≤ λ`: relu's derivative at 0 is 0).
#[inline(always)]
fn shrink_grad(w: f32, lambda: f32) -> f32 {
    let d = w - lambda;
    if d <= 0.0 {
        return 0.0;
    }
    let den = d + SHRINK_EPS;
    // relu'(d)·w/den + d·(1/den − w/den²)
    w / den + d * (1.0 / den - w / (den * den))
}

/// Forward over `logits: [rows, cols]`: writes the softmax `w: [rows, cols]`
/// (saved for the backward) and the attention weights `out: [rows, cols]`.
pub fn memory_attention_forward(
    rows: usize,
    cols: usize,
    inv_tau: f32,
    lambda: f32,
    logits: &[f32],
    w: &mut [f32],
    out: &mut [f32],
) {
    assert!(logits.len() == rows * cols && w.len() == rows * cols && out.len() == rows * cols);
    w.par_chunks_mut(cols)
        .zip(out.par_chunks_mut(cols))
        .zip(logits.par_chunks(cols))
        .for_each(|((w, o), l)| {
            let max = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * inv_tau;
            let mut sum = 0.0f32;
            for (wi, &li) in w.iter_mut().zip(l) {
                *wi = (li * inv_tau - max).exp();
                sum += *wi;
            }
            let inv = 1.0 / sum;
            let mut l1 = 0.0f32;
            for (wi, oi) in w.iter_mut().zip(o.iter_mut()) {
                *wi *= inv;
                *oi = shrink(*wi, lambda);
                l1 += *oi;
            }
            let inv_l1 = 1.0 / l1.max(NORM_EPS);
            o.iter_mut().for_each(|v| *v *= inv_l1);
        });
}

/// Backward: from the saved softmax `w` and `dout = ∂L/∂ŵ` (both
/// `[rows, cols]`) writes `dlogits = ∂L/∂l`.
pub fn memory_attention_backward(
    rows: usize,
    cols: usize,
    inv_tau: f32,
    lambda: f32,
    w: &[f32],
    dout: &[f32],
    dlogits: &mut [f32],
) {
    assert!(w.len() == rows * cols && dout.len() == rows * cols && dlogits.len() == rows * cols);
    dlogits
        .par_chunks_mut(cols)
        .zip(w.par_chunks(cols))
        .zip(dout.par_chunks(cols))
        .for_each(|((dl, w), dout)| {
            // Renormalisation: ŵ_j = w'_j / S. With S > eps,
            // ∂L/∂w'_j = (dout_j − Σ_k dout_k ŵ_k) / S; below the floor S is a constant.
            let s: f32 = w.iter().map(|&x| shrink(x, lambda)).sum();
            let (inv_s, proj) = if s > NORM_EPS {
                let inv_s = 1.0 / s;
                let proj: f32 = w.iter().zip(dout).map(|(&x, &d)| d * shrink(x, lambda) * inv_s).sum();
                (inv_s, proj)
            } else {
                (1.0 / NORM_EPS, 0.0)
            };
            // Shrinkage, then dw_j = ∂L/∂w_j; stash it in dl.
            let mut dot = 0.0f32;
            for ((g, &x), &d) in dl.iter_mut().zip(w).zip(dout) {
                *g = (d - proj) * inv_s * shrink_grad(x, lambda);
                dot += *g * x;
            }
            // Softmax with temperature: dl_j = (1/τ) w_j (dw_j − Σ_k dw_k w_k).
            for (g, &x) in dl.iter_mut().zip(w) {
                *g = inv_tau * x * (*g - dot);
            }
        });
}

/// f64 reference of one row of the forward (softmax/τ, shrinkage, L1
/// renormalisation), for finite-difference tests here and in the memory block.
#[cfg(test)]
pub(crate) fn memory_attention_f64(inv_tau: f64, lambda: f64, l: &[f64]) -> Vec<f64> {
    let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|x| ((x - max) * inv_tau).exp()).collect();
    let s: f64 = e.iter().sum();
    let sh: Vec<f64> = e
        .iter()
        .map(|x| {
            let w = x / s;
            let d = w - lambda;
            d.max(0.0) * w / (d.abs() + SHRINK_EPS as f64)
        })
        .collect();
    let l1: f64 = sh.iter().sum::<f64>().max(NORM_EPS as f64);
    sh.iter().map(|x| x / l1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same composition in f64, for finite differences.
    fn forward_f64(cols: usize, inv_tau: f64, lambda: f64, l: &[f64]) -> Vec<f64> {
        assert_eq!(l.len(), cols);
        memory_attention_f64(inv_tau, lambda, l)
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn forward_rows_sum_to_one_and_shrink_small_weights() {
        let (rows, cols) = (3, 40);
        let mut s = 7;
        let l: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s) * 0.3).collect();
        let (mut w, mut o) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        memory_attention_forward(rows, cols, 20.0, 0.01, &l, &mut w, &mut o);
        for r in 0..rows {
            let row = &o[r * cols..(r + 1) * cols];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            for (j, &v) in row.iter().enumerate() {
                if w[r * cols + j] <= 0.01 {
                    assert_eq!(v, 0.0);
                }
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (rows, cols) = (2, 24);
        let (inv_tau, lambda) = (1.0 / 0.05f32, 0.01f32);
        let mut s = 11;
        let l: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s) * 0.15).collect();
        let dout: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let (mut w, mut o) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        memory_attention_forward(rows, cols, inv_tau, lambda, &l, &mut w, &mut o);
        let mut dl = vec![0.0; rows * cols];
        memory_attention_backward(rows, cols, inv_tau, lambda, &w, &dout, &mut dl);
        let loss = |r: usize, lr: &[f64]| -> f64 {
            let o = forward_f64(cols, inv_tau as f64, lambda as f64, lr);
            o.iter().zip(&dout[r * cols..(r + 1) * cols]).map(|(a, &b)| a * b as f64).sum()
        };
        let h = 1e-6;
        let mut checked = 0;
        for r in 0..rows {
            let base: Vec<f64> = l[r * cols..(r + 1) * cols].iter().map(|&x| x as f64).collect();
            let w64 = forward_softmax(&base, inv_tau as f64);
            for j in 0..cols {
                // Skip points within h of the shrinkage kink, where the loss is not smooth.
                if (w64[j] - lambda as f64).abs() < 1e-4 {
                    continue;
                }
                let (mut p, mut m) = (base.clone(), base.clone());
                p[j] += h;
                m[j] -= h;
                let fd = (loss(r, &p) - loss(r, &m)) / (2.0 * h);
                let an = dl[r * cols + j] as f64;
                assert!((fd - an).abs() <= 2e-3 * (1.0 + fd.abs()), "row {r} col {j}: fd {fd} vs {an}");
                checked += 1;
            }
        }
        assert!(checked > rows * cols / 2);
    }

    fn forward_softmax(l: &[f64], inv_tau: f64) -> Vec<f64> {
        let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = l.iter().map(|x| ((x - max) * inv_tau).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }
}
