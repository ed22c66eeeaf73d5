//! The dense layer family: `Linear`, spectral-norm `Linear`, and the fused
//! block `Linear → BatchNorm1d → activation → Dropout` — one struct, one code
//! path, so every variant is checked by the same gradient tests.
//!
//! Forward: `z = x·Wᵀ (+ residual)` (one GEMM), then one fused kernel
//! `y = drop(act(BN(z + b)))`. Backward: one fused kernel back to `dz`, then
//! `dW += dzᵀ·x` and `dx = dz·W` (two GEMMs; the second skipped for a first
//! layer, whose input needs no gradient).
//!
//! Spectral norm follows `torch.nn.utils.spectral_norm` exactly: persistent
//! `u: [out]`, `v: [in]`; in training one power iteration per forward
//! (`v = normalize(Wᵀu)`, `u = normalize(Wv)`, normalize = x / max(‖x‖, eps),
//! eps 1e-12), `σ = uᵀWv`, `W_sn = W/σ`; in eval no iteration. The backward
//! treats u and v as constants: `dW = (G − ⟨G, W_sn⟩·u vᵀ)/σ` with `G` the
//! gradient w.r.t. `W_sn`.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend, BnBwd, BnFwd, DropoutMask, Fused, Gemm, Trans};

use super::init::{self, Init};
use super::params::{Module, Param};
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
    gamma: Param<B>,
    beta: Param<B>,
    running_mean: Param<B>,
    running_var: Param<B>,
    /// Training forwards seen (PyTorch's int64 counter, stored as f32; shape []).
    num_batches_tracked: Param<B>,
    /// `[1.0]`, to count on the device without a sync.
    one: B::Buf,
    save_mean: B::Buf,
    save_invstd: B::Buf,
}

struct Sn<B: Backend> {
    u: Param<B>,
    v: Param<B>,
    /// `W/σ`, `[out, in]`.
    w_sn: B::Buf,
    /// Gradient w.r.t. `W_sn`, `[out, in]`.
    g_sn: B::Buf,
    /// Scratch `[out]` for `W v`.
    t_out: B::Buf,
    /// Scratch `[in]` for `Wᵀ u`.
    t_in: B::Buf,
    sigma: f32,
    eps: f32,
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
    /// Spectral norm only: run the power iteration in training forwards
    /// (true, as PyTorch). Turned off to hold u, v fixed, e.g. for the second
    /// pass of a gradient penalty or a finite-difference check.
    pub power_iteration: bool,
    /// One-shot: the next forward reuses the last product `x·Wᵀ`.
    reuse_product: bool,
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
        let bn = cfg.batch_norm.then(|| {
            let mut gamma = Param::new(be, &[out_features]);
            be.fill(&mut gamma.value, 1.0);
            Bn {
                gamma,
                beta: Param::new(be, &[out_features]),
                running_mean: Param::buffer(be, &[out_features], 0.0),
                running_var: Param::buffer(be, &[out_features], 1.0),
                num_batches_tracked: Param::buffer(be, &[], 0.0),
                one: be.upload(&[1.0]),
                save_mean: be.zeros(out_features),
                save_invstd: be.zeros(out_features),
            }
        });
        let sn = cfg.spectral_norm.then(|| {
            // As torch: u, v ~ normalize(N(0, 1)).
            let mut u = Param::buffer(be, &[out_features], 0.0);
            let mut v = Param::buffer(be, &[in_features], 0.0);
            let off = rng.take(out_features);
            be.fill_normal(&mut u.value, rng.seed, off, 0.0, 1.0);
            let off = rng.take(in_features);
            be.fill_normal(&mut v.value, rng.seed, off, 0.0, 1.0);
            normalize(be, &mut u.value, 1e-12);
            normalize(be, &mut v.value, 1e-12);
            Sn {
                u,
                v,
                w_sn: be.zeros(out_features * in_features),
                g_sn: be.zeros(out_features * in_features),
                t_out: be.zeros(out_features),
                t_in: be.zeros(in_features),
                sigma: 1.0,
                eps: 1e-12,
            }
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
            power_iteration: true,
            reuse_product: false,
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
        self.sn.as_ref().map_or(1.0, |s| s.sigma)
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

    /// Promise that the next forward has the same input and weights as the
    /// last one (the critic steps of an adversarial iteration run the
    /// unchanged generator on the same batch): it then skips the input copy
    /// and the GEMM and applies bias, BN, activation and a fresh dropout
    /// draw to the kept product. One-shot; the caller keeps the promise.
    pub fn reuse_product_once(&mut self) {
        self.reuse_product = true;
    }

    /// Forward with `residual: [batch, out]` added to the product before
    /// bias/BN/activation (`y = act(x·Wᵀ + residual + b)` for a ResBlock's
    /// last layer).
    pub fn forward_res(&mut self, be: &B, x: &B::Buf, residual: Option<&B::Buf>, batch: usize, train: bool) -> &B::Buf {
        let (nin, nout) = (self.in_features, self.out_features);
        assert!(be.len(x) >= batch * nin, "Dense forward: input shorter than batch·in");
        let reuse = std::mem::take(&mut self.reuse_product);
        if reuse {
            assert!(batch == self.batch && residual.is_none() && self.sn.is_none(), "Dense: product reuse needs the last forward's shape, no residual, no spectral norm");
        } else {
            if let Some(sn) = &mut self.sn {
                spectral_weight(be, &self.weight.value, sn, nout, nin, train && self.power_iteration);
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
        }
        self.batch = batch;
        self.train = train;
        ensure(be, &mut self.y, batch * nout);
        self.mask = (train && self.cfg.dropout > 0.0).then(|| {
            let offset = self.rng.take(batch * nout);
            DropoutMask { p: self.cfg.dropout, seed: self.rng.seed, offset }
        });
        let cfg = self.fused_cfg();
        if let (Some(bn), true) = (&mut self.bn, train) {
            be.axpy(1.0, &bn.one, &mut bn.num_batches_tracked.value);
        }
        let bn = self.bn.as_mut().map(|bn| BnFwd {
            gamma: &bn.gamma.value,
            beta: &bn.beta.value,
            running_mean: &mut bn.running_mean.value,
            running_var: &mut bn.running_var.value,
            save_mean: &mut bn.save_mean,
            save_invstd: &mut bn.save_invstd,
        });
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
        let bn = self.bn.as_mut().map(|bn| BnBwd {
            gamma: &bn.gamma.value,
            beta: &bn.beta.value,
            save_mean: &bn.save_mean,
            save_invstd: &bn.save_invstd,
            dgamma: &mut bn.gamma.grad,
            dbeta: &mut bn.beta.grad,
        });
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
                let c = dot(be, &sn.g_sn, &sn.w_sn);
                be.axpy(1.0 / sn.sigma, &sn.g_sn, &mut self.weight.grad);
                let r1 = Gemm::new(Trans::N, Trans::N, nout, nin, 1).alpha(-c / sn.sigma).beta(1.0);
                be.gemm(&r1, &sn.u.value, &sn.v.value, &mut self.weight.grad);
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

/// `⟨a, b⟩` via a 1×1 GEMM (one launch, one scalar read back).
fn dot<B: Backend>(be: &B, a: &B::Buf, b: &B::Buf) -> f32 {
    let n = be.len(a);
    let mut out = be.zeros(1);
    be.gemm(&Gemm::new(Trans::N, Trans::T, 1, 1, n), a, b, &mut out);
    be.download(&out)[0]
}

/// `x /= max(‖x‖, eps)` (torch.nn.functional.normalize).
fn normalize<B: Backend>(be: &B, x: &mut B::Buf, eps: f32) -> f32 {
    let norm = be.sumsq(x).sqrt();
    be.scale(1.0 / norm.max(eps), x);
    norm
}

/// Power iteration (training only) and `W_sn = W/σ`.
fn spectral_weight<B: Backend>(be: &B, w: &B::Buf, sn: &mut Sn<B>, nout: usize, nin: usize, iterate: bool) {
    if iterate {
        // v = normalize(Wᵀ u): [1, out]·[out, in].
        be.gemm(&Gemm::new(Trans::N, Trans::N, 1, nin, nout), &sn.u.value, w, &mut sn.t_in);
        normalize(be, &mut sn.t_in, sn.eps);
        be.copy(&sn.t_in, 0, &mut sn.v.value, 0, nin);
        // u = normalize(W v): [1, in]·[out, in]ᵀ.
        be.gemm(&Gemm::new(Trans::N, Trans::T, 1, nout, nin), &sn.v.value, w, &mut sn.t_out);
        normalize(be, &mut sn.t_out, sn.eps);
        be.copy(&sn.t_out, 0, &mut sn.u.value, 0, nout);
    }
    // σ = uᵀ (W v).
    be.gemm(&Gemm::new(Trans::N, Trans::T, 1, nout, nin), &sn.v.value, w, &mut sn.t_out);
    sn.sigma = dot(be, &sn.u.value, &sn.t_out);
    be.copy(w, 0, &mut sn.w_sn, 0, nout * nin);
    be.scale(1.0 / sn.sigma, &mut sn.w_sn);
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
            f(&join(&lp, "weight_u"), &mut sn.u);
            f(&join(&lp, "weight_v"), &mut sn.v);
        }
        if let Some(bn) = &mut self.bn {
            let bp = join(prefix, &self.bn_name);
            f(&join(&bp, "weight"), &mut bn.gamma);
            f(&join(&bp, "bias"), &mut bn.beta);
            f(&join(&bp, "running_mean"), &mut bn.running_mean);
            f(&join(&bp, "running_var"), &mut bn.running_var);
            f(&join(&bp, "num_batches_tracked"), &mut bn.num_batches_tracked);
        }
    }
}
