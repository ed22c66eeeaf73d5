//! The critic and its WGAN-GP double backward: forward/backward and the
//! GP's parameter gradients against central finite differences (spectral
//! norm's u, v and the dropout masks held fixed), the GP value against a
//! finite-difference input gradient, and everything against PyTorch
//! (`scripts/make_critic_fixture.py`).

use std::collections::BTreeMap;

use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::model::critic::{Critic, CriticConfig, Grads};
use acsleuth::nn::params::{zero_grads, Module};

type Tensors = BTreeMap<String, Vec<f32>>;

fn values(be: &CpuBackend, c: &mut Critic<CpuBackend>) -> Tensors {
    let mut m = Tensors::new();
    c.visit("", &mut |n, p| {
        m.insert(n.to_string(), p.torch_values(be));
    });
    m
}

fn grads(be: &CpuBackend, c: &mut Critic<CpuBackend>) -> Tensors {
    let mut m = Tensors::new();
    c.visit("", &mut |n, p| {
        if p.trainable {
            m.insert(n.to_string(), p.torch_layout(be, &p.grad));
        }
    });
    m
}

fn load(be: &CpuBackend, c: &mut Critic<CpuBackend>, t: &Tensors) {
    c.visit("", &mut |n, p| {
        let v = &t[n];
        assert_eq!(v.len(), p.numel(), "{n}");
        p.set_torch_values(be, v);
    });
}

const TINY_SEED: u64 = 20240611;

fn tiny_cfg(dropout: f32) -> CriticConfig {
    CriticConfig { in_dim: 7, hidden: 5, out_dim: 3, slope: 0.2, dropout }
}

/// A tiny critic after a few power iterations, and its state: `fresh`
/// rebuilds it (same dropout stream, so the next training forward draws the
/// same masks) with frozen spectral norm, so D is a fixed function of the
/// weights and the input.
struct Tiny {
    cfg: CriticConfig,
    state: Tensors,
}

impl Tiny {
    fn new(be: &CpuBackend, dropout: f32) -> Self {
        let cfg = tiny_cfg(dropout);
        let mut c = Critic::new(be, &cfg, &mut Stream::new(TINY_SEED));
        let x = be.upload(&host_input(4, cfg.in_dim, 1));
        for _ in 0..5 {
            c.forward(be, &x, 4, true);
        }
        Tiny { cfg, state: values(be, &mut c) }
    }
    fn fresh(&self, be: &CpuBackend, state: &Tensors) -> Critic<CpuBackend> {
        let mut c = Critic::new(be, &self.cfg, &mut Stream::new(TINY_SEED));
        load(be, &mut c, state);
        c.hold_spectral_norm();
        c
    }
}

/// Expression-like input: non-negative, some zeros.
fn host_input(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; rows * cols];
    rng::fill_normal(seed, 0, 0.5, 1.0, &mut v);
    v.iter_mut().for_each(|x| *x = x.max(0.0));
    v
}

fn host_normal(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; n];
    rng::fill_normal(seed, 0, 0.0, 1.0, &mut v);
    v
}

/// `max |a − b| / max |b|` (b the reference), or the absolute error when b ≈ 0.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    if scale > 1e-3 { err / scale } else { err }
}

/// Central differences of `f` over every entry of every trainable tensor.
fn fd_params(be: &CpuBackend, tiny: &Tiny, h: f32, f: &dyn Fn(&mut Critic<CpuBackend>) -> f64) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    let trainable: Vec<String> =
        tiny.state.keys().filter(|k| !k.ends_with("weight_u") && !k.ends_with("weight_v")).cloned().collect();
    for name in trainable {
        let d = (0..tiny.state[&name].len())
            .map(|j| {
                let eval = |delta: f32| {
                    let mut s = tiny.state.clone();
                    s.get_mut(&name).unwrap()[j] += delta;
                    let mut c = tiny.fresh(be, &s);
                    f(&mut c)
                };
                (eval(h) - eval(-h)) / (2.0 * h as f64)
            })
            .collect();
        out.insert(name, d);
    }
    out
}

fn sum_weighted(v: &[f32], w: &[f32]) -> f64 {
    v.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
}

fn check_backward(dropout: f32) {
    let be = CpuBackend::new();
    let tiny = Tiny::new(&be, dropout);
    let (b, g, o) = (4, tiny.cfg.in_dim, tiny.cfg.out_dim);
    let x = host_input(b, g, 7);
    let dy = host_normal(b * o, 8);
    let (xb, dyb) = (be.upload(&x), be.upload(&dy));

    let mut c = tiny.fresh(&be, &tiny.state);
    zero_grads(&be, &mut c);
    c.forward(&be, &xb, b, true);
    let dx = be.download(c.backward(&be, &dyb, Grads::ALL));
    let an = grads(&be, &mut c);

    let loss = |c: &mut Critic<CpuBackend>, xb: &<CpuBackend as Backend>::Buf| {
        let y = be.download(c.forward(&be, xb, b, true));
        sum_weighted(&y, &dy)
    };
    let h = 2e-3;
    let fd = fd_params(&be, &tiny, h, &|c| loss(c, &xb));
    for (name, d) in &fd {
        let e = rel_err(&an[name], d);
        eprintln!("bw p={dropout} {name}: {e:.2e} max {:.3}", d.iter().fold(0f64, |m, v| m.max(v.abs())));
        assert!(e < 2e-3, "dropout {dropout}: ∂L/∂{name} rel err {e:.2e}\n an {:?}\n fd {d:?}", an[name]);
        // A derivative wrong by 3 % must fail the same check.
        let wrong: Vec<f32> = an[name].iter().map(|v| v * 1.03).collect();
        if d.iter().any(|v| v.abs() > 1e-2) {
            assert!(rel_err(&wrong, d) > 2e-3, "{name}: check not discriminating");
        }
    }
    let mut fdx = vec![0.0; x.len()];
    for j in 0..x.len() {
        let eval = |delta: f32| {
            let mut xp = x.clone();
            xp[j] += delta;
            let mut c = tiny.fresh(&be, &tiny.state);
            loss(&mut c, &be.upload(&xp))
        };
        fdx[j] = (eval(h) - eval(-h)) / (2.0 * h as f64);
    }
    let e = rel_err(&dx, &fdx);
    assert!(e < 2e-3, "dropout {dropout}: ∂L/∂x rel err {e:.2e}");
}

#[test]
fn backward_matches_finite_differences_without_dropout() {
    check_backward(0.0);
}

#[test]
fn backward_matches_finite_differences_with_fixed_dropout_masks() {
    check_backward(0.3);
}

/// GP inputs of the tiny critic: real, fake, η.
fn gp_inputs(b: usize, g: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let xr = host_input(b, g, 11);
    let xf = host_input(b, g, 12);
    let mut eta = vec![0.0; b];
    rng::fill_uniform(13, 0, 0.0, 1.0, &mut eta);
    (xr, xf, eta)
}

fn check_gp(dropout: f32) {
    let be = CpuBackend::new();
    let tiny = Tiny::new(&be, dropout);
    let (b, g) = (5, tiny.cfg.in_dim);
    let (xr, xf, eta) = gp_inputs(b, g);
    let (xrb, xfb, etab) = (be.upload(&xr), be.upload(&xf), be.upload(&eta));
    let lambda = 2.5f32;

    let mut c = tiny.fresh(&be, &tiny.state);
    zero_grads(&be, &mut c);
    let gp = c.gradient_penalty_eta(&be, &xrb, &xfb, &etab, b, lambda);
    let an = grads(&be, &mut c);

    // GP value against g by central differences of Σ_k D_k w.r.t. x̃.
    let xt: Vec<f32> = (0..b * g).map(|j| eta[j / g] * xr[j] + (1.0 - eta[j / g]) * xf[j]).collect();
    let h = 2e-3f32;
    let mut gp_direct = 0.0f64;
    for i in 0..b {
        let mut norm2 = 0.0f64;
        for k in 0..g {
            let eval = |delta: f32| {
                let mut xp = xt.clone();
                xp[i * g + k] += delta;
                let mut c = tiny.fresh(&be, &tiny.state);
                be.download(c.forward(&be, &be.upload(&xp), b, true)).iter().map(|&v| v as f64).sum::<f64>()
            };
            let d = (eval(h) - eval(-h)) / (2.0 * h as f64);
            norm2 += d * d;
        }
        gp_direct += (norm2.sqrt() - 1.0).powi(2);
    }
    gp_direct /= b as f64;
    let e = (gp as f64 - gp_direct).abs() / gp_direct.max(1e-3);
    eprintln!("GP {gp} direct {gp_direct}");
    assert!(e < 2e-3, "dropout {dropout}: GP {gp} vs direct {gp_direct}");

    // ∂GP/∂θ against central differences of the GP value.
    let fd = fd_params(&be, &tiny, h, &|c| {
        c.gradient_penalty_eta(&be, &xrb, &xfb, &etab, b, 0.0) as f64
    });
    for (name, d) in &fd {
        let a: Vec<f32> = an[name].iter().map(|v| v / lambda).collect();
        if name.ends_with("bias") {
            // Biases move g only through the (piecewise-constant) masks.
            assert!(a.iter().all(|&v| v == 0.0), "{name}: GP bias gradient not exactly 0");
        }
        let e = rel_err(&a, d);
        eprintln!("gp p={dropout} {name}: {e:.2e} max {:.3}", d.iter().fold(0f64, |m, v| m.max(v.abs())));
        assert!(e < 2e-3, "dropout {dropout}: ∂GP/∂{name} rel err {e:.2e}\n an {a:?}\n fd {d:?}");
        let wrong: Vec<f32> = a.iter().map(|v| v * 1.03).collect();
        if d.iter().any(|v| v.abs() > 1e-2) {
            assert!(rel_err(&wrong, d) > 2e-3, "{name}: check not discriminating");
        }
    }
}

#[test]
fn gradient_penalty_matches_finite_differences_without_dropout() {
    check_gp(0.0);
}

#[test]
fn gradient_penalty_matches_finite_differences_with_fixed_dropout_masks() {
    check_gp(0.3);
}

// ---- PyTorch reference (scripts/make_critic_fixture.py) ----

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/critic/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read fixture")).expect("parse fixture")
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// The fixture's critic with the fixture's state loaded.
fn fixture_critic(be: &CpuBackend, fx: &serde_json::Value) -> Critic<CpuBackend> {
    let c = &fx["cfg"];
    let cfg = CriticConfig {
        in_dim: c["in_dim"].as_u64().unwrap() as usize,
        hidden: c["hidden"].as_u64().unwrap() as usize,
        out_dim: c["out_dim"].as_u64().unwrap() as usize,
        slope: c["slope"].as_f64().unwrap() as f32,
        dropout: c["dropout"].as_f64().unwrap() as f32,
    };
    let mut critic = Critic::new(be, &cfg, &mut Stream::new(1));
    let state: Tensors = fx["state"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), f32s(v))).collect();
    let mut names = Vec::new();
    critic.visit("", &mut |n, _| names.push(n.to_string()));
    let mut expected: Vec<String> = state.keys().cloned().collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected, "state-dict names differ from PyTorch's");
    load(be, &mut critic, &state);
    critic
}

fn assert_tensors(what: &str, got: &Tensors, want: &serde_json::Value, tol: f64) {
    for (name, w) in want.as_object().unwrap() {
        let w = f64s(w);
        let e = rel_err(&got[name], &w);
        eprintln!("{what}: {name} rel err {e:.1e}");
        assert!(e < tol, "{what}: {name} rel err {e:.2e}");
    }
}

#[test]
fn gradient_penalty_matches_pytorch() {
    let be = CpuBackend::new();
    let fx = fixture();
    let mut c = fixture_critic(&be, &fx);
    let b = fx["batch"].as_u64().unwrap() as usize;
    let (xr, xf, eta) = (be.upload(&f32s(&fx["x_real"])), be.upload(&f32s(&fx["x_fake"])), be.upload(&f32s(&fx["eta"])));
    zero_grads(&be, &mut c);
    let lambda = 3.0;
    let gp = c.gradient_penalty_eta(&be, &xr, &xf, &eta, b, lambda);
    let want = fx["gp_only"]["gp"].as_f64().unwrap();
    assert!((gp as f64 - want).abs() < 1e-4 * want, "GP {gp} vs torch {want}");
    let g: Tensors = grads(&be, &mut c).into_iter().map(|(k, v)| (k, v.iter().map(|x| x / lambda).collect())).collect();
    assert_tensors("∂GP/∂θ", &g, &fx["gp_only"]["grads"], 2e-5);
    assert_tensors("u, v after", &values(&be, &mut c), &fx["gp_only"]["uv_after"], 1e-5);
}

#[test]
fn critic_loss_step_matches_pytorch() {
    let be = CpuBackend::new();
    let fx = fixture();
    let mut c = fixture_critic(&be, &fx);
    let b = fx["batch"].as_u64().unwrap() as usize;
    let o = fx["cfg"]["out_dim"].as_u64().unwrap() as usize;
    let full = &fx["full"];
    let (xr, xf, eta) = (be.upload(&f32s(&fx["x_real"])), be.upload(&f32s(&fx["x_fake"])), be.upload(&f32s(&fx["eta"])));
    zero_grads(&be, &mut c);
    let mut dy = be.zeros(b * o);

    // L_D = −mean D(x_real) + mean D(x_fake) + λ·GP, in PyTorch's order.
    let d_real = be.download(c.forward(&be, &xr, b, true));
    assert!(rel_err(&d_real, &f64s(&full["d_real"])) < 1e-5, "D(x_real)");
    be.fill(&mut dy, -1.0 / (b * o) as f32);
    assert_eq!(be.len(c.backward(&be, &dy, Grads::PARAMS)), 0, "no input gradient requested");
    let d_fake = be.download(c.forward(&be, &xf, b, true));
    assert!(rel_err(&d_fake, &f64s(&full["d_fake"])) < 1e-5, "D(x_fake)");
    be.fill(&mut dy, 1.0 / (b * o) as f32);
    c.backward(&be, &dy, Grads::PARAMS);
    let lambda = full["lambda"].as_f64().unwrap() as f32;
    let gp = c.gradient_penalty_eta(&be, &xr, &xf, &eta, b, lambda);
    let want = full["gp"].as_f64().unwrap();
    assert!((gp as f64 - want).abs() < 1e-4 * want, "GP {gp} vs torch {want}");
    assert_tensors("∂L_D/∂θ", &grads(&be, &mut c), &full["grads"], 2e-5);
    assert_tensors("u, v after three forwards", &values(&be, &mut c), &full["uv_after"], 1e-5);
}

/// The generator step's use: input gradient only, parameter gradients left
/// alone; and no input gradient requested gives an empty `dx`.
#[test]
fn backward_flags_skip_work_without_changing_results() {
    let be = CpuBackend::new();
    let tiny = Tiny::new(&be, 0.3);
    let (b, g, o) = (4, tiny.cfg.in_dim, tiny.cfg.out_dim);
    let (xb, dyb) = (be.upload(&host_input(b, g, 7)), be.upload(&host_normal(b * o, 8)));
    let mut full = tiny.fresh(&be, &tiny.state);
    zero_grads(&be, &mut full);
    full.forward(&be, &xb, b, true);
    let dx_full = be.download(full.backward(&be, &dyb, Grads::ALL));

    let mut gstep = tiny.fresh(&be, &tiny.state);
    zero_grads(&be, &mut gstep);
    gstep.forward(&be, &xb, b, true);
    assert_eq!(be.download(gstep.backward(&be, &dyb, Grads::INPUT)), dx_full);
    assert!(grads(&be, &mut gstep).values().flatten().all(|&v| v == 0.0));

    let mut own = tiny.fresh(&be, &tiny.state);
    zero_grads(&be, &mut own);
    own.forward(&be, &xb, b, true);
    assert_eq!(be.len(own.backward(&be, &dyb, Grads::PARAMS)), 0);
    assert_eq!(grads(&be, &mut own), grads(&be, &mut full));
}

/// One power iteration per training forward, none in eval (PyTorch's
/// spectral_norm); σ is recomputed from the current weights either way.
#[test]
fn power_iteration_once_per_training_forward() {
    let be = CpuBackend::new();
    let cfg = tiny_cfg(0.0);
    let x = be.upload(&host_input(3, cfg.in_dim, 5));
    let mut c = Critic::new(&be, &cfg, &mut Stream::new(3));
    let u0 = values(&be, &mut c);
    c.forward(&be, &x, 3, false);
    assert_eq!(values(&be, &mut c), u0, "eval forward must not iterate");
    c.forward(&be, &x, 3, true);
    let u1 = values(&be, &mut c);
    assert_ne!(u1, u0);
    c.forward(&be, &x, 3, true);
    assert_ne!(values(&be, &mut c), u1, "each training forward iterates once");
    c.hold_spectral_norm();
    let u2 = values(&be, &mut c);
    c.forward(&be, &x, 3, true);
    assert_eq!(values(&be, &mut c), u2, "frozen spectral norm must not iterate");
}

/// `Critic::wgan_gp_step` (the GP's first-layer product formed from the real
/// and fake products) gives the gradients, sums, GP, and u, v of the plain
/// sequence forward/backward on real, on fake, then `gradient_penalty`,
/// with dropout and the power iteration running, over three steps.
#[test]
fn wgan_gp_step_matches_the_plain_sequence() {
    let be = CpuBackend::new();
    let cfg = CriticConfig { in_dim: 300, hidden: 64, out_dim: 16, slope: 0.2, dropout: 0.1 };
    let (b, g) = (24, cfg.in_dim);
    let mut plain = Critic::new(&be, &cfg, &mut Stream::new(3));
    let mut fast = Critic::new(&be, &cfg, &mut Stream::new(3));
    let n = (b * cfg.out_dim) as f32;
    let dy_real = be.upload(&vec![-1.0 / n; b * cfg.out_dim]);
    let dy_fake = be.upload(&vec![1.0 / n; b * cfg.out_dim]);
    for step in 0..3u64 {
        let real = be.upload(&host_input(b, g, 10 + step));
        let fake = be.upload(&host_input(b, g, 20 + step));
        zero_grads(&be, &mut plain);
        zero_grads(&be, &mut fast);
        let sr = be.sum(plain.forward(&be, &real, b, true)) as f64;
        plain.backward(&be, &dy_real, Grads::PARAMS);
        let sf = be.sum(plain.forward(&be, &fake, b, true)) as f64;
        plain.backward(&be, &dy_fake, Grads::PARAMS);
        let gp = plain.gradient_penalty(&be, &real, &fake, b, 10.0, 77, step * 100);
        let (fr, ff, fgp) = fast.wgan_gp_step(&be, &real, &fake, b, &dy_real, &dy_fake, 10.0, 77, step * 100);
        assert!((sr - fr).abs() < 1e-5 * sr.abs().max(1.0) && (sf - ff).abs() < 1e-5 * sf.abs().max(1.0), "sums {sr} {fr} / {sf} {ff}");
        assert!((gp - fgp).abs() < 1e-5 * gp.abs().max(1.0), "GP {gp} vs {fgp}");
        let (gw, gf) = (grads(&be, &mut plain), grads(&be, &mut fast));
        for (k, want) in &gw {
            let got = &gf[k];
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            let err = want.iter().zip(got).fold(0.0f32, |m, (a, c)| m.max((a - c).abs())) / scale;
            assert!(err < 1e-4, "step {step} {k}: relative error {err}");
        }
        let (vw, vf) = (values(&be, &mut plain), values(&be, &mut fast));
        for (k, want) in vw.iter().filter(|(k, _)| k.ends_with("_u") || k.ends_with("_v")) {
            let err = want.iter().zip(&vf[k]).fold(0.0f32, |m, (a, c)| m.max((a - c).abs()));
            assert!(err < 1e-5, "step {step} {k}: {err}");
        }
    }
}
