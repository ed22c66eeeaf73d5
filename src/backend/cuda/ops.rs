//! Host orchestration of the kernels: which kernels one backend operation
//! launches, in which order, with which geometry and arguments. Written
//! once against [`Launcher`], so the CUDA backend and the emulation twin
//! tests run the same code; buffers are device addresses ([`DevPtr`]).
//! Every launch goes through the typed stubs of [`launch::stub`].
//!
//! # Safety
//! Every function is `unsafe` for one reason, stated once here: the device
//! addresses must be live and cover the stated shapes (f32 buffers unless
//! marked f64), and outputs must not alias inputs unless stated. Shape
//! errors are programming errors and panic, as in the CPU backend.
#![allow(clippy::missing_safety_doc)]

use super::launch::{self, stub, DevPtr, Dims, LaunchError, Launcher};
use crate::backend::{Act, AdamStep, DropoutMask, Fused};

pub type Result<T> = std::result::Result<T, LaunchError>;

fn cols32(cols: usize) -> u32 {
    u32::try_from(cols).expect("more than 2³² − 1 columns")
}

/// The grid-stride geometry over `n` elements; None when there is no work.
fn ew(n: usize) -> Option<Dims> {
    (n > 0).then(|| launch::elementwise(n))
}

// ---- elementwise ----

/// `y += alpha·x` over `n`.
pub unsafe fn axpy(l: &dyn Launcher, n: usize, alpha: f32, x: DevPtr, y: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::axpy(l, d, n as u64, alpha, x, y) }
}
/// `x *= alpha`.
pub unsafe fn scale(l: &dyn Launcher, n: usize, alpha: f32, x: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::elem_scale(l, d, n as u64, alpha, x) }
}
/// `out = a + b`.
pub unsafe fn add(l: &dyn Launcher, n: usize, a: DevPtr, b: DevPtr, out: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::elem_add(l, d, n as u64, a, b, out) }
}
/// `out = a ⊙ b`.
pub unsafe fn mul(l: &dyn Launcher, n: usize, a: DevPtr, b: DevPtr, out: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::elem_mul(l, d, n as u64, a, b, out) }
}
/// `x[r, c] += bias[c]` over `x: [rows, cols]`.
pub unsafe fn add_bias(l: &dyn Launcher, rows: usize, cols: usize, bias: DevPtr, x: DevPtr) -> Result<()> {
    let n = rows * cols;
    if n == 0 {
        return Ok(());
    }
    unsafe { stub::add_bias(l, launch::elementwise(n), rows as u64, cols32(cols), bias, x) }
}
/// `out = act(x)`.
pub unsafe fn act_forward(l: &dyn Launcher, n: usize, act: Act, x: DevPtr, out: DevPtr) -> Result<()> {
    let (code, slope) = launch::act_code(act);
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::act_forward(l, d, n as u64, code, slope, x, out) }
}
/// `dx = dy ⊙ act'(x)`.
pub unsafe fn act_backward(l: &dyn Launcher, n: usize, act: Act, x: DevPtr, dy: DevPtr, dx: DevPtr) -> Result<()> {
    let (code, slope) = launch::act_code(act);
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::act_backward(l, d, n as u64, code, slope, x, dy, dx) }
}
/// `out = σ(x)`.
pub unsafe fn sigmoid(l: &dyn Launcher, n: usize, x: DevPtr, out: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::sigmoid_forward(l, d, n as u64, x, out) }
}
/// `dx = dy ⊙ y(1 − y)`.
pub unsafe fn sigmoid_backward(l: &dyn Launcher, n: usize, y: DevPtr, dy: DevPtr, dx: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::sigmoid_backward(l, d, n as u64, y, dy, dx) }
}
/// `out = |x|`.
pub unsafe fn abs(l: &dyn Launcher, n: usize, x: DevPtr, out: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::abs_forward(l, d, n as u64, x, out) }
}
/// `out = sign(x)`.
pub unsafe fn sign(l: &dyn Launcher, n: usize, x: DevPtr, out: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::sign_forward(l, d, n as u64, x, out) }
}
/// `y = x ⊙ mask`.
pub unsafe fn dropout(l: &dyn Launcher, n: usize, mask: &DropoutMask, x: DevPtr, y: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::dropout(l, d, n as u64, mask.p, mask.seed, mask.offset, x, y) }
}
/// L1 loss: writes `grad = scale·sign(pred − target)/n` and per-block
/// partial sums of `|pred − target|` into `partial` (f64, at least
/// [`launch::MAX_GRID`]); returns how many partials were written. The loss
/// is `Σ partials / n`.
pub unsafe fn l1_loss(
    l: &dyn Launcher,
    n: usize,
    scale: f32,
    pred: DevPtr,
    target: DevPtr,
    grad: DevPtr,
    partial: DevPtr,
) -> Result<usize> {
    assert!(n > 0, "l1_loss: empty input");
    let d = launch::elementwise(n);
    unsafe { stub::l1_loss(l, d, n as u64, scale / n as f32, pred, target, grad, partial)? };
    Ok(d.grid[0] as usize)
}
/// `x[i] = lo + (hi − lo)·uniform(seed, offset + i)`.
pub unsafe fn fill_uniform(l: &dyn Launcher, n: usize, seed: u64, offset: u64, lo: f32, hi: f32, x: DevPtr) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    unsafe { stub::fill_uniform(l, launch::philox(n, offset), n as u64, seed, offset, lo, hi, x) }
}
/// `x[i] = mean + std·normal(seed, offset + i)`.
pub unsafe fn fill_normal(l: &dyn Launcher, n: usize, seed: u64, offset: u64, mean: f32, std: f32, x: DevPtr) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    unsafe { stub::fill_normal(l, launch::philox(n, offset), n as u64, seed, offset, mean, std, x) }
}

/// `x[i] = value`.
pub unsafe fn fill(l: &dyn Launcher, n: usize, value: f32, x: DevPtr) -> Result<()> {
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::fill_value(l, d, n as u64, value, x) }
}

// ---- reductions ----

/// `out[r] = Σ_c x[r, c]` (`square`: of `x²`).
pub unsafe fn row_sums(l: &dyn Launcher, rows: usize, cols: usize, square: bool, x: DevPtr, out: DevPtr) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let d = launch::per_row(rows, cols);
    let k = if square { stub::row_sumsq } else { stub::row_sums };
    unsafe { k(l, d, cols32(cols), x, out) }
}
/// `out[c] = beta·out[c] + Σ_r x[r, c]`.
pub unsafe fn col_sums(l: &dyn Launcher, rows: usize, cols: usize, x: DevPtr, beta: f32, out: DevPtr) -> Result<()> {
    if cols == 0 {
        return Ok(());
    }
    unsafe { stub::col_sums(l, launch::col_blocks(cols), rows as u64, cols32(cols), x, beta, out) }
}
/// Elements of the f64 scratch buffer [`sum`] needs.
pub const SUM_SCRATCH: usize = launch::MAX_PARTIALS as usize + 1;
/// `Σ x` (`square`: `Σ x²`) over `n`, in double: the result is left in
/// `scratch[MAX_PARTIALS]` (scratch: f64, [`SUM_SCRATCH`] elements), whose
/// address is returned for the caller to download.
pub unsafe fn sum(l: &dyn Launcher, n: usize, square: bool, x: DevPtr, scratch: DevPtr) -> Result<DevPtr> {
    let d = launch::sum_partial(n);
    let out = DevPtr(scratch.0 + 8 * launch::MAX_PARTIALS as u64);
    unsafe {
        stub::sum_partial(l, d, n as u64, square as i32, x, scratch)?;
        stub::sum_final(l, launch::sum_final(), d.grid[0], scratch, out)?;
    }
    Ok(out)
}

// ---- fused layer kernels ----

/// Device addresses of [`crate::backend::BnFwd`] (all `[cols]`).
#[derive(Clone, Copy, Debug)]
pub struct BnFwdPtrs {
    pub gamma: DevPtr,
    pub beta: DevPtr,
    pub running_mean: DevPtr,
    pub running_var: DevPtr,
    pub save_mean: DevPtr,
    pub save_invstd: DevPtr,
}

/// Device addresses of [`crate::backend::BnBwd`] (all `[cols]`).
#[derive(Clone, Copy, Debug)]
pub struct BnBwdPtrs {
    pub gamma: DevPtr,
    pub beta: DevPtr,
    pub save_mean: DevPtr,
    pub save_invstd: DevPtr,
    pub dgamma: DevPtr,
    pub dbeta: DevPtr,
}

/// The dropout probability the kernels apply: 0 unless training with p > 0.
fn drop_args(cfg: &Fused) -> (f32, u64, u64) {
    match cfg.dropout {
        Some(m) if cfg.train && m.p > 0.0 => (m.p, m.seed, m.offset),
        _ => (0.0, 0, 0),
    }
}

/// The BN tensors `fused_apply` and `fused_grad` read: (gamma, beta, mean,
/// invstd), all null without BN.
fn bn_read(bn: Option<[DevPtr; 4]>) -> [DevPtr; 4] {
    bn.unwrap_or([DevPtr::NULL; 4])
}

/// [`crate::backend::Backend::fused_forward`]: `bn_stats` (with BN) then
/// `fused_apply`.
pub unsafe fn fused_forward(
    l: &dyn Launcher,
    cfg: &Fused,
    z: DevPtr,
    bias: Option<DevPtr>,
    bn: Option<BnFwdPtrs>,
    y: DevPtr,
) -> Result<()> {
    let (rows, cols) = (cfg.rows, cfg.cols);
    if rows * cols == 0 {
        return Ok(());
    }
    if let Some(b) = bn {
        assert!(!cfg.train || rows > 1, "BatchNorm in training needs more than one row per batch");
        let (mean, var) = (b.running_mean, b.running_var);
        let d = launch::col_blocks(cols);
        let bias = DevPtr::or_null(bias);
        let (r, c, train) = (rows as u64, cols32(cols), cfg.train as i32);
        unsafe { stub::bn_stats(l, d, r, c, train, cfg.eps, cfg.momentum, z, bias, mean, var, b.save_mean, b.save_invstd)? };
    }
    let [gamma, beta, mean, invstd] = bn_read(bn.map(|b| [b.gamma, b.beta, b.save_mean, b.save_invstd]));
    let (code, slope) = launch::act_code(cfg.act);
    let (p, seed, offset) = drop_args(cfg);
    let (d, r, c, bias) = (launch::elementwise(rows * cols), rows as u64, cols32(cols), DevPtr::or_null(bias));
    unsafe { stub::fused_apply(l, d, r, c, code, slope, p, seed, offset, z, bias, gamma, beta, mean, invstd, y) }
}

/// [`crate::backend::Backend::fused_backward`]: `fused_grad`, then
/// `bn_backward` (which also accumulates dbias) with BN, or `col_sums`
/// into dbias without.
#[allow(clippy::too_many_arguments)]
pub unsafe fn fused_backward(
    l: &dyn Launcher,
    cfg: &Fused,
    z: DevPtr,
    bias: Option<DevPtr>,
    bn: Option<BnBwdPtrs>,
    dy: DevPtr,
    dz: DevPtr,
    dbias: Option<DevPtr>,
) -> Result<()> {
    let (rows, cols) = (cfg.rows, cfg.cols);
    if rows * cols == 0 {
        return Ok(());
    }
    let [gamma, beta, mean, invstd] = bn_read(bn.map(|b| [b.gamma, b.beta, b.save_mean, b.save_invstd]));
    let (code, slope) = launch::act_code(cfg.act);
    let (p, seed, offset) = drop_args(cfg);
    let (r, c, bias_p) = (rows as u64, cols32(cols), DevPtr::or_null(bias));
    let d = launch::elementwise(rows * cols);
    unsafe { stub::fused_grad(l, d, r, c, code, slope, p, seed, offset, z, bias_p, gamma, beta, mean, invstd, dy, dz)? };
    match bn {
        Some(b) => {
            let (d, train, db) = (launch::col_blocks(cols), cfg.train as i32, DevPtr::or_null(dbias));
            unsafe { stub::bn_backward(l, d, r, c, train, z, bias_p, b.gamma, b.save_mean, b.save_invstd, dz, b.dgamma, b.dbeta, db) }
        }
        None => match dbias {
            Some(db) => unsafe { col_sums(l, rows, cols, dz, 1.0, db) },
            None => Ok(()),
        },
    }
}

// ---- softmax and LayerNorm ----

/// `y[r, :] = softmax(x[r, :]·scale)` over `[rows, cols]`.
pub unsafe fn softmax_rows(l: &dyn Launcher, rows: usize, cols: usize, scale: f32, x: DevPtr, y: DevPtr) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    unsafe { stub::softmax_rows(l, launch::per_row(rows, cols), cols32(cols), scale, x, y) }
}

/// `dx = scale·y ⊙ (dy − rowsum(dy ⊙ y))`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn softmax_rows_backward(
    l: &dyn Launcher,
    rows: usize,
    cols: usize,
    scale: f32,
    y: DevPtr,
    dy: DevPtr,
    dx: DevPtr,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    unsafe { stub::softmax_rows_backward(l, launch::per_row(rows, cols), cols32(cols), scale, y, dy, dx) }
}

/// Row LayerNorm; saves `mean, invstd: [rows]`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn layer_norm_forward(
    l: &dyn Launcher,
    rows: usize,
    cols: usize,
    eps: f32,
    x: DevPtr,
    gamma: DevPtr,
    beta: DevPtr,
    y: DevPtr,
    mean: DevPtr,
    invstd: DevPtr,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    unsafe { stub::layer_norm_forward(l, launch::per_row(rows, cols), cols32(cols), eps, x, gamma, beta, y, mean, invstd) }
}

/// LayerNorm backward: `layer_norm_backward_params` (accumulates dgamma,
/// dbeta) then `layer_norm_backward_dx` (writes dx).
#[allow(clippy::too_many_arguments)]
pub unsafe fn layer_norm_backward(
    l: &dyn Launcher,
    rows: usize,
    cols: usize,
    x: DevPtr,
    gamma: DevPtr,
    mean: DevPtr,
    invstd: DevPtr,
    dy: DevPtr,
    dx: DevPtr,
    dgamma: DevPtr,
    dbeta: DevPtr,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    unsafe {
        let (r, c) = (rows as u64, cols32(cols));
        stub::layer_norm_backward_params(l, launch::col_blocks(cols), r, c, x, mean, invstd, dy, dgamma, dbeta)?;
        stub::layer_norm_backward_dx(l, launch::per_row(rows, cols), c, x, gamma, mean, invstd, dy, dx)
    }
}

// ---- memory attention ----

/// Forward over `logits: [rows, cols]`: softmax `w` and weights `out`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn memory_forward(
    l: &dyn Launcher,
    rows: usize,
    cols: usize,
    inv_tau: f32,
    lambda: f32,
    logits: DevPtr,
    w: DevPtr,
    out: DevPtr,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    unsafe { stub::memory_forward(l, launch::per_row(rows, cols), cols32(cols), inv_tau, lambda, logits, w, out) }
}

/// Backward from the saved softmax `w` and `dout`: writes `dlogits`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn memory_backward(
    l: &dyn Launcher,
    rows: usize,
    cols: usize,
    inv_tau: f32,
    lambda: f32,
    w: DevPtr,
    dout: DevPtr,
    dlogits: DevPtr,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    unsafe { stub::memory_backward(l, launch::per_row(rows, cols), cols32(cols), inv_tau, lambda, w, dout, dlogits) }
}

// ---- optimiser ----

/// One Adam(W) step over `n` parameters.
pub unsafe fn adam_step(
    l: &dyn Launcher,
    s: &AdamStep,
    n: usize,
    param: DevPtr,
    grad: DevPtr,
    m: DevPtr,
    v: DevPtr,
) -> Result<()> {
    let (step_size, bc2_sqrt, decay, wd) = launch::adam_consts(s);
    let Some(d) = ew(n) else { return Ok(()) };
    unsafe { stub::adam_step(l, d, n as u64, s.beta1, s.beta2, s.eps, step_size, bc2_sqrt, decay, wd, param, grad, m, v) }
}

// ---- γ_c MMD row sums ----

/// Device addresses of the MMD buffers: `delta: [n, genes]` f32; `a`, `b`,
/// `s`, `u`, `v`: `[n]` f64.
#[derive(Clone, Copy, Debug)]
pub struct MmdPtrs {
    pub delta: DevPtr,
    pub a: DevPtr,
    pub b: DevPtr,
    pub s: DevPtr,
    pub u: DevPtr,
    pub v: DevPtr,
}

/// Tiled pairwise form: `mmd_row_norms` then `mmd_pairwise`. `rbf_coefs`
/// empty: linear kernel; else `−1/(2h²)` per bandwidth h (at most 4).
pub unsafe fn mmd_pairwise(l: &dyn Launcher, n: usize, genes: usize, rbf_coefs: &[f64], p: &MmdPtrs) -> Result<()> {
    assert!(rbf_coefs.len() <= 4, "mmd_pairwise: at most 4 RBF bandwidths per launch");
    if n == 0 || genes == 0 {
        return Ok(());
    }
    let (n32, g32) = (cols32(n), cols32(genes));
    let c = |i: usize| rbf_coefs.get(i).copied().unwrap_or(0.0);
    unsafe {
        stub::mmd_row_norms(l, launch::per_row(n, genes), g32, p.delta, p.s)?;
        let (d, nbw) = (launch::mmd_pairwise(n), rbf_coefs.len() as i32);
        stub::mmd_pairwise(l, d, n32, g32, nbw, c(0), c(1), c(2), c(3), p.delta, p.s, p.a, p.b, p.u, p.v)
    }
}
