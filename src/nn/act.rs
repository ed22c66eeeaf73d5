//! Stand-alone activations (LeakyReLU, ReLU, Sigmoid) and Dropout. Inside
//! the dense blocks these are fused into one kernel; these layers exist for
//! the places where they stand alone (the scorer's final sigmoid, tests).

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend, DropoutMask};

/// Which elementwise function an [`Activation`] applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    LeakyRelu(f32),
    Relu,
    Sigmoid,
}

/// An elementwise activation. Caches its input (or, for the sigmoid, its
/// output) for the backward.
pub struct Activation<B: Backend> {
    pub kind: Kind,
    cache: B::Buf,
    y: B::Buf,
    dx: B::Buf,
}

impl<B: Backend> Activation<B> {
    pub fn new(be: &B, kind: Kind) -> Self {
        Activation { kind, cache: be.zeros(0), y: be.zeros(0), dx: be.zeros(0) }
    }
    /// `LeakyReLU(slope)` (0.2 in ACsleuth).
    pub fn leaky_relu(be: &B, slope: f32) -> Self {
        Self::new(be, Kind::LeakyRelu(slope))
    }
    pub fn relu(be: &B) -> Self {
        Self::new(be, Kind::Relu)
    }
    pub fn sigmoid(be: &B) -> Self {
        Self::new(be, Kind::Sigmoid)
    }

    /// `x: [n]` (any shape, elementwise).
    pub fn forward(&mut self, be: &B, x: &B::Buf, _train: bool) -> &B::Buf {
        let n = be.len(x);
        ensure(be, &mut self.y, n);
        match self.kind {
            Kind::Sigmoid => {
                be.sigmoid(x, &mut self.y);
                ensure(be, &mut self.cache, n);
                be.copy(&self.y, 0, &mut self.cache, 0, n);
            }
            Kind::LeakyRelu(s) => {
                be.act_forward(Act::LeakyRelu(s), x, &mut self.y);
                ensure(be, &mut self.cache, n);
                be.copy(x, 0, &mut self.cache, 0, n);
            }
            Kind::Relu => {
                be.act_forward(Act::Relu, x, &mut self.y);
                ensure(be, &mut self.cache, n);
                be.copy(x, 0, &mut self.cache, 0, n);
            }
        }
        &self.y
    }

    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        ensure(be, &mut self.dx, be.len(dy));
        match self.kind {
            Kind::Sigmoid => be.sigmoid_backward(&self.cache, dy, &mut self.dx),
            Kind::LeakyRelu(s) => be.act_backward(Act::LeakyRelu(s), &self.cache, dy, &mut self.dx),
            Kind::Relu => be.act_backward(Act::Relu, &self.cache, dy, &mut self.dx),
        }
        &self.dx
    }
}

/// Inverted dropout with a counter-based mask: in training element `j` is
/// kept with probability `1 − p` and scaled by `1/(1 − p)`; identity in eval.
/// The mask is a function of `(seed, offset)`, so the backward recomputes it
/// instead of storing it.
pub struct Dropout<B: Backend> {
    pub p: f32,
    rng: Stream,
    mask: Option<DropoutMask>,
    y: B::Buf,
    dx: B::Buf,
}

impl<B: Backend> Dropout<B> {
    pub fn new(be: &B, p: f32, rng: Stream) -> Self {
        assert!((0.0..1.0).contains(&p), "dropout probability must be in [0, 1)");
        Dropout { p, rng, mask: None, y: be.zeros(0), dx: be.zeros(0) }
    }
    /// The mask of the last training forward.
    pub fn mask(&self) -> Option<DropoutMask> {
        self.mask
    }
    pub fn forward(&mut self, be: &B, x: &B::Buf, train: bool) -> &B::Buf {
        let n = be.len(x);
        ensure(be, &mut self.y, n);
        self.mask = (train && self.p > 0.0).then(|| {
            let offset = self.rng.take(n);
            DropoutMask { p: self.p, seed: self.rng.seed, offset }
        });
        match &self.mask {
            Some(m) => be.dropout(m, x, &mut self.y),
            None => be.copy(x, 0, &mut self.y, 0, n),
        }
        &self.y
    }
    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        let n = be.len(dy);
        ensure(be, &mut self.dx, n);
        match &self.mask {
            Some(m) => be.dropout(m, dy, &mut self.dx),
            None => be.copy(dy, 0, &mut self.dx, 0, n),
        }
        &self.dx
    }
}

impl<B: Backend> super::params::Module<B> for Activation<B> {
    fn visit(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut super::params::Param<B>)) {}
}

impl<B: Backend> super::params::Module<B> for Dropout<B> {
    fn visit(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut super::params::Param<B>)) {}
}
