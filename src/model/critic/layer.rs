//! One spectral-norm layer of the critic, `y = drop(LReLU(x·W_snᵀ (+ r) + b))`,
//! with the extra passes the gradient penalty needs (see the derivation in
//! the parent module).
//!
//! This is the spectral-norm `Dense` of `crate::nn` specialised for the
//! critic and with its internals open to the double backward: the
//! pre-activations, the dropout draw, `W_sn`, `u`, `v` and `σ` of the last
//! forward are all needed by [`SnLayer::mask`] and the SN chain rule, and a
//! `frozen` power iteration is needed by the gradient checks.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend, DropoutMask, Fused, Gemm, Trans};
use crate::nn::init;
use crate::nn::join;
use crate::nn::params::Param;

/// `torch.nn.utils.spectral_norm`'s eps.
const SN_EPS: f32 = 1e-12;

pub(super) struct SnLayer<B: Backend> {
    pub nin: usize,
    pub nout: usize,
    /// `W` (PyTorch `weight_orig`), `[out, in]`.
    pub weight: Param<B>,
    /// `[out]`.
    pub bias: Param<B>,
    /// Power-iteration vectors (`weight_u: [out]`, `weight_v: [in]`).
    pub u: Param<B>,
    pub v: Param<B>,
    slope: f32,
    dropout: f32,
    rng: Stream,
    /// `W/σ` of the last forward, `[out, in]`.
    w_sn: B::Buf,
    /// Gradient w.r.t. `W_sn` before the SN chain rule, `[out, in]`.
    g_sn: B::Buf,
    /// Scratch `[out]`, `[in]` for the power iteration.
    t_out: B::Buf,
    t_in: B::Buf,
    sigma: f32,
    mask: Option<DropoutMask>,
    train: bool,
    batch: usize,
    /// Input copy `[batch, in]`.
    x: B::Buf,
    /// `x·W_snᵀ (+ residual)`, before bias, `[batch, out]`.
    z: B::Buf,
    /// Output `[batch, out]`.
    pub y: B::Buf,
    /// Gradient w.r.t. `z` of the last backward (also the residual's), `[batch, out]`.
    pub dz: B::Buf,
    /// Input gradient `[batch, in]`.
    pub dx: B::Buf,
    /// GP: `Δ = ∂(Σ_k D_k)/∂h` of this layer (`h` the pre-activation), `[batch, out]`.
    pub delta: B::Buf,
    /// GP: tangent `P = M ⊙ (P_in·W_snᵀ)`, `[batch, out]`.
    pub tan: B::Buf,
    /// Scratch `[batch, out]`.
    pub q: B::Buf,
}

impl<B: Backend> SnLayer<B> {
    /// Xavier-normal `W`, PyTorch-default `b`, `u, v ~ normalize(N(0, 1))`
    /// (the same draw order as `nn::Dense`).
    pub fn new(be: &B, nin: usize, nout: usize, slope: f32, dropout: f32, rng: &mut Stream) -> Self {
        let mut weight = Param::new(be, &[nout, nin]);
        init::xavier_normal(be, &mut weight.value, nin, nout, rng);
        let mut bias = Param::new(be, &[nout]);
        init::bias_default(be, &mut bias.value, nin, rng);
        let mut u = Param::buffer(be, &[nout], 0.0);
        let mut v = Param::buffer(be, &[nin], 0.0);
        let off = rng.take(nout);
        be.fill_normal(&mut u.value, rng.seed, off, 0.0, 1.0);
        let off = rng.take(nin);
        be.fill_normal(&mut v.value, rng.seed, off, 0.0, 1.0);
        normalize(be, &mut u.value);
        normalize(be, &mut v.value);
        let tag = rng.take(1);
        SnLayer {
            nin,
            nout,
            weight,
            bias,
            u,
            v,
            slope,
            dropout,
            rng: rng.fork(tag),
            w_sn: be.zeros(nout * nin),
            g_sn: be.zeros(nout * nin),
            t_out: be.zeros(nout),
            t_in: be.zeros(nin),
            sigma: 1.0,
            mask: None,
            train: false,
            batch: 0,
            x: be.zeros(0),
            z: be.zeros(0),
            y: be.zeros(0),
            dz: be.zeros(0),
            dx: be.zeros(0),
            delta: be.zeros(0),
            tan: be.zeros(0),
            q: be.zeros(0),
        }
    }

    /// σ of the last forward.
    pub fn sigma(&self) -> f32 {
        self.sigma
    }

    /// Forward; `residual: [batch, out]` is added before bias and activation.
    /// In training, one power iteration unless `frozen`, and a fresh dropout
    /// draw.
    pub fn forward(&mut self, be: &B, x: &B::Buf, residual: Option<&B::Buf>, batch: usize, train: bool, frozen: bool) {
        let (nin, nout) = (self.nin, self.nout);
        assert!(be.len(x) >= batch * nin, "critic layer: input shorter than batch·in");
        self.batch = batch;
        self.train = train;
        self.spectral_weight(be, train && !frozen);
        ensure(be, &mut self.x, batch * nin);
        be.copy(x, 0, &mut self.x, 0, batch * nin);
        ensure(be, &mut self.z, batch * nout);
        ensure(be, &mut self.y, batch * nout);
        let mut g = Gemm::new(Trans::N, Trans::T, batch, nout, nin);
        if let Some(r) = residual {
            be.copy(r, 0, &mut self.z, 0, batch * nout);
            g = g.beta(1.0);
        }
        be.gemm(&g, &self.x, &self.w_sn, &mut self.z);
        self.mask = (train && self.dropout > 0.0).then(|| {
            let offset = self.rng.take(batch * nout);
            DropoutMask { p: self.dropout, seed: self.rng.seed, offset }
        });
        let cfg = self.fused_cfg();
        be.fused_forward(&cfg, &self.z, Some(&self.bias.value), None, &mut self.y);
    }

    fn fused_cfg(&self) -> Fused {
        Fused {
            rows: self.batch,
            cols: self.nout,
            act: Act::LeakyRelu(self.slope),
            dropout: self.mask,
            train: self.train,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// `out = M ⊙ e` with `M = LReLU'(h) ⊙ dropout` of the last forward
    /// (`h = z + b`); `e, out: [batch, out]`.
    pub fn mask(&self, be: &B, e: &B::Buf, out: &mut B::Buf) {
        be.fused_backward(&self.fused_cfg(), &self.z, Some(&self.bias.value), None, e, out, None);
    }

    /// Backward of the last forward: `dz = M ⊙ dy`, `db += Σ_rows dz`,
    /// `dW += SN-chain(dzᵀ·x)`, and `dx = dz·W_sn` when `need_dx`.
    pub fn backward(&mut self, be: &B, dy: &B::Buf, need_dx: bool) {
        let (nin, nout, batch) = (self.nin, self.nout, self.batch);
        ensure(be, &mut self.dz, batch * nout);
        let cfg = self.fused_cfg();
        be.fused_backward(&cfg, &self.z, Some(&self.bias.value), None, dy, &mut self.dz, Some(&mut self.bias.grad));
        be.gemm(&Gemm::new(Trans::T, Trans::N, nout, nin, batch), &self.dz, &self.x, &mut self.g_sn);
        self.accumulate_sn_grad(be, 1.0);
        if need_dx {
            ensure(be, &mut self.dx, batch * nin);
            be.gemm(&Gemm::new(Trans::N, Trans::N, batch, nin, nout), &self.dz, &self.w_sn, &mut self.dx);
        }
    }

    /// `out = a·W_sn` (`a: [batch, out]`, `out: [batch, in]`), optionally
    /// `+= out` (`beta = 1`).
    pub fn times_w(&self, be: &B, a: &B::Buf, out: &mut B::Buf, beta: f32) {
        let g = Gemm::new(Trans::N, Trans::N, self.batch, self.nin, self.nout).beta(beta);
        be.gemm(&g, a, &self.w_sn, out);
    }

    /// GP backward pass: `Δ = M ⊙ e` (`e = None`: from the scratch `q`).
    pub fn set_delta(&mut self, be: &B, e: Option<&B::Buf>) {
        let mut delta = std::mem::replace(&mut self.delta, be.zeros(0));
        ensure(be, &mut delta, self.batch * self.nout);
        self.mask(be, e.unwrap_or(&self.q), &mut delta);
        self.delta = delta;
    }

    /// Tangent pass of the GP: `q = p_in·W_snᵀ`, `tan = M ⊙ q`.
    pub fn tangent(&mut self, be: &B, p_in: &B::Buf) {
        let n = self.batch * self.nout;
        ensure(be, &mut self.q, n);
        ensure(be, &mut self.tan, n);
        be.gemm(&Gemm::new(Trans::N, Trans::T, self.batch, self.nout, self.nin), p_in, &self.w_sn, &mut self.q);
        let mut tan = std::mem::replace(&mut self.tan, be.zeros(0));
        self.mask(be, &self.q, &mut tan);
        self.tan = tan;
    }

    /// GP weight gradient: `G = Δᵀ·p_in` w.r.t. `W_sn`, then
    /// `dW += λ·SN-chain(G)`; `p_in: [batch, in]`.
    pub fn gp_weight_grad(&mut self, be: &B, p_in: &B::Buf, lambda: f32) {
        let g = Gemm::new(Trans::T, Trans::N, self.nout, self.nin, self.batch);
        be.gemm(&g, &self.delta, p_in, &mut self.g_sn);
        self.accumulate_sn_grad(be, lambda);
    }

    /// `dW += scale·(G − ⟨G, W_sn⟩·u vᵀ)/σ` with `G = g_sn`: the gradient
    /// through `W_sn = W/(uᵀWv)` with `u, v` constants.
    fn accumulate_sn_grad(&mut self, be: &B, scale: f32) {
        let c = dot(be, &self.g_sn, &self.w_sn);
        be.axpy(scale / self.sigma, &self.g_sn, &mut self.weight.grad);
        let r1 = Gemm::new(Trans::N, Trans::N, self.nout, self.nin, 1).alpha(-scale * c / self.sigma).beta(1.0);
        be.gemm(&r1, &self.u.value, &self.v.value, &mut self.weight.grad);
    }

    /// Power iteration (when `iterate`) and `W_sn = W/σ`, `σ = uᵀWv`, as
    /// `torch.nn.utils.spectral_norm`.
    fn spectral_weight(&mut self, be: &B, iterate: bool) {
        let (nin, nout) = (self.nin, self.nout);
        let w = &self.weight.value;
        if iterate {
            // v = normalize(Wᵀu): [1, out]·[out, in].
            be.gemm(&Gemm::new(Trans::N, Trans::N, 1, nin, nout), &self.u.value, w, &mut self.t_in);
            normalize(be, &mut self.t_in);
            be.copy(&self.t_in, 0, &mut self.v.value, 0, nin);
            // u = normalize(W v): [1, in]·[out, in]ᵀ.
            be.gemm(&Gemm::new(Trans::N, Trans::T, 1, nout, nin), &self.v.value, w, &mut self.t_out);
            normalize(be, &mut self.t_out);
            be.copy(&self.t_out, 0, &mut self.u.value, 0, nout);
        }
        be.gemm(&Gemm::new(Trans::N, Trans::T, 1, nout, nin), &self.v.value, w, &mut self.t_out);
        self.sigma = dot(be, &self.u.value, &self.t_out);
        be.copy(w, 0, &mut self.w_sn, 0, nout * nin);
        be.scale(1.0 / self.sigma, &mut self.w_sn);
    }

    /// Hand every tensor to `f` under `prefix` with PyTorch's spectral-norm
    /// names (`weight_orig`, `bias`, `weight_u`, `weight_v`).
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        f(&join(prefix, "weight_orig"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
        f(&join(prefix, "weight_u"), &mut self.u);
        f(&join(prefix, "weight_v"), &mut self.v);
    }
}

/// `⟨a, b⟩` via a 1×1 GEMM (one launch, one scalar read back).
fn dot<B: Backend>(be: &B, a: &B::Buf, b: &B::Buf) -> f32 {
    let n = be.len(a);
    let mut out = be.zeros(1);
    be.gemm(&Gemm::new(Trans::N, Trans::T, 1, 1, n), a, b, &mut out);
    be.download(&out)[0]
}

/// `x /= max(‖x‖, eps)` (`torch.nn.functional.normalize`).
fn normalize<B: Backend>(be: &B, x: &mut B::Buf) {
    let norm = be.sumsq(x).sqrt();
    be.scale(1.0 / norm.max(SN_EPS), x);
}
