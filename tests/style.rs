//! Module III (style-transfer batch correction): the style generator's
//! gradient against finite differences, correction of a toy batch effect,
//! initialisation from Module I, determinism of `correct`, and typed errors
//! on bad inputs.

use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::{Backend, CpuBackend, CpuBuf};
use acsleuth::data::DenseMatrix;
use acsleuth::model::generator::{Generator, GeneratorConfig};
use acsleuth::model::style::{correct, train_style, StyleConfig, StyleGenerator};
use acsleuth::nn::params::{self, Module};
use acsleuth::Error;

mod common;
use common::tiny_generator;


/// `Σ x̂ ⊙ w` in train mode (batch statistics; no dropout, so repeated
/// forwards are the same function of the parameters).
fn loss(be: &CpuBackend, g: &mut StyleGenerator<CpuBackend>, x: &CpuBuf, w: &[f32], batch: usize) -> f64 {
    let y = be.download(g.forward(be, x, batch, true));
    y.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Finite differences on every entry of S and on entries of the first
/// encoder weight and a decoder weight (step 5e-4, as Module I's generator
/// check: BatchNorm over 9 rows is curved enough that 2e-3 costs a few %).
#[test]
fn style_gradient_matches_finite_differences() {
    let be = CpuBackend::new();
    let cfg = tiny_generator(7);
    let (batch, nb) = (9, 3);
    let mut g = StyleGenerator::new(&be, &cfg, nb, &mut Stream::new(5));
    let mut s = vec![0.0f32; nb * cfg.latent];
    rng::fill_uniform(11, 0, -0.5, 0.5, &mut s);
    be.write(&mut g.style.value, 0, &s);
    let batches: Vec<u32> = (0..batch as u32).map(|i| (i * 2) % nb as u32).collect();
    g.set_batches(&be, &batches).unwrap();
    let mut x = be.zeros(batch * cfg.genes);
    be.fill_uniform(&mut x, 17, 0, 0.0, 2.0);
    let w: Vec<f32> = (0..batch * cfg.genes).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect();
    params::zero_grads(&be, &mut g);
    g.forward(&be, &x, batch, true);
    g.backward(&be, &be.upload(&w));

    let mut grads = Vec::new();
    g.visit("", &mut |n, p| {
        if p.trainable {
            grads.push((n.to_string(), be.download(&p.grad)));
        }
    });
    let grad_of = |name: &str| grads.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1.clone();
    let h = 5e-4f32;
    for (name, idx) in [
        ("style", (0..nb * cfg.latent).collect::<Vec<_>>()),
        ("encoder.0.weight", (0..70).step_by(5).collect()),
        ("decoder.1.weight", (0..60).step_by(7).collect()),
    ] {
        let ana = grad_of(name);
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for &i in &idx {
            let set = |g: &mut StyleGenerator<CpuBackend>, delta: f32| {
                g.visit("", &mut |n, p| {
                    if n == name {
                        p.value.0[i] += delta;
                    }
                });
            };
            set(&mut g, h);
            let lp = loss(&be, &mut g, &x, &w, batch);
            set(&mut g, -2.0 * h);
            let lm = loss(&be, &mut g, &x, &w, batch);
            set(&mut g, h);
            let fd = (lp - lm) / (2.0 * h as f64);
            num += (fd - ana[i] as f64).powi(2);
            den += fd.powi(2);
        }
        let rel = (num / den.max(1e-12)).sqrt();
        assert!(den > 1e-6, "{name}: gradient is zero, the check would be vacuous");
        assert!(rel < 1e-2, "{name}: relative gradient error {rel}");
    }
    // S only moves the rows of its own batch: batch 1 has rows 2 and 5 here
    // ((2i) mod 3), and the style gradient of a batch with no rows is 0.
    let mut g2 = StyleGenerator::new(&be, &cfg, 4, &mut Stream::new(5));
    g2.set_batches(&be, &batches).unwrap();
    params::zero_grads(&be, &mut g2);
    g2.forward(&be, &x, batch, true);
    g2.backward(&be, &be.upload(&w));
    let gs = be.download(&g2.style.grad);
    assert!(gs[3 * cfg.latent..].iter().all(|&v| v == 0.0));
    assert!(gs[..3 * cfg.latent].iter().any(|&v| v != 0.0));
}

#[test]
fn tensor_names_follow_pytorch() {
    let be = CpuBackend::new();
    let mut g = StyleGenerator::new(&be, &tiny_generator(7), 3, &mut Stream::new(1));
    let mut names = Vec::new();
    g.visit("", &mut |n, p| names.push((n.to_string(), p.shape.clone())));
    for want in ["encoder.0.weight", "encoder.1.running_var", "encoder.6.fc.0.weight", "encoder.6.fc.4.bias", "decoder.0.fc.4.bias", "decoder.2.running_mean", "decoder.4.weight"] {
        assert!(names.iter().any(|(n, _)| n == want), "missing {want}: {names:?}");
    }
    assert!(!names.iter().any(|(n, _)| n.starts_with("memory")));
    assert_eq!(names.last().unwrap(), &("style".to_string(), vec![3, 6]));
}

/// A toy batch effect: three cell types (blocks of high genes), a target
/// made of noisy copies of reference cells plus a batch-specific gene-wise
/// offset, in two batches. Returns reference, target, kin of each target
/// row, batch of each target row.
fn toy() -> (DenseMatrix, DenseMatrix, Vec<usize>, Vec<u32>) {
    let (genes, n_ref, n_tgt) = (24, 600, 640);
    let mut noise = vec![0.0f32; (n_ref + n_tgt) * genes];
    rng::fill_normal(3, 0, 0.0, 1.0, &mut noise);
    let mut pick = vec![0.0f32; n_tgt];
    rng::fill_uniform(4, 0, 0.0, 1.0, &mut pick);
    let mut offset = vec![0.0f32; 2 * genes];
    rng::fill_uniform(5, 0, 0.3, 1.2, &mut offset);
    let mut reference = DenseMatrix::zeros(n_ref, genes);
    for i in 0..n_ref {
        let t = i % 3;
        for j in 0..genes {
            let mean = if j / 8 == t { 2.0 } else { 0.3 };
            reference.row_mut(i)[j] = (mean + 0.2 * noise[i * genes + j]).max(0.0);
        }
    }
    let mut target = DenseMatrix::zeros(n_tgt, genes);
    let (mut kin, mut batch) = (Vec::new(), Vec::new());
    for i in 0..n_tgt {
        let r = ((pick[i] * n_ref as f32) as usize).min(n_ref - 1);
        let b = (i % 2) as u32;
        for j in 0..genes {
            let v = reference.row(r)[j] + offset[b as usize * genes + j] + 0.05 * noise[(n_ref + i) * genes + j];
            target.row_mut(i)[j] = v.max(0.0);
        }
        kin.push(r);
        batch.push(b);
    }
    (reference, target, kin, batch)
}

fn mean_abs_to_kin(x: &DenseMatrix, reference: &DenseMatrix, kin: &[usize], rows: std::ops::Range<usize>) -> f64 {
    let mut s = 0.0f64;
    let n = rows.len();
    for i in rows {
        s += x.row(i).iter().zip(reference.row(kin[i])).map(|(a, b)| (a - b).abs() as f64).sum::<f64>();
    }
    s / (n * x.cols) as f64
}

fn small_cfg() -> StyleConfig {
    StyleConfig {
        epochs: 120,
        batch_size: 64,
        lr: 1e-3,
        seed: 7,
        init_from_module_i: false,
        hidden_dim: 32,
        latent_dim: 16,
        n_resblocks: 1,
        dropout: 0.0,
        critic_hidden: 32,
        critic_out: 8,
        ..StyleConfig::default()
    }
}

/// Trained on the first 512 target cells' kin pairs, the corrected cells —
/// the 128 held-out ones too — are much closer to their kin than before.
#[test]
fn style_transfer_removes_a_toy_batch_effect() {
    let be = CpuBackend::new();
    let (reference, target, kin, batch) = toy();
    let train_rows: Vec<usize> = (0..512).collect();
    let pair_ref: Vec<usize> = train_rows.iter().map(|&i| kin[i]).collect();
    let cfg = small_cfg();
    let (mut model, log) =
        train_style(&be, None, &reference, &target, &train_rows, &pair_ref, &batch, 2, &cfg).expect("training");
    assert_eq!(log.epochs.len(), cfg.epochs);
    assert_eq!(log.batches_per_epoch, 8);
    assert!(log.epochs.iter().all(|e| e.g_loss.is_finite() && e.d_loss.is_finite()));
    let corrected = correct(&be, &mut model, &target, &batch, 100).expect("correct");
    assert_eq!((corrected.rows, corrected.cols), (target.rows, target.cols));
    let n = target.rows;
    let before_train = mean_abs_to_kin(&target, &reference, &kin, 0..512);
    let after_train = mean_abs_to_kin(&corrected, &reference, &kin, 0..512);
    let before_held = mean_abs_to_kin(&target, &reference, &kin, 512..n);
    let after_held = mean_abs_to_kin(&corrected, &reference, &kin, 512..n);
    eprintln!(
        "mean |x − kin|: trained pairs {before_train:.3} → {after_train:.3}, held out {before_held:.3} → {after_held:.3}; \
         rec {:.3} → {:.3}; {:.2} s",
        log.epochs[0].rec,
        log.epochs.last().unwrap().rec,
        log.seconds
    );
    assert!(after_train < 0.4 * before_train, "trained pairs: {before_train} → {after_train}");
    assert!(after_held < 0.4 * before_held, "held-out cells: {before_held} → {after_held}");
}

/// With `init_from_module_i` and no epochs, the style generator is Module
/// I's autoencoder (S = 0): `correct` equals Module I's eval forward
/// without the memory block, BatchNorm running statistics included.
#[test]
fn init_from_module_i_copies_encoder_decoder_and_statistics() {
    let be = CpuBackend::new();
    let cfg = GeneratorConfig { dropout: 0.1, ..tiny_generator(7) };
    let mut m1 = Generator::new(&be, &cfg, &mut Stream::new(9));
    // Move the BN running statistics away from their initial values.
    for k in 0..3 {
        let mut x = be.zeros(16 * 7);
        be.fill_uniform(&mut x, 30 + k, 0, 0.0, 3.0);
        m1.forward(&be, &x, 16, true);
    }
    let mut xs = vec![0.0f32; 20 * 7];
    rng::fill_uniform(40, 0, 0.0, 2.0, &mut xs);
    let target = DenseMatrix { rows: 20, cols: 7, data: xs.clone() };
    let reference = DenseMatrix { rows: 20, cols: 7, data: xs.clone() };
    let want = be.download(m1.forward(&be, &be.upload(&xs), 20, false));
    let batch_of = vec![0u32; 20];
    let pairs: Vec<usize> = (0..20).collect();
    let scfg = StyleConfig { epochs: 0, ..StyleConfig::default() };
    let (mut model, log) = train_style(&be, Some(&mut m1), &reference, &target, &pairs, &pairs, &batch_of, 1, &scfg).unwrap();
    assert!(log.epochs.is_empty());
    assert_eq!(model.cfg, cfg);
    assert!(model.style_matrix(&be).iter().all(|&v| v == 0.0));
    let got = correct(&be, &mut model, &target, &batch_of, 20).unwrap();
    assert_eq!(got.data, want);

    // Trained a little, it moves away from Module I, and its S with it.
    let scfg = StyleConfig { epochs: 2, batch_size: 8, ..StyleConfig::default() };
    let (mut model, _) = train_style(&be, Some(&mut m1), &reference, &target, &pairs, &pairs, &batch_of, 1, &scfg).unwrap();
    assert!(model.style_matrix(&be).iter().any(|&v| v != 0.0));
    assert_ne!(correct(&be, &mut model, &target, &batch_of, 20).unwrap().data, want);
}

/// `correct` is a pure function of model and rows: the same call twice
/// gives the same bits, and any chunk size gives the same values.
#[test]
fn correct_is_deterministic_and_shaped() {
    let be = CpuBackend::new();
    let (reference, target, kin, batch) = toy();
    let rows: Vec<usize> = (0..64).collect();
    let pair_ref: Vec<usize> = rows.iter().map(|&i| kin[i]).collect();
    let cfg = StyleConfig { epochs: 1, ..small_cfg() };
    let (mut model, _) = train_style(&be, None, &reference, &target, &rows, &pair_ref, &batch, 2, &cfg).unwrap();
    let a = correct(&be, &mut model, &target, &batch, 128).unwrap();
    let b = correct(&be, &mut model, &target, &batch, 128).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!((a.rows, a.cols), (640, 24));
    for chunk in [1, 37, 10_000] {
        let c = correct(&be, &mut model, &target, &batch, chunk).unwrap();
        let d = a.data.iter().zip(&c.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(d < 1e-5, "chunk {chunk}: max difference {d}");
    }
    assert!(a.data.iter().all(|v| v.is_finite() && *v >= 0.0));
    // The batch matters: the same cells read as the other batch differ.
    let flipped: Vec<u32> = batch.iter().map(|b| 1 - b).collect();
    assert_ne!(correct(&be, &mut model, &target, &flipped, 128).unwrap().data, a.data);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let be = CpuBackend::new();
    let (reference, target, kin, batch) = toy();
    let rows: Vec<usize> = (0..64).collect();
    let pair_ref: Vec<usize> = rows.iter().map(|&i| kin[i]).collect();
    let cfg = StyleConfig { epochs: 1, ..small_cfg() };
    let run = |pt: &[usize], pr: &[usize], bo: &[u32], nb: usize, cfg: &StyleConfig| {
        train_style(&be, None, &reference, &target, pt, pr, bo, nb, cfg).map(|_| ()).unwrap_err()
    };
    let msg = |e: Error| e.to_string();

    let mut bad = rows.clone();
    bad[3] = 640;
    assert!(msg(run(&bad, &pair_ref, &batch, 2, &cfg)).contains("target cell 640 out of range"));
    let mut bad = pair_ref.clone();
    bad[5] = 600;
    assert!(msg(run(&rows, &bad, &batch, 2, &cfg)).contains("reference cell 600 out of range"));
    assert!(msg(run(&rows, &pair_ref[..10], &batch, 2, &cfg)).contains("64 target cells but 10"));
    assert!(msg(run(&rows, &pair_ref, &batch[..639], 2, &cfg)).contains("batch_of has 639 entries"));
    assert!(msg(run(&rows, &pair_ref, &batch, 0, &cfg)).contains("n_batches must be at least 1"));
    assert!(msg(run(&rows, &pair_ref, &batch, 1, &cfg)).contains("batch index 1, but n_batches is 1"));
    assert!(msg(run(&rows[..1], &pair_ref[..1], &batch, 2, &cfg)).contains("at least 2 kin pairs"));
    assert!(msg(run(&[], &[], &batch, 2, &cfg)).contains("at least 2 kin pairs"));
    let e = run(&rows, &pair_ref, &batch, 2, &StyleConfig { init_from_module_i: true, ..cfg.clone() });
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = run(&rows, &pair_ref, &batch, 2, &StyleConfig { batch_size: 1, ..cfg.clone() });
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = run(&rows, &pair_ref, &batch, 2, &StyleConfig { lr: f32::NAN, ..cfg.clone() });
    assert!(matches!(e, Error::Config(_)), "{e}");
    let narrow = DenseMatrix::zeros(640, 23);
    let e = train_style(&be, None, &reference, &narrow, &rows, &pair_ref, &batch, 2, &cfg).map(|_| ()).unwrap_err();
    assert!(msg(e).contains("23 genes"));
    let mut m1 = Generator::new(&be, &tiny_generator(20), &mut Stream::new(1));
    let e = train_style(&be, Some(&mut m1), &reference, &target, &rows, &pair_ref, &batch, 2, &cfg).map(|_| ()).unwrap_err();
    assert!(msg(e).contains("20 genes"));

    // Fewer pairs than a batch: one batch of all pairs.
    let (_, log) = train_style(&be, None, &reference, &target, &rows[..5], &pair_ref[..5], &batch, 2, &cfg).unwrap();
    assert_eq!((log.batch_size, log.batches_per_epoch), (5, 1));

    let (mut model, _) = train_style(&be, None, &reference, &target, &rows, &pair_ref, &batch, 2, &cfg).unwrap();
    assert!(msg(correct(&be, &mut model, &target, &batch, 0).unwrap_err()).contains("at least 1 row"));
    assert!(msg(correct(&be, &mut model, &target, &batch[1..], 10).unwrap_err()).contains("batch_of has 639"));
    assert!(msg(correct(&be, &mut model, &narrow, &batch, 10).unwrap_err()).contains("23 genes"));
    let mut bad = batch.clone();
    bad[7] = 2;
    assert!(msg(correct(&be, &mut model, &target, &bad, 10).unwrap_err()).contains("target cell 7 has batch index 2"));
}

/// The CUDA backend's code path (kernels on the emulated device, the
/// row-major → cuBLAS GEMM mapping of the one-hot style products) trains
/// and corrects like the CPU backend: two epochs of 2 batches from the same
/// seed, losses to 1e-3 relative, corrected values and S to 1e-3 of their
/// largest. At the default rate 1e-4: Adam's first steps move every weight
/// by about lr whatever its gradient's size, so weights whose gradient is
/// rounding noise move differently on the two backends by O(lr) (at 1e-3
/// the outputs differ by 2e-3 of their scale after two steps).
#[test]
fn emulated_cuda_backend_matches_cpu() {
    use acsleuth::backend::cuda::emu::emu_backend;
    let (reference, target, kin, batch) = toy();
    let rows: Vec<usize> = (0..128).collect();
    let pair_ref: Vec<usize> = rows.iter().map(|&i| kin[i]).collect();
    let cfg = StyleConfig { epochs: 2, dropout: 0.1, lr: 1e-4, ..small_cfg() };
    fn run<B: Backend>(be: &B, r: &DenseMatrix, t: &DenseMatrix, pt: &[usize], pr: &[usize], b: &[u32], cfg: &StyleConfig) -> (Vec<f64>, Vec<f32>, Vec<f32>) {
        let (mut m, log) = train_style(be, None, r, t, pt, pr, b, 2, cfg).unwrap();
        let out = correct(be, &mut m, t, b, 100).unwrap();
        (log.epochs.iter().flat_map(|e| [e.rec, e.d_loss]).collect(), out.data[..200 * 24].to_vec(), m.style_matrix(be))
    }
    let (l_emu, o_emu, s_emu) = run(&emu_backend(), &reference, &target, &rows, &pair_ref, &batch, &cfg);
    let (l_cpu, o_cpu, s_cpu) = run(&CpuBackend::new(), &reference, &target, &rows, &pair_ref, &batch, &cfg);
    for (a, b) in l_emu.iter().zip(&l_cpu) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-2), "losses {l_emu:?} vs {l_cpu:?}");
    }
    for (what, got, want) in [("corrected", &o_emu, &o_cpu), ("style", &s_emu, &s_cpu)] {
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        let worst = got.iter().zip(want.iter()).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-3 * scale, "{what}: max difference {worst} (scale {scale})");
    }
}
