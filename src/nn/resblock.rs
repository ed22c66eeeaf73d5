//! Residual blocks: `y = LReLU(x + f(x))` with
//! `f = Linear → BN → LReLU → Dropout → Linear` (generator), or the
//! spectral-norm variant without BN, `f = SNLinear → LReLU → Dropout →
//! SNLinear` (critic).
//!
//! The residual add, the second bias and the outer LeakyReLU are fused into
//! the second layer: its GEMM accumulates onto a copy of `x`, and its fused
//! kernel applies `b` and the activation.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend};

use super::dense::{Dense, DenseConfig};
use super::init::Init;
use super::params::{Module, Param};

pub struct ResBlock<B: Backend> {
    pub dim: usize,
    /// `fc.0` (+ `fc.1` BN): Linear → BN → LReLU → Dropout.
    pub first: Dense<B>,
    /// `fc.4` (`fc.3` without BN): Linear, + x, then the outer LReLU.
    pub second: Dense<B>,
    dx: B::Buf,
}

impl<B: Backend> ResBlock<B> {
    /// The generator's block (BN, no spectral norm).
    pub fn new(be: &B, dim: usize, slope: f32, dropout: f32, init: Init, rng: &mut Stream) -> Self {
        let c1 = DenseConfig::linear().init(init).bn().act(Act::LeakyRelu(slope)).dropout(dropout);
        let c2 = DenseConfig::linear().init(init).act(Act::LeakyRelu(slope));
        ResBlock {
            dim,
            first: Dense::new(be, dim, dim, c1, rng).named("fc.0", "fc.1"),
            second: Dense::new(be, dim, dim, c2, rng).named("fc.4", ""),
            dx: be.zeros(0),
        }
    }
    /// The critic's block (spectral norm, no BN).
    pub fn new_sn(be: &B, dim: usize, slope: f32, dropout: f32, init: Init, rng: &mut Stream) -> Self {
        let c1 = DenseConfig::linear().init(init).sn().act(Act::LeakyRelu(slope)).dropout(dropout);
        let c2 = DenseConfig::linear().init(init).sn().act(Act::LeakyRelu(slope));
        ResBlock {
            dim,
            first: Dense::new(be, dim, dim, c1, rng).named("fc.0", ""),
            second: Dense::new(be, dim, dim, c2, rng).named("fc.3", ""),
            dx: be.zeros(0),
        }
    }

    pub fn forward(&mut self, be: &B, x: &B::Buf, batch: usize, train: bool) -> &B::Buf {
        let h = self.first.forward(be, x, batch, train);
        self.second.forward_res(be, h, Some(x), batch, train)
    }

    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        let dh = self.second.backward(be, dy);
        let dxf = self.first.backward(be, dh);
        let ds = self.second.dz();
        ensure(be, &mut self.dx, be.len(ds));
        be.add(dxf, ds, &mut self.dx);
        &self.dx
    }

    pub fn output(&self) -> &B::Buf {
        self.second.output()
    }
}

impl<B: Backend> Module<B> for ResBlock<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.first.visit(prefix, f);
        self.second.visit(prefix, f);
    }
}
