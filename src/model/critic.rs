//! Module I's critic (WGAN discriminator) and its WGAN-GP gradient penalty,
//! with the double backward written by hand.
//!
//! # Architecture
//!
//! `D: R^G → R^16`, as an `nn.Sequential` whose state-dict names we keep:
//!
//! ```text
//! 0: SN-Linear(G, 256) → 1: LReLU(0.2) → 2: Dropout
//! 3: SN-Linear(256, 16) → 4: LReLU → 5: Dropout
//! 6: ResBlock(16): y = LReLU(x + f(x)),
//!    f = fc.0: SN-Linear(16,16) → fc.1: LReLU → fc.2: Dropout → fc.3: SN-Linear(16,16)
//! ```
//!
//! Xavier-normal weights, PyTorch-default biases; spectral norm as
//! `torch.nn.utils.spectral_norm` (one power iteration per training
//! forward; every forward call counts, the GP's included).
//!
//! # The gradient penalty and its derivative
//!
//! Per cell (column vectors), with `W_l = W_l,orig / σ_l` the spectral-norm
//! weights and `φ` the LeakyReLU:
//!
//! ```text
//! h1 = W1 x̃ + b1,        a1 = d1 ⊙ φ(h1)
//! h2 = W2 a1 + b2,       a2 = d2 ⊙ φ(h2)
//! h3 = W3 a2 + b3,       a3 = d3 ⊙ φ(h3)
//! h4 = W4 a3 + b4 + a2,  D  = φ(h4)
//! ```
//!
//! With `M_l = d_l ⊙ φ'(h_l)` (`M4 = φ'(h4)`), the input gradient of
//! `s = Σ_k D_k` is one backward pass with `dy = 1`:
//!
//! ```text
//! Δ4 = M4 ⊙ 1
//! Δ3 = M3 ⊙ (W4ᵀ Δ4)
//! Δ2 = M2 ⊙ (W3ᵀ Δ3 + Δ4)        (the residual's identity path)
//! Δ1 = M1 ⊙ (W2ᵀ Δ2)
//! g  = W1ᵀ Δ1                     (= ∂s/∂x̃)
//! ```
//!
//! `GP = (1/B) Σ_i (‖g_i‖ − 1)²`. Its derivative w.r.t. `g_i` is
//! `ḡ_i = (2/B)(‖g_i‖ − 1) g_i/‖g_i‖` (0 where `g_i = 0`, as PyTorch).
//!
//! **Which quantities are constants.** `φ` is piecewise linear, so `M_l` is
//! piecewise constant in every parameter and in `x̃`: its derivative is 0
//! almost everywhere (PyTorch's `leaky_relu_backward` double-backward w.r.t.
//! its input is exactly 0, too). Dropout factors `d_l` are fixed draws. The
//! power-iteration vectors `u, v` are computed without gradient in
//! PyTorch. Hence `g` is, for fixed masks, a product of linear maps in the
//! `W_l` alone, and:
//!
//! - the biases enter `g` only through the masks, so `∂GP/∂b_l = 0`
//!   (exactly, as in PyTorch);
//! - `∂GP/∂W_l` is the reverse-mode derivative of the chain above. Taking
//!   adjoints line by line from `ḡ` back (the adjoint of `y = Aᵀx` is
//!   `Ā += x ȳᵀ`, `x̄ += A ȳ`; of `y = M ⊙ x` it is `x̄ = M ⊙ ȳ`):
//!
//! ```text
//! P0 = ḡ                       ∂GP/∂W1 = Δ1 P0ᵀ
//! P1 = M1 ⊙ (W1 P0)            ∂GP/∂W2 = Δ2 P1ᵀ
//! P2 = M2 ⊙ (W2 P1)            ∂GP/∂W3 = Δ3 P2ᵀ
//! P3 = M3 ⊙ (W3 P2)            ∂GP/∂W4 = Δ4 P3ᵀ
//! ```
//!
//!   The `P_l` are a forward pass of the tangent `ḡ` through the same masked
//!   linear network (no biases): the adjoint of a backward pass is a forward
//!   pass. The residual's identity path would add `P2` to the tangent of
//!   `h4`, but `Δ4 = M4` is a constant, so nothing consumes it. Summed over
//!   the batch (rows), `∂GP/∂W_l = Δ_lᵀ·P_{l−1}` with `Δ_l, P_l: [B, ·]`:
//!   the same shape of GEMM as an ordinary weight gradient `dzᵀ·x`.
//! - Finally through spectral norm, `W_l = W_orig/σ`, `σ = uᵀ W_orig v`
//!   (u, v constant): `∂/∂W_orig = (G − ⟨G, W_l⟩ u vᵀ)/σ` for `G = ∂/∂W_l`.
//!
//! Cost at batch B, G genes, hidden H: the GP's forward, `g = Δ1·W1`,
//! `Δ1ᵀ·P0` and `P0·W1ᵀ` are four `B×G×H` GEMMs (as many as the forward and
//! weight-gradient GEMMs of `D` on real and fake cells together); the rest is
//! `O(B·(G + H))` elementwise work, three GEMVs over `W1` for the power
//! iteration and σ, and one rank-1 update of `dW1` (`W_sn` is never stored).

mod layer;

use crate::backend::rng::Stream;
use crate::backend::{ensure, Backend, Gemm, Trans};
use crate::nn::join;
use crate::nn::params::{Module, Param};

use layer::SnLayer;

/// Sizes and rates of the critic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CriticConfig {
    /// Number of genes `G`.
    pub in_dim: usize,
    /// First hidden width (256).
    pub hidden: usize,
    /// Output width, also the ResBlock's width (16).
    pub out_dim: usize,
    /// LeakyReLU negative slope (0.2).
    pub slope: f32,
    /// Dropout probability after each hidden LeakyReLU (0.1).
    pub dropout: f32,
}

impl CriticConfig {
    /// ACsleuth's defaults for `in_dim` genes.
    pub fn new(in_dim: usize) -> Self {
        CriticConfig { in_dim, hidden: 256, out_dim: 16, slope: 0.2, dropout: 0.1 }
    }
}

/// What [`Critic::backward`] computes besides `∂/∂z` of each layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grads {
    /// The input gradient `∂L/∂x` (the generator step needs it; the
    /// critic's own steps do not).
    pub input: bool,
    /// The parameter gradients (the generator step does not need them: it
    /// saves the `[hidden, G]` weight-gradient GEMM).
    pub params: bool,
}

impl Grads {
    /// Input and parameter gradients.
    pub const ALL: Grads = Grads { input: true, params: true };
    /// `∂D/∂x` only (the generator step).
    pub const INPUT: Grads = Grads { input: true, params: false };
    /// Parameter gradients only (the critic's own step).
    pub const PARAMS: Grads = Grads { input: false, params: true };
}

/// The critic `D: [batch, in_dim] → [batch, out_dim]`.
///
/// Like every layer of `crate::nn`, run `forward → backward` before the
/// next `forward` (the forward caches what the backward needs).
/// [`Critic::gradient_penalty`] is self-contained (its own forward) and also
/// overwrites those caches.
pub struct Critic<B: Backend> {
    pub cfg: CriticConfig,
    /// Training forwards skip the power iteration (u, v held): D is then a
    /// fixed function of its weights, for gradient checks. Set once, by
    /// [`Critic::hold_spectral_norm`].
    hold_sn: bool,
    /// `0`, `3`, `6.fc.0`, `6.fc.3`.
    l1: SnLayer<B>,
    l2: SnLayer<B>,
    l3: SnLayer<B>,
    l4: SnLayer<B>,
    /// `[batch, out]`: gradient w.r.t. the ResBlock input (backward), or
    /// `W3ᵀΔ3 + Δ4` (GP).
    e2: B::Buf,
    /// GP scratch: interpolated input, `x_real − x_fake`, a row-broadcast
    /// factor, `g` and `ḡ` (all `[batch, in]`), `η: [batch]`, ones.
    xt: B::Buf,
    diff: B::Buf,
    rowf: B::Buf,
    g: B::Buf,
    gbar: B::Buf,
    eta: B::Buf,
    ones: B::Buf,
    /// [`Critic::wgan_gp_step`] scratch, `[batch, hidden]`: the first
    /// layer's product on the real cells, a difference of products, η
    /// broadcast along rows.
    z_real: B::Buf,
    z_diff: B::Buf,
    z_rowf: B::Buf,
}

impl<B: Backend> Critic<B> {
    pub fn new(be: &B, cfg: &CriticConfig, rng: &mut Stream) -> Self {
        let (g, h, o, s, p) = (cfg.in_dim, cfg.hidden, cfg.out_dim, cfg.slope, cfg.dropout);
        // The input layer stores W transposed: the real cells' zeros are
        // skipped in its forward and weight gradient (see nn::DenseConfig::sparse_input).
        let l1 = SnLayer::new(be, g, h, s, p, rng).sparse_input(be);
        let l2 = SnLayer::new(be, h, o, s, p, rng);
        let l3 = SnLayer::new(be, o, o, s, p, rng);
        let l4 = SnLayer::new(be, o, o, s, 0.0, rng);
        Critic {
            cfg: *cfg,
            hold_sn: false,
            l1,
            l2,
            l3,
            l4,
            e2: be.zeros(0),
            xt: be.zeros(0),
            diff: be.zeros(0),
            rowf: be.zeros(0),
            g: be.zeros(0),
            gbar: be.zeros(0),
            eta: be.zeros(0),
            ones: be.zeros(0),
            z_real: be.zeros(0),
            z_diff: be.zeros(0),
            z_rowf: be.zeros(0),
        }
    }

    /// From now on, training forwards keep every layer's u and v (σ is
    /// still recomputed from the weights), so that finite differences see
    /// one function (as `nn::Dense::hold_spectral_norm`). One way: a critic
    /// that trains never holds.
    pub fn hold_spectral_norm(&mut self) {
        self.hold_sn = true;
    }

    /// `D(x)`: `[batch, out_dim]`; caches for [`Critic::backward`].
    pub fn forward(&mut self, be: &B, x: &B::Buf, batch: usize, train: bool) -> &B::Buf {
        let fz = self.hold_sn;
        self.l1.forward(be, x, None, batch, train, fz);
        self.l2.forward(be, &self.l1.y, None, batch, train, fz);
        self.l3.forward(be, &self.l2.y, None, batch, train, fz);
        self.l4.forward(be, &self.l3.y, Some(&self.l2.y), batch, train, fz);
        &self.l4.y
    }

    /// Output of the last forward, `[batch, out_dim]`.
    pub fn output(&self) -> &B::Buf {
        &self.l4.y
    }

    /// Backward of the last forward given `dy: [batch, out_dim]`: accumulates
    /// the parameter gradients when `grads.params` and returns `dx: [batch,
    /// in_dim]` (an empty buffer unless `grads.input`). Gradients accumulate
    /// as in PyTorch: zero them (e.g. `nn::params::zero_grads`) before the
    /// critic's own step.
    pub fn backward(&mut self, be: &B, dy: &B::Buf, grads: Grads) -> &B::Buf {
        let pg = grads.params;
        self.l4.backward(be, dy, true, pg);
        self.l3.backward(be, &self.l4.dx, true, pg);
        // ∂/∂a2 = through f (l3) + the residual's identity path (l4's dz).
        ensure(be, &mut self.e2, be.len(&self.l4.dz));
        be.add(&self.l3.dx, &self.l4.dz, &mut self.e2);
        self.l2.backward(be, &self.e2, true, pg);
        self.l1.backward(be, &self.l2.dx, grads.input, pg);
        if !grads.input {
            self.l1.dx = be.zeros(0);
        }
        &self.l1.dx
    }

    /// WGAN-GP with `η_i = U(0,1)` number `offset + i` of Philox stream
    /// `seed`: see [`Critic::gradient_penalty_eta`].
    #[allow(clippy::too_many_arguments)]
    pub fn gradient_penalty(
        &mut self,
        be: &B,
        x_real: &B::Buf,
        x_fake: &B::Buf,
        batch: usize,
        lambda: f32,
        seed: u64,
        offset: u64,
    ) -> f32 {
        let mut eta = std::mem::replace(&mut self.eta, be.zeros(0));
        ensure(be, &mut eta, batch);
        be.fill_uniform(&mut eta, seed, offset, 0.0, 1.0);
        let gp = self.gradient_penalty_eta(be, x_real, x_fake, &eta, batch, lambda);
        self.eta = eta;
        gp
    }

    /// WGAN-GP for given interpolation weights `eta: [batch]`:
    /// `x̃ = η x_real + (1−η) x_fake` (rows), one training forward of `D` on
    /// `x̃` (one power iteration, one dropout draw held through both passes),
    /// `GP = mean_i (‖∇_x̃ Σ_k D_k(x̃_i)‖₂ − 1)²`. Accumulates `λ·∂GP/∂θ` into
    /// the parameter gradients (biases get exactly 0, see the module doc) and
    /// returns `GP` (unweighted).
    pub fn gradient_penalty_eta(
        &mut self,
        be: &B,
        x_real: &B::Buf,
        x_fake: &B::Buf,
        eta: &B::Buf,
        batch: usize,
        lambda: f32,
    ) -> f32 {
        let (nin, nout) = (self.cfg.in_dim, self.cfg.out_dim);
        let n = batch * nin;
        assert!(batch > 0, "gradient_penalty: empty batch");
        assert!(be.len(x_real) >= n && be.len(x_fake) >= n, "gradient_penalty: inputs shorter than batch·in_dim");
        assert!(be.len(eta) >= batch, "gradient_penalty: eta shorter than batch");
        for b in [&mut self.xt, &mut self.diff, &mut self.rowf, &mut self.g, &mut self.gbar] {
            ensure(be, b, n);
        }
        self.ensure_ones(be, nin.max(batch * nout));

        // x̃ = x_fake + η ⊙_rows (x_real − x_fake).
        be.copy(x_fake, 0, &mut self.g, 0, n);
        be.copy(x_real, 0, &mut self.diff, 0, n);
        be.axpy(-1.0, &self.g, &mut self.diff);
        row_broadcast(be, eta, &self.ones, batch, nin, &mut self.rowf);
        be.mul(&self.rowf, &self.diff, &mut self.xt);
        be.axpy(1.0, &self.g, &mut self.xt);

        // Forward on x̃ (training mode: fixes masks, u, v, σ).
        let xt = std::mem::replace(&mut self.xt, be.zeros(0));
        self.forward(be, &xt, batch, true);
        self.xt = xt;
        self.penalty_passes(be, batch, lambda)
    }

    /// The gradient of one critic step, `∂/∂θ [−mean D(real) + mean D(fake)
    /// + λ·GP]`, accumulated into the parameter gradients; returns
    /// `(Σ D(real), Σ D(fake), GP)` (sums over `[batch, out]`; GP unweighted).
    /// `dy_real`, `dy_fake: [batch, out]` are the output gradients
    /// (`∓1/(batch·out)`); η as in [`Critic::gradient_penalty`].
    ///
    /// The same as `forward(real)`, `backward(dy_real)`, `forward(fake)`,
    /// `backward(dy_fake)`, `gradient_penalty(real, fake)` (tested to
    /// rounding), one `[batch, G]×[G, hidden]` product cheaper: the first
    /// layer is linear, so its product on `x̃ = η x + (1−η) x̂` is formed
    /// from the two products already computed, each rescaled to the GP
    /// forward's σ (the power iteration runs before every forward, so the
    /// three σ differ slightly): `x̃·W_sn,gpᵀ = η σ_r/σ_gp · z_real +
    /// (1−η) σ_f/σ_gp · z_fake` row by row, and `x̃` itself is never formed.
    #[allow(clippy::too_many_arguments)]
    pub fn wgan_gp_step(
        &mut self,
        be: &B,
        real: &B::Buf,
        fake: &B::Buf,
        batch: usize,
        dy_real: &B::Buf,
        dy_fake: &B::Buf,
        lambda: f32,
        seed: u64,
        offset: u64,
    ) -> (f64, f64, f32) {
        let (h, n) = (self.cfg.hidden, batch * self.cfg.hidden);
        let sum_real = be.sum(self.forward(be, real, batch, true)) as f64;
        let sigma_r = self.l1.sigma();
        ensure(be, &mut self.z_real, n);
        be.copy(self.l1.z(), 0, &mut self.z_real, 0, n);
        self.backward(be, dy_real, Grads::PARAMS);
        let sum_fake = be.sum(self.forward(be, fake, batch, true)) as f64;
        let sigma_f = self.l1.sigma();
        self.backward(be, dy_fake, Grads::PARAMS);

        let mut eta = std::mem::replace(&mut self.eta, be.zeros(0));
        ensure(be, &mut eta, batch);
        be.fill_uniform(&mut eta, seed, offset, 0.0, 1.0);
        self.ensure_ones(be, h);
        for b in [&mut self.z_diff, &mut self.z_rowf] {
            ensure(be, b, n);
        }
        // The fake forward's product is still in l1.z: z̃ = c_f z_f + η ⊙ (c_r z_r − c_f z_f).
        let Critic { l1, z_real, z_diff: diff, z_rowf: rowf, ones, hold_sn, .. } = self;
        let fz = *hold_sn;
        l1.forward_product(be, batch, true, fz, |be, sigma_gp, z| {
            let (c_r, c_f) = (sigma_r / sigma_gp, sigma_f / sigma_gp);
            be.copy(z_real, 0, diff, 0, n);
            be.scale(c_r, diff);
            be.axpy(-c_f, z, diff);
            row_broadcast(be, &eta, ones, batch, h, rowf);
            be.scale(c_f, z);
            be.mul(rowf, diff, z_real);
            be.axpy(1.0, z_real, z);
        });
        self.l2.forward(be, &self.l1.y, None, batch, true, fz);
        self.l3.forward(be, &self.l2.y, None, batch, true, fz);
        self.l4.forward(be, &self.l3.y, Some(&self.l2.y), batch, true, fz);
        self.eta = eta;
        let gp = self.penalty_passes(be, batch, lambda);
        (sum_real, sum_fake, gp)
    }

    /// At least `n` ones: a `[1, in]` row for the broadcasts and `dy = 1:
    /// [batch, out]`.
    fn ensure_ones(&mut self, be: &B, n: usize) {
        if be.len(&self.ones) < n {
            self.ones = be.zeros(n);
            be.fill(&mut self.ones, 1.0);
        }
    }

    /// The GP after its forward: the backward with `dy = 1` to `g = ∂s/∂x̃`,
    /// the value, and the tangent pass accumulating `λ·∂GP/∂W_l`.
    fn penalty_passes(&mut self, be: &B, batch: usize, lambda: f32) -> f32 {
        let (nin, nout) = (self.cfg.in_dim, self.cfg.out_dim);
        let n = batch * nin;
        for b in [&mut self.rowf, &mut self.g, &mut self.gbar] {
            ensure(be, b, n);
        }
        self.ensure_ones(be, nin.max(batch * nout));
        // Backward with dy = 1 (no parameter gradients): Δ_l and g.
        let no = batch * nout;
        for l in [&mut self.l1, &mut self.l2, &mut self.l3, &mut self.l4] {
            let w = batch * l.nout;
            ensure(be, &mut l.delta, w);
            ensure(be, &mut l.q, w);
        }
        ensure(be, &mut self.e2, no);
        self.l4.set_delta(be, Some(&self.ones));
        self.l4.times_w(be, &self.l4.delta, &mut self.l3.q, 0.0);
        self.l3.set_delta(be, None);
        be.copy(&self.l4.delta, 0, &mut self.e2, 0, no);
        self.l3.times_w(be, &self.l3.delta, &mut self.e2, 1.0);
        self.l2.set_delta(be, Some(&self.e2));
        self.l2.times_w(be, &self.l2.delta, &mut self.l1.q, 0.0);
        self.l1.set_delta(be, None);
        self.l1.times_w(be, &self.l1.delta, &mut self.g, 0.0);

        // GP value and ḡ = coef_i · g_i.
        let mut sq = be.zeros(batch);
        be.row_sumsq(batch, nin, &self.g, &mut sq);
        let sq = be.download(&sq);
        let mut gp = 0.0f64;
        let coef: Vec<f32> = sq
            .iter()
            .map(|&s| {
                let r = (s as f64).sqrt();
                gp += (r - 1.0) * (r - 1.0);
                if r > 0.0 { (2.0 * (r - 1.0) / (r * batch as f64)) as f32 } else { 0.0 }
            })
            .collect();
        let gp = (gp / batch as f64) as f32;
        let coef = be.upload(&coef);
        row_broadcast(be, &coef, &self.ones, batch, nin, &mut self.rowf);
        be.mul(&self.rowf, &self.g, &mut self.gbar);

        // Tangent pass and the weight gradients ∂GP/∂W_l = Δ_lᵀ P_{l−1}.
        self.l1.gp_step(be, &self.gbar, lambda);
        self.l2.gp_step(be, &self.l1.tan, lambda);
        self.l3.gp_step(be, &self.l2.tan, lambda);
        self.l4.gp_step(be, &self.l3.tan, lambda);
        gp
    }

    /// σ of each spectral-norm layer in the last forward (`0`, `3`,
    /// `6.fc.0`, `6.fc.3`).
    pub fn sigmas(&self) -> [f32; 4] {
        [self.l1.sigma(), self.l2.sigma(), self.l3.sigma(), self.l4.sigma()]
    }
}

/// `out[r, c] = f[r]` over `[rows, cols]` (a rank-1 GEMM `f·1ᵀ`; `ones`
/// holds at least `cols` ones).
fn row_broadcast<B: Backend>(be: &B, f: &B::Buf, ones: &B::Buf, rows: usize, cols: usize, out: &mut B::Buf) {
    be.gemm(&Gemm::new(Trans::N, Trans::N, rows, cols, 1), f, ones, out);
}

impl<B: Backend> Module<B> for Critic<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.l1.visit(&join(prefix, "0"), f);
        self.l2.visit(&join(prefix, "3"), f);
        self.l3.visit(&join(prefix, "6.fc.0"), f);
        self.l4.visit(&join(prefix, "6.fc.3"), f);
    }
}
