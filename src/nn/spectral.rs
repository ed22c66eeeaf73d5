//! Spectral normalisation as `torch.nn.utils.spectral_norm`, the one
//! implementation behind [`Dense`](super::Dense)'s spectral-norm variant
//! and the critic's layers (`model::critic`).
//!
//! Persistent `u: [out]`, `v: [in]` (`weight_u`, `weight_v` in a state
//! dict). In training, one power iteration per forward: `v =
//! normalize(Wᵀu)`, `u = normalize(Wv)` (normalize = x / max(‖x‖, eps),
//! eps 1e-12); then `σ = uᵀWv` and `W_sn = W/σ`; in eval no iteration. The
//! backward treats u and v as constants: `∂/∂W = (G − ⟨G, W_sn⟩·u vᵀ)/σ`
//! for `G = ∂/∂W_sn`, whose rank-one term is [`SpectralNorm::rank_one`].

use crate::backend::rng::Stream;
use crate::backend::{Backend, Gemm, Trans};

use super::join;
use super::params::Param;

/// `torch.nn.utils.spectral_norm`'s eps.
pub const SN_EPS: f32 = 1e-12;

/// The power-iteration state of one weight `W: [out, in]`.
pub struct SpectralNorm<B: Backend> {
    /// `[out]`.
    pub u: Param<B>,
    /// `[in]`.
    pub v: Param<B>,
    nin: usize,
    nout: usize,
    /// Scratch `[out]` for `W v`, `[in]` for `Wᵀ u`.
    t_out: B::Buf,
    t_in: B::Buf,
    sigma: f32,
}

impl<B: Backend> SpectralNorm<B> {
    /// `u, v ~ normalize(N(0, 1))`, `u` drawn first from `rng`, as torch.
    pub fn new(be: &B, nin: usize, nout: usize, rng: &mut Stream) -> Self {
        let mut u = Param::buffer(be, &[nout], 0.0);
        let mut v = Param::buffer(be, &[nin], 0.0);
        let off = rng.take(nout);
        be.fill_normal(&mut u.value, rng.seed, off, 0.0, 1.0);
        let off = rng.take(nin);
        be.fill_normal(&mut v.value, rng.seed, off, 0.0, 1.0);
        normalize(be, &mut u.value);
        normalize(be, &mut v.value);
        SpectralNorm { u, v, nin, nout, t_out: be.zeros(nout), t_in: be.zeros(nin), sigma: 1.0 }
    }

    /// σ of the last [`SpectralNorm::update`] (1 before any).
    pub fn sigma(&self) -> f32 {
        self.sigma
    }

    /// One power iteration (when `iterate`), then `σ = uᵀWv`; returns σ.
    /// `w` is `[out, in]`, or `[in, out]` when `transposed` (an input layer
    /// stored for the sparse product).
    pub fn update(&mut self, be: &B, w: &B::Buf, transposed: bool, iterate: bool) -> f32 {
        let (nin, nout) = (self.nin, self.nout);
        let (wn, wt) = if transposed { (Trans::T, Trans::N) } else { (Trans::N, Trans::T) };
        if iterate {
            // v = normalize(Wᵀu): [1, out]·[out, in].
            be.gemm(&Gemm::new(Trans::N, wn, 1, nin, nout), &self.u.value, w, &mut self.t_in);
            normalize(be, &mut self.t_in);
            be.copy(&self.t_in, 0, &mut self.v.value, 0, nin);
        }
        // W v: [1, in]·[out, in]ᵀ; then u = normalize(W v) when iterating,
        // and σ = uᵀ(W v) (PyTorch recomputes the same W v for σ).
        be.gemm(&Gemm::new(Trans::N, wt, 1, nout, nin), &self.v.value, w, &mut self.t_out);
        if iterate {
            be.copy(&self.t_out, 0, &mut self.u.value, 0, nout);
            normalize(be, &mut self.u.value);
        }
        self.sigma = dot(be, &self.u.value, &self.t_out);
        self.sigma
    }

    /// `grad += alpha · u vᵀ` (`[out, in]`), or `alpha · v uᵀ` when the
    /// weight is stored `transposed`: the rank-one term of the chain rule,
    /// `alpha = −⟨G, W_sn⟩/σ` times the caller's scale.
    pub fn rank_one(&self, be: &B, alpha: f32, grad: &mut B::Buf, transposed: bool) {
        let (nin, nout) = (self.nin, self.nout);
        if transposed {
            be.gemm(&Gemm::new(Trans::N, Trans::N, nin, nout, 1).alpha(alpha).beta(1.0), &self.v.value, &self.u.value, grad);
        } else {
            be.gemm(&Gemm::new(Trans::N, Trans::N, nout, nin, 1).alpha(alpha).beta(1.0), &self.u.value, &self.v.value, grad);
        }
    }

    /// `weight_u`, `weight_v` under the Linear's prefix, as PyTorch names them.
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        f(&join(prefix, "weight_u"), &mut self.u);
        f(&join(prefix, "weight_v"), &mut self.v);
    }
}

/// `⟨a, b⟩` via a 1×1 GEMM (one launch, one scalar read back).
pub fn dot<B: Backend>(be: &B, a: &B::Buf, b: &B::Buf) -> f32 {
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
