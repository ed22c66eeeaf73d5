//! BatchNorm1d (stand-alone; inside dense blocks it is fused) and LayerNorm,
//! and [`BnParams`], the BatchNorm state every BN of the crate keeps (the
//! stand-alone layer, the fused dense block, the scorer's full-batch BN).

use crate::backend::{ensure, Act, Backend, BnBwd, BnFwd, Fused};

use super::params::{Module, Param};
use super::join;

/// The tensors of one `torch.nn.BatchNorm1d(features)`, with its state-dict
/// names: `weight` (γ), `bias` (β), `running_mean`, `running_var`,
/// `num_batches_tracked` (PyTorch's int64 counter of training forwards,
/// stored as f32 with shape []; checkpoints written without it still load,
/// see `params::load`).
pub struct BnParams<B: Backend> {
    pub gamma: Param<B>,
    pub beta: Param<B>,
    pub running_mean: Param<B>,
    pub running_var: Param<B>,
    pub num_batches_tracked: Param<B>,
    /// `[1.0]`, to count on the device without a sync.
    one: B::Buf,
}

impl<B: Backend> BnParams<B> {
    /// γ = 1, β = 0, running mean 0 and variance 1, as PyTorch.
    pub fn new(be: &B, features: usize) -> Self {
        let mut gamma = Param::new(be, &[features]);
        be.fill(&mut gamma.value, 1.0);
        BnParams {
            gamma,
            beta: Param::new(be, &[features]),
            running_mean: Param::buffer(be, &[features], 0.0),
            running_var: Param::buffer(be, &[features], 1.0),
            num_batches_tracked: Param::buffer(be, &[], 0.0),
            one: be.upload(&[1.0]),
        }
    }

    /// Counts one training forward.
    pub fn count_batch(&mut self, be: &B) {
        be.axpy(1.0, &self.one, &mut self.num_batches_tracked.value);
    }

    /// The fused forward's BN arguments with the running statistics.
    pub fn fwd<'a>(&'a mut self, save_mean: &'a mut B::Buf, save_invstd: &'a mut B::Buf) -> BnFwd<'a, B::Buf> {
        BnFwd {
            gamma: &self.gamma.value,
            beta: &self.beta.value,
            running_mean: &mut self.running_mean.value,
            running_var: &mut self.running_var.value,
            save_mean,
            save_invstd,
        }
    }

    /// The fused backward's BN arguments, accumulating into γ's and β's
    /// gradients.
    pub fn bwd<'a>(&'a mut self, save_mean: &'a B::Buf, save_invstd: &'a B::Buf) -> BnBwd<'a, B::Buf> {
        BnBwd {
            gamma: &self.gamma.value,
            beta: &self.beta.value,
            save_mean,
            save_invstd,
            dgamma: &mut self.gamma.grad,
            dbeta: &mut self.beta.grad,
        }
    }

    /// Hand every tensor to `f` under `prefix`.
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        f(&join(prefix, "weight"), &mut self.gamma);
        f(&join(prefix, "bias"), &mut self.beta);
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
        f(&join(prefix, "num_batches_tracked"), &mut self.num_batches_tracked);
    }
}

/// `torch.nn.BatchNorm1d(features)` on `[batch, features]`: batch statistics
/// with the biased variance in training, running statistics updated with
/// `momentum` from the unbiased variance; running statistics in eval.
pub struct BatchNorm1d<B: Backend> {
    pub features: usize,
    pub eps: f32,
    pub momentum: f32,
    pub params: BnParams<B>,
    save_mean: B::Buf,
    save_invstd: B::Buf,
    batch: usize,
    train: bool,
    x: B::Buf,
    y: B::Buf,
    dx: B::Buf,
}

impl<B: Backend> BatchNorm1d<B> {
    pub fn new(be: &B, features: usize) -> Self {
        BatchNorm1d {
            features,
            eps: 1e-5,
            momentum: 0.1,
            params: BnParams::new(be, features),
            save_mean: be.zeros(features),
            save_invstd: be.zeros(features),
            batch: 0,
            train: false,
            x: be.zeros(0),
            y: be.zeros(0),
            dx: be.zeros(0),
        }
    }
    fn cfg(&self) -> Fused {
        Fused {
            rows: self.batch,
            cols: self.features,
            act: Act::Identity,
            dropout: None,
            train: self.train,
            eps: self.eps,
            momentum: self.momentum,
        }
    }
    pub fn forward(&mut self, be: &B, x: &B::Buf, batch: usize, train: bool) -> &B::Buf {
        let n = batch * self.features;
        self.batch = batch;
        self.train = train;
        ensure(be, &mut self.x, n);
        ensure(be, &mut self.y, n);
        be.copy(x, 0, &mut self.x, 0, n);
        if train {
            self.params.count_batch(be);
        }
        let cfg = self.cfg();
        let bn = self.params.fwd(&mut self.save_mean, &mut self.save_invstd);
        be.fused_forward(&cfg, &self.x, None, Some(bn), &mut self.y);
        &self.y
    }
    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        ensure(be, &mut self.dx, self.batch * self.features);
        let cfg = self.cfg();
        let bn = self.params.bwd(&self.save_mean, &self.save_invstd);
        be.fused_backward(&cfg, &self.x, None, Some(bn), dy, &mut self.dx, None);
        &self.dx
    }
}

impl<B: Backend> Module<B> for BatchNorm1d<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.params.visit(prefix, f);
    }
}

/// `torch.nn.LayerNorm(features)` over the last dimension of `[rows, features]`.
pub struct LayerNorm<B: Backend> {
    pub features: usize,
    pub eps: f32,
    pub gamma: Param<B>,
    pub beta: Param<B>,
    rows: usize,
    mean: B::Buf,
    invstd: B::Buf,
    x: B::Buf,
    y: B::Buf,
    dx: B::Buf,
}

impl<B: Backend> LayerNorm<B> {
    pub fn new(be: &B, features: usize) -> Self {
        let mut gamma = Param::new(be, &[features]);
        be.fill(&mut gamma.value, 1.0);
        LayerNorm {
            features,
            eps: 1e-5,
            gamma,
            beta: Param::new(be, &[features]),
            rows: 0,
            mean: be.zeros(0),
            invstd: be.zeros(0),
            x: be.zeros(0),
            y: be.zeros(0),
            dx: be.zeros(0),
        }
    }
    pub fn output(&self) -> &B::Buf {
        &self.y
    }
    pub fn forward(&mut self, be: &B, x: &B::Buf, rows: usize, _train: bool) -> &B::Buf {
        let n = rows * self.features;
        self.rows = rows;
        ensure(be, &mut self.x, n);
        ensure(be, &mut self.y, n);
        ensure(be, &mut self.mean, rows);
        ensure(be, &mut self.invstd, rows);
        be.copy(x, 0, &mut self.x, 0, n);
        be.layer_norm_forward(
            rows,
            self.features,
            self.eps,
            &self.x,
            &self.gamma.value,
            &self.beta.value,
            &mut self.y,
            &mut self.mean,
            &mut self.invstd,
        );
        &self.y
    }
    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        ensure(be, &mut self.dx, self.rows * self.features);
        be.layer_norm_backward(
            self.rows,
            self.features,
            &self.x,
            &self.gamma.value,
            &self.mean,
            &self.invstd,
            dy,
            &mut self.dx,
            &mut self.gamma.grad,
            &mut self.beta.grad,
        );
        &self.dx
    }
}

impl<B: Backend> Module<B> for LayerNorm<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        f(&join(prefix, "weight"), &mut self.gamma);
        f(&join(prefix, "bias"), &mut self.beta);
    }
}
