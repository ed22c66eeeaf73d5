//! The `Backend` trait: the primitive operations every model is written
//! against, and its CPU implementation ([`cpu::CpuBackend`]).
//!
//! Design rules (so that a CUDA backend made of hand-written kernels fits the
//! same trait):
//! - Buffers are explicit f32 device buffers ([`Backend::Buf`]); every method
//!   names its inputs and outputs; no global state, no hidden allocation
//!   inside a method (outputs are passed in, already sized).
//! - One method is one kernel launch (or one cuBLAS call) on a GPU. That is
//!   why bias + BatchNorm + activation + dropout is one method
//!   ([`Backend::fused_forward`]) rather than four: the CUDA twin reads the
//!   pre-activation once and writes the output once.
//! - All matrices are row-major. `[r, c]` in a doc comment means `r` rows of
//!   `c` contiguous values.
//! - Gradients of parameters are ACCUMULATED (`+=`) into their buffers, as in
//!   PyTorch; gradients of activations are overwritten.
//! - Random numbers come from the counter-based Philox stream of [`rng`]:
//!   value `i` of `(seed, offset)` is a pure function, so devices agree.
//!
//! Shape errors are programming errors: implementations panic with a clear
//! message (they never see user input directly).

mod args;
pub mod cpu;
pub mod cpu_argmax;
pub mod cpu_knn;
pub mod cpu_memory_attention;
pub mod thread_pool;
pub mod cpu_desc;
pub mod cpu_mmd;
pub mod cuda;
mod cpu_fused;
mod cpu_gemm;
mod cpu_sparse;
pub mod rng;
#[cfg(test)]
mod cpu_tests;

pub use args::{Act, AdamStep, Batch, BnBwd, BnFwd, DropoutMask, Fused, Gemm, Trans};
pub use cpu::{CpuBackend, CpuBuf};

/// The primitive operations. See the module doc for conventions.
pub trait Backend: Send + Sync {
    /// A contiguous f32 buffer on the device.
    type Buf: Send + Sync;

    fn name(&self) -> &'static str;

    /// The first device error since the backend was made, if any. Device
    /// errors are sticky (see `cuda::backend`): the operations after one
    /// are no-ops, so callers check at natural boundaries (after an epoch,
    /// a pass, before writing results). The CPU backend has none. Both
    /// also report a cancellation request ([`crate::progress::cancel`]).
    fn check(&self) -> crate::Result<()> {
        crate::progress::check_cancelled()
    }

    // ---- memory ----
    /// A zero-filled buffer of `len` values.
    fn zeros(&self, len: usize) -> Self::Buf;
    /// Host → device.
    fn upload(&self, data: &[f32]) -> Self::Buf;
    /// Device → host into `out` (`out.len() == len(buf)`).
    fn download_into(&self, buf: &Self::Buf, out: &mut [f32]);
    fn download(&self, buf: &Self::Buf) -> Vec<f32> {
        let mut v = vec![0.0; self.len(buf)];
        self.download_into(buf, &mut v);
        v
    }
    /// Host → device into an existing buffer at `dst_off`.
    fn write(&self, dst: &mut Self::Buf, dst_off: usize, data: &[f32]);
    fn len(&self, buf: &Self::Buf) -> usize;
    /// `dst[dst_off..+len] = src[src_off..+len]`.
    fn copy(&self, src: &Self::Buf, src_off: usize, dst: &mut Self::Buf, dst_off: usize, len: usize);
    fn fill(&self, buf: &mut Self::Buf, value: f32);

    // ---- products ----
    /// See [`Gemm`].
    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf);
    /// `batch.count` independent GEMMs with the same descriptor, operands
    /// offset by the strides (multi-head attention).
    fn gemm_batched(&self, g: &Gemm, batch: &Batch, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf);

    // ---- fused layer kernels ----
    /// `y[r,c] = drop(act(BN(z[r,c] + bias[c])))`, `z, y: [rows, cols]`.
    /// `bias`, `bn` optional (without BN: `act(z + bias)`).
    fn fused_forward(
        &self,
        cfg: &Fused,
        z: &Self::Buf,
        bias: Option<&Self::Buf>,
        bn: Option<BnFwd<'_, Self::Buf>>,
        y: &mut Self::Buf,
    );
    /// Backward of [`Backend::fused_forward`] given the same `z`, `bias`, the
    /// saved statistics and `dy: [rows, cols]`: writes `dz: [rows, cols]`,
    /// accumulates `dbias: [cols]`, `dgamma`, `dbeta`. The activation
    /// derivative and the dropout mask are recomputed (nothing else saved).
    #[allow(clippy::too_many_arguments)]
    fn fused_backward(
        &self,
        cfg: &Fused,
        z: &Self::Buf,
        bias: Option<&Self::Buf>,
        bn: Option<BnBwd<'_, Self::Buf>>,
        dy: &Self::Buf,
        dz: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
    );
    /// Row-wise LayerNorm of `x: [rows, cols]`: `y = γ·(x−μ)·invstd + β`;
    /// saves `mean, invstd: [rows]`.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_forward(
        &self,
        rows: usize,
        cols: usize,
        eps: f32,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        invstd: &mut Self::Buf,
    );
    /// Backward of LayerNorm: writes `dx`, accumulates `dgamma, dbeta: [cols]`.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        &self,
        rows: usize,
        cols: usize,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        invstd: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    );
    /// Row softmax with temperature: `y[r,:] = softmax(x[r,:] · scale)`
    /// (`scale = 1/τ`), `x, y: [rows, cols]`.
    fn softmax_rows(&self, rows: usize, cols: usize, scale: f32, x: &Self::Buf, y: &mut Self::Buf);
    /// `dx = scale · y ⊙ (dy − rowsum(dy ⊙ y))`.
    fn softmax_rows_backward(
        &self,
        rows: usize,
        cols: usize,
        scale: f32,
        y: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    );

    // ---- memory attention (Module I's memory block) ----
    /// Per row of `logits: [rows, cols]` (`cols` = memory slots):
    /// `w = softmax(logits · inv_tau)`, hard shrinkage
    /// `w' = relu(w − λ)·w/(|w − λ| + 1e-12)`, L1 renormalisation
    /// `out = w'/max(Σ|w'|, 1e-12)`. Writes the softmax to `w_saved` (kept
    /// for the backward) and the attention weights to `out` (both
    /// `[rows, cols]`). One kernel (one block per row) on a GPU; the CPU twin
    /// is [`cpu_memory_attention::memory_attention_forward`].
    #[allow(clippy::too_many_arguments)]
    fn memory_attention_forward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        logits: &Self::Buf,
        w_saved: &mut Self::Buf,
        out: &mut Self::Buf,
    );
    /// Backward of [`Backend::memory_attention_forward`] from the saved
    /// softmax and `dout = ∂L/∂out`: writes `dlogits = ∂L/∂logits` (all
    /// `[rows, cols]`).
    #[allow(clippy::too_many_arguments)]
    fn memory_attention_backward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        w_saved: &Self::Buf,
        dout: &Self::Buf,
        dlogits: &mut Self::Buf,
    );

    // ---- reductions ----
    /// `out[r] = Σ_c x[r,c]` over `x: [rows, cols]`.
    fn row_sums(&self, rows: usize, cols: usize, x: &Self::Buf, out: &mut Self::Buf);
    /// `out[r] = Σ_c x[r,c]²`.
    fn row_sumsq(&self, rows: usize, cols: usize, x: &Self::Buf, out: &mut Self::Buf);
    /// `out[c] = beta·out[c] + Σ_r x[r,c]` (bias gradients use `beta = 1`).
    fn col_sums(&self, rows: usize, cols: usize, x: &Self::Buf, beta: f32, out: &mut Self::Buf);
    /// `Σ x` (a device→host sync on a GPU).
    fn sum(&self, x: &Self::Buf) -> f32;
    /// `Σ x²`.
    fn sumsq(&self, x: &Self::Buf) -> f32;

    // ---- elementwise (all over the whole buffer unless stated) ----
    /// `y += alpha · x`.
    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf);
    /// `x *= alpha`.
    fn scale(&self, alpha: f32, x: &mut Self::Buf);
    /// `out = a + b`.
    fn add(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf);
    /// `out = a ⊙ b`.
    fn mul(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf);
    /// `x[r,c] += bias[c]` over `x: [rows, cols]`.
    fn add_bias(&self, rows: usize, cols: usize, bias: &Self::Buf, x: &mut Self::Buf);
    /// `out = act(x)`.
    fn act_forward(&self, act: Act, x: &Self::Buf, out: &mut Self::Buf);
    /// `dx = dy ⊙ act'(x)` (x the pre-activation).
    fn act_backward(&self, act: Act, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf);
    /// `out = σ(x)`.
    fn sigmoid(&self, x: &Self::Buf, out: &mut Self::Buf);
    /// `dx = dy ⊙ y(1−y)` with `y = σ(x)` the forward output.
    fn sigmoid_backward(&self, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf);
    /// `out = |x|`.
    fn abs(&self, x: &Self::Buf, out: &mut Self::Buf);
    /// `out = sign(x)` (0 at 0, as `torch.sign`).
    fn sign(&self, x: &Self::Buf, out: &mut Self::Buf);
    /// `y = x ⊙ mask` with the dropout mask (kept elements scaled by 1/(1−p)),
    /// used for both directions (the backward multiplies by the same mask).
    fn dropout(&self, mask: &DropoutMask, x: &Self::Buf, y: &mut Self::Buf);
    /// L1 loss and its gradient: returns `mean |pred − target|` over all
    /// elements and writes `grad = scale · sign(pred − target) / len`.
    fn l1_loss(&self, pred: &Self::Buf, target: &Self::Buf, scale: f32, grad: &mut Self::Buf) -> f32;

    // ---- random numbers (Philox, see [`rng`]) ----
    /// `x[i] = lo + (hi − lo) · uniform(seed, offset + i)`.
    fn fill_uniform(&self, x: &mut Self::Buf, seed: u64, offset: u64, lo: f32, hi: f32);
    /// `x[i] = mean + std · normal(seed, offset + i)`.
    fn fill_normal(&self, x: &mut Self::Buf, seed: u64, offset: u64, mean: f32, std: f32);

    // ---- optimiser ----
    /// One fused Adam(W) step over a parameter buffer: updates `param`, the
    /// first and second moments `m`, `v` (all the same length as `grad`).
    fn adam_step(&self, s: &AdamStep, param: &mut Self::Buf, grad: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf);

    // ==== DESC soft assignment (Module IV subtyping; kernels/desc.cu) ====
    // Shapes: `z: [rows, dim]` embeddings z*, `mu: [k, dim]` centroids,
    // `dist, q, p, g: [rows, k]`. CPU twins in [`cpu_desc`], where the
    // formulas are written out.

    /// Student-t soft assignment: `dist[i,j] = ‖z_i − μ_j‖²` and
    /// `q[i,j] ∝ (1 + dist/ν)^{−(ν+1)/2}` (rows sum to 1). One block per row.
    #[allow(clippy::too_many_arguments)]
    fn desc_soft_assign(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        z: &Self::Buf,
        mu: &Self::Buf,
        dist: &mut Self::Buf,
        q: &mut Self::Buf,
    );
    /// `L = scale · Σ_ij p_ij ln(p_ij / q_ij)` with `q` recomputed from the
    /// saved `dist` (in log space); writes `g = ∂L/∂dist` and
    /// `dz = ∂L/∂z: [rows, dim]`, returns `L` (a device→host sync on a GPU).
    /// One block per row.
    #[allow(clippy::too_many_arguments)]
    fn desc_kl_grad(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        scale: f32,
        z: &Self::Buf,
        mu: &Self::Buf,
        p: &Self::Buf,
        dist: &Self::Buf,
        g: &mut Self::Buf,
        dz: &mut Self::Buf,
    ) -> f32;
    /// Accumulates `dmu[j] += −2 Σ_i g[i,j]·(z_i − μ_j)` (`dmu: [k, dim]`,
    /// the centroid gradient given `g = ∂L/∂dist`). One block per centroid.
    #[allow(clippy::too_many_arguments)]
    fn desc_centroid_grad(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        z: &Self::Buf,
        mu: &Self::Buf,
        g: &Self::Buf,
        dmu: &mut Self::Buf,
    );
    // ==== end DESC ====
    // ---- kin pairing (Module II): fused GEMM + row argmax ----
    /// One tile of an exact maximum-inner-product search: for query rows
    /// `q: [rows, dim]` and key rows `k: [keys, dim]` (key row `j` has the
    /// global index `key_base + j`), merges each row's best key of this tile
    /// into the running best `best: [rows]` (the product) and
    /// `best_idx: [rows]` (the global key index as the BITS of an f32 slot:
    /// `f32::from_bits(index)`, so every u32 survives; the buffer is only
    /// ever copied, never computed on).
    ///
    /// Order: `(v, j)` beats `(b, i)` when `v > b`, or `v == b` and `j < i`
    /// (ties go to the lowest key index); a NaN product never wins. So the
    /// result does not depend on how the keys are tiled or in which order
    /// the tiles come. Start a search from `best = −∞`, `best_idx =`
    /// [`cpu_argmax::KIN_NONE`] (then a row left at `KIN_NONE` had only NaN products).
    /// `key_base + keys` must stay below [`cpu_argmax::KIN_NONE`].
    ///
    /// No `rows × keys` product is stored: one kernel on a GPU (each block
    /// owns 64 query rows and walks the key tile through shared memory);
    /// the CPU twin is [`cpu_argmax::kin_argmax_merge`].
    #[allow(clippy::too_many_arguments)]
    fn kin_argmax_merge(
        &self,
        rows: usize,
        keys: usize,
        dim: usize,
        key_base: usize,
        q: &Self::Buf,
        k: &Self::Buf,
        best: &mut Self::Buf,
        best_idx: &mut Self::Buf,
    );
    // ---- end kin pairing ----
    /// One tile of an exact k-nearest-neighbour search (squared Euclidean):
    /// folds the products `prod: [rows, cols]` (`Q Kᵀ` of the tile) with the
    /// squared norms `q_norms: [rows]`, `k_norms: [cols]` into the per-row
    /// lists `dist2: [rows, k]` (ascending) and `index: [rows, k]` (global
    /// key indices as f32 bits, as `kin_argmax_merge`'s `best_idx`). Column
    /// `j` is key `key_base + j`; `self_base = Some(o)` leaves key `o + i`
    /// out of row `i`'s list (leave-one-out).
    ///
    /// `d2 = max(qn + kn − 2p, 0)` enters a list only when strictly below its
    /// k-th entry, so, with tiles in increasing key order, equal distances
    /// keep the lower index. Start from `dist2 = ∞`, `index =`
    /// [`cpu_knn::KNN_NONE`]. Keeping the lists on the device means only
    /// they are downloaded, never a product tile: one thread per query row
    /// on a GPU; the CPU twin is [`cpu_knn::knn_topk_merge`].
    #[allow(clippy::too_many_arguments)]
    fn knn_topk_merge(
        &self,
        rows: usize,
        cols: usize,
        k: usize,
        key_base: usize,
        self_base: Option<usize>,
        prod: &Self::Buf,
        q_norms: &Self::Buf,
        k_norms: &Self::Buf,
        dist2: &mut Self::Buf,
        index: &mut Self::Buf,
    );
    /// The γ_c MMD's off-diagonal kernel row sums (ARCHITECTURE §3) over
    /// `delta: [n, genes]`: `u_i = Σ_{j≠i} k(δ_i, δ_j) a_j`, `v_i` likewise
    /// with `b`, f64; `k` linear for empty `rbf_coefs`, else
    /// `Σ_c exp(c‖δ_i − δ_j‖²)` (c = −1/(2h²), at most 4). O(N²·G), the
    /// scorer's RBF step. δ is host memory the scorer already holds, copied
    /// to the device per call (N·G floats next to N²·G work) rather than
    /// kept there twice. CPU twin: [`cpu_mmd::pairwise_row_sums`]; on a GPU
    /// `mmd_row_norms` + `mmd_pairwise`.
    #[allow(clippy::too_many_arguments)]
    fn mmd_pairwise_sums(&self, delta: &[f32], genes: usize, a: &[f64], b: &[f64], rbf_coefs: &[f64], u: &mut [f64], v: &mut [f64]);
}

/// Make `buf` hold exactly `len` values, reallocating (zeroed) when it does
/// not; layers keep their work buffers across steps with this.
pub fn ensure<B: Backend>(be: &B, buf: &mut B::Buf, len: usize) {
    if be.len(buf) != len {
        *buf = be.zeros(len);
    }
}
