//! The arguments the [`Backend`](super::Backend) ops take: GEMM
//! descriptors, activations, dropout masks, the fused layer's settings,
//! BatchNorm buffers, Adam steps. Kept apart from the trait because the
//! CPU twins and the CUDA kernels' host code both build and read them; the
//! trait's file holds only the ops.

use super::rng;

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    N,
    T,
}

/// Row-major GEMM descriptor: `C = alpha · op(A) · op(B) + beta · C` with
/// `op(A)` of shape `[m, k]`, `op(B)` `[k, n]`, `C` `[m, n]`.
///
/// Storage: `A` starts at element `a_off` with row stride `lda` (so `A` is
/// stored `[m, lda]` when `ta = N` and `[k, lda]` when `ta = T`); likewise `B`
/// (`[k, ldb]` or `[n, ldb]`) and `C` (`[m, ldc]`). With `beta = 0`, `C` is
/// not read (NaNs in it do not propagate).
///
/// CUDA mapping: cuBLAS is column-major. A row-major `C[m,n]` is the
/// column-major `Cᵀ[n,m]`, and `Cᵀ = op(B)ᵀ · op(A)ᵀ`, so the call is
/// `cublasSgemm(handle, opB, opA, n, m, k, alpha, B + b_off, ldb, A + a_off,
/// lda, beta, C + c_off, ldc)` where `opB`/`opA` are the same transpose flags
/// (a row-major stored matrix read column-major is already its transpose).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub ta: Trans,
    pub tb: Trans,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
}

impl Gemm {
    /// Densely packed operands (leading dimensions from the shapes), no
    /// offsets, `alpha = 1`, `beta = 0`.
    pub fn new(ta: Trans, tb: Trans, m: usize, n: usize, k: usize) -> Self {
        let lda = if ta == Trans::N { k } else { m };
        let ldb = if tb == Trans::N { n } else { k };
        Gemm { ta, tb, m, n, k, alpha: 1.0, beta: 0.0, lda, ldb, ldc: n, a_off: 0, b_off: 0, c_off: 0 }
    }
    pub fn alpha(mut self, a: f32) -> Self {
        self.alpha = a;
        self
    }
    pub fn beta(mut self, b: f32) -> Self {
        self.beta = b;
        self
    }
    /// Minimal buffer lengths `(A, B, C)` this descriptor touches.
    pub fn extents(&self) -> (usize, usize, usize) {
        let ext = |off: usize, rows: usize, cols: usize, ld: usize| {
            if rows == 0 || cols == 0 { 0 } else { off + (rows - 1) * ld + cols }
        };
        let (ar, ac) = if self.ta == Trans::N { (self.m, self.k) } else { (self.k, self.m) };
        let (br, bc) = if self.tb == Trans::N { (self.k, self.n) } else { (self.n, self.k) };
        (
            ext(self.a_off, ar, ac, self.lda),
            ext(self.b_off, br, bc, self.ldb),
            ext(self.c_off, self.m, self.n, self.ldc),
        )
    }
}

/// Strides (in elements) between consecutive matrices of a batched GEMM
/// (cuBLAS `gemmStridedBatched`): matrix `i` of A starts at
/// `a_off + i·stride_a`, and so on.
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    pub count: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

/// Activation applied after bias/BatchNorm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    /// LeakyReLU with the given negative slope (0.2 in ACsleuth).
    LeakyRelu(f32),
}

impl Act {
    #[inline(always)]
    pub fn f(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Relu => x.max(0.0),
            Act::LeakyRelu(s) => {
                if x > 0.0 { x } else { s * x }
            }
        }
    }
    /// Derivative at pre-activation `x` (at 0: the left slope, as PyTorch).
    #[inline(always)]
    pub fn df(self, x: f32) -> f32 {
        match self {
            Act::Identity => 1.0,
            Act::Relu => (x > 0.0) as u32 as f32,
            Act::LeakyRelu(s) => {
                if x > 0.0 { 1.0 } else { s }
            }
        }
    }
}

/// Dropout draw: element `j` of a `[rows, cols]` tensor is kept when
/// `rng::uniform(seed, offset + j) >= p`, and scaled by `1/(1 − p)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    pub p: f32,
    pub seed: u64,
    pub offset: u64,
}

impl DropoutMask {
    /// Multiplier of element `j` (0 or 1/(1−p)).
    #[inline(always)]
    pub fn factor(&self, j: usize) -> f32 {
        if rng::keep(self.seed, self.offset + j as u64, self.p) { 1.0 / (1.0 - self.p) } else { 0.0 }
    }
}

/// Configuration of [`Backend::fused_forward`](super::Backend::fused_forward) /
/// [`Backend::fused_backward`](super::Backend::fused_backward):
/// `y = dropout(act(BN(z + bias)))` over `z: [rows, cols]`, BN per column.
#[derive(Clone, Copy, Debug)]
pub struct Fused {
    pub rows: usize,
    pub cols: usize,
    pub act: Act,
    /// `None` or `p = 0`: no dropout.
    pub dropout: Option<DropoutMask>,
    /// Training: BN uses batch statistics and updates the running ones.
    pub train: bool,
    pub eps: f32,
    pub momentum: f32,
}

/// BatchNorm buffers for the forward pass (all `[cols]`). In training
/// `save_mean`/`save_invstd` receive the batch mean and `1/sqrt(var_biased +
/// eps)` and the running stats are updated with `momentum` (running variance
/// from the UNBIASED batch variance, as PyTorch). In eval they receive the
/// running mean and `1/sqrt(running_var + eps)`, so the backward is uniform.
pub struct BnFwd<'a, T> {
    pub gamma: &'a T,
    pub beta: &'a T,
    pub running_mean: &'a mut T,
    pub running_var: &'a mut T,
    pub save_mean: &'a mut T,
    pub save_invstd: &'a mut T,
}

/// BatchNorm buffers for the backward pass (all `[cols]`); `dgamma`/`dbeta`
/// are accumulated.
pub struct BnBwd<'a, T> {
    pub gamma: &'a T,
    pub beta: &'a T,
    pub save_mean: &'a T,
    pub save_invstd: &'a T,
    pub dgamma: &'a mut T,
    pub dbeta: &'a mut T,
}

/// One Adam/AdamW step (as `torch.optim.Adam` / `AdamW`, no amsgrad).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the parameter by `lr·wd` instead of adding `wd·p` to the
    /// gradient.
    pub decoupled: bool,
    /// 1-based step number, for the bias corrections.
    pub t: u32,
}
