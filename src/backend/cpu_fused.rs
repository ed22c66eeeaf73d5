//! CPU twins of the fused kernels: bias + BatchNorm + activation + dropout
//! (forward and backward), LayerNorm, row softmax.
//!
//! The fused forward is written as a per-column affine map `a = z·s + t`
//! (BN folded into `s`, `t`), then `act`, then the dropout factor; a GPU
//! kernel does the same with one thread per element after a column-statistics
//! pass.

use rayon::prelude::*;

use super::cpu::{CpuBuf, CHUNK};
use super::{rng, Act, BnBwd, BnFwd, DropoutMask, Fused};

/// Run `$body` with `$f`/`$df` bound to the activation and its derivative as
/// closures, so the element loops are monomorphised per activation and
/// vectorise (no `match` per element).
macro_rules! with_act {
    ($act:expr, |$f:ident, $df:ident| $body:expr) => {
        match $act {
            Act::Identity => {
                let $f = |x: f32| x;
                let $df = |_x: f32| 1.0f32;
                $body
            }
            Act::Relu => {
                let $f = |x: f32| x.max(0.0);
                let $df = |x: f32| if x > 0.0 { 1.0f32 } else { 0.0 };
                $body
            }
            Act::LeakyRelu(sl) => {
                let $f = |x: f32| if x > 0.0 { x } else { sl * x };
                let $df = |x: f32| if x > 0.0 { 1.0f32 } else { sl };
                $body
            }
        }
    };
}

/// Dropout factors of elements `start..start + out.len()` (one Philox block
/// per four elements).
fn mask_factors(mask: Option<&DropoutMask>, start: usize, out: &mut [f32]) {
    match mask {
        Some(m) if m.p > 0.0 => {
            rng::fill_uniform(m.seed, m.offset + start as u64, 0.0, 1.0, out);
            let keep = 1.0 / (1.0 - m.p);
            for v in out.iter_mut() {
                *v = if *v >= m.p { keep } else { 0.0 };
            }
        }
        _ => out.fill(1.0),
    }
}

/// Rows per parallel task so that a task has about CHUNK elements.
fn rows_per_task(cols: usize) -> usize {
    (CHUNK / cols.max(1)).max(1)
}

/// Column sums of `f(r, row)` values: `out[c] = Σ_r f(r, row_r)[c]`, where
/// `f` writes one row's contribution into a scratch slice.
fn col_reduce(rows: usize, cols: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f64> {
    let rpt = rows_per_task(cols);
    let task = |r0: usize| {
        let mut acc = vec![0.0f64; cols];
        let mut tmp = vec![0.0f32; cols];
        for r in r0..(r0 + rpt).min(rows) {
            f(r, &mut tmp);
            for (a, &v) in acc.iter_mut().zip(&tmp) {
                *a += v as f64;
            }
        }
        acc
    };
    let starts: Vec<usize> = (0..rows).step_by(rpt).collect();
    let add = |mut a: Vec<f64>, b: Vec<f64>| {
        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
        a
    };
    // Partial sums added in order: the same bits whatever the threads did
    // (rayon's `reduce` combines where work was stolen).
    if starts.len() <= 1 {
        starts.into_iter().map(task).fold(vec![0.0; cols], add)
    } else {
        let parts: Vec<Vec<f64>> = starts.into_par_iter().map(task).collect();
        parts.into_iter().fold(vec![0.0; cols], add)
    }
}

pub(crate) fn fused_forward(cfg: &Fused, z: &CpuBuf, bias: Option<&CpuBuf>, bn: Option<BnFwd<'_, CpuBuf>>, y: &mut CpuBuf) {
    let (rows, cols) = (cfg.rows, cfg.cols);
    let n = rows * cols;
    assert!(z.0.len() >= n && y.0.len() >= n, "fused_forward: z/y shorter than rows·cols");
    let bias: Vec<f32> = match bias {
        Some(b) => b.0[..cols].to_vec(),
        None => vec![0.0; cols],
    };
    let (s, t) = match bn {
        None => (vec![1.0f32; cols], bias.clone()),
        Some(bn) => {
            if cfg.train {
                assert!(rows > 1, "BatchNorm in training needs more than one row per batch");
                let mean: Vec<f64> = col_reduce(rows, cols, |r, out| {
                    for c in 0..cols {
                        out[c] = z.0[r * cols + c] + bias[c];
                    }
                })
                .into_iter()
                .map(|s| s / rows as f64)
                .collect();
                let ssd = col_reduce(rows, cols, |r, out| {
                    for c in 0..cols {
                        let d = (z.0[r * cols + c] + bias[c]) as f64 - mean[c];
                        out[c] = (d * d) as f32;
                    }
                });
                let mom = cfg.momentum;
                for c in 0..cols {
                    let var_b = ssd[c] / rows as f64;
                    let var_u = ssd[c] / (rows - 1) as f64;
                    bn.save_mean.0[c] = mean[c] as f32;
                    bn.save_invstd.0[c] = (1.0 / (var_b + cfg.eps as f64).sqrt()) as f32;
                    bn.running_mean.0[c] = (1.0 - mom) * bn.running_mean.0[c] + mom * mean[c] as f32;
                    bn.running_var.0[c] = (1.0 - mom) * bn.running_var.0[c] + mom * var_u as f32;
                }
            } else {
                for c in 0..cols {
                    bn.save_mean.0[c] = bn.running_mean.0[c];
                    bn.save_invstd.0[c] = 1.0 / (bn.running_var.0[c] + cfg.eps).sqrt();
                }
            }
            let mut s = vec![0.0; cols];
            let mut t = vec![0.0; cols];
            for c in 0..cols {
                s[c] = bn.gamma.0[c] * bn.save_invstd.0[c];
                t[c] = bn.beta.0[c] + (bias[c] - bn.save_mean.0[c]) * s[c];
            }
            (s, t)
        }
    };
    let act = cfg.act;
    let mask = cfg.dropout.as_ref().filter(|m| m.p > 0.0 && cfg.train);
    let rpt = rows_per_task(cols);
    y.0[..n].par_chunks_mut(rpt * cols).enumerate().for_each(|(ti, yc)| {
        let mut f = vec![1.0f32; cols];
        for (ri, yr) in yc.chunks_mut(cols).enumerate() {
            let r = ti * rpt + ri;
            mask_factors(mask, r * cols, &mut f);
            let zr = &z.0[r * cols..(r + 1) * cols];
            with_act!(act, |fa, _dfa| {
                for ((((y, &z), &s), &t), &f) in yr.iter_mut().zip(zr).zip(&s).zip(&t).zip(&f) {
                    *y = fa(z * s + t) * f;
                }
            });
        }
    });
}

pub(crate) fn fused_backward(
    cfg: &Fused,
    z: &CpuBuf,
    bias: Option<&CpuBuf>,
    bn: Option<BnBwd<'_, CpuBuf>>,
    dy: &CpuBuf,
    dz: &mut CpuBuf,
    dbias: Option<&mut CpuBuf>,
) {
    let (rows, cols) = (cfg.rows, cfg.cols);
    let n = rows * cols;
    assert!(z.0.len() >= n && dy.0.len() >= n && dz.0.len() >= n, "fused_backward: buffers shorter than rows·cols");
    let bias: Vec<f32> = match bias {
        Some(b) => b.0[..cols].to_vec(),
        None => vec![0.0; cols],
    };
    // Pre-activation a = z·s + t, as in the forward.
    let (s, t) = match &bn {
        None => (vec![1.0f32; cols], bias.clone()),
        Some(bn) => {
            let s: Vec<f32> = (0..cols).map(|c| bn.gamma.0[c] * bn.save_invstd.0[c]).collect();
            let t: Vec<f32> = (0..cols).map(|c| bn.beta.0[c] + (bias[c] - bn.save_mean.0[c]) * s[c]).collect();
            (s, t)
        }
    };
    let act = cfg.act;
    let mask = cfg.dropout.as_ref().filter(|m| m.p > 0.0 && cfg.train);
    let rpt = rows_per_task(cols);
    // Pass 1: g = dy ⊙ mask ⊙ act'(a) into dz.
    dz.0[..n].par_chunks_mut(rpt * cols).enumerate().for_each(|(ti, gc)| {
        let mut f = vec![1.0f32; cols];
        for (ri, gr) in gc.chunks_mut(cols).enumerate() {
            let r = ti * rpt + ri;
            mask_factors(mask, r * cols, &mut f);
            let zr = &z.0[r * cols..(r + 1) * cols];
            let dyr = &dy.0[r * cols..(r + 1) * cols];
            with_act!(act, |_fa, dfa| {
                for (((((g, &dy), &f), &z), &s), &t) in gr.iter_mut().zip(dyr).zip(&f).zip(zr).zip(&s).zip(&t) {
                    *g = dy * f * dfa(z * s + t);
                }
            });
        }
    });
    if let Some(bn) = bn {
        let g = &dz.0;
        let sum_g = col_reduce(rows, cols, |r, out| out.copy_from_slice(&g[r * cols..(r + 1) * cols]));
        if cfg.train {
            let xhat = |r: usize, c: usize| (z.0[r * cols + c] + bias[c] - bn.save_mean.0[c]) * bn.save_invstd.0[c];
            let sum_gx = col_reduce(rows, cols, |r, out| {
                for c in 0..cols {
                    out[c] = g[r * cols + c] * xhat(r, c);
                }
            });
            for c in 0..cols {
                bn.dbeta.0[c] += sum_g[c] as f32;
                bn.dgamma.0[c] += sum_gx[c] as f32;
            }
            let inv_n = 1.0 / rows as f64;
            let mg: Vec<f32> = sum_g.iter().map(|&v| (v * inv_n) as f32).collect();
            let mgx: Vec<f32> = sum_gx.iter().map(|&v| (v * inv_n) as f32).collect();
            dz.0[..n].par_chunks_mut(rpt * cols).enumerate().for_each(|(ti, gc)| {
                for (ri, gr) in gc.chunks_mut(cols).enumerate() {
                    let r = ti * rpt + ri;
                    for c in 0..cols {
                        gr[c] = s[c] * (gr[c] - mg[c] - xhat(r, c) * mgx[c]);
                    }
                }
            });
        } else {
            let xhat = |r: usize, c: usize| (z.0[r * cols + c] + bias[c] - bn.save_mean.0[c]) * bn.save_invstd.0[c];
            let sum_gx = col_reduce(rows, cols, |r, out| {
                for c in 0..cols {
                    out[c] = g[r * cols + c] * xhat(r, c);
                }
            });
            for c in 0..cols {
                bn.dbeta.0[c] += sum_g[c] as f32;
                bn.dgamma.0[c] += sum_gx[c] as f32;
            }
            dz.0[..n].par_chunks_mut(rpt * cols).for_each(|gc| {
                for gr in gc.chunks_mut(cols) {
                    for c in 0..cols {
                        gr[c] *= s[c];
                    }
                }
            });
        }
    }
    if let Some(db) = dbias {
        let g = &dz.0;
        let sums = col_reduce(rows, cols, |r, out| out.copy_from_slice(&g[r * cols..(r + 1) * cols]));
        for (d, &v) in db.0[..cols].iter_mut().zip(&sums) {
            *d += v as f32;
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_forward(
    rows: usize,
    cols: usize,
    eps: f32,
    x: &CpuBuf,
    gamma: &CpuBuf,
    beta: &CpuBuf,
    y: &mut CpuBuf,
    mean: &mut CpuBuf,
    invstd: &mut CpuBuf,
) {
    let n = rows * cols;
    assert!(x.0.len() >= n && y.0.len() >= n && mean.0.len() >= rows && invstd.0.len() >= rows);
    assert!(gamma.0.len() >= cols && beta.0.len() >= cols);
    y.0[..n]
        .par_chunks_mut(cols)
        .zip(mean.0[..rows].par_iter_mut().zip(invstd.0[..rows].par_iter_mut()))
        .enumerate()
        .for_each(|(r, (yr, (m, is)))| {
            let xr = &x.0[r * cols..(r + 1) * cols];
            let mu = xr.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let var = xr.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / cols as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            *m = mu as f32;
            *is = inv as f32;
            for c in 0..cols {
                yr[c] = ((xr[c] as f64 - mu) * inv) as f32 * gamma.0[c] + beta.0[c];
            }
        });
}

#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // index loops as in the math
pub(crate) fn layer_norm_backward(
    rows: usize,
    cols: usize,
    x: &CpuBuf,
    gamma: &CpuBuf,
    mean: &CpuBuf,
    invstd: &CpuBuf,
    dy: &CpuBuf,
    dx: &mut CpuBuf,
    dgamma: &mut CpuBuf,
    dbeta: &mut CpuBuf,
) {
    let n = rows * cols;
    assert!(x.0.len() >= n && dy.0.len() >= n && dx.0.len() >= n);
    let xhat = |r: usize, c: usize| (x.0[r * cols + c] - mean.0[r]) * invstd.0[r];
    let sg = col_reduce(rows, cols, |r, out| out.copy_from_slice(&dy.0[r * cols..(r + 1) * cols]));
    let sgx = col_reduce(rows, cols, |r, out| {
        for c in 0..cols {
            out[c] = dy.0[r * cols + c] * xhat(r, c);
        }
    });
    for c in 0..cols {
        dbeta.0[c] += sg[c] as f32;
        dgamma.0[c] += sgx[c] as f32;
    }
    dx.0[..n].par_chunks_mut(cols).enumerate().for_each(|(r, dxr)| {
        let mut a = 0.0f64;
        let mut b = 0.0f64;
        for c in 0..cols {
            let g = (dy.0[r * cols + c] * gamma.0[c]) as f64;
            a += g;
            b += g * xhat(r, c) as f64;
        }
        let (a, b) = ((a / cols as f64) as f32, (b / cols as f64) as f32);
        for c in 0..cols {
            let g = dy.0[r * cols + c] * gamma.0[c];
            dxr[c] = invstd.0[r] * (g - a - xhat(r, c) * b);
        }
    });
}

pub(crate) fn softmax_rows(rows: usize, cols: usize, scale: f32, x: &[f32], y: &mut [f32]) {
    let n = rows * cols;
    assert!(x.len() >= n && y.len() >= n, "softmax_rows: buffers too short");
    y[..n].par_chunks_mut(cols).with_min_len(16).enumerate().for_each(|(r, yr)| {
        let xr = &x[r * cols..(r + 1) * cols];
        let mx = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b * scale));
        let mut s = 0.0f32;
        for c in 0..cols {
            yr[c] = (xr[c] * scale - mx).exp();
            s += yr[c];
        }
        let inv = 1.0 / s;
        yr.iter_mut().for_each(|v| *v *= inv);
    });
}

pub(crate) fn softmax_rows_backward(rows: usize, cols: usize, scale: f32, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let n = rows * cols;
    assert!(y.len() >= n && dy.len() >= n && dx.len() >= n, "softmax_rows_backward: buffers too short");
    dx[..n].par_chunks_mut(cols).with_min_len(16).enumerate().for_each(|(r, dr)| {
        let yr = &y[r * cols..(r + 1) * cols];
        let gr = &dy[r * cols..(r + 1) * cols];
        let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
        for c in 0..cols {
            dr[c] = scale * yr[c] * (gr[c] - dot);
        }
    });
}
