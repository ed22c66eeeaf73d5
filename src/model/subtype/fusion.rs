//! The transformer fusion block of Module IV: a stack of post-LN
//! `TransformerEncoderLayer`s over the two tokens `[z, ζ]` of every cell
//! (Module I's encoding of the corrected expression and of its residual);
//! `z*` is the output of the `z` token.
//!
//! Buffers: tokens `[batch, 2, d]` row-major (cell `i`: row `2i` is `z_i`,
//! row `2i + 1` is `ζ_i`), `z*: [batch, d]`.
//!
//! The `z`-token rows are gathered (and their gradient scattered back) by a
//! GEMM with the `d × d` identity and a row stride of `2d`: one exact
//! launch per direction on any backend instead of one copy per cell.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Backend, Gemm, Trans};
use crate::data::matrix::DenseMatrix;
use crate::nn::join;
use crate::nn::params::{Module, Param};
use crate::nn::TransformerEncoderLayer;

pub struct Fusion<B: Backend> {
    pub dim: usize,
    pub layers: Vec<TransformerEncoderLayer<B>>,
    /// `[d, d]` identity (gather/scatter of the z-token rows).
    eye: B::Buf,
    /// Copy of the input tokens `[batch·2, d]`.
    x: B::Buf,
    /// `z*: [batch, d]`.
    zs: B::Buf,
    /// Token gradient `[batch·2, d]` (ζ rows zero).
    dtok: B::Buf,
    batch: usize,
}

impl<B: Backend> Fusion<B> {
    /// `layers` encoder layers of width `dim` (a multiple of `heads`).
    pub fn new(be: &B, dim: usize, layers: usize, heads: usize, ffn: usize, dropout: f32, rng: &mut Stream) -> Self {
        let layers = (0..layers).map(|_| TransformerEncoderLayer::new(be, dim, heads, ffn, dropout, rng)).collect();
        let mut eye = vec![0.0f32; dim * dim];
        (0..dim).for_each(|i| eye[i * dim + i] = 1.0);
        Fusion {
            dim,
            layers,
            eye: be.upload(&eye),
            x: be.zeros(0),
            zs: be.zeros(0),
            dtok: be.zeros(0),
            batch: 0,
        }
    }

    /// `tokens: [batch, 2, d]` → `z*: [batch, d]`.
    pub fn forward(&mut self, be: &B, tokens: &B::Buf, batch: usize, train: bool) -> &B::Buf {
        let d = self.dim;
        self.batch = batch;
        ensure(be, &mut self.x, batch * 2 * d);
        ensure(be, &mut self.zs, batch * d);
        be.copy(tokens, 0, &mut self.x, 0, batch * 2 * d);
        let mut cur: &B::Buf = &self.x;
        for l in self.layers.iter_mut() {
            cur = l.forward(be, cur, batch, 2, train);
        }
        if batch > 0 {
            // z*[i, :] = out[2i, :]
            let mut g = Gemm::new(Trans::N, Trans::N, batch, d, d);
            g.lda = 2 * d;
            be.gemm(&g, cur, &self.eye, &mut self.zs);
        }
        &self.zs
    }

    /// `dzs = ∂L/∂z*: [batch, d]` → `∂L/∂tokens: [batch, 2, d]` (both the
    /// z and the ζ token); accumulates the parameter gradients.
    pub fn backward(&mut self, be: &B, dzs: &B::Buf) -> &B::Buf {
        let (d, batch) = (self.dim, self.batch);
        ensure(be, &mut self.dtok, batch * 2 * d);
        be.fill(&mut self.dtok, 0.0);
        if batch > 0 {
            let mut g = Gemm::new(Trans::N, Trans::N, batch, d, d);
            g.ldc = 2 * d;
            be.gemm(&g, dzs, &self.eye, &mut self.dtok);
        }
        let mut cur: &B::Buf = &self.dtok;
        for l in self.layers.iter_mut().rev() {
            cur = l.backward(be, cur);
        }
        cur
    }

    /// `z*` of every cell in eval mode (no dropout), `batch` cells at a time.
    pub fn embed(&mut self, be: &B, z: &DenseMatrix, zeta: &DenseMatrix, batch: usize) -> DenseMatrix {
        let (n, d) = (z.rows, self.dim);
        let mut out = DenseMatrix::zeros(n, d);
        let mut host = Vec::new();
        let mut buf = be.zeros(0);
        for start in (0..n).step_by(batch.max(1)) {
            let b = batch.max(1).min(n - start);
            tokens(z, zeta, start..start + b, &mut host);
            ensure(be, &mut buf, host.len());
            be.write(&mut buf, 0, &host);
            let zs = self.forward(be, &buf, b, false);
            be.download_into(zs, &mut out.data[start * d..(start + b) * d]);
        }
        out
    }
}

/// Host tokens `[|rows|, 2, d]` of the given cells into `out`.
pub fn tokens(z: &DenseMatrix, zeta: &DenseMatrix, rows: impl IntoIterator<Item = usize>, out: &mut Vec<f32>) {
    out.clear();
    for i in rows {
        out.extend_from_slice(z.row(i));
        out.extend_from_slice(zeta.row(i));
    }
}

impl<B: Backend> Module<B> for Fusion<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit(&join(prefix, &format!("layers.{i}")), f);
        }
    }
}
