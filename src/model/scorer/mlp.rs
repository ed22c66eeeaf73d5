//! The scorer MLP f_p and its chunked full-batch forward and backward.
//!
//! `f_p: Linear(G,h1)→BN→LReLU→Dropout→Linear(h1,h2)→BN→LReLU→Dropout→
//! Linear(h2,1)→sigmoid`, trained on the whole target at once. BatchNorm
//! in training mode normalises with the statistics of the full batch, which
//! at 10^6 cells does not fit one pass, so the batch is processed in row
//! chunks with the BN statistics gathered in earlier passes:
//!
//! - forward: pass 1 computes the first product `h1 = δ W1ᵀ` and the
//!   column statistics of `h1 + b1`; pass 2 those of the second layer;
//!   pass 3 the scores. Each chunk then runs the fused kernels in their
//!   "given statistics" (eval) form with the full-batch mean and biased
//!   variance, plus the dropout mask, so the values equal the one-shot
//!   training-mode forward exactly.
//! - backward: training-mode BN's input gradient is
//!   `dz = γ·invstd·(g − mean(g) − x̂·mean(g·x̂))` with means over the whole
//!   batch. The fused backward in eval form gives `γ·invstd·g` per chunk
//!   and accumulates `Σg`, `Σg·x̂` (the β and γ gradients); the two mean
//!   terms are then subtracted on the host ([`bn_correct`]) in a later pass.
//!   So the gradient is the one-shot gradient, not an approximation
//!   (`tests/detect.rs` compares both at small N).
//!
//! Tensors are named as the PyTorch `nn.Sequential` (`0.weight`, `1.running_mean`,
//! `1.num_batches_tracked`, `4.weight`, …, `8.bias`); the BN tensors are
//! `nn::norm::BnParams`, as in every BN of the crate.

use crate::backend::rng::Stream;
use crate::backend::{Act, Backend, BnBwd, BnFwd, DropoutMask, Fused, Gemm, Trans};
use crate::nn::norm::BnParams;
use crate::nn::{init, join, Module, Param};

pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;

pub struct ScorerMlp<B: Backend> {
    pub genes: usize,
    pub h1: usize,
    pub h2: usize,
    pub slope: f32,
    pub dropout: f32,
    /// `[h1, G]`, `[h1]`.
    pub w1: Param<B>,
    pub b1: Param<B>,
    pub bn1: BnParams<B>,
    /// `[h2, h1]`, `[h2]`.
    pub w2: Param<B>,
    pub b2: Param<B>,
    pub bn2: BnParams<B>,
    /// `[1, h2]`, `[1]`.
    pub w3: Param<B>,
    pub b3: Param<B>,
}

impl<B: Backend> ScorerMlp<B> {
    /// Xavier-normal weights, PyTorch-default biases, BN γ = 1, β = 0.
    pub fn new(be: &B, genes: usize, h1: usize, h2: usize, slope: f32, dropout: f32, rng: &mut Stream) -> Self {
        let linear = |fan_in: usize, fan_out: usize, rng: &mut Stream| {
            let mut w = Param::new(be, &[fan_out, fan_in]);
            init::xavier_normal(be, &mut w.value, fan_in, fan_out, rng);
            let mut b = Param::new(be, &[fan_out]);
            init::bias_default(be, &mut b.value, fan_in, rng);
            (w, b)
        };
        let (w1, b1) = linear(genes, h1, rng);
        let (w2, b2) = linear(h1, h2, rng);
        let (w3, b3) = linear(h2, 1, rng);
        ScorerMlp { genes, h1, h2, slope, dropout, w1, b1, bn1: BnParams::new(be, h1), w2, b2, bn2: BnParams::new(be, h2), w3, b3 }
    }

    fn act(&self) -> Act {
        Act::LeakyRelu(self.slope)
    }
}

impl<B: Backend> Module<B> for ScorerMlp<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        let mut lin = |i: &str, w: &mut Param<B>, b: &mut Param<B>| {
            f(&join(prefix, &format!("{i}.weight")), w);
            f(&join(prefix, &format!("{i}.bias")), b);
        };
        lin("0", &mut self.w1, &mut self.b1);
        self.bn1.visit(&join(prefix, "1"), f);
        f(&join(prefix, "4.weight"), &mut self.w2);
        f(&join(prefix, "4.bias"), &mut self.b2);
        self.bn2.visit(&join(prefix, "5"), f);
        f(&join(prefix, "8.weight"), &mut self.w3);
        f(&join(prefix, "8.bias"), &mut self.b3);
    }
}

/// Full-batch statistics of one BN layer, as device buffers the fused
/// kernels read in their eval form (`running_mean` ← batch mean,
/// `running_var` ← biased batch variance), plus host copies for
/// [`bn_correct`].
pub struct BnStats<B: Backend> {
    pub mean: B::Buf,
    pub var: B::Buf,
    pub save_mean: B::Buf,
    pub save_invstd: B::Buf,
    pub host_mean: Vec<f32>,
    pub host_invstd: Vec<f32>,
}

impl<B: Backend> BnStats<B> {
    pub fn new(be: &B, n: usize) -> Self {
        BnStats {
            mean: be.zeros(n),
            var: be.zeros(n),
            save_mean: be.zeros(n),
            save_invstd: be.zeros(n),
            host_mean: vec![0.0; n],
            host_invstd: vec![1.0; n],
        }
    }
    /// Loads the statistics of a full pass.
    pub fn set(&mut self, be: &B, acc: &ColStats) {
        let mean: Vec<f32> = acc.mean.iter().map(|&m| m as f32).collect();
        let var: Vec<f32> = acc.var_biased().iter().map(|&v| v as f32).collect();
        be.write(&mut self.mean, 0, &mean);
        be.write(&mut self.var, 0, &var);
        // As the fused kernel computes it in its eval form.
        self.host_invstd = var.iter().map(|&v| 1.0 / (v + BN_EPS).sqrt()).collect();
        self.host_mean = mean;
    }
}

/// Column mean and sum of squared deviations, merged over row chunks
/// (Chan et al.'s pairwise update, in f64).
#[derive(Clone, Debug)]
pub struct ColStats {
    pub n: f64,
    pub mean: Vec<f64>,
    pub m2: Vec<f64>,
}

impl ColStats {
    pub fn new(cols: usize) -> Self {
        ColStats { n: 0.0, mean: vec![0.0; cols], m2: vec![0.0; cols] }
    }
    /// Adds the rows of `x + bias` (`x: [rows, cols]`).
    pub fn add(&mut self, x: &[f32], bias: &[f32]) {
        let cols = self.mean.len();
        let rows = x.len() / cols;
        if rows == 0 {
            return;
        }
        let mut mean = vec![0.0f64; cols];
        for r in x.chunks_exact(cols) {
            for ((m, &v), &b) in mean.iter_mut().zip(r).zip(bias) {
                *m += (v + b) as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        let mut m2 = vec![0.0f64; cols];
        for r in x.chunks_exact(cols) {
            for (((s, &v), &b), &m) in m2.iter_mut().zip(r).zip(bias).zip(&mean) {
                let d = (v + b) as f64 - m;
                *s += d * d;
            }
        }
        let (na, nb) = (self.n, rows as f64);
        let n = na + nb;
        for c in 0..cols {
            let d = mean[c] - self.mean[c];
            self.mean[c] += d * nb / n;
            self.m2[c] += m2[c] + d * d * na * nb / n;
        }
        self.n = n;
    }
    pub fn var_biased(&self) -> Vec<f64> {
        self.m2.iter().map(|&s| s / self.n.max(1.0)).collect()
    }
    pub fn var_unbiased(&self) -> Vec<f64> {
        self.m2.iter().map(|&s| s / (self.n - 1.0).max(1.0)).collect()
    }
}

/// Training-mode BN correction of an eval-form input gradient, in place:
/// `dz −= γ·invstd·(Σg/N + x̂·Σ(g·x̂)/N)` with `x̂ = (z + b − μ)·invstd`,
/// `z, dz: [rows, cols]`, sums over the full batch of `n` rows.
#[allow(clippy::too_many_arguments)]
pub fn bn_correct(dz: &mut [f32], z: &[f32], bias: &[f32], st_mean: &[f32], invstd: &[f32], gamma: &[f32], sum_g: &[f32], sum_gx: &[f32], n: usize) {
    let cols = bias.len();
    let inv_n = 1.0 / n as f32;
    let k0: Vec<f32> = (0..cols).map(|c| gamma[c] * invstd[c] * sum_g[c] * inv_n).collect();
    let k1: Vec<f32> = (0..cols).map(|c| gamma[c] * invstd[c] * sum_gx[c] * inv_n).collect();
    use rayon::prelude::*;
    dz.par_chunks_mut(cols).zip(z.par_chunks(cols)).for_each(|(d, zr)| {
        for c in 0..cols {
            let xhat = (zr[c] + bias[c] - st_mean[c]) * invstd[c];
            d[c] -= k0[c] + xhat * k1[c];
        }
    });
}

/// Device buffers for one chunk of `rows` cells.
pub struct Work<B: Backend> {
    pub rows: usize,
    /// `[rows, G]` deviations (for the first-layer weight gradient).
    pub delta: B::Buf,
    /// `[rows, h1]`: first product (pre-bias), activation, after dropout, gradients.
    pub h1: B::Buf,
    pub y1: B::Buf,
    pub y1d: B::Buf,
    pub dy1d: B::Buf,
    pub dy1: B::Buf,
    pub dz1: B::Buf,
    /// `[rows, h2]`.
    pub h2: B::Buf,
    pub y2: B::Buf,
    pub y2d: B::Buf,
    pub dy2d: B::Buf,
    pub dy2: B::Buf,
    pub dz2: B::Buf,
    /// `[rows]`.
    pub logit: B::Buf,
    pub p: B::Buf,
    pub dp: B::Buf,
    pub dlogit: B::Buf,
    /// Scratch accumulators for fused backward calls whose BN sums are not wanted.
    scratch_h1: (B::Buf, B::Buf),
    scratch_h2: (B::Buf, B::Buf),
    /// Dropout factors of the chunk for layers 1 and 2 (`[rows, h1]`,
    /// `[rows, h2]`; 0 or 1/(1−p)), hashed once and reused while the mask
    /// is the same: the per-element hash costs as much as a small product.
    pub f1: MaskFactors<B>,
    pub f2: MaskFactors<B>,
}

/// The factors of one dropout mask over a chunk, and which mask they are.
pub struct MaskFactors<B: Backend> {
    ones: B::Buf,
    factors: B::Buf,
    /// `(p bits, seed, offset)` of the mask in `factors`.
    key: Option<(u32, u64, u64)>,
}

impl<B: Backend> MaskFactors<B> {
    fn new(be: &B, len: usize) -> Self {
        let mut ones = be.zeros(len);
        be.fill(&mut ones, 1.0);
        MaskFactors { ones, factors: be.zeros(len), key: None }
    }

    /// `y = dropout(x)` under `mask` (a copy without one): the same values
    /// as [`Backend::dropout`], whose factor `1·f` is exactly `f`.
    pub fn apply(&mut self, be: &B, mask: &Option<DropoutMask>, x: &B::Buf, y: &mut B::Buf) {
        match mask {
            Some(m) => {
                let key = (m.p.to_bits(), m.seed, m.offset);
                if self.key != Some(key) {
                    be.dropout(m, &self.ones, &mut self.factors);
                    self.key = Some(key);
                }
                be.mul(x, &self.factors, y);
            }
            None => {
                let len = be.len(x);
                be.copy(x, 0, y, 0, len);
            }
        }
    }
}

impl<B: Backend> Work<B> {
    pub fn new(be: &B, rows: usize, genes: usize, h1: usize, h2: usize) -> Self {
        Work {
            rows,
            delta: be.zeros(rows * genes),
            h1: be.zeros(rows * h1),
            y1: be.zeros(rows * h1),
            y1d: be.zeros(rows * h1),
            dy1d: be.zeros(rows * h1),
            dy1: be.zeros(rows * h1),
            dz1: be.zeros(rows * h1),
            h2: be.zeros(rows * h2),
            y2: be.zeros(rows * h2),
            y2d: be.zeros(rows * h2),
            dy2d: be.zeros(rows * h2),
            dy2: be.zeros(rows * h2),
            dz2: be.zeros(rows * h2),
            logit: be.zeros(rows),
            p: be.zeros(rows),
            dp: be.zeros(rows),
            dlogit: be.zeros(rows),
            scratch_h1: (be.zeros(h1), be.zeros(h1)),
            scratch_h2: (be.zeros(h2), be.zeros(h2)),
            f1: MaskFactors::new(be, rows * h1),
            f2: MaskFactors::new(be, rows * h2),
        }
    }
}

/// Dropout masks of one step for a chunk starting at row `r0` (keyed by
/// the element's index in the full batch, so chunking does not change them).
#[derive(Clone, Copy, Debug)]
pub struct Masks {
    pub m1: Option<DropoutMask>,
    pub m2: Option<DropoutMask>,
}

impl Masks {
    pub fn none() -> Self {
        Masks { m1: None, m2: None }
    }
    pub fn at(base: Option<(u64, u64, u64)>, p: f32, r0: usize, h1: usize, h2: usize) -> Self {
        match base {
            Some((seed, o1, o2)) if p > 0.0 => Masks {
                m1: Some(DropoutMask { p, seed, offset: o1 + (r0 * h1) as u64 }),
                m2: Some(DropoutMask { p, seed, offset: o2 + (r0 * h2) as u64 }),
            },
            _ => Masks::none(),
        }
    }
}

fn eval_cfg(rows: usize, cols: usize, act: Act) -> Fused {
    Fused { rows, cols, act, dropout: None, train: false, eps: BN_EPS, momentum: BN_MOMENTUM }
}

impl<B: Backend> ScorerMlp<B> {
    /// `w.h1 = δ W1ᵀ` for the chunk's deviations already in `w.delta`.
    pub fn first_product(&self, be: &B, w: &mut Work<B>) {
        be.gemm(&Gemm::new(Trans::N, Trans::T, w.rows, self.h1, self.genes), &w.delta, &self.w1.value, &mut w.h1);
    }

    /// From `w.h1` to the second product `w.h2` (pre-bias), layer 1 with the
    /// full-batch statistics `s1`.
    pub fn layer1(&mut self, be: &B, w: &mut Work<B>, s1: &mut BnStats<B>, masks: &Masks) {
        self.layer1_act(be, w, s1, masks);
        let (r, h1, h2) = (w.rows, self.h1, self.h2);
        be.gemm(&Gemm::new(Trans::N, Trans::T, r, h2, h1), &w.y1d, &self.w2.value, &mut w.h2);
    }

    /// From `w.h1` to the layer-1 output after dropout `w.y1d`, without the
    /// second product (for passes that load `h2` from its cache).
    pub fn layer1_act(&mut self, be: &B, w: &mut Work<B>, s1: &mut BnStats<B>, masks: &Masks) {
        let (r, h1) = (w.rows, self.h1);
        let bn = BnFwd {
            gamma: &self.bn1.gamma.value,
            beta: &self.bn1.beta.value,
            running_mean: &mut s1.mean,
            running_var: &mut s1.var,
            save_mean: &mut s1.save_mean,
            save_invstd: &mut s1.save_invstd,
        };
        be.fused_forward(&eval_cfg(r, h1, self.act()), &w.h1, Some(&self.b1.value), Some(bn), &mut w.y1);
        w.f1.apply(be, &masks.m1, &w.y1, &mut w.y1d);
    }

    /// From `w.h2` to the scores `w.p`, layer 2 with statistics `s2`.
    pub fn layer2(&mut self, be: &B, w: &mut Work<B>, s2: &mut BnStats<B>, masks: &Masks) {
        let (r, h2) = (w.rows, self.h2);
        let bn = BnFwd {
            gamma: &self.bn2.gamma.value,
            beta: &self.bn2.beta.value,
            running_mean: &mut s2.mean,
            running_var: &mut s2.var,
            save_mean: &mut s2.save_mean,
            save_invstd: &mut s2.save_invstd,
        };
        be.fused_forward(&eval_cfg(r, h2, self.act()), &w.h2, Some(&self.b2.value), Some(bn), &mut w.y2);
        w.f2.apply(be, &masks.m2, &w.y2, &mut w.y2d);
        be.gemm(&Gemm::new(Trans::N, Trans::T, r, 1, h2), &w.y2d, &self.w3.value, &mut w.logit);
        be.add_bias(r, 1, &self.b3.value, &mut w.logit);
        be.sigmoid(&w.logit, &mut w.p);
    }

    /// Backward from `w.dp` (∂L/∂p of the chunk) to `w.dz2` (eval form:
    /// `γ·invstd·g`). With `last` true, accumulates the gradients of
    /// `8.weight`, `8.bias` and BN2's γ, β (the full-batch sums Σg·x̂, Σg).
    pub fn back_to_dz2(&mut self, be: &B, w: &mut Work<B>, s2: &BnStats<B>, masks: &Masks, last: bool) {
        let (r, h2) = (w.rows, self.h2);
        let cfg = eval_cfg(r, h2, self.act());
        be.sigmoid_backward(&w.p, &w.dp, &mut w.dlogit);
        if last {
            be.gemm(&Gemm::new(Trans::T, Trans::N, 1, h2, r).beta(1.0), &w.dlogit, &w.y2d, &mut self.w3.grad);
            be.col_sums(r, 1, &w.dlogit, 1.0, &mut self.b3.grad);
        }
        // dy2d = dlogit · W3: [r,1]·[1,h2].
        be.gemm(&Gemm::new(Trans::N, Trans::N, r, h2, 1), &w.dlogit, &self.w3.value, &mut w.dy2d);
        w.f2.apply(be, &masks.m2, &w.dy2d, &mut w.dy2);
        let (dgamma, dbeta) = if last {
            (&mut self.bn2.gamma.grad, &mut self.bn2.beta.grad)
        } else {
            (&mut w.scratch_h2.0, &mut w.scratch_h2.1)
        };
        let bn = BnBwd {
            gamma: &self.bn2.gamma.value,
            beta: &self.bn2.beta.value,
            save_mean: &s2.save_mean,
            save_invstd: &s2.save_invstd,
            dgamma,
            dbeta,
        };
        be.fused_backward(&cfg, &w.h2, Some(&self.b2.value), Some(bn), &w.dy2, &mut w.dz2, None);
    }

    /// From the corrected `w.dz2` to `w.dz1` (eval form). With `last`,
    /// accumulates `4.weight`, `4.bias` and BN1's γ, β gradients.
    pub fn back_to_dz1(&mut self, be: &B, w: &mut Work<B>, s1: &BnStats<B>, masks: &Masks, last: bool) {
        let (r, h1, h2) = (w.rows, self.h1, self.h2);
        let cfg = eval_cfg(r, h1, self.act());
        if last {
            be.gemm(&Gemm::new(Trans::T, Trans::N, h2, h1, r).beta(1.0), &w.dz2, &w.y1d, &mut self.w2.grad);
            be.col_sums(r, h2, &w.dz2, 1.0, &mut self.b2.grad);
        }
        be.gemm(&Gemm::new(Trans::N, Trans::N, r, h1, h2), &w.dz2, &self.w2.value, &mut w.dy1d);
        w.f1.apply(be, &masks.m1, &w.dy1d, &mut w.dy1);
        let (dgamma, dbeta) = if last {
            (&mut self.bn1.gamma.grad, &mut self.bn1.beta.grad)
        } else {
            (&mut w.scratch_h1.0, &mut w.scratch_h1.1)
        };
        let bn = BnBwd {
            gamma: &self.bn1.gamma.value,
            beta: &self.bn1.beta.value,
            save_mean: &s1.save_mean,
            save_invstd: &s1.save_invstd,
            dgamma,
            dbeta,
        };
        be.fused_backward(&cfg, &w.h1, Some(&self.b1.value), Some(bn), &w.dy1, &mut w.dz1, None);
    }

    /// `0.weight += dz1ᵀ δ`, `0.bias += Σ dz1` from the corrected `w.dz1`.
    pub fn first_grads(&mut self, be: &B, w: &Work<B>) {
        let (r, h1, g) = (w.rows, self.h1, self.genes);
        be.gemm(&Gemm::new(Trans::T, Trans::N, h1, g, r).beta(1.0), &w.dz1, &w.delta, &mut self.w1.grad);
        be.col_sums(r, h1, &w.dz1, 1.0, &mut self.b1.grad);
    }
}
