//! The chunked full-batch scorer against the one-shot training-mode MLP
//! (nn layers, BN over the whole batch): same scores, same gradients.

use super::*;
use crate::backend::{Act, CpuBackend};
use crate::nn::init::Init;
use crate::nn::mlp::Sequential;
use crate::nn::{DenseConfig, Module};

const N: usize = 45;
const G: usize = 12;
const H1: usize = 16;
const H2: usize = 8;

fn deviations(budget: usize) -> DeviationSet {
    let mut v = vec![0.0f32; N * G];
    crate::backend::rng::fill_normal(7, 0, 0.0, 1.0, &mut v);
    // A few cells with larger deviations.
    v[..5 * G].iter_mut().for_each(|x| *x *= 3.0);
    let mut cache = RowCache::new(N, G, budget, &std::env::temp_dir()).unwrap();
    cache.write_rows(0, &v).unwrap();
    let sq_norms = v.chunks(G).map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum()).collect();
    DeviationSet { cache, sq_norms }
}

fn runner<'a>(be: &'a CpuBackend, dev: &'a mut DeviationSet, chunk: usize, budget: usize) -> Runner<'a, CpuBackend> {
    Runner::new(be, dev, H1, H2, chunk, budget, &std::env::temp_dir()).unwrap()
}

fn grads(be: &CpuBackend, m: &mut dyn Module<CpuBackend>) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    m.visit("", &mut |_, p| {
        if p.trainable {
            out.push(be.download(&p.grad));
        }
    });
    out
}

#[test]
fn chunked_full_batch_equals_one_shot_training_mode() {
    let be = CpuBackend::new();
    let mut mlp = ScorerMlp::new(&be, G, H1, H2, 0.2, 0.0, &mut Stream::new(3));
    // The one-shot reference with the same weights (copied in visit order).
    let lr = Act::LeakyRelu(0.2);
    let block = DenseConfig::linear().init(Init::XavierNormal).bn().act(lr);
    let mut rng = Stream::new(4);
    let mut seq = Sequential::new()
        .dense(&be, G, H1, block, &mut rng)
        .dense(&be, H1, H2, block, &mut rng)
        .dense(&be, H2, 1, DenseConfig::linear().init(Init::XavierNormal), &mut rng);
    let mut vals = Vec::new();
    mlp.visit("", &mut |_, p| vals.push(be.download(&p.value)));
    let mut it = vals.into_iter();
    seq.visit("", &mut |_, p| be.write(&mut p.value, 0, &it.next().unwrap()));

    let mut dev = deviations(usize::MAX);
    let all = dev.cache.in_memory().unwrap().to_vec();
    let x = be.upload(&all);
    let logits = be.download(seq.forward(&be, &x, N, true));
    let p_ref: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
    let dp: Vec<f32> = (0..N).map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0).collect();
    let dlogit: Vec<f32> = dp.iter().zip(&p_ref).map(|(&d, &p)| d * p * (1.0 - p)).collect();
    crate::nn::params::zero_grads(&be, &mut seq);
    seq.backward(&be, &be.upload(&dlogit));
    let g_ref = grads(&be, &mut seq);

    for (chunk, budget) in [(N, usize::MAX), (7, usize::MAX), (10, 0)] {
        let mut dev = deviations(budget);
        let mut run = runner(&be, &mut dev, chunk, budget);
        let p = run.forward(&mut mlp, None, false).unwrap();
        for (a, b) in p.iter().zip(&p_ref) {
            assert!((a - b).abs() < 1e-5, "chunk {chunk}: p {a} vs one-shot {b}");
        }
        crate::nn::params::zero_grads(&be, &mut mlp);
        run.backward(&mut mlp, &dp, None).unwrap();
        let g = grads(&be, &mut mlp);
        assert_eq!(g.len(), g_ref.len());
        for (t, (a, b)) in g.iter().zip(&g_ref).enumerate() {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 2e-4 * scale + 1e-6, "chunk {chunk}, tensor {t}: {x} vs one-shot {y}");
            }
        }
    }
    let _ = &mut dev;
}

#[test]
fn training_does_not_depend_on_chunking_or_spilling() {
    let be = CpuBackend::new();
    let cfg = |chunk: usize, budget: usize| ScorerConfig {
        h1: H1,
        h2: H2,
        slope: 0.2,
        dropout: 0.1,
        steps: 5,
        lr: 1e-2,
        beta1: 0.5,
        beta2: 0.999,
        kernel: Kernel::Linear,
        counts: Counts::Soft,
        seed: 11,
        chunk_rows: chunk,
        mem_budget: budget,
        spill_dir: std::env::temp_dir(),
    };
    let mut d1 = deviations(usize::MAX);
    let (_, a) = train_scorer(&be, &mut d1, &cfg(0, usize::MAX)).unwrap();
    let mut d2 = deviations(0);
    let (_, b) = train_scorer(&be, &mut d2, &cfg(8, 0)).unwrap();
    assert!(b.deviations_on_disk && b.activations_on_disk && !a.deviations_on_disk);
    for (x, y) in a.p.iter().zip(&b.p) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    for (x, y) in a.steps.iter().zip(&b.steps) {
        assert!((x.loss - y.loss).abs() <= 1e-6 * x.loss.abs().max(1e-9), "{} vs {}", x.loss, y.loss);
    }
}

#[test]
fn streamed_linear_mmd_equals_the_in_memory_form() {
    let mut dev = deviations(0);
    let p: Vec<f32> = (0..N).map(|i| ((i * 13) % 10) as f32 / 10.0 + 0.05).collect();
    let got = linear_streamed(&mut dev, &p, Counts::Soft, 6).unwrap();
    let mem = deviations(usize::MAX);
    let want = mmd::linear_exact(mmd::Deviations::new(mem.cache.in_memory().unwrap(), N, G).unwrap(), &p, Counts::Soft).unwrap();
    assert!((got.loss - want.loss).abs() <= 1e-9 * want.loss.abs().max(1e-12));
    for (a, b) in got.grad.iter().zip(&want.grad) {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-9));
    }
}

#[test]
fn calls_follow_the_rule() {
    assert_eq!(calls(&[0.2, 0.7, 0.51, 0.5], None).unwrap(), [false, true, true, false]);
    assert_eq!(calls(&[0.2, 0.7, 0.51, 0.1], Some(0.25)).unwrap(), [false, true, false, false]);
}

/// On the CPU backend the scorer's RBF step is `mmd::pairwise` bit for bit
/// (the reference path: CPU scores must not move).
#[test]
fn rbf_step_on_the_cpu_backend_is_the_pairwise_form() {
    let dev = deviations(usize::MAX);
    let all = dev.cache.in_memory().unwrap();
    let p: Vec<f32> = (0..N).map(|i| (i as f32 + 0.5) / N as f32).collect();
    let kernel = mmd::Kernel::Rbf { bandwidths: vec![2.5] };
    let coefs = mmd::rbf_coefs(&kernel).unwrap();
    for counts in [Counts::Soft, Counts::Ratio(0.2)] {
        let got = pairwise_on(&CpuBackend::new(), all, G, &p, counts, &coefs).unwrap();
        let want = mmd::pairwise(mmd::Deviations::new(all, N, G).unwrap(), &p, counts, &kernel, &Default::default()).unwrap();
        assert_eq!(got.loss.to_bits(), want.loss.to_bits());
        assert!(got.grad.iter().zip(&want.grad).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
