//! DESC (Li et al. 2020) on top of the fusion block: soft assignments `Q`
//! of `z*` to centroids `μ` under a Student-t kernel, a sharpened target
//! `P` refreshed once per epoch over all cells, and the loss KL(P‖Q)
//! (batch mean) trained into the fusion weights and `μ` with AdamW.
//!
//! The per-batch math is three backend calls (kernels/desc.cu):
//! `desc_soft_assign` → `desc_kl_grad` (loss, ∂L/∂dist, ∂L/∂z*) →
//! `desc_centroid_grad` (∂L/∂μ).

use serde::{Deserialize, Serialize};

use super::fusion::{tokens, Fusion};
use super::kmeans::Uniforms;
use crate::backend::{ensure, Backend};
use crate::data::matrix::DenseMatrix;
use crate::nn::join;
use crate::nn::params::{zero_grads, Adam, Module, Param};

/// One epoch of DESC: the mean batch KL loss and the fraction of cells
/// whose hard assignment changed at the target refresh that opened it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SubtypeEpoch {
    pub epoch: usize,
    pub kl: f64,
    pub changed: f64,
}

/// The fusion block and the centroids, as one module for the optimiser.
pub struct DescModel<B: Backend> {
    pub fusion: Fusion<B>,
    /// `[k, d]`.
    pub mu: Param<B>,
    pub k: usize,
    pub nu: f32,
}

impl<B: Backend> Module<B> for DescModel<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.fusion.visit(&join(prefix, "fusion"), f);
        f(&join(prefix, "mu"), &mut self.mu);
    }
}

/// Work buffers of one training step (`b` cells).
struct Step<B: Backend> {
    tok: B::Buf,
    p: B::Buf,
    dist: B::Buf,
    q: B::Buf,
    g: B::Buf,
    dz: B::Buf,
}

impl<B: Backend> DescModel<B> {
    pub fn new(be: &B, fusion: Fusion<B>, centroids: &DenseMatrix, nu: f32) -> Self {
        let mut mu = Param::new(be, &[centroids.rows, centroids.cols]);
        be.write(&mut mu.value, 0, &centroids.data);
        DescModel { fusion, mu, k: centroids.rows, nu }
    }

    /// `Q: [n, k]` of `z*: [n, d]` (soft assignments of given embeddings).
    pub fn soft_assign(&self, be: &B, zs: &DenseMatrix) -> DenseMatrix {
        let (n, d, k) = (zs.rows, zs.cols, self.k);
        let mut q = DenseMatrix::zeros(n, k);
        if n == 0 {
            return q;
        }
        let zb = be.upload(&zs.data);
        let (mut dist, mut qb) = (be.zeros(n * k), be.zeros(n * k));
        be.desc_soft_assign(n, k, d, self.nu, &zb, &self.mu.value, &mut dist, &mut qb);
        be.download_into(&qb, &mut q.data);
        q
    }

    /// One pass over all cells in a seeded random order, `batch` cells a
    /// step, against the fixed target `p: [n, k]`; returns the mean loss.
    #[allow(clippy::too_many_arguments)]
    pub fn train_epoch(
        &mut self,
        be: &B,
        opt: &mut Adam,
        z: &DenseMatrix,
        zeta: &DenseMatrix,
        p: &DenseMatrix,
        batch: usize,
        u: &mut Uniforms,
    ) -> f64 {
        let (n, d, k) = (z.rows, z.cols, self.k);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, u.below(i + 1));
        }
        let mut st: Step<B> = Step { tok: be.zeros(0), p: be.zeros(0), dist: be.zeros(0), q: be.zeros(0), g: be.zeros(0), dz: be.zeros(0) };
        let (mut host, mut ph) = (Vec::new(), Vec::new());
        let (mut total, mut steps) = (0.0f64, 0usize);
        for chunk in order.chunks(batch.max(1)) {
            let b = chunk.len();
            tokens(z, zeta, chunk.iter().copied(), &mut host);
            ph.clear();
            chunk.iter().for_each(|&i| ph.extend_from_slice(p.row(i)));
            ensure(be, &mut st.tok, host.len());
            ensure(be, &mut st.p, b * k);
            for buf in [&mut st.dist, &mut st.q, &mut st.g] {
                ensure(be, buf, b * k);
            }
            ensure(be, &mut st.dz, b * d);
            be.write(&mut st.tok, 0, &host);
            be.write(&mut st.p, 0, &ph);
            zero_grads(be, self);
            let zs = self.fusion.forward(be, &st.tok, b, true);
            be.desc_soft_assign(b, k, d, self.nu, zs, &self.mu.value, &mut st.dist, &mut st.q);
            let loss = be.desc_kl_grad(b, k, d, self.nu, 1.0 / b as f32, zs, &self.mu.value, &st.p, &st.dist, &mut st.g, &mut st.dz);
            be.desc_centroid_grad(b, k, d, zs, &self.mu.value, &st.g, &mut self.mu.grad);
            self.fusion.backward(be, &st.dz);
            opt.step(be, self);
            total += loss as f64;
            steps += 1;
        }
        if steps == 0 { 0.0 } else { total / steps as f64 }
    }
}

/// DESC's target: `p_ij ∝ q_ij² / f_j` with `f_j = Σ_i q_ij`, rows
/// normalised. A centroid with no mass (`f_j = 0`) gets no target mass.
pub fn target_distribution(q: &DenseMatrix) -> DenseMatrix {
    let (n, k) = (q.rows, q.cols);
    let mut f = vec![0.0f64; k];
    for i in 0..n {
        for (fj, &v) in f.iter_mut().zip(q.row(i)) {
            *fj += v as f64;
        }
    }
    let mut p = DenseMatrix::zeros(n, k);
    for i in 0..n {
        let w: Vec<f64> = q.row(i).iter().zip(&f).map(|(&v, &fj)| if fj > 0.0 { (v as f64).powi(2) / fj } else { 0.0 }).collect();
        let s: f64 = w.iter().sum();
        for (o, wv) in p.row_mut(i).iter_mut().zip(&w) {
            *o = if s > 0.0 { (wv / s) as f32 } else { 1.0 / k as f32 };
        }
    }
    p
}

/// Row argmax (first maximum on ties).
pub fn hard_labels(q: &DenseMatrix) -> Vec<u32> {
    (0..q.rows)
        .map(|i| {
            let r = q.row(i);
            let mut best = 0usize;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}
