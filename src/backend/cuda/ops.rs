//! Host orchestration of the kernels: which kernels one backend operation
//! launches, in which order, with which geometry and arguments. Written
//! once against [`Launcher`], so the CUDA backend and the emulation twin
//! tests run the same code; buffers are device addresses ([`DevPtr`]).
//!
//! # Safety
//! Every function is `unsafe` for one reason, stated once here: the device
//! addresses must be live and cover the stated shapes (f32 buffers unless
//! marked f64), and outputs must not alias inputs unless stated. Shape
//! errors are programming errors and panic, as in the CPU backend.
#![allow(clippy::missing_safety_doc)]

use super::launch::{self, Args, DevPtr, Dims, LaunchError, Launcher};
use crate::backend::{Act, AdamStep, DropoutMask, Fused};

pub type Result<T> = std::result::Result<T, LaunchError>;

unsafe fn go(l: &dyn Launcher, kernel: &str, dims: Dims, mut args: Args) -> Result<()> {
    // SAFETY: forwarded to the callers of this module's functions.
    unsafe { l.launch(kernel, &dims, &mut args) }
}

fn cols32(cols: usize) -> u32 {
    u32::try_from(cols).expect("more than 2³² − 1 columns")
}

/// `kernel(n, args…)` over `n` elements with the grid-stride geometry.
unsafe fn ew(l: &dyn Launcher, kernel: &str, n: usize, args: Args) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut all = Args::new().u64(n as u64);
    all.append(args);
    unsafe { go(l, kernel, launch::elementwise(n), all) }
}

// ---- elementwise ----

/// `y += alpha·x` over `n`.
pub unsafe fn axpy(l: &dyn Launcher, n: usize, alpha: f32, x: DevPtr, y: DevPtr) -> Result<()> {
    unsafe { ew(l, "axpy", n, Args::new().f32(alpha).ptr(x).ptr(y)) }
}
/// `x *= alpha`.
pub unsafe fn scale(l: &dyn Launcher, n: usize, alpha: f32, x: DevPtr) -> Result<()> {
    unsafe { ew(l, "elem_scale", n, Args::new().f32(alpha).ptr(x)) }
}
/// `out = a + b`.
pub unsafe fn add(l: &dyn Launcher, n: usize, a: DevPtr, b: DevPtr, out: DevPtr) -> Result<()> {
    unsafe { ew(l, "elem_add", n, Args::new().ptr(a).ptr(b).ptr(out)) }
}
/// `out = a ⊙ b`.
pub unsafe fn mul(l: &dyn Launcher, n: usize, a: DevPtr, b: DevPtr, out: DevPtr) -> Result<()> {
    unsafe { ew(l, "elem_mul", n, Args::new().ptr(a).ptr(b).ptr(out)) }
}
/// `x[r, c] += bias[c]` over `x: [rows, cols]`.
pub unsafe fn add_bias(l: &dyn Launcher, rows: usize, cols: usize, bias: DevPtr, x: DevPtr) -> Result<()> {
    let n = rows * cols;
    if n == 0 {
        return Ok(());
    }
    let a = Args::new().u64(rows as u64).u32(cols32(cols)).ptr(bias).ptr(x);
    unsafe { go(l, "add_bias", launch::elementwise(n), a) }
}
/// `out = act(x)`.
pub unsafe fn act_forward(l: &dyn Launcher, n: usize, act: Act, x: DevPtr, out: DevPtr) -> Result<()> {
    let (code, slope) = launch::act_code(act);
    unsafe { ew(l, "act_forward", n, Args::new().i32(code).f32(slope).ptr(x).ptr(out)) }
}
/// `dx = dy ⊙ act'(x)`.
pub unsafe fn act_backward(l: &dyn Launcher, n: usize, act: Act, x: DevPtr, dy: DevPtr, dx: DevPtr) -> Result<()> {
    let (code, slope) = launch::act_code(act);
    unsafe { ew(l, "act_backward", n, Args::new().i32(code).f32(slope).ptr(x).ptr(dy).ptr(dx)) }
}
/// `out = σ(x)`.
pub unsafe fn sigmoid(l: &dyn Launcher, n: usize, x: DevPtr, out: DevPtr) -> Result<()> {
    unsafe { ew(l, "sigmoid_forward", n, Args::new().ptr(x).ptr(out)) }
}
/// `dx = dy ⊙ y(1 − y)`.
pub unsafe fn sigmoid_backward(l: &dyn Launcher, n: usize, y: DevPtr, dy: DevPtr, dx: DevPtr) -> Result<()> {
    unsafe { ew(l, "sigmoid_backward", n, Args::new().ptr(y).ptr(dy).ptr(dx)) }
}
/// `out = |x|`.
pub unsafe fn abs(l: &dyn Launcher, n: usize, x: DevPtr, out: DevPtr) -> Result<()> {
    unsafe { ew(l, "abs_forward", n, Args::new().ptr(x).ptr(out)) }
}
/// `out = sign(x)`.
pub unsafe fn sign(l: &dyn Launcher, n: usize, x: DevPtr, out: DevPtr) -> Result<()> {
    unsafe { ew(l, "sign_forward", n, Args::new().ptr(x).ptr(out)) }
}
/// `y = x ⊙ mask`.
pub unsafe fn dropout(l: &dyn Launcher, n: usize, mask: &DropoutMask, x: DevPtr, y: DevPtr) -> Result<()> {
    let a = Args::new().f32(mask.p).u64(mask.seed).u64(mask.offset).ptr(x).ptr(y);
    unsafe { ew(l, "dropout", n, a) }
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
    let a = Args::new().u64(n as u64).f32(scale / n as f32).ptr(pred).ptr(target).ptr(grad).ptr(partial);
    unsafe { go(l, "l1_loss", d, a)? };
    Ok(d.grid[0] as usize)
}
/// `x[i] = lo + (hi − lo)·uniform(seed, offset + i)`.
pub unsafe fn fill_uniform(l: &dyn Launcher, n: usize, seed: u64, offset: u64, lo: f32, hi: f32, x: DevPtr) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let a = Args::new().u64(n as u64).u64(seed).u64(offset).f32(lo).f32(hi).ptr(x);
    unsafe { go(l, "fill_uniform", launch::philox(n, offset), a) }
}
/// `x[i] = mean + std·normal(seed, offset + i)`.
pub unsafe fn fill_normal(l: &dyn Launcher, n: usize, seed: u64, offset: u64, mean: f32, std: f32, x: DevPtr) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let a = Args::new().u64(n as u64).u64(seed).u64(offset).f32(mean).f32(std).ptr(x);
    unsafe { go(l, "fill_normal", launch::philox(n, offset), a) }
}

/// `x[i] = value`.
pub unsafe fn fill(l: &dyn Launcher, n: usize, value: f32, x: DevPtr) -> Result<()> {
    unsafe { ew(l, "fill_value", n, Args::new().f32(value).ptr(x)) }
}

// ---- reductions ----

/// `out[r] = Σ_c x[r, c]` (`square`: of `x²`).
pub unsafe fn row_sums(l: &dyn Launcher, rows: usize, cols: usize, square: bool, x: DevPtr, out: DevPtr) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let k = if square { "row_sumsq" } else { "row_sums" };
    unsafe { go(l, k, launch::per_row(rows, cols), Args::new().u32(cols32(cols)).ptr(x).ptr(out)) }
}
/// `out[c] = beta·out[c] + Σ_r x[r, c]`.
pub unsafe fn col_sums(l: &dyn Launcher, rows: usize, cols: usize, x: DevPtr, beta: f32, out: DevPtr) -> Result<()> {
    if cols == 0 {
        return Ok(());
    }
    let a = Args::new().u64(rows as u64).u32(cols32(cols)).ptr(x).f32(beta).ptr(out);
    unsafe { go(l, "col_sums", launch::col_blocks(cols), a) }
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
        go(l, "sum_partial", d, Args::new().u64(n as u64).i32(square as i32).ptr(x).ptr(scratch))?;
        go(l, "sum_final", launch::sum_final(), Args::new().u32(d.grid[0]).ptr(scratch).ptr(out))?;
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

/// The arguments `fused_apply` and `fused_grad` share: shape, activation,
/// dropout, `z`, bias and (gamma, beta, mean, invstd) of the BN, if any.
fn fused_args(cfg: &Fused, z: DevPtr, bias: Option<DevPtr>, bn: Option<[DevPtr; 4]>) -> Args {
    let (code, slope) = launch::act_code(cfg.act);
    let (p, seed, offset) = drop_args(cfg);
    let bn_at = |k: usize| bn.map(|b| b[k]);
    Args::new()
        .u64(cfg.rows as u64)
        .u32(cols32(cfg.cols))
        .i32(code)
        .f32(slope)
        .f32(p)
        .u64(seed)
        .u64(offset)
        .ptr(z)
        .opt(bias)
        .opt(bn_at(0))
        .opt(bn_at(1))
        .opt(bn_at(2))
        .opt(bn_at(3))
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
        let a = Args::new()
            .u64(rows as u64)
            .u32(cols32(cols))
            .i32(cfg.train as i32)
            .f32(cfg.eps)
            .f32(cfg.momentum)
            .ptr(z)
            .opt(bias)
            .ptr(b.running_mean)
            .ptr(b.running_var)
            .ptr(b.save_mean)
            .ptr(b.save_invstd);
        unsafe { go(l, "bn_stats", launch::col_blocks(cols), a)? };
    }
    let bn_ptrs = bn.map(|b| [b.gamma, b.beta, b.save_mean, b.save_invstd]);
    let a = fused_args(cfg, z, bias, bn_ptrs).ptr(y);
    unsafe { go(l, "fused_apply", launch::elementwise(rows * cols), a) }
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
    let bn_ptrs = bn.map(|b| [b.gamma, b.beta, b.save_mean, b.save_invstd]);
    let a = fused_args(cfg, z, bias, bn_ptrs).ptr(dy).ptr(dz);
    unsafe { go(l, "fused_grad", launch::elementwise(rows * cols), a)? };
    match bn {
        Some(b) => {
            let a = Args::new()
                .u64(rows as u64)
                .u32(cols32(cols))
                .i32(cfg.train as i32)
                .ptr(z)
                .opt(bias)
                .ptr(b.gamma)
                .ptr(b.save_mean)
                .ptr(b.save_invstd)
                .ptr(dz)
                .ptr(b.dgamma)
                .ptr(b.dbeta)
                .opt(dbias);
            unsafe { go(l, "bn_backward", launch::col_blocks(cols), a) }
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
    let a = Args::new().u32(cols32(cols)).f32(scale).ptr(x).ptr(y);
    unsafe { go(l, "softmax_rows", launch::per_row(rows, cols), a) }
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
    let a = Args::new().u32(cols32(cols)).f32(scale).ptr(y).ptr(dy).ptr(dx);
    unsafe { go(l, "softmax_rows_backward", launch::per_row(rows, cols), a) }
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
    let a = Args::new().u32(cols32(cols)).f32(eps).ptr(x).ptr(gamma).ptr(beta).ptr(y).ptr(mean).ptr(invstd);
    unsafe { go(l, "layer_norm_forward", launch::per_row(rows, cols), a) }
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
        let a = Args::new().u64(rows as u64).u32(cols32(cols)).ptr(x).ptr(mean).ptr(invstd).ptr(dy).ptr(dgamma).ptr(dbeta);
        go(l, "layer_norm_backward_params", launch::col_blocks(cols), a)?;
        let a = Args::new().u32(cols32(cols)).ptr(x).ptr(gamma).ptr(mean).ptr(invstd).ptr(dy).ptr(dx);
        go(l, "layer_norm_backward_dx", launch::per_row(rows, cols), a)
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
    let a = Args::new().u32(cols32(cols)).f32(inv_tau).f32(lambda).ptr(logits).ptr(w).ptr(out);
    unsafe { go(l, "memory_forward", launch::per_row(rows, cols), a) }
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
    let a = Args::new().u32(cols32(cols)).f32(inv_tau).f32(lambda).ptr(w).ptr(dout).ptr(dlogits);
    unsafe { go(l, "memory_backward", launch::per_row(rows, cols), a) }
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
    let a = Args::new()
        .f32(s.beta1)
        .f32(s.beta2)
        .f32(s.eps)
        .f32(step_size)
        .f32(bc2_sqrt)
        .f32(decay)
        .f32(wd)
        .ptr(param)
        .ptr(grad)
        .ptr(m)
        .ptr(v);
    unsafe { ew(l, "adam_step", n, a) }
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

/// Linear kernel, exact O(N·G): `mmd_linear_ab` into `big_a`, `big_b`
/// (`[genes]` f64), then `mmd_row_dots` writes s, u, v.
pub unsafe fn mmd_linear(l: &dyn Launcher, n: usize, genes: usize, p: &MmdPtrs, big_a: DevPtr, big_b: DevPtr) -> Result<()> {
    if n == 0 || genes == 0 {
        return Ok(());
    }
    let (n32, g32) = (cols32(n), cols32(genes));
    unsafe {
        let a = Args::new().u32(n32).u32(g32).ptr(p.delta).ptr(p.a).ptr(p.b).ptr(big_a).ptr(big_b);
        go(l, "mmd_linear_ab", launch::col_blocks(genes), a)?;
        let a = Args::new().u32(g32).ptr(p.delta).ptr(big_a).ptr(big_b).ptr(p.a).ptr(p.b).ptr(p.s).ptr(p.u).ptr(p.v);
        go(l, "mmd_row_dots", launch::per_row(n, genes), a)
    }
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
        go(l, "mmd_row_norms", launch::per_row(n, genes), Args::new().u32(g32).ptr(p.delta).ptr(p.s))?;
        let a = Args::new()
            .u32(n32)
            .u32(g32)
            .i32(rbf_coefs.len() as i32)
            .f64(c(0))
            .f64(c(1))
            .f64(c(2))
            .f64(c(3))
            .ptr(p.delta)
            .ptr(p.s)
            .ptr(p.a)
            .ptr(p.b)
            .ptr(p.u)
            .ptr(p.v);
        go(l, "mmd_pairwise", launch::mmd_pairwise(n), a)
    }
}
