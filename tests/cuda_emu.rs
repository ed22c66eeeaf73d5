//! Twin tests: every kernel of `kernels/*.cu`, run on the CPU through the
//! emulation harness (kernels/emu/cuda_emu.h) with the launch geometry and
//! host orchestration of `backend::cuda::ops` — the code a GPU run uses —
//! and compared with its CPU twin (`CpuBackend`, `cpu_memory_attention`,
//! `model::mmd`). Shapes include sizes that are not multiples of the block
//! size (1, 31, 33, 255, 257, …).
//!
//! Tolerances: elementwise ops, the Philox fills, dropout and Adam are
//! compared bit for bit (the emulation is built without FMA contraction,
//! and does the same f32 operations in the same order as the twin). Sums
//! are reordered (tree reductions instead of sequential loops), so they
//! are compared with relative tolerances stated at each check.

use acsleuth::backend::cpu_memory_attention::{memory_attention_backward, memory_attention_forward};
use acsleuth::backend::cuda::emu::{self, Emu};
use acsleuth::backend::cuda::launch::{self, emu_selftest, stub, DevPtr, Dims};
use acsleuth::backend::cuda::ops::{self, BnBwdPtrs, BnFwdPtrs, MmdPtrs};
use acsleuth::backend::{Act, AdamStep, Backend, BnBwd, BnFwd, CpuBackend, CpuBuf, DropoutMask, Fused};
use acsleuth::model::mmd::{self, Counts, Deviations, Kernel, PairwiseOptions};

mod common;
use common::{close, close64, Lcg};

const EMU: Emu = Emu;

fn ro<T>(v: &[T]) -> DevPtr {
    DevPtr::host(v)
}
fn rw<T>(v: &mut [T]) -> DevPtr {
    DevPtr::host_mut(v)
}

#[track_caller]
fn exact(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{what}[{i}]: {g} vs {w}");
    }
}

const CPU: CpuBackend = CpuBackend { gemm_threading: acsleuth::backend::cpu::GemmThreading::Single };

fn buf(v: &[f32]) -> CpuBuf {
    CpuBuf(v.to_vec())
}

const SIZES: [usize; 7] = [1, 31, 255, 256, 257, 1000, 4099];
const ACTS: [Act; 3] = [Act::Identity, Act::Relu, Act::LeakyRelu(0.2)];

#[test]
fn elementwise_ops_are_bit_identical() {
    let mut r = Lcg(1);
    for &n in &SIZES {
        let x = r.vec(n, -2.0, 2.0);
        let y0 = r.vec(n, -2.0, 2.0);
        let mut got = y0.clone();
        let mut want = buf(&y0);
        unsafe { ops::axpy(&EMU, n, 0.7, ro(&x), rw(&mut got)) }.unwrap();
        CPU.axpy(0.7, &buf(&x), &mut want);
        exact("axpy", &got, &want.0);

        let mut got = x.clone();
        let mut want = buf(&x);
        unsafe { ops::scale(&EMU, n, -1.3, rw(&mut got)) }.unwrap();
        CPU.scale(-1.3, &mut want);
        exact("scale", &got, &want.0);

        let mut got = vec![0.0; n];
        let mut want = CpuBuf(vec![0.0; n]);
        unsafe { ops::add(&EMU, n, ro(&x), ro(&y0), rw(&mut got)) }.unwrap();
        CPU.add(&buf(&x), &buf(&y0), &mut want);
        exact("add", &got, &want.0);
        unsafe { ops::mul(&EMU, n, ro(&x), ro(&y0), rw(&mut got)) }.unwrap();
        CPU.mul(&buf(&x), &buf(&y0), &mut want);
        exact("mul", &got, &want.0);
        for act in ACTS {
            unsafe { ops::act_forward(&EMU, n, act, ro(&x), rw(&mut got)) }.unwrap();
            CPU.act_forward(act, &buf(&x), &mut want);
            exact("act_forward", &got, &want.0);
            unsafe { ops::act_backward(&EMU, n, act, ro(&x), ro(&y0), rw(&mut got)) }.unwrap();
            CPU.act_backward(act, &buf(&x), &buf(&y0), &mut want);
            exact("act_backward", &got, &want.0);
        }
        unsafe { ops::sigmoid(&EMU, n, ro(&x), rw(&mut got)) }.unwrap();
        CPU.sigmoid(&buf(&x), &mut want);
        exact("sigmoid", &got, &want.0);
        let s = got.clone();
        unsafe { ops::sigmoid_backward(&EMU, n, ro(&s), ro(&y0), rw(&mut got)) }.unwrap();
        CPU.sigmoid_backward(&buf(&s), &buf(&y0), &mut want);
        exact("sigmoid_backward", &got, &want.0);
        let mut xz = x.clone();
        xz[0] = 0.0; // sign(0) = 0
        unsafe { ops::abs(&EMU, n, ro(&xz), rw(&mut got)) }.unwrap();
        CPU.abs(&buf(&xz), &mut want);
        exact("abs", &got, &want.0);
        unsafe { ops::sign(&EMU, n, ro(&xz), rw(&mut got)) }.unwrap();
        CPU.sign(&buf(&xz), &mut want);
        exact("sign", &got, &want.0);
    }
    for (rows, cols) in [(1, 1), (3, 33), (17, 300), (64, 7)] {
        let bias = r.vec(cols, -1.0, 1.0);
        let x = r.vec(rows * cols, -1.0, 1.0);
        let mut got = x.clone();
        let mut want = buf(&x);
        unsafe { ops::add_bias(&EMU, rows, cols, ro(&bias), rw(&mut got)) }.unwrap();
        CPU.add_bias(rows, cols, &buf(&bias), &mut want);
        exact("add_bias", &got, &want.0);
    }
}

#[test]
fn philox_fills_and_dropout_are_bit_identical() {
    let mut r = Lcg(2);
    for &offset in &[0u64, 1, 2, 3, 5, (1 << 33) + 3] {
        for &n in &[1usize, 2, 3, 7, 1000, 1025] {
            let seed = 0x1234_5678_9abc_def0 ^ offset;
            let mut got = vec![f32::NAN; n];
            let mut want = CpuBuf(vec![0.0; n]);
            unsafe { ops::fill_uniform(&EMU, n, seed, offset, -0.5, 2.0, rw(&mut got)) }.unwrap();
            CPU.fill_uniform(&mut want, seed, offset, -0.5, 2.0);
            exact("fill_uniform", &got, &want.0);
            // Box–Muller in double: bit-identical here (same libm); on a GPU
            // the f64 sin/cos/log may differ in the last bit of rare values.
            unsafe { ops::fill_normal(&EMU, n, seed, offset, 0.3, 1.7, rw(&mut got)) }.unwrap();
            CPU.fill_normal(&mut want, seed, offset, 0.3, 1.7);
            exact("fill_normal", &got, &want.0);
            let x = r.vec(n, -1.0, 1.0);
            for p in [0.0f32, 0.1, 0.5] {
                let mask = DropoutMask { p, seed, offset };
                unsafe { ops::dropout(&EMU, n, &mask, ro(&x), rw(&mut got)) }.unwrap();
                CPU.dropout(&mask, &buf(&x), &mut want);
                exact("dropout", &got, &want.0);
            }
        }
    }
}

#[test]
fn l1_loss_matches() {
    let mut r = Lcg(3);
    for &n in &SIZES {
        let p = r.vec(n, -1.0, 1.0);
        let mut t = r.vec(n, -1.0, 1.0);
        t[0] = p[0]; // a zero difference has gradient 0
        let mut grad = vec![0.0; n];
        let mut partial = vec![0.0f64; launch::MAX_GRID as usize];
        let parts = unsafe { ops::l1_loss(&EMU, n, 2.5, ro(&p), ro(&t), rw(&mut grad), rw(&mut partial)) }.unwrap();
        let loss = (partial[..parts].iter().sum::<f64>() / n as f64) as f32;
        let mut want = CpuBuf(vec![0.0; n]);
        let want_loss = CPU.l1_loss(&buf(&p), &buf(&t), 2.5, &mut want);
        exact("l1 grad", &grad, &want.0);
        // Both sum in f64; only the order differs.
        close("l1 loss", &[loss], &[want_loss], 1e-6, 0.0);
    }
}

#[test]
fn reductions_match() {
    let mut r = Lcg(4);
    for (rows, cols) in [(1, 1), (3, 33), (17, 300), (5, 1000), (2, 257)] {
        let x = r.vec(rows * cols, -1.0, 1.0);
        for square in [false, true] {
            let mut got = vec![0.0; rows];
            let mut want = CpuBuf(vec![0.0; rows]);
            unsafe { ops::row_sums(&EMU, rows, cols, square, ro(&x), rw(&mut got)) }.unwrap();
            if square {
                CPU.row_sumsq(rows, cols, &buf(&x), &mut want);
            } else {
                CPU.row_sums(rows, cols, &buf(&x), &mut want);
            }
            // Both accumulate in f64 (order differs), rounded once to f32.
            close("row_sums", &got, &want.0, 1e-6, 1e-6);
        }
    }
    for (rows, cols) in [(1, 1), (37, 33), (300, 70), (9, 1), (0, 5)] {
        let x = r.vec(rows * cols, -1.0, 1.0);
        let o = r.vec(cols, -1.0, 1.0);
        for beta in [0.0f32, 1.0, 0.5] {
            let mut got = o.clone();
            let mut want = buf(&o);
            unsafe { ops::col_sums(&EMU, rows, cols, ro(&x), beta, rw(&mut got)) }.unwrap();
            CPU.col_sums(rows, cols, &buf(&x), beta, &mut want);
            // The twin sums rows sequentially in f32: ~rows·2⁻²⁴ relative.
            close("col_sums", &got, &want.0, 1e-5, 1e-5);
        }
    }
    for &n in &[1usize, 300, 70_000, 300_001] {
        let x = r.vec(n, -1.0, 1.0);
        let mut scratch = vec![0.0f64; ops::SUM_SCRATCH];
        for square in [false, true] {
            let out = unsafe { ops::sum(&EMU, n, square, ro(&x), rw(&mut scratch)) }.unwrap();
            assert_eq!(out.0, rw(&mut scratch).0 + 8 * launch::MAX_PARTIALS as u64);
            let got = scratch[launch::MAX_PARTIALS as usize] as f32;
            let want = if square { CPU.sumsq(&buf(&x)) } else { CPU.sum(&buf(&x)) };
            // f64 sums of ≤ 3e5 terms: the f32 results agree to rounding;
            // the absolute term covers cancellation in Σx.
            close("sum", &[got], &[want], 1e-6, 0.0);
            assert!((got - want).abs() <= 1e-6 * want.abs() + 1e-9 * n as f32, "sum n={n}");
        }
    }
}

/// One fused forward + backward configuration against the CPU twin.
fn fused_case(r: &mut Lcg, rows: usize, cols: usize, act: Act, with_bias: bool, bn: Option<bool>, p: f32) {
    let train = bn.unwrap_or(true);
    let cfg = Fused {
        rows,
        cols,
        act,
        dropout: Some(DropoutMask { p, seed: 99, offset: 8 }),
        train,
        eps: 1e-5,
        momentum: 0.1,
    };
    let n = rows * cols;
    let z = r.vec(n, -2.0, 2.0);
    let dy = r.vec(n, -1.0, 1.0);
    let bias = r.vec(cols, -0.5, 0.5);
    let gamma = r.vec(cols, 0.5, 1.5);
    let beta = r.vec(cols, -0.5, 0.5);
    let rm0 = r.vec(cols, -0.2, 0.2);
    let rv0 = r.vec(cols, 0.5, 1.5);
    let dg0 = r.vec(cols, -0.1, 0.1);
    let db0 = r.vec(cols, -0.1, 0.1);
    let dbias0 = r.vec(cols, -0.1, 0.1);
    let what = format!("fused {rows}x{cols} {act:?} bias={with_bias} bn={bn:?} p={p}");

    // ---- emulated kernels ----
    let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
    let (mut sm, mut si) = (vec![0.0; cols], vec![0.0; cols]);
    let mut y = vec![0.0; n];
    let bias_p = with_bias.then(|| ro(&bias));
    let bnf = bn.map(|_| BnFwdPtrs {
        gamma: ro(&gamma),
        beta: ro(&beta),
        running_mean: rw(&mut rm),
        running_var: rw(&mut rv),
        save_mean: rw(&mut sm),
        save_invstd: rw(&mut si),
    });
    unsafe { ops::fused_forward(&EMU, &cfg, ro(&z), bias_p, bnf, rw(&mut y)) }.unwrap();
    let (mut dg, mut db, mut dbias) = (dg0.clone(), db0.clone(), dbias0.clone());
    let mut dz = vec![0.0; n];
    let bnb = bn.map(|_| BnBwdPtrs {
        gamma: ro(&gamma),
        beta: ro(&beta),
        save_mean: ro(&sm),
        save_invstd: ro(&si),
        dgamma: rw(&mut dg),
        dbeta: rw(&mut db),
    });
    let dbias_p = with_bias.then(|| rw(&mut dbias));
    unsafe { ops::fused_backward(&EMU, &cfg, ro(&z), bias_p, bnb, ro(&dy), rw(&mut dz), dbias_p) }.unwrap();

    // ---- CPU twin ----
    let (gamma_b, beta_b, bias_b) = (buf(&gamma), buf(&beta), buf(&bias));
    let (mut rm_c, mut rv_c) = (buf(&rm0), buf(&rv0));
    let (mut sm_c, mut si_c) = (CpuBuf(vec![0.0; cols]), CpuBuf(vec![0.0; cols]));
    let mut y_c = CpuBuf(vec![0.0; n]);
    let bnf_c = bn.map(|_| BnFwd {
        gamma: &gamma_b,
        beta: &beta_b,
        running_mean: &mut rm_c,
        running_var: &mut rv_c,
        save_mean: &mut sm_c,
        save_invstd: &mut si_c,
    });
    CPU.fused_forward(&cfg, &buf(&z), with_bias.then_some(&bias_b), bnf_c, &mut y_c);
    let (mut dg_c, mut db_c, mut dbias_c) = (buf(&dg0), buf(&db0), buf(&dbias0));
    let mut dz_c = CpuBuf(vec![0.0; n]);
    let bnb_c = bn.map(|_| BnBwd {
        gamma: &gamma_b,
        beta: &beta_b,
        save_mean: &sm_c,
        save_invstd: &si_c,
        dgamma: &mut dg_c,
        dbeta: &mut db_c,
    });
    CPU.fused_backward(
        &cfg,
        &buf(&z),
        with_bias.then_some(&bias_b),
        bnb_c,
        &buf(&dy),
        &mut dz_c,
        with_bias.then_some(&mut dbias_c),
    );

    // Statistics: f64 sums in another order, one f32 rounding: 1e-6.
    if bn.is_some() {
        close(&format!("{what} save_mean"), &sm, &sm_c.0, 1e-6, 1e-6);
        close(&format!("{what} save_invstd"), &si, &si_c.0, 1e-6, 0.0);
        close(&format!("{what} running_mean"), &rm, &rm_c.0, 1e-6, 1e-6);
        close(&format!("{what} running_var"), &rv, &rv_c.0, 1e-6, 0.0);
    }
    // Outputs inherit the statistics' rounding: 1e-5 relative to the largest value.
    close(&format!("{what} y"), &y, &y_c.0, 1e-5, 1e-5);
    // Backward: column sums of g and g·x̂ then a subtraction that cancels.
    close(&format!("{what} dz"), &dz, &dz_c.0, 1e-4, 1e-5);
    if bn.is_some() {
        close(&format!("{what} dgamma"), &dg, &dg_c.0, 1e-5, 1e-5);
        close(&format!("{what} dbeta"), &db, &db_c.0, 1e-5, 1e-5);
    }
    if with_bias {
        close(&format!("{what} dbias"), &dbias, &dbias_c.0, 1e-5, 1e-5);
    }
}

#[test]
fn fused_bias_bn_act_dropout_match() {
    let mut r = Lcg(5);
    for (rows, cols) in [(2, 1), (37, 31), (130, 70), (9, 33)] {
        for act in ACTS {
            for with_bias in [false, true] {
                for bn in [None, Some(true), Some(false)] {
                    for p in [0.0, 0.3] {
                        fused_case(&mut r, rows, cols, act, with_bias, bn, p);
                    }
                }
            }
        }
    }
}

#[test]
fn memory_attention_matches() {
    let mut r = Lcg(6);
    for (rows, cols) in [(1, 1), (3, 7), (4, 64), (5, 300), (2, 700)] {
        for (inv_tau, lambda, spread) in [(20.0f32, 0.01f32, 0.3f32), (1.0 / 0.5, 0.001, 2.0)] {
            let l = r.vec(rows * cols, -spread, spread);
            let dout = r.vec(rows * cols, -1.0, 1.0);
            let (mut w, mut out, mut dl) = (vec![0.0; l.len()], vec![0.0; l.len()], vec![0.0; l.len()]);
            unsafe { ops::memory_forward(&EMU, rows, cols, inv_tau, lambda, ro(&l), rw(&mut w), rw(&mut out)) }
                .unwrap();
            unsafe { ops::memory_backward(&EMU, rows, cols, inv_tau, lambda, ro(&w), ro(&dout), rw(&mut dl)) }
                .unwrap();
            let (mut w_c, mut out_c, mut dl_c) = (vec![0.0; l.len()], vec![0.0; l.len()], vec![0.0; l.len()]);
            memory_attention_forward(rows, cols, inv_tau, lambda, &l, &mut w_c, &mut out_c);
            memory_attention_backward(rows, cols, inv_tau, lambda, &w_c, &dout, &mut dl_c);
            let what = format!("memory {rows}x{cols} 1/τ={inv_tau} λ={lambda}");
            // f32 row sums in tree order instead of sequential.
            close(&format!("{what} w"), &w, &w_c, 1e-5, 1e-7);
            close(&format!("{what} out"), &out, &out_c, 1e-5, 1e-6);
            close(&format!("{what} dlogits"), &dl, &dl_c, 1e-4, 1e-5);
        }
    }
}

#[test]
fn fill_softmax_layer_norm_match() {
    let mut r = Lcg(10);
    for &n in &[1usize, 257, 4099] {
        let mut got = vec![0.0; n];
        let mut want = CpuBuf(vec![0.0; n]);
        unsafe { ops::fill(&EMU, n, 0.25, rw(&mut got)) }.unwrap();
        CPU.fill(&mut want, 0.25);
        exact("fill", &got, &want.0);
    }
    for (rows, cols) in [(1, 1), (3, 7), (5, 64), (4, 300), (2, 700)] {
        let n = rows * cols;
        let x = r.vec(n, -3.0, 3.0);
        let dy = r.vec(n, -1.0, 1.0);
        let what = format!("{rows}x{cols}");
        // Softmax: f32 row sums in tree order instead of sequential.
        let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
        let (mut y_c, mut dx_c) = (CpuBuf(vec![0.0; n]), CpuBuf(vec![0.0; n]));
        unsafe { ops::softmax_rows(&EMU, rows, cols, 2.0, ro(&x), rw(&mut y)) }.unwrap();
        CPU.softmax_rows(rows, cols, 2.0, &buf(&x), &mut y_c);
        close(&format!("softmax {what}"), &y, &y_c.0, 1e-5, 1e-7);
        unsafe { ops::softmax_rows_backward(&EMU, rows, cols, 2.0, ro(&y_c.0), ro(&dy), rw(&mut dx)) }.unwrap();
        CPU.softmax_rows_backward(rows, cols, 2.0, &y_c, &buf(&dy), &mut dx_c);
        close(&format!("softmax backward {what}"), &dx, &dx_c.0, 1e-4, 1e-6);
        // LayerNorm: f64 statistics in another order.
        let gamma = r.vec(cols, 0.5, 1.5);
        let beta = r.vec(cols, -0.5, 0.5);
        let (mut mean, mut inv) = (vec![0.0; rows], vec![0.0; rows]);
        let (mut mean_c, mut inv_c) = (CpuBuf(vec![0.0; rows]), CpuBuf(vec![0.0; rows]));
        unsafe {
            ops::layer_norm_forward(&EMU, rows, cols, 1e-5, ro(&x), ro(&gamma), ro(&beta), rw(&mut y), rw(&mut mean), rw(&mut inv))
        }
        .unwrap();
        CPU.layer_norm_forward(rows, cols, 1e-5, &buf(&x), &buf(&gamma), &buf(&beta), &mut y_c, &mut mean_c, &mut inv_c);
        close(&format!("layer_norm y {what}"), &y, &y_c.0, 1e-5, 1e-6);
        close(&format!("layer_norm mean {what}"), &mean, &mean_c.0, 1e-6, 1e-6);
        close(&format!("layer_norm invstd {what}"), &inv, &inv_c.0, 1e-6, 0.0);
        let dg0 = r.vec(cols, -0.1, 0.1);
        let db0 = r.vec(cols, -0.1, 0.1);
        let (mut dg, mut db) = (dg0.clone(), db0.clone());
        let (mut dg_c, mut db_c) = (buf(&dg0), buf(&db0));
        unsafe {
            ops::layer_norm_backward(
                &EMU, rows, cols, ro(&x), ro(&gamma), ro(&mean_c.0), ro(&inv_c.0), ro(&dy), rw(&mut dx), rw(&mut dg), rw(&mut db),
            )
        }
        .unwrap();
        CPU.layer_norm_backward(rows, cols, &buf(&x), &buf(&gamma), &mean_c, &inv_c, &buf(&dy), &mut dx_c, &mut dg_c, &mut db_c);
        close(&format!("layer_norm dx {what}"), &dx, &dx_c.0, 1e-4, 1e-5);
        close(&format!("layer_norm dgamma {what}"), &dg, &dg_c.0, 1e-5, 1e-5);
        close(&format!("layer_norm dbeta {what}"), &db, &db_c.0, 1e-5, 1e-5);
    }
}

#[test]
fn adam_step_is_bit_identical() {
    let mut r = Lcg(7);
    for &n in &[1usize, 257, 5000] {
        for decoupled in [false, true] {
            let mut p = r.vec(n, -1.0, 1.0);
            let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
            let (mut p_c, mut m_c, mut v_c) = (buf(&p), CpuBuf(vec![0.0; n]), CpuBuf(vec![0.0; n]));
            for t in 1..=3 {
                let g = r.vec(n, -1.0, 1.0);
                let s = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled, t };
                unsafe { ops::adam_step(&EMU, &s, n, rw(&mut p), ro(&g), rw(&mut m), rw(&mut v)) }.unwrap();
                CPU.adam_step(&s, &mut p_c, &buf(&g), &mut m_c, &mut v_c);
            }
            exact("adam param", &p, &p_c.0);
            exact("adam m", &m, &m_c.0);
            exact("adam v", &v, &v_c.0);
        }
    }
}

fn random_delta(r: &mut Lcg, n: usize, g: usize) -> Vec<f32> {
    (0..n * g).map(|i| r.f(-1.0, 1.0) * (1.0 + (i / g % 5) as f32 * 0.3) + 0.2).collect()
}

/// u, v by the definition, in f64.
fn reference_uv(delta: &[f32], n: usize, g: usize, a: &[f64], b: &[f64], coefs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let row = |i: usize| &delta[i * g..(i + 1) * g];
    let mut u = vec![0.0; n];
    let mut v = vec![0.0; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let (mut dot, mut d2) = (0.0f64, 0.0f64);
            for (x, y) in row(i).iter().zip(row(j)) {
                dot += *x as f64 * *y as f64;
                d2 += (*x as f64 - *y as f64).powi(2);
            }
            let k = if coefs.is_empty() { dot } else { coefs.iter().map(|c| (c * d2).exp()).sum() };
            u[i] += k * a[j];
            v[i] += k * b[j];
        }
    }
    (u, v)
}

/// The loss from u, v with fixed counts (Counts::Ratio), as model::mmd's finish.
fn loss_from_uv(a: &[f64], b: &[f64], u: &[f64], v: &[f64], ratio: f64) -> f64 {
    let total = a.len() as f64;
    let nn = ratio * total;
    let m = total - nn;
    let (c1, c2, c3) = (1.0 / (m * (m - 1.0)), 1.0 / (nn * (nn - 1.0)), 1.0 / (m * nn));
    let (mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0);
    for i in 0..a.len() {
        saa += a[i] * u[i];
        sbb += b[i] * v[i];
        sab += a[i] * v[i];
    }
    -(c1 * saa + c2 * sbb - 2.0 * c3 * sab)
}

struct MmdCase {
    delta: Vec<f32>,
    p: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
}

fn mmd_case(r: &mut Lcg, n: usize, g: usize) -> MmdCase {
    let delta = random_delta(r, n, g);
    let p: Vec<f64> = (0..n).map(|_| r.f(0.0, 1.0) as f64).collect();
    let a = p.iter().map(|&x| mmd::ab(x).a).collect();
    let b = p.iter().map(|&x| mmd::ab(x).b).collect();
    MmdCase { delta, p, a, b }
}

#[test]
fn mmd_pairwise_matches_cpu_twin() {
    let mut r = Lcg(9);
    for (n, g) in [(8, 1), (64, 31), (65, 40), (150, 70)] {
        let c = mmd_case(&mut r, n, g);
        for bw in [vec![], vec![3.0], vec![1.5, 3.0, 6.0]] {
            let coefs: Vec<f64> = bw.iter().map(|h: &f64| -0.5 / (h * h)).collect();
            let (mut s, mut u, mut v) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
            let ptrs =
                MmdPtrs { delta: ro(&c.delta), a: ro(&c.a), b: ro(&c.b), s: rw(&mut s), u: rw(&mut u), v: rw(&mut v) };
            unsafe { ops::mmd_pairwise(&EMU, n, g, &coefs, &ptrs) }.unwrap();
            let (ru, rv) = reference_uv(&c.delta, n, g, &c.a, &c.b, &coefs);
            // Gram entries are f32 dot products (as the CPU twin's F32 GEMM):
            // ~G·2⁻²⁴ relative per entry.
            close64(&format!("pairwise u {n}x{g} {bw:?}"), &u, &ru, 1e-5);
            close64(&format!("pairwise v {n}x{g} {bw:?}"), &v, &rv, 1e-5);
            let kernel = if bw.is_empty() { Kernel::Linear } else { Kernel::Rbf { bandwidths: bw.clone() } };
            let dev = Deviations::new(&c.delta, n, g).unwrap();
            let twin = mmd::pairwise(dev, &c.p, Counts::Ratio(0.3), &kernel, &PairwiseOptions::default()).unwrap();
            let loss = loss_from_uv(&c.a, &c.b, &u, &v, 0.3);
            let scale = ru.iter().chain(&rv).fold(0.0f64, |m, x| m.max(x.abs())) / n as f64;
            assert!((loss - twin.loss).abs() <= 1e-5 * scale.max(twin.loss.abs()), "pairwise loss {loss} vs {}", twin.loss);
        }
    }
}

// ---- the emulator itself ----

/// (Wrong argument counts cannot be built out here: `launch::Args` comes
/// only from the typed stubs; the emulator's own count check is tested in
/// the library, `launch::tests`.)
#[test]
fn emulator_reports_barrier_mismatch_exited_lanes_and_bad_geometry() {
    let mut out = vec![0.0f32; 64];
    let d = Dims { grid: [1, 1, 1], block: [64, 1, 1], shared: 0 };
    let err = unsafe { emu_selftest::emu_divergent_barrier(&EMU, d, rw(&mut out)) }.unwrap_err();
    assert!(err.message.contains("barrier mismatch"), "{err}");
    let err = unsafe { emu_selftest::emu_exited_lane(&EMU, d, rw(&mut out)) }.unwrap_err();
    assert!(err.message.contains("exited"), "{err}");
    let (x, mut y) = (vec![1.0f32; 4], vec![0.0f32; 4]);
    let bad = Dims { grid: [1, 1, 1], block: [2048, 1, 1], shared: 0 };
    let err = unsafe { stub::axpy(&EMU, bad, 4, 2.0, ro(&x), rw(&mut y)) }.unwrap_err();
    assert!(err.message.contains("block dimensions"), "{err}");
    unsafe { stub::axpy(&EMU, d, 4, 2.0, ro(&x), rw(&mut y)) }.unwrap();
    assert_eq!(y, [2.0; 4]);
}

#[test]
fn emulator_shared_memory_is_per_block_and_atomics_add_up() {
    let (bx, by, gx, gy) = (16u32, 4u32, 3u32, 2u32);
    let nt = (bx * by) as usize;
    let mut out = vec![0.0f32; (gx * gy) as usize];
    let mut total = vec![0.0f32; 1];
    let d = Dims { grid: [gx, gy, 1], block: [bx, by, 1], shared: 4 * 10 };
    unsafe { emu_selftest::emu_shared_and_atomics(&EMU, d, 10, rw(&mut out), rw(&mut total)) }.unwrap();
    let per_block = (nt * (nt + 1) / 2) as f32;
    assert!(out.iter().all(|&x| x == per_block), "{out:?}");
    assert_eq!(total[0], per_block * (gx * gy) as f32);
    // Every kernel of kernels/*.cu has an emulated launch entry.
    for (file, src) in acsleuth::backend::cuda::kernels::sources() {
        for k in acsleuth::backend::cuda::kernels::global_kernels(src) {
            assert!(emu::kernel_names().any(|n| n == k), "{file}: {k} has no emulated entry");
        }
    }
}
