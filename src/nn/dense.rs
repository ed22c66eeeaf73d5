//! The dense layer family: `Linear`, spectral-norm `Linear`, and the fused
//! block `Linear → BatchNorm1d → activation → Dropout` — one struct, one code
//! path, so every variant is checked by the same gradient tests.
//!
//! Forward: `z = x·Wᵀ (+ residual)` (one GEMM), then one fused kernel
//! `y = drop(act(BN(z + b)))`. Backward: one fused kernel back to `dz`, then
//! `dW += dzᵀ·x` and `dx = dz·W` (two GEMMs; the second skipped for a first
//! layer, whose input needs no gradient).
//!
//! Spectral norm is [`SpectralNorm`] (shared with the critic's layers):
//! `W_sn = W/σ` is stored, and the backward forms `G = ∂/∂W_sn` and applies
//! the chain rule `dW = (G − ⟨G, W_sn⟩·u vᵀ)/σ`.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend, DropoutMask, Fused, Gemm, Trans};

use super::init::{self, Init};
use super::norm::BnParams;
use super::params::{Module, Param};
use super::spectral::{dot, SpectralNorm};
use super::join;

/// What a [`Dense`] layer contains besides its Linear.
#[derive(Clone, Copy, Debug)]
pub struct DenseConfig {
    pub bias: bool,
    pub batch_norm: bool,
    pub act: Act,
    /// Dropout probability after the activation (0: none).
    pub dropout: f32,
    pub spectral_norm: bool,
    /// The layer's input is mostly zeros (log-normalized expression): the
    /// weight is stored transposed, `[in, out]`, so that `x·Wᵀ` and `∂Wᵀ =
    /// xᵀ·dz` are products with `x` on the left and contiguous rows on the
    /// right, which the CPU backend computes by skipping the zeros of `x`.
    /// Same values, same checkpoint names and layout. Not with spectral norm.
    pub sparse_input: bool,
    pub init: Init,
    pub bn_eps: f32,
    pub bn_momentum: f32,
}

impl DenseConfig {
    /// A plain `nn.Linear` with bias and PyTorch's default init.
    pub fn linear() -> Self {
        DenseConfig {
            bias: true,
            batch_norm: false,
            act: Act::Identity,
            dropout: 0.0,
            spectral_norm: false,
            sparse_input: false,
            init: Init::TorchDefault,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }
    }
    pub fn bn(mut self) -> Self {
        self.batch_norm = true;
        self
    }
    pub fn act(mut self, act: Act) -> Self {
        self.act = act;
        self
    }
    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }
    pub fn sn(mut self) -> Self {
        self.spectral_norm = true;
        self
    }
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    pub fn sparse_input(mut self) -> Self {
        self.sparse_input = true;
        self
    }
}

struct Bn<B: Backend> {
    params: BnParams<B>,
    save_mean: B::Buf,
    save_invstd: B::Buf,
}

struct Sn<B: Backend> {
    norm: SpectralNorm<B>,
    /// `W/σ`, `[out, in]`.
    w_sn: B::Buf,
    /// Gradient w.r.t. `W_sn`, `[out, in]`.
    g_sn: B::Buf,
}

/// Linear (+ optional spectral norm) → optional BN → activation → dropout.
pub struct Dense<B: Backend> {
    pub in_features: usize,
    pub out_features: usize,
    pub cfg: DenseConfig,
    /// `[out, in]`.
    pub weight: Param<B>,
    /// `[out]`.
    pub bias: Option<Param<B>>,
    bn: Option<Bn<B>>,
    sn: Option<Sn<B>>,
    /// When false, `backward` skips `dx` (first layer of a network).
    pub need_input_grad: bool,
    /// Spectral norm only: training forwards keep u, v (see
    /// [`Dense::hold_spectral_norm`]); false (iterate, as PyTorch) until then.
    hold_sn: bool,
    /// State-dict names of the Linear and of the BN inside the parent
    /// (e.g. `"0"` and `"1"` in an `nn.Sequential`).
    pub linear_name: String,
    pub bn_name: String,
    rng: Stream,
    mask: Option<DropoutMask>,
    train: bool,
    batch: usize,
    /// Input copy `[batch, in]`.
    x: B::Buf,
    /// `[batch, out]`: pre-bias product (plus residual), its gradient, output.
    z: B::Buf,
    dz: B::Buf,
    y: B::Buf,
    /// `[batch, in]`.
    dx: B::Buf,
}

impl<B: Backend> Dense<B> {
    /// A layer with weights drawn from `rng` (its own dropout stream is
    /// forked from it).
    pub fn new(be: &B, in_features: usize, out_features: usize, cfg: DenseConfig, rng: &mut Stream) -> Self {
        let mut weight = Param::new(be, &[out_features, in_features]);
        match cfg.init {
            Init::XavierNormal => init::xavier_normal(be, &mut weight.value, in_features, out_features, rng),
            Init::TorchDefault => init::kaiming_uniform_default(be, &mut weight.value, in_features, rng),
        }
        if cfg.sparse_input {
            assert!(!cfg.spectral_norm, "Dense: sparse_input is not offered with spectral norm");
            weight.store_transposed(be);
        }
        let bias = cfg.bias.then(|| {
            let mut b = Param::new(be, &[out_features]);
            init::bias_default(be, &mut b.value, in_features, rng);
            b
        });
        let bn = cfg.batch_norm.then(|| Bn {
            params: BnParams::new(be, out_features),
            save_mean: be.zeros(out_features),
            save_invstd: be.zeros(out_features),
        });
        let sn = cfg.spectral_norm.then(|| Sn {
            norm: SpectralNorm::new(be, in_features, out_features, rng),
            w_sn: be.zeros(out_features * in_features),
            g_sn: be.zeros(out_features * in_features),
        });
        let tag = rng.take(1);
        Dense {
            in_features,
            out_features,
            cfg,
            weight,
            bias,
            bn,
            sn,
            need_input_grad: true,
            hold_sn: false,
            linear_name: String::new(),
            bn_name: String::new(),
            rng: rng.fork(tag),
            mask: None,
            train: false,
            batch: 0,
            x: be.zeros(0),
            z: be.zeros(0),
            dz: be.zeros(0),
            y: be.zeros(0),
            dx: be.zeros(0),
        }
    }

    /// From now on, training forwards keep the spectral norm's u and v (σ is
    /// still recomputed from the weights): the layer becomes one fixed
    /// function of its weights, as a finite-difference check needs. One
    /// way: a layer that trains never holds.
    pub fn hold_spectral_norm(&mut self) {
        self.hold_sn = true;
    }

    /// Set the state-dict names (Linear, BN) inside the parent module.
    pub fn named(mut self, linear: &str, bn: &str) -> Self {
        self.linear_name = linear.to_string();
        self.bn_name = bn.to_string();
        self
    }

    /// The effective weight of the last forward (`W` or `W/σ`), `[out, in]`
    /// (`[in, out]` with `sparse_input`).
    /// With the accessors below, this is what a hand-written double backward
    /// (the critic's gradient penalty) needs: activation derivatives and
    /// dropout masks of the first pass are constants of the second.
    pub fn weight_eff(&self) -> &B::Buf {
        self.sn.as_ref().map_or(&self.weight.value, |s| &s.w_sn)
    }

    /// σ of the last forward (1 without spectral norm).
    pub fn sigma(&self) -> f32 {
        self.sn.as_ref().map_or(1.0, |s| s.norm.sigma())
    }

    pub fn output(&self) -> &B::Buf {
        &self.y
    }
    /// Input copy of the last forward, `[batch, in]`.
    pub fn input(&self) -> &B::Buf {
        &self.x
    }
    /// `x·Wᵀ (+ residual)` of the last forward, before bias/BN, `[batch, out]`.
    pub fn z(&self) -> &B::Buf {
        &self.z
    }
    /// Dropout mask of the last training forward.
    pub fn mask(&self) -> Option<DropoutMask> {
        self.mask
    }
    /// Gradient w.r.t. `z` (the GEMM output + residual) of the last backward;
    /// it is also the gradient of a residual added by [`Dense::forward_res`].
    pub fn dz(&self) -> &B::Buf {
        &self.dz
    }

    pub fn forward(&mut self, be: &B, x: &B::Buf, batch: usize, train: bool) -> &B::Buf {
        self.forward_res(be, x, None, batch, train)
    }

    /// The forward of the last input again, for a caller that knows the input
    /// and weights are unchanged (the critic steps of an adversarial
    /// iteration rerun the unchanged generator on the same batch): skips the
    /// input copy and the GEMM and applies bias, BN, activation and a fresh
    /// dropout draw to the kept product.
    pub fn forward_kept_product(&mut self, be: &B, batch: usize, train: bool) -> &B::Buf {
        assert!(batch == self.batch && self.sn.is_none(), "Dense: product reuse needs the last forward's shape and no spectral norm");
        self.activate(be, batch, train)
    }

    /// Forward with `residual: [batch, out]` added to the product before
    /// bias/BN/activation (`y = act(x·Wᵀ + residual + b)` for a ResBlock's
    /// last layer).
    pub fn forward_res(&mut self, be: &B, x: &B::Buf, residual: Option<&B::Buf>, batch: usize, train: bool) -> &B::Buf {
        let (nin, nout) = (self.in_features, self.out_features);
        assert!(be.len(x) >= batch * nin, "Dense forward: input shorter than batch·in");
        if let Some(sn) = &mut self.sn {
            let sigma = sn.norm.update(be, &self.weight.value, false, train && !self.hold_sn);
            be.copy(&self.weight.value, 0, &mut sn.w_sn, 0, nout * nin);
            be.scale(1.0 / sigma, &mut sn.w_sn);
        }
        ensure(be, &mut self.x, batch * nin);
        be.copy(x, 0, &mut self.x, 0, batch * nin);
        ensure(be, &mut self.z, batch * nout);
        // x·Wᵀ with W stored [out, in], or x·(Wᵀ stored [in, out]).
        let tb = if self.cfg.sparse_input { Trans::N } else { Trans::T };
        let mut g = Gemm::new(Trans::N, tb, batch, nout, nin);
        if let Some(r) = residual {
            be.copy(r, 0, &mut self.z, 0, batch * nout);
            g = g.beta(1.0);
        }
        let w = self.sn.as_ref().map_or(&self.weight.value, |s| &s.w_sn);
        be.gemm(&g, &self.x, w, &mut self.z);
        self.activate(be, batch, train)
    }

    /// `y = drop(act(BN(z + b)))` on the product `z` of this forward.
    fn activate(&mut self, be: &B, batch: usize, train: bool) -> &B::Buf {
        let nout = self.out_features;
        self.batch = batch;
        self.train = train;
        ensure(be, &mut self.y, batch * nout);
        self.mask = (train && self.cfg.dropout > 0.0).then(|| {
            let offset = self.rng.take(batch * nout);
            DropoutMask { p: self.cfg.dropout, seed: self.rng.seed, offset }
        });
        let cfg = self.fused_cfg();
        if let (Some(bn), true) = (&mut self.bn, train) {
            bn.params.count_batch(be);
        }
        let bn = self.bn.as_mut().map(|bn| bn.params.fwd(&mut bn.save_mean, &mut bn.save_invstd));
        be.fused_forward(&cfg, &self.z, self.bias.as_ref().map(|b| &b.value), bn, &mut self.y);
        &self.y
    }

    fn fused_cfg(&self) -> Fused {
        Fused {
            rows: self.batch,
            cols: self.out_features,
            act: self.cfg.act,
            dropout: self.mask,
            train: self.train,
            eps: self.cfg.bn_eps,
            momentum: self.cfg.bn_momentum,
        }
    }

    /// Backward of the last forward given `dy: [batch, out]`; accumulates the
    /// parameter gradients and returns `dx: [batch, in]` (left empty when
    /// `need_input_grad` is false).
    pub fn backward(&mut self, be: &B, dy: &B::Buf) -> &B::Buf {
        let (nin, nout, batch) = (self.in_features, self.out_features, self.batch);
        ensure(be, &mut self.dz, batch * nout);
        let cfg = self.fused_cfg();
        let bn = self.bn.as_mut().map(|bn| bn.params.bwd(&bn.save_mean, &bn.save_invstd));
        let (bias, dbias) = match &mut self.bias {
            Some(b) => (Some(&b.value), Some(&mut b.grad)),
            None => (None, None),
        };
        be.fused_backward(&cfg, &self.z, bias, bn, dy, &mut self.dz, dbias);
        // Weight gradient: dzᵀ·x, [out, in] (or xᵀ·dz, [in, out], stored transposed).
        let gw = Gemm::new(Trans::T, Trans::N, nout, nin, batch);
        match &mut self.sn {
            None if self.cfg.sparse_input => {
                let gt = Gemm::new(Trans::T, Trans::N, nin, nout, batch).beta(1.0);
                be.gemm(&gt, &self.x, &self.dz, &mut self.weight.grad)
            }
            None => be.gemm(&gw.beta(1.0), &self.dz, &self.x, &mut self.weight.grad),
            Some(sn) => {
                be.gemm(&gw, &self.dz, &self.x, &mut sn.g_sn);
                // dW += (G − ⟨G, W_sn⟩ u vᵀ)/σ.
                let (c, sigma) = (dot(be, &sn.g_sn, &sn.w_sn), sn.norm.sigma());
                be.axpy(1.0 / sigma, &sn.g_sn, &mut self.weight.grad);
                sn.norm.rank_one(be, -c / sigma, &mut self.weight.grad, false);
            }
        }
        if self.need_input_grad {
            ensure(be, &mut self.dx, batch * nin);
            let w = self.sn.as_ref().map_or(&self.weight.value, |s| &s.w_sn);
            let tb = if self.cfg.sparse_input { Trans::T } else { Trans::N };
            be.gemm(&Gemm::new(Trans::N, tb, batch, nin, nout), &self.dz, w, &mut self.dx);
        }
        &self.dx
    }

    /// The effective weight (for tests and inspection), `[out, in]`.
    pub fn effective_weight(&self, be: &B) -> Vec<f32> {
        match &self.sn {
            Some(sn) => be.download(&sn.w_sn),
            None => self.weight.torch_values(be),
        }
    }
}

impl<B: Backend> Module<B> for Dense<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        let lp = join(prefix, &self.linear_name);
        if self.sn.is_some() {
            f(&join(&lp, "weight_orig"), &mut self.weight);
        } else {
            f(&join(&lp, "weight"), &mut self.weight);
        }
        if let Some(b) = &mut self.bias {
            f(&join(&lp, "bias"), b);
        }
        if let Some(sn) = &mut self.sn {
            sn.norm.visit(&lp, f);
        }
        if let Some(bn) = &mut self.bn {
            bn.params.visit(&join(prefix, &self.bn_name), f);
        }
    }
}
