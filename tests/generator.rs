//! Module I's generator: finite-difference check of the whole backward
//! (encoder → memory block → decoder) at a tiny size, in both phases, and
//! checkpoint names.

use acsleuth::backend::rng::Stream;
use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::model::generator::{Generator, GeneratorConfig, Route};
use acsleuth::nn::params::{self, Module};

mod common;
use common::tiny_generator;


/// `Σ x̂ ⊙ g` in train mode (batch statistics; no dropout, so repeated
/// forwards are the same function).
fn loss(be: &CpuBackend, g: &mut Generator<CpuBackend>, x: &<CpuBackend as Backend>::Buf, w: &[f32], batch: usize) -> f64 {
    let y = be.download(g.forward(be, x, batch, true));
    y.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
}

fn check_phase(use_memory: bool) {
    let be = CpuBackend::new();
    let cfg = tiny_generator(7);
    let batch = 8;
    let cfg = GeneratorConfig { memory: use_memory, ..cfg };
    let mut g = Generator::new(&be, &cfg, &mut Stream::new(3));
    let mut x = be.zeros(batch * cfg.genes);
    be.fill_uniform(&mut x, 17, 0, 0.0, 2.0);
    // Fill the queue with real codes so the attention is not uniform.
    if use_memory {
        for _ in 0..cfg.mem_size / batch {
            let mut xr = be.zeros(batch * cfg.genes);
            be.fill_uniform(&mut xr, 23, 0, 0.0, 2.0);
            g.forward_via(&be, &xr, batch, true, Route::Bypass, false);
            g.update_memory(&be, batch);
        }
    }
    let w: Vec<f32> = (0..batch * cfg.genes).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect();
    let wb = be.upload(&w);
    params::zero_grads(&be, &mut g);
    g.forward(&be, &x, batch, true);
    g.backward(&be, &wb);

    // Analytic gradients, then finite differences on every trainable scalar
    // (a subset of large tensors).
    let mut names = Vec::new();
    g.visit("", &mut |n, p| {
        if p.trainable {
            names.push((n.to_string(), be.download(&p.grad), p.numel()));
        }
    });
    assert!(names.iter().any(|(n, _, _)| n.starts_with("encoder.0")));
    let h = 5e-4f32;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut checked = 0;
    for (name, grad, numel) in &names {
        for i in (0..*numel).step_by(1 + numel / 12) {
            let set = |g: &mut Generator<CpuBackend>, delta: f32| {
                g.visit("", &mut |n, p| {
                    if n == name {
                        let mut v = be.download(&p.value);
                        v[i] += delta;
                        be.write(&mut p.value, 0, &v);
                    }
                });
            };
            set(&mut g, h);
            let lp = loss(&be, &mut g, &x, &w, batch);
            set(&mut g, -2.0 * h);
            let lm = loss(&be, &mut g, &x, &w, batch);
            set(&mut g, h);
            let fd = (lp - lm) / (2.0 * h as f64);
            num += (fd - grad[i] as f64).powi(2);
            den += fd.powi(2);
            checked += 1;
        }
    }
    let rel = (num / den.max(1e-12)).sqrt();
    assert!(checked > 50, "checked {checked}");
    assert!(rel < 1e-2, "memory={use_memory}: relative gradient error {rel}");
}

#[test]
fn generator_backward_matches_finite_differences_prepare_phase() {
    check_phase(false);
}

#[test]
fn generator_backward_matches_finite_differences_memory_phase() {
    check_phase(true);
}

#[test]
fn checkpoint_round_trip_keeps_names_and_values() {
    let be = CpuBackend::new();
    let cfg = GeneratorConfig { dropout: 0.1, ..tiny_generator(7) };
    let mut a = Generator::new(&be, &cfg, &mut Stream::new(1));
    let mut b = Generator::new(&be, &cfg, &mut Stream::new(2));
    let dir = std::env::temp_dir().join(format!("acsleuth-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.safetensors");
    params::save(&be, &mut a, &path, None).unwrap();
    params::load(&be, &mut b, &path).unwrap();
    let mut va = Vec::new();
    a.visit("", &mut |n, p| va.push((n.to_string(), be.download(&p.value))));
    let mut vb = Vec::new();
    b.visit("", &mut |n, p| vb.push((n.to_string(), be.download(&p.value))));
    assert_eq!(va, vb);
    let names: Vec<&str> = va.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["encoder.0.weight", "encoder.1.running_var", "encoder.8.fc.0.weight", "memory.mem", "decoder.0.fc.4.bias", "decoder.5.weight"] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Defect: after a checkpoint load (`ModuleI::load` loads through
/// `params::load`), the memory block kept a host copy of the queue pointer
/// at 0, so the next push overwrote the newest rows instead of the oldest.
#[test]
fn memory_queue_pointer_survives_a_checkpoint_load() {
    let be = CpuBackend::new();
    let cfg = tiny_generator(7); // mem_size 8, latent 6
    let d = cfg.latent;
    let mut a = Generator::new(&be, &cfg, &mut Stream::new(1));
    for v in [1.0f32, 2.0] {
        a.memory.push(&be, &be.upload(&vec![v; 2 * d]), 2);
    }
    assert_eq!(be.download(&a.memory.ptr.value), [4.0]);
    let dir = std::env::temp_dir().join(format!("acsleuth-gen-ptr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.safetensors");
    params::save(&be, &mut a, &path, None).unwrap();
    let mut b = Generator::new(&be, &cfg, &mut Stream::new(2));
    params::load(&be, &mut b, &path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(b.memory.next_row(&be), 4);
    b.memory.push(&be, &be.upload(&vec![3.0; 2 * d]), 2);
    let q = be.download(&b.memory.queue.value);
    // Rows 0–3 keep the two pushed batches; rows 4–5 take the new one.
    assert_eq!(&q[..2 * d], &vec![1.0; 2 * d][..]);
    assert_eq!(&q[2 * d..4 * d], &vec![2.0; 2 * d][..]);
    assert_eq!(&q[4 * d..6 * d], &vec![3.0; 2 * d][..]);
    assert_eq!(be.download(&b.memory.ptr.value), [6.0]);
}
