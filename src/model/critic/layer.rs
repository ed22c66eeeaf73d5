//! One spectral-norm layer of the critic, `y = drop(LReLU(x·W_snᵀ (+ r) + b))`,
//! with the extra passes the gradient penalty needs (see the derivation in
//! the parent module).
//!
//! The spectral norm itself is `nn::spectral::SpectralNorm`, as in
//! `nn::Dense`; this layer differs from `Dense` in what the double backward
//! needs open: the pre-activations, the dropout draw and `σ` of the last
//! forward are all needed by [`SnLayer::mask`] and the SN chain rule, and a
//! `frozen` power iteration is needed by the gradient checks.
//!
//! `W_sn = W/σ` is never stored: every product with it is a GEMM on `W` with
//! `alpha = 1/σ`. The SN chain rule needs `⟨G, W_sn⟩` for a weight gradient
//! `G = Aᵀ·X`; it equals `⟨A, X·W_snᵀ⟩`, a dot product of two `[batch, out]`
//! matrices the layer already has (`z` without the residual in the backward,
//! the tangent product `q` in the GP), instead of a pass over `[out, in]`.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Act, Backend, DropoutMask, Fused, Gemm, Trans};
use crate::nn::init;
use crate::nn::join;
use crate::nn::params::Param;
use crate::nn::spectral::{dot, SpectralNorm};

pub(super) struct SnLayer<B: Backend> {
    pub nin: usize,
    pub nout: usize,
    /// `W` (PyTorch `weight_orig`), `[out, in]`.
    pub weight: Param<B>,
    /// `[out]`.
    pub bias: Param<B>,
    /// Power-iteration vectors (`weight_u: [out]`, `weight_v: [in]`) and σ.
    pub sn: SpectralNorm<B>,
    slope: f32,
    dropout: f32,
    /// `W` stored transposed, `[in, out]` (the input layer: see
    /// [`SnLayer::sparse_input`]).
    transposed: bool,
    rng: Stream,
    /// σ of the last forward.
    sigma: f32,
    mask: Option<DropoutMask>,
    train: bool,
    batch: usize,
    /// Input copy `[batch, in]`.
    x: B::Buf,
    /// `x·W_snᵀ (+ residual)`, before bias, `[batch, out]`.
    z: B::Buf,
    /// Copy of the residual of the last forward (`[batch, out]`), if any.
    res: Option<B::Buf>,
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
        let sn = SpectralNorm::new(be, nin, nout, rng);
        let tag = rng.take(1);
        SnLayer {
            nin,
            nout,
            weight,
            bias,
            sn,
            slope,
            dropout,
            transposed: false,
            rng: rng.fork(tag),
            sigma: 1.0,
            mask: None,
            train: false,
            batch: 0,
            x: be.zeros(0),
            z: be.zeros(0),
            res: None,
            y: be.zeros(0),
            dz: be.zeros(0),
            dx: be.zeros(0),
            delta: be.zeros(0),
            tan: be.zeros(0),
            q: be.zeros(0),
        }
    }

    /// Store `W` transposed, `[in, out]`, as `nn::DenseConfig::sparse_input`
    /// does: the input's zeros are then skipped by the CPU backend in the
    /// forward and the weight gradient. Same values, same checkpoint layout.
    pub fn sparse_input(mut self, be: &B) -> Self {
        self.weight.store_transposed(be);
        self.transposed = true;
        self
    }

    /// `t` for a product with `W` as the right operand, as `W` is stored.
    fn wt(&self, t: Trans) -> Trans {
        match (self.transposed, t) {
            (false, t) => t,
            (true, Trans::N) => Trans::T,
            (true, Trans::T) => Trans::N,
        }
    }

    /// σ of the last forward.
    pub fn sigma(&self) -> f32 {
        self.sigma
    }

    /// `x·W_snᵀ (+ residual)` of the last forward, `[batch, out]`.
    pub fn z(&self) -> &B::Buf {
        &self.z
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
        let mut g = Gemm::new(Trans::N, self.wt(Trans::T), batch, nout, nin).alpha(1.0 / self.sigma);
        match residual {
            Some(r) => {
                let res = self.res.get_or_insert_with(|| be.zeros(0));
                ensure(be, res, batch * nout);
                be.copy(r, 0, res, 0, batch * nout);
                be.copy(r, 0, &mut self.z, 0, batch * nout);
                g = g.beta(1.0);
            }
            None => self.res = None,
        }
        be.gemm(&g, &self.x, &self.weight.value, &mut self.z);
        self.activate(be, batch, train);
    }

    /// Forward from a given product `z = x·W_snᵀ: [batch, out]` of this
    /// forward's `σ` (no residual): the power iteration (unless `frozen`)
    /// and σ first, then `make_z(σ, z)` fills `z`, then bias, activation
    /// and a fresh dropout draw as in [`SnLayer::forward`]. The input copy is
    /// not updated, so only the GP's passes may follow, not a backward.
    pub fn forward_product(&mut self, be: &B, batch: usize, train: bool, frozen: bool, make_z: impl FnOnce(&B, f32, &mut B::Buf)) {
        self.batch = batch;
        self.train = train;
        self.spectral_weight(be, train && !frozen);
        self.res = None;
        ensure(be, &mut self.z, batch * self.nout);
        ensure(be, &mut self.y, batch * self.nout);
        make_z(be, self.sigma, &mut self.z);
        self.activate(be, batch, train);
    }

    /// `y = drop(LReLU(z + b))` with a fresh dropout draw in training.
    fn activate(&mut self, be: &B, batch: usize, train: bool) {
        let nout = self.nout;
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

    /// Backward of the last forward: `dz = M ⊙ dy`; when `need_params`,
    /// `db += Σ_rows dz` and `dW += SN-chain(dzᵀ·x)`; when `need_dx`,
    /// `dx = dz·W_sn`.
    pub fn backward(&mut self, be: &B, dy: &B::Buf, need_dx: bool, need_params: bool) {
        let (nin, nout, batch) = (self.nin, self.nout, self.batch);
        ensure(be, &mut self.dz, batch * nout);
        let cfg = self.fused_cfg();
        let dbias = need_params.then_some(&mut self.bias.grad);
        be.fused_backward(&cfg, &self.z, Some(&self.bias.value), None, dy, &mut self.dz, dbias);
        if need_params {
            // ⟨dzᵀx, W_sn⟩ = ⟨dz, x·W_snᵀ⟩ = ⟨dz, z − residual⟩.
            let mut c = dot(be, &self.dz, &self.z);
            if let Some(r) = &self.res {
                c -= dot(be, &self.dz, r);
            }
            self.accumulate_sn_grad(be, None, c, 1.0);
        }
        if need_dx {
            ensure(be, &mut self.dx, batch * nin);
            let g = Gemm::new(Trans::N, self.wt(Trans::N), batch, nin, nout).alpha(1.0 / self.sigma);
            be.gemm(&g, &self.dz, &self.weight.value, &mut self.dx);
        }
    }

    /// `out = a·W_sn` (`a: [batch, out]`, `out: [batch, in]`), optionally
    /// `+= out` (`beta = 1`).
    pub fn times_w(&self, be: &B, a: &B::Buf, out: &mut B::Buf, beta: f32) {
        let g = Gemm::new(Trans::N, self.wt(Trans::N), self.batch, self.nin, self.nout).alpha(1.0 / self.sigma).beta(beta);
        be.gemm(&g, a, &self.weight.value, out);
    }

    /// GP backward pass: `Δ = M ⊙ e` (`e = None`: from the scratch `q`).
    pub fn set_delta(&mut self, be: &B, e: Option<&B::Buf>) {
        let mut delta = std::mem::replace(&mut self.delta, be.zeros(0));
        ensure(be, &mut delta, self.batch * self.nout);
        self.mask(be, e.unwrap_or(&self.q), &mut delta);
        self.delta = delta;
    }

    /// One step of the GP's tangent pass: `q = p_in·W_snᵀ`, `tan = M ⊙ q`,
    /// and the weight gradient `∂GP/∂W_sn = Δᵀ·p_in` accumulated as
    /// `dW += λ·SN-chain(Δᵀ·p_in)` (`⟨Δᵀp_in, W_sn⟩ = ⟨Δ, q⟩`);
    /// `p_in: [batch, in]`.
    pub fn gp_step(&mut self, be: &B, p_in: &B::Buf, lambda: f32) {
        let n = self.batch * self.nout;
        ensure(be, &mut self.q, n);
        ensure(be, &mut self.tan, n);
        let g = Gemm::new(Trans::N, self.wt(Trans::T), self.batch, self.nout, self.nin).alpha(1.0 / self.sigma);
        be.gemm(&g, p_in, &self.weight.value, &mut self.q);
        let mut tan = std::mem::replace(&mut self.tan, be.zeros(0));
        self.mask(be, &self.q, &mut tan);
        self.tan = tan;
        let c = dot(be, &self.delta, &self.q);
        self.accumulate_sn_grad(be, Some(p_in), c, lambda);
    }

    /// `dW += scale·(G − c·u vᵀ)/σ` with `G` the gradient w.r.t. `W_sn` and
    /// `c = ⟨G, W_sn⟩`: the chain rule through `W_sn = W/(uᵀWv)` with `u, v`
    /// constants. `G = dzᵀ·x` (backward, `p_in = None`) or `Δᵀ·p_in` (GP).
    fn accumulate_sn_grad(&mut self, be: &B, p_in: Option<&B::Buf>, c: f32, scale: f32) {
        let s = scale / self.sigma;
        let (a, x) = match p_in {
            None => (&self.dz, &self.x),
            Some(p) => (&self.delta, p),
        };
        let grad = &mut self.weight.grad;
        if self.transposed {
            // Gᵀ = xᵀ·a, `[in, out]`.
            be.gemm(&Gemm::new(Trans::T, Trans::N, self.nin, self.nout, self.batch).alpha(s).beta(1.0), x, a, grad);
        } else {
            be.gemm(&Gemm::new(Trans::T, Trans::N, self.nout, self.nin, self.batch).alpha(s).beta(1.0), a, x, grad);
        }
        self.sn.rank_one(be, -s * c, grad, self.transposed);
    }

    /// Power iteration (when `iterate`) and `σ = uᵀWv`.
    fn spectral_weight(&mut self, be: &B, iterate: bool) {
        self.sigma = self.sn.update(be, &self.weight.value, self.transposed, iterate);
    }

    /// Hand every tensor to `f` under `prefix` with PyTorch's spectral-norm
    /// names (`weight_orig`, `bias`, `weight_u`, `weight_v`).
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        f(&join(prefix, "weight_orig"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
        self.sn.visit(prefix, f);
    }
}
