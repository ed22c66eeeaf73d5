//! Multi-head self-attention (`torch.nn.MultiheadAttention`, batch-first)
//! and the post-LN transformer encoder layer
//! (`torch.nn.TransformerEncoderLayer(norm_first=False, activation="relu",
//! batch_first=True)`), for Module IV's fusion over a few tokens.
//!
//! Input `x: [batch, tokens, d]` row-major (= `[batch·tokens, d]`). The
//! per-head products are strided batched GEMMs over the batch (one launch per
//! head), reading Q, K, V in place from the fused `[batch·tokens, 3d]`
//! projection.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend, Batch, DropoutMask, Gemm, Trans};

use super::dense::{Dense, DenseConfig};
use super::init;
use super::norm::LayerNorm;
use super::params::{Module, Param};
use super::join;

pub struct MultiheadAttention<B: Backend> {
    pub dim: usize,
    pub heads: usize,
    /// Dropout on the attention weights (torch's `dropout` argument).
    pub attn_dropout: f32,
    /// `in_proj_weight [3d, d]`, `in_proj_bias [3d]`.
    pub in_proj: Dense<B>,
    /// `out_proj.weight [d, d]`, `out_proj.bias [d]` (its dropout is the
    /// encoder layer's `dropout1`; 0 for a bare attention module).
    pub out_proj: Dense<B>,
    rng: Stream,
    mask: Option<DropoutMask>,
    batch: usize,
    tokens: usize,
    /// Scores, softmax and dropped-out softmax, `[batch, heads, T, T]`.
    p: B::Buf,
    pd: B::Buf,
    /// Attention output before `out_proj`, `[batch·T, d]`.
    o: B::Buf,
    dpd: B::Buf,
    dp: B::Buf,
    ds: B::Buf,
    /// `[batch·T, 3d]`.
    dqkv: B::Buf,
}

impl<B: Backend> MultiheadAttention<B> {
    /// Initialised as torch does: Xavier-uniform `in_proj_weight`, zero
    /// biases, default-init `out_proj.weight`.
    pub fn new(be: &B, dim: usize, heads: usize, attn_dropout: f32, out_dropout: f32, rng: &mut Stream) -> Self {
        assert!(heads > 0 && dim.is_multiple_of(heads), "attention: dim must be a multiple of heads");
        let mut in_proj = Dense::new(be, dim, 3 * dim, DenseConfig::linear(), rng).named("", "");
        let bound = (6.0 / (dim + 3 * dim) as f32).sqrt();
        init::uniform_bound(be, &mut in_proj.weight.value, bound, rng);
        let mut out_proj = Dense::new(be, dim, dim, DenseConfig::linear().dropout(out_dropout), rng).named("out_proj", "");
        for b in [&mut in_proj.bias, &mut out_proj.bias].into_iter().flatten() {
            be.fill(&mut b.value, 0.0);
        }
        let tag = rng.take(1);
        MultiheadAttention {
            dim,
            heads,
            attn_dropout,
            in_proj,
            out_proj,
            rng: rng.fork(tag),
            mask: None,
            batch: 0,
            tokens: 0,
            p: be.zeros(0),
            pd: be.zeros(0),
            o: be.zeros(0),
            dpd: be.zeros(0),
            dp: be.zeros(0),
            ds: be.zeros(0),
            dqkv: be.zeros(0),
        }
    }

    fn dh(&self) -> usize {
        self.dim / self.heads
    }
    fn scale(&self) -> f32 {
        1.0 / (self.dh() as f32).sqrt()
    }

    /// Self-attention of `x: [batch, tokens, dim]`; returns `[batch, tokens, dim]`.
    pub fn forward(&mut self, be: &B, x: &B::Buf, batch: usize, tokens: usize, train: bool) -> &B::Buf {
        let (d, h, t, dh) = (self.dim, self.heads, tokens, self.dh());
        self.batch = batch;
        self.tokens = tokens;
        let rows = batch * t;
        let np = batch * h * t * t;
        for buf in [&mut self.p, &mut self.pd] {
            ensure(be, buf, np);
        }
        ensure(be, &mut self.o, rows * d);
        let scale = self.scale();
        let qkv = self.in_proj.forward(be, x, rows, train);
        // Scores S[b,h] = Q_bh K_bhᵀ into p (softmax applied in place below).
        for hi in 0..h {
            let mut g = Gemm::new(Trans::N, Trans::T, t, t, dh);
            (g.lda, g.ldb, g.ldc) = (3 * d, 3 * d, t);
            (g.a_off, g.b_off, g.c_off) = (hi * dh, d + hi * dh, hi * t * t);
            let bt = Batch { count: batch, stride_a: t * 3 * d, stride_b: t * 3 * d, stride_c: h * t * t };
            be.gemm_batched(&g, &bt, qkv, qkv, &mut self.pd);
        }
        be.softmax_rows(batch * h * t, t, scale, &self.pd, &mut self.p);
        self.mask = (train && self.attn_dropout > 0.0).then(|| {
            let offset = self.rng.take(np);
            DropoutMask { p: self.attn_dropout, seed: self.rng.seed, offset }
        });
        match &self.mask {
            Some(m) => be.dropout(m, &self.p, &mut self.pd),
            None => be.copy(&self.p, 0, &mut self.pd, 0, np),
        }
        // O_bh = P'_bh V_bh, written into columns hi·dh.. of o.
        for hi in 0..h {
            let mut g = Gemm::new(Trans::N, Trans::N, t, dh, t);
            (g.lda, g.ldb, g.ldc) = (t, 3 * d, d);
            (g.a_off, g.b_off, g.c_off) = (hi * t * t, 2 * d + hi * dh, hi * dh);
            let bt = Batch { count: batch, stride_a: h * t * t, stride_b: t * 3 * d, stride_c: t * d };
            be.gemm_batched(&g, &bt, &self.pd, qkv, &mut self.o);
        }
        self.out_proj.forward(be, &self.o, rows, train)
    }

    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        let (d, h, t, dh, batch) = (self.dim, self.heads, self.tokens, self.dh(), self.batch);
        let rows = batch * t;
        let np = batch * h * t * t;
        for buf in [&mut self.dpd, &mut self.dp, &mut self.ds] {
            ensure(be, buf, np);
        }
        ensure(be, &mut self.dqkv, rows * 3 * d);
        let d_o = self.out_proj.backward(be, dy);
        let qkv = self.in_proj.output();
        for hi in 0..h {
            // dP'_bh = dO_bh V_bhᵀ.
            let mut g = Gemm::new(Trans::N, Trans::T, t, t, dh);
            (g.lda, g.ldb, g.ldc) = (d, 3 * d, t);
            (g.a_off, g.b_off, g.c_off) = (hi * dh, 2 * d + hi * dh, hi * t * t);
            let bt = Batch { count: batch, stride_a: t * d, stride_b: t * 3 * d, stride_c: h * t * t };
            be.gemm_batched(&g, &bt, d_o, qkv, &mut self.dpd);
            // dV_bh = P'_bhᵀ dO_bh.
            let mut g = Gemm::new(Trans::T, Trans::N, t, dh, t);
            (g.lda, g.ldb, g.ldc) = (t, d, 3 * d);
            (g.a_off, g.b_off, g.c_off) = (hi * t * t, hi * dh, 2 * d + hi * dh);
            let bt = Batch { count: batch, stride_a: h * t * t, stride_b: t * d, stride_c: t * 3 * d };
            be.gemm_batched(&g, &bt, &self.pd, d_o, &mut self.dqkv);
        }
        match &self.mask {
            Some(m) => be.dropout(m, &self.dpd, &mut self.dp),
            None => be.copy(&self.dpd, 0, &mut self.dp, 0, np),
        }
        be.softmax_rows_backward(batch * h * t, t, self.scale(), &self.p, &self.dp, &mut self.ds);
        for hi in 0..h {
            // dQ_bh = dS_bh K_bh.
            let mut g = Gemm::new(Trans::N, Trans::N, t, dh, t);
            (g.lda, g.ldb, g.ldc) = (t, 3 * d, 3 * d);
            (g.a_off, g.b_off, g.c_off) = (hi * t * t, d + hi * dh, hi * dh);
            let bt = Batch { count: batch, stride_a: h * t * t, stride_b: t * 3 * d, stride_c: t * 3 * d };
            be.gemm_batched(&g, &bt, &self.ds, qkv, &mut self.dqkv);
            // dK_bh = dS_bhᵀ Q_bh.
            let mut g = Gemm::new(Trans::T, Trans::N, t, dh, t);
            (g.lda, g.ldb, g.ldc) = (t, 3 * d, 3 * d);
            (g.a_off, g.b_off, g.c_off) = (hi * t * t, hi * dh, d + hi * dh);
            be.gemm_batched(&g, &bt, &self.ds, qkv, &mut self.dqkv);
        }
        self.in_proj.backward(be, &self.dqkv)
    }
}

impl<B: Backend> Module<B> for MultiheadAttention<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.in_proj.visit("", &mut |name, p| f(&join(prefix, &format!("in_proj_{name}")), p));
        self.out_proj.visit(prefix, f);
    }
}

/// Post-LN encoder layer: `y1 = LN1(x + drop(MHA(x)))`,
/// `y = LN2(y1 + drop(W2 drop(ReLU(W1 y1))))`.
pub struct TransformerEncoderLayer<B: Backend> {
    pub self_attn: MultiheadAttention<B>,
    pub linear1: Dense<B>,
    pub linear2: Dense<B>,
    pub norm1: LayerNorm<B>,
    pub norm2: LayerNorm<B>,
    rows: usize,
    s: B::Buf,
    dy1: B::Buf,
    dx: B::Buf,
}

impl<B: Backend> TransformerEncoderLayer<B> {
    pub fn new(be: &B, dim: usize, heads: usize, ffn: usize, dropout: f32, rng: &mut Stream) -> Self {
        TransformerEncoderLayer {
            self_attn: MultiheadAttention::new(be, dim, heads, dropout, dropout, rng),
            linear1: Dense::new(be, dim, ffn, DenseConfig::linear().act(Act::Relu).dropout(dropout), rng).named("linear1", ""),
            linear2: Dense::new(be, ffn, dim, DenseConfig::linear().dropout(dropout), rng).named("linear2", ""),
            norm1: LayerNorm::new(be, dim),
            norm2: LayerNorm::new(be, dim),
            rows: 0,
            s: be.zeros(0),
            dy1: be.zeros(0),
            dx: be.zeros(0),
        }
    }

    /// `x: [batch, tokens, dim]` → same shape.
    pub fn forward(&mut self, be: &B, x: &B::Buf, batch: usize, tokens: usize, train: bool) -> &B::Buf {
        let rows = batch * tokens;
        let n = rows * self.norm1.features;
        self.rows = rows;
        ensure(be, &mut self.s, n);
        let a = self.self_attn.forward(be, x, batch, tokens, train);
        be.add(x, a, &mut self.s);
        let y1 = self.norm1.forward(be, &self.s, rows, train);
        let hdn = self.linear1.forward(be, y1, rows, train);
        let f = self.linear2.forward(be, hdn, rows, train);
        be.add(y1, f, &mut self.s);
        self.norm2.forward(be, &self.s, rows, train)
    }

    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        let n = self.rows * self.norm1.features;
        ensure(be, &mut self.dy1, n);
        ensure(be, &mut self.dx, n);
        let ds2 = self.norm2.backward(be, dy);
        let dh = self.linear2.backward(be, ds2);
        let dyf = self.linear1.backward(be, dh);
        be.add(ds2, dyf, &mut self.dy1);
        let ds1 = self.norm1.backward(be, &self.dy1);
        let dxa = self.self_attn.backward(be, ds1);
        be.add(ds1, dxa, &mut self.dx);
        &self.dx
    }
}

impl<B: Backend> Module<B> for TransformerEncoderLayer<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.self_attn.visit(&join(prefix, "self_attn"), f);
        self.linear1.visit(prefix, f);
        self.linear2.visit(prefix, f);
        self.norm1.visit(&join(prefix, "norm1"), f);
        self.norm2.visit(&join(prefix, "norm2"), f);
    }
}
