//! CPU twin of kernels/desc.cu: DESC's Student-t soft assignment and the
//! backward of its KL(P‖Q) loss (Module IV). Plain loops, rayon over rows.
//!
//! Shapes: `z: [rows, dim]` embeddings, `mu: [k, dim]` centroids,
//! `dist, q, p, g: [rows, k]`, `dz: [rows, dim]`, `dmu: [k, dim]`.
//!
//! With `a = (ν + 1)/2` and `D_ij = ‖z_i − μ_j‖²`:
//! - `log t_ij = −a·ln(1 + D_ij/ν)`, `q_ij = t_ij / Σ_l t_il` (computed as a
//!   softmax of `log t`, so far-away cells never underflow to 0/0);
//! - `L = scale · Σ_ij p_ij (ln p_ij − ln q_ij)` (terms with `p = 0` are 0);
//! - `∂L/∂D_ij = scale·a·(p_ij − q_ij·P_i)/(ν + D_ij)` with `P_i = Σ_j p_ij`;
//! - `∂L/∂z_i = 2 Σ_j g_ij (z_i − μ_j)`, `∂L/∂μ_j = −2 Σ_i g_ij (z_i − μ_j)`
//!   where `g = ∂L/∂D`.

use rayon::prelude::*;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 16;

/// `log t` of one row of distances.
fn log_t(nu: f32, d: f32) -> f32 {
    -0.5 * (nu + 1.0) * (d / nu).ln_1p()
}

/// `ln Σ_j exp(lt_j)` of one row, max-shifted.
fn log_sum_exp(lt: impl Iterator<Item = f32> + Clone) -> f32 {
    let mx = lt.clone().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = lt.map(|v| (v - mx).exp()).sum();
    mx + s.ln()
}

/// Writes `dist` and `q` (see the module doc).
#[allow(clippy::too_many_arguments)]
pub fn desc_soft_assign(
    rows: usize,
    k: usize,
    dim: usize,
    nu: f32,
    z: &[f32],
    mu: &[f32],
    dist: &mut [f32],
    q: &mut [f32],
) {
    assert!(z.len() >= rows * dim && mu.len() >= k * dim, "desc_soft_assign: inputs too short");
    assert!(dist.len() >= rows * k && q.len() >= rows * k, "desc_soft_assign: outputs too short");
    if rows == 0 || k == 0 {
        return;
    }
    let (dist, q) = (&mut dist[..rows * k], &mut q[..rows * k]);
    dist.par_chunks_mut(ROWS_PER_TASK * k).zip(q.par_chunks_mut(ROWS_PER_TASK * k)).enumerate().for_each(
        |(t, (dc, qc))| {
            for (r, (drow, qrow)) in dc.chunks_mut(k).zip(qc.chunks_mut(k)).enumerate() {
                let i = t * ROWS_PER_TASK + r;
                let zi = &z[i * dim..(i + 1) * dim];
                for (j, dj) in drow.iter_mut().enumerate() {
                    let mj = &mu[j * dim..(j + 1) * dim];
                    *dj = zi.iter().zip(mj).map(|(a, b)| (a - b) * (a - b)).sum();
                }
                let lse = log_sum_exp(drow.iter().map(|&d| log_t(nu, d)));
                for (qj, &dj) in qrow.iter_mut().zip(drow.iter()) {
                    *qj = (log_t(nu, dj) - lse).exp();
                }
            }
        },
    );
}

/// Writes `g = ∂L/∂dist` and `dz = ∂L/∂z` from the saved `dist`; returns
/// `L` (summed in f64). `scale` is usually `1/rows` (the batch mean).
#[allow(clippy::too_many_arguments)]
pub fn desc_kl_grad(
    rows: usize,
    k: usize,
    dim: usize,
    nu: f32,
    scale: f32,
    z: &[f32],
    mu: &[f32],
    p: &[f32],
    dist: &[f32],
    g: &mut [f32],
    dz: &mut [f32],
) -> f64 {
    assert!(z.len() >= rows * dim && mu.len() >= k * dim, "desc_kl_grad: inputs too short");
    assert!(p.len() >= rows * k && dist.len() >= rows * k, "desc_kl_grad: inputs too short");
    assert!(g.len() >= rows * k && dz.len() >= rows * dim, "desc_kl_grad: outputs too short");
    if rows == 0 || k == 0 {
        dz[..rows * dim].fill(0.0);
        return 0.0;
    }
    let a = 0.5 * (nu + 1.0);
    let (g, dz) = (&mut g[..rows * k], &mut dz[..rows * dim]);
    g.par_chunks_mut(k)
        .zip(dz.par_chunks_mut(dim))
        .enumerate()
        .map(|(i, (grow, dzrow))| {
            let drow = &dist[i * k..(i + 1) * k];
            let prow = &p[i * k..(i + 1) * k];
            let lse = log_sum_exp(drow.iter().map(|&d| log_t(nu, d)));
            let p_sum: f32 = prow.iter().sum();
            let mut loss = 0.0f64;
            for j in 0..k {
                let lq = log_t(nu, drow[j]) - lse;
                let pj = prow[j];
                if pj > 0.0 {
                    loss += (pj * (pj.ln() - lq)) as f64;
                }
                grow[j] = scale * a * (pj - lq.exp() * p_sum) / (nu + drow[j]);
            }
            let zi = &z[i * dim..(i + 1) * dim];
            for (c, out) in dzrow.iter_mut().enumerate() {
                let mut s = 0.0f32;
                for j in 0..k {
                    s += grow[j] * (zi[c] - mu[j * dim + c]);
                }
                *out = 2.0 * s;
            }
            scale as f64 * loss
        })
        .sum()
}

/// Accumulates `dmu += ∂L/∂μ` from `g = ∂L/∂dist`.
#[allow(clippy::too_many_arguments)]
pub fn desc_centroid_grad(rows: usize, k: usize, dim: usize, z: &[f32], mu: &[f32], g: &[f32], dmu: &mut [f32]) {
    assert!(z.len() >= rows * dim && mu.len() >= k * dim && g.len() >= rows * k, "desc_centroid_grad: inputs too short");
    assert!(dmu.len() >= k * dim, "desc_centroid_grad: output too short");
    if k == 0 || dim == 0 {
        return;
    }
    dmu[..k * dim].par_chunks_mut(dim).enumerate().for_each(|(j, drow)| {
        let mj = &mu[j * dim..(j + 1) * dim];
        for (c, out) in drow.iter_mut().enumerate() {
            let mut s = 0.0f32;
            for i in 0..rows {
                s += g[i * k + j] * (z[i * dim + c] - mj[c]);
            }
            *out += -2.0 * s;
        }
    });
}
