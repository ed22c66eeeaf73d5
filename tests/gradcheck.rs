//! Finite-difference checks of every layer's backward (inputs and
//! parameters). The backend is f32, so: central differences with step 2e-3
//! (1e-2 crossed LeakyReLU kinks after BN too often)
//! on tiny, well-conditioned shapes, the loss `Σ w ⊙ y` (random fixed `w`)
//! accumulated in f64, and a per-tensor relative error
//! `‖num − ana‖ / ‖num‖ < 2e-2`. `wrong_gradient_is_caught` shows the check
//! fails on a gradient off by 5 %.
//!
//! Every evaluation builds a fresh layer from the same seed and loads the
//! same snapshot of tensors, so dropout masks (first draw of the layer's
//! stream) and BN running statistics are identical in every evaluation.

use std::collections::HashMap;

use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::{Act, Backend, CpuBackend, CpuBuf};
use acsleuth::nn::act::Activation;
use acsleuth::nn::init::Init;
use acsleuth::nn::mlp::Sequential;
use acsleuth::nn::{
    BatchNorm1d, Dense, DenseConfig, Dropout, L1Loss, LayerNorm, Module, MultiheadAttention, ResBlock,
    TransformerEncoderLayer,
};

mod common;
use common::rel_err;

const H: f32 = 2e-3;
const TOL: f64 = 2e-2;
/// Floor of [`rel_err`]'s norm: a bias in front of a training BN has an
/// exactly-zero gradient, where only the finite-difference noise (~1e-4)
/// remains.
const FD_FLOOR: f64 = 2e-2;

fn rnd(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    rng::fill_uniform(seed, 0, -scale, scale, &mut v);
    v
}

fn snapshot<L: Module<CpuBackend>>(l: &mut L) -> HashMap<String, Vec<f32>> {
    let mut m = HashMap::new();
    l.visit("", &mut |n, p| {
        m.insert(n.to_string(), p.value.0.clone());
    });
    m
}

fn restore<L: Module<CpuBackend>>(l: &mut L, s: &HashMap<String, Vec<f32>>) {
    l.visit("", &mut |n, p| p.value.0.copy_from_slice(&s[n]));
}

/// Per-tensor relative errors of the analytic gradient (optionally scaled by
/// `fudge`, to show that a wrong gradient is caught).
type Pass<L> = Box<dyn Fn(&mut L, &CpuBuf) -> Vec<f32>>;
type Prep<L> = Box<dyn Fn(&mut L, &CpuBuf)>;

struct Check<L> {
    make: Box<dyn Fn() -> L>,
    /// Forward: layer, input → output.
    fwd: Pass<L>,
    /// Backward: layer, dy → dx (empty when the layer has none).
    bwd: Pass<L>,
    x: Vec<f32>,
    /// Runs once before the snapshot (e.g. a training forward that moves the
    /// spectral-norm vectors, then freezes them).
    prep: Prep<L>,
}

fn run<L: Module<CpuBackend>>(c: &Check<L>, fudge: f64) -> Vec<(String, f64)> {
    let be = CpuBackend::new();
    let mut base = (c.make)();
    (c.prep)(&mut base, &CpuBuf(c.x.clone()));
    let snap = snapshot(&mut base);
    let eval = |x: &[f32], perturb: Option<(&str, usize, f32)>| -> Vec<f32> {
        let mut l = (c.make)();
        (c.prep)(&mut l, &CpuBuf(x.to_vec()));
        let mut s = snap.clone();
        if let Some((name, i, d)) = perturb {
            s.get_mut(name).unwrap()[i] += d;
        }
        restore(&mut l, &s);
        (c.fwd)(&mut l, &CpuBuf(x.to_vec()))
    };
    let y0 = eval(&c.x, None);
    let w = rnd(y0.len(), 77, 1.0);
    let loss = |y: &[f32]| y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();

    // Analytic.
    let mut l = (c.make)();
    (c.prep)(&mut l, &CpuBuf(c.x.clone()));
    restore(&mut l, &snap);
    let y = (c.fwd)(&mut l, &CpuBuf(c.x.clone()));
    assert_eq!(y, y0, "forward not reproducible");
    l.visit("", &mut |_, p| {
        if p.trainable {
            be.fill(&mut p.grad, 0.0)
        }
    });
    let dx = (c.bwd)(&mut l, &CpuBuf(w.clone()));
    let mut grads: Vec<(String, Vec<f32>)> = Vec::new();
    l.visit("", &mut |n, p| {
        if p.trainable {
            grads.push((n.to_string(), p.grad.0.clone()));
        }
    });

    let mut out = Vec::new();
    let pick = |n: usize| -> Vec<usize> { if n <= 24 { (0..n).collect() } else { (0..24).map(|i| (i * 7919) % n).collect() } };
    if !dx.is_empty() {
        let idx = pick(c.x.len());
        let mut num = Vec::new();
        let mut ana = Vec::new();
        for &i in &idx {
            let mut xp = c.x.clone();
            xp[i] += H;
            let mut xm = c.x.clone();
            xm[i] -= H;
            num.push((loss(&eval(&xp, None)) - loss(&eval(&xm, None))) / (2.0 * H as f64));
            ana.push(dx[i] as f64 * fudge);
        }
        out.push(("input".to_string(), rel_err(&num, &ana, FD_FLOOR)));
    }
    for (name, g) in &grads {
        let idx = pick(g.len());
        let mut num = Vec::new();
        let mut ana = Vec::new();
        for &i in &idx {
            let fp = loss(&eval(&c.x, Some((name, i, H))));
            let fm = loss(&eval(&c.x, Some((name, i, -H))));
            num.push((fp - fm) / (2.0 * H as f64));
            ana.push(g[i] as f64 * fudge);
        }
        out.push((name.clone(), rel_err(&num, &ana, FD_FLOOR)));
    }
    out
}

fn assert_ok<L: Module<CpuBackend>>(what: &str, c: Check<L>) {
    let errs = run(&c, 1.0);
    assert!(!errs.is_empty());
    for (name, e) in &errs {
        assert!(*e < TOL, "{what}: gradient of {name} off by {e:.3e} (relative)");
    }
}

const BATCH: usize = 6;

fn dense_check(cfg: DenseConfig, train: bool, nin: usize, nout: usize) -> Check<Dense<CpuBackend>> {
    Check {
        make: Box::new(move || Dense::new(&CpuBackend::new(), nin, nout, cfg, &mut Stream::new(5)).named("0", "1")),
        fwd: Box::new(move |l, x| l.forward(&CpuBackend::new(), x, BATCH, train).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(BATCH * nin, 1, 1.0),
        prep: Box::new(|_, _| {}),
    }
}

#[test]
fn linear() {
    assert_ok("linear", dense_check(DenseConfig::linear(), true, 5, 4));
}

#[test]
fn dense_bn_lrelu_dropout_train() {
    let cfg = DenseConfig::linear().init(Init::XavierNormal).bn().act(Act::LeakyRelu(0.2)).dropout(0.3);
    assert_ok("linear+bn+lrelu+dropout", dense_check(cfg, true, 5, 4));
}

/// The input layer with its weight stored transposed (`sparse_input`):
/// same gradients (input included), and the same function as the default
/// storage from the same seed (checkpoint layout unchanged).
#[test]
fn dense_sparse_input() {
    let cfg = DenseConfig::linear().init(Init::XavierNormal).bn().act(Act::LeakyRelu(0.2)).dropout(0.3);
    assert_ok("linear+bn+lrelu+dropout, sparse input", dense_check(cfg.sparse_input(), true, 5, 4));
    let be = CpuBackend::new();
    let mut plain = Dense::new(&be, 70, 9, cfg, &mut Stream::new(2));
    let mut sparse = Dense::new(&be, 70, 9, cfg.sparse_input(), &mut Stream::new(2));
    assert_eq!(plain.weight.torch_values(&be), sparse.weight.torch_values(&be));
    let x = CpuBuf(rnd(BATCH * 70, 3, 1.0).iter().map(|&v| if v > 0.5 { v } else { 0.0 }).collect());
    let (a, b) = (plain.forward(&be, &x, BATCH, true).0.clone(), sparse.forward(&be, &x, BATCH, true).0.clone());
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
    let dy = CpuBuf(rnd(BATCH * 9, 4, 1.0));
    plain.backward(&be, &dy);
    sparse.backward(&be, &dy);
    let (ga, gb) = (plain.weight.torch_layout(&be, &plain.weight.grad), sparse.weight.torch_layout(&be, &sparse.weight.grad));
    assert!(ga.iter().zip(&gb).all(|(p, q)| (p - q).abs() < 1e-5));
}

#[test]
fn dense_bn_eval() {
    let cfg = DenseConfig::linear().bn().act(Act::LeakyRelu(0.2)).dropout(0.3);
    assert_ok("linear+bn eval", dense_check(cfg, false, 5, 4));
}

#[test]
fn dense_relu() {
    assert_ok("linear+relu", dense_check(DenseConfig::linear().act(Act::Relu), true, 5, 7));
}

#[test]
fn spectral_norm_linear() {
    let cfg = DenseConfig::linear().sn().act(Act::LeakyRelu(0.2)).dropout(0.2);
    let mut c = dense_check(cfg, true, 5, 4);
    // One training forward moves u, v; then they are held (as the backward
    // assumes, like PyTorch's).
    c.prep = Box::new(|l, x| {
        l.forward(&CpuBackend::new(), x, BATCH, true);
        l.hold_spectral_norm();
    });
    assert_ok("sn-linear", c);
}

#[test]
fn batchnorm_train_and_eval() {
    for train in [true, false] {
        let c = Check {
            make: Box::new(|| {
                let be = CpuBackend::new();
                let mut bn = BatchNorm1d::new(&be, 3);
                be.fill_uniform(&mut bn.params.gamma.value, 1, 0, 0.5, 1.5);
                be.fill_uniform(&mut bn.params.beta.value, 2, 0, -0.5, 0.5);
                be.fill_uniform(&mut bn.params.running_mean.value, 3, 0, -0.5, 0.5);
                be.fill_uniform(&mut bn.params.running_var.value, 4, 0, 0.5, 1.5);
                bn
            }),
            fwd: Box::new(move |l, x| l.forward(&CpuBackend::new(), x, BATCH, train).0.clone()),
            bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
            x: rnd(BATCH * 3, 1, 1.0),
            prep: Box::new(|_, _| {}),
        };
        assert_ok(&format!("batchnorm train={train}"), c);
    }
}

#[test]
fn layer_norm() {
    let c = Check {
        make: Box::new(|| {
            let be = CpuBackend::new();
            let mut ln = LayerNorm::new(&be, 7);
            be.fill_uniform(&mut ln.gamma.value, 1, 0, 0.5, 1.5);
            be.fill_uniform(&mut ln.beta.value, 2, 0, -0.5, 0.5);
            ln
        }),
        fwd: Box::new(|l, x| l.forward(&CpuBackend::new(), x, 4, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(4 * 7, 1, 1.0),
        prep: Box::new(|_, _| {}),
    };
    assert_ok("layernorm", c);
}

#[test]
fn activations_and_dropout() {
    // Inputs kept away from the kinks at 0 (|x| ≥ 0.1 > step).
    let x: Vec<f32> = rnd(20, 3, 1.0).iter().map(|v| if v.abs() < 0.1 { v.signum() * 0.1 + v } else { *v }).collect();
    type Maker = fn() -> Activation<CpuBackend>;
    let makers: Vec<(&str, Maker)> = vec![
        ("leaky_relu", || Activation::leaky_relu(&CpuBackend::new(), 0.2)),
        ("relu", || Activation::relu(&CpuBackend::new())),
        ("sigmoid", || Activation::sigmoid(&CpuBackend::new())),
    ];
    for (name, make) in makers {
        let c = Check {
            make: Box::new(make),
            fwd: Box::new(|l, x| l.forward(&CpuBackend::new(), x, true).0.clone()),
            bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
            x: x.clone(),
            prep: Box::new(|_, _| {}),
        };
        assert_ok(name, c);
    }
    let c = Check {
        make: Box::new(|| Dropout::new(&CpuBackend::new(), 0.4, Stream::new(3))),
        fwd: Box::new(|l, x| l.forward(&CpuBackend::new(), x, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x,
        prep: Box::new(|_, _| {}),
    };
    assert_ok("dropout", c);
}

#[test]
fn resblocks() {
    let c = Check {
        make: Box::new(|| ResBlock::new(&CpuBackend::new(), 5, 0.2, 0.2, Init::XavierNormal, &mut Stream::new(8))),
        fwd: Box::new(|l, x| l.forward(&CpuBackend::new(), x, BATCH, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(BATCH * 5, 1, 1.0),
        prep: Box::new(|_, _| {}),
    };
    assert_ok("resblock", c);
    let c = Check {
        make: Box::new(|| ResBlock::new_sn(&CpuBackend::new(), 5, 0.2, 0.2, Init::XavierNormal, &mut Stream::new(8))),
        fwd: Box::new(|l, x| l.forward(&CpuBackend::new(), x, BATCH, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(BATCH * 5, 1, 1.0),
        prep: Box::new(|l, x| {
            l.forward(&CpuBackend::new(), x, BATCH, true);
            l.first.hold_spectral_norm();
            l.second.hold_spectral_norm();
        }),
    };
    assert_ok("sn-resblock", c);
}

#[test]
fn attention_and_encoder_layer() {
    let (b, t, d) = (3, 2, 8);
    let c = Check {
        make: Box::new(move || MultiheadAttention::new(&CpuBackend::new(), d, 4, 0.2, 0.0, &mut Stream::new(4))),
        fwd: Box::new(move |l, x| l.forward(&CpuBackend::new(), x, b, t, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(b * t * d, 1, 1.0),
        prep: Box::new(|_, _| {}),
    };
    assert_ok("mha", c);
    let c = Check {
        make: Box::new(move || TransformerEncoderLayer::new(&CpuBackend::new(), d, 4, 12, 0.1, &mut Stream::new(4))),
        fwd: Box::new(move |l, x| l.forward(&CpuBackend::new(), x, b, t, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(b * t * d, 1, 1.0),
        prep: Box::new(|_, _| {}),
    };
    assert_ok("encoder layer", c);
}

#[test]
fn sequential_stack() {
    let c = Check {
        make: Box::new(|| {
            let be = CpuBackend::new();
            let rng = &mut Stream::new(6);
            let blk = DenseConfig::linear().bn().act(Act::LeakyRelu(0.2)).dropout(0.1);
            let mut s = Sequential::new()
                .dense(&be, 6, 5, blk, rng)
                .res(ResBlock::new(&be, 5, 0.2, 0.1, Init::XavierNormal, rng))
                .dense(&be, 5, 3, DenseConfig::linear(), rng);
            s.set_input_grad(true);
            s
        }),
        fwd: Box::new(|l, x| l.forward(&CpuBackend::new(), x, BATCH, true).0.clone()),
        bwd: Box::new(|l, dy| l.backward(&CpuBackend::new(), dy).0.clone()),
        x: rnd(BATCH * 6, 1, 1.0),
        prep: Box::new(|_, _| {}),
    };
    assert_ok("sequential", c);
}

#[test]
fn l1_loss_gradient() {
    let be = CpuBackend::new();
    let pred = rnd(30, 1, 1.0);
    let target = rnd(30, 2, 1.0);
    let mut l1 = L1Loss::new(&be);
    l1.forward_backward(&be, &CpuBuf(pred.clone()), &CpuBuf(target.clone()), 3.0);
    let g = l1.grad().0.clone();
    let mut num = Vec::new();
    for i in 0..30 {
        let f = |d: f32| {
            let mut p = pred.clone();
            p[i] += d;
            3.0 * L1Loss::new(&be).forward_backward(&be, &CpuBuf(p), &CpuBuf(target.clone()), 1.0) as f64
        };
        num.push((f(1e-3) - f(-1e-3)) / 2e-3);
    }
    let ana: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    assert!(rel_err(&num, &ana, FD_FLOOR) < TOL);
}

#[test]
fn wrong_gradient_is_caught() {
    let cfg = DenseConfig::linear().act(Act::LeakyRelu(0.2));
    let errs = run(&dense_check(cfg, true, 5, 4), 1.05);
    assert!(errs.iter().all(|(_, e)| *e > TOL), "a 5 % error must fail every tensor: {errs:?}");
    let errs = run(&dense_check(cfg, true, 5, 4), 1.0);
    assert!(errs.iter().all(|(_, e)| *e < TOL), "{errs:?}");
}

/// A dense layer told to reuse its product (same input, same weights) gives
/// bit for bit the output and gradients of a full second forward: BN
/// statistics and the fresh dropout draw still run.
#[test]
fn dense_product_reuse_is_exact() {
    let be = CpuBackend::new();
    let cfg = DenseConfig::linear().init(Init::XavierNormal).bn().act(Act::LeakyRelu(0.2)).dropout(0.1);
    let (b, nin, nout) = (16, 40, 24);
    let mut full = Dense::new(&be, nin, nout, cfg, &mut Stream::new(9));
    let mut reused = Dense::new(&be, nin, nout, cfg, &mut Stream::new(9));
    let mut h = vec![0.0; b * nin];
    rng::fill_normal(4, 0, 0.0, 1.0, &mut h);
    let x = be.upload(&h);
    full.forward(&be, &x, b, true);
    reused.forward(&be, &x, b, true);
    let want = be.download(full.forward(&be, &x, b, true));
    let got = be.download(reused.forward_kept_product(&be, b, true));
    assert_eq!(want, got);
    let dy = be.upload(&vec![0.5; b * nout]);
    full.backward(&be, &dy);
    reused.backward(&be, &dy);
    assert_eq!(be.download(&full.weight.grad), be.download(&reused.weight.grad));
}
