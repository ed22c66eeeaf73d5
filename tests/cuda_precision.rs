//! The accuracy cost of `--gemm-precision tf32|bf16`, measured on the
//! emulated CUDA backend, whose cuBLAS stand-in rounds both GEMM operands
//! to the format (to nearest, ties to even) and accumulates in f32, as the
//! tensor-core math modes do:
//! - single GEMMs at the model's shapes (batch 64–128, 3000 genes, hidden
//!   512, latent 256), error relative to an f64 product;
//! - Module I end to end on a small simulated input: scores and AUROC
//!   against the f32 run.
//!
//! Figures: `cargo test --release --test cuda_precision -- --nocapture`.

use acsleuth::backend::cuda::emu::emu_backend;
use acsleuth::backend::cuda::precision::GemmPrecision::{self, Bf16, F32, Tf32};
use acsleuth::backend::{Backend, Gemm, Trans};
use acsleuth::metrics;
use acsleuth::pipeline::detect::{detect_with, DetectOptions};
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};

mod common;
use common::{simulate, Rng};


/// `‖C − C_f64‖_F / ‖C_f64‖_F` of `op(A)·op(B)` on the emulated backend.
fn gemm_error(p: GemmPrecision, g: &Gemm, a: &[f32], b: &[f32]) -> f64 {
    let be = emu_backend().with_gemm_precision(p);
    let (da, db, mut dc) = (be.upload(a), be.upload(b), be.zeros(g.m * g.n));
    be.gemm(g, &da, &db, &mut dc);
    let c = be.download(&dc);
    let at = |x: &[f32], t: Trans, ld: usize, i: usize, j: usize| if t == Trans::N { x[i * ld + j] } else { x[j * ld + i] } as f64;
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..g.m {
        for j in 0..g.n {
            let want: f64 = (0..g.k).map(|l| at(a, g.ta, g.lda, i, l) * at(b, g.tb, g.ldb, l, j)).sum();
            num += (c[i * g.n + j] as f64 - want).powi(2);
            den += want * want;
        }
    }
    (num / den).sqrt()
}

/// The three kinds of GEMM in training, at the authors' widths: the first
/// layer's forward (log-expression × weights, k = 3000 genes), the last
/// decoder layer (activations × weights, k = 512), and a weight gradient
/// (output gradients × inputs, k = batch 128). The error is about the
/// unit roundoff of the operand format (2⁻¹¹ for TF32, 2⁻⁸ for BF16),
/// reduced by cancellation in the sums; f32 is ~1e-7.
#[test]
fn gemm_error_at_the_models_shapes() {
    let mut r = Rng(3);
    let mut expr = |n: usize| -> Vec<f32> {
        (0..n).map(|_| if r.next() < 0.3 { 0.0 } else { (r.next() * 3.0) as f32 }).collect()
    };
    let x = expr(64 * 3000);
    let mut r = Rng(4);
    let mut normal = |n: usize, s: f64| -> Vec<f32> { (0..n).map(|_| (s * r.normal()) as f32).collect() };
    let w1 = normal(512 * 3000, 1.0 / (3000f64).sqrt());
    let h = normal(64 * 512, 1.0).iter().map(|v| v.max(0.2 * v)).collect::<Vec<_>>(); // LeakyReLU outputs
    let w_out = normal(3000 * 512, 1.0 / (512f64).sqrt());
    let dy = normal(128 * 256, 1e-3);
    let xin = normal(128 * 1000, 1.0).iter().map(|v| v.abs()).collect::<Vec<_>>();
    let cases: [(&str, Gemm, &[f32], &[f32]); 3] = [
        ("x·W1ᵀ [64×3000]·[3000×512]", Gemm::new(Trans::N, Trans::T, 64, 512, 3000), &x, &w1),
        ("h·Woutᵀ [64×512]·[512×3000]", Gemm::new(Trans::N, Trans::T, 64, 3000, 512), &h, &w_out),
        ("dYᵀ·X [256×128]·[128×1000]", Gemm::new(Trans::T, Trans::N, 256, 1000, 128), &dy, &xin),
    ];
    for (what, g, a, b) in cases {
        let e: Vec<f64> = [F32, Tf32, Bf16].iter().map(|&p| gemm_error(p, &g, a, b)).collect();
        eprintln!("{what}: relative error f32 {:.1e}, tf32 {:.1e}, bf16 {:.1e}", e[0], e[1], e[2]);
        assert!(e[0] < 5e-6, "{what}: f32 {}", e[0]);
        assert!((3e-5..3e-3).contains(&e[1]), "{what}: tf32 {}", e[1]);
        assert!((3e-4..3e-2).contains(&e[2]), "{what}: bf16 {}", e[2]);
        assert!(e[2] > 4.0 * e[1], "{what}: bf16 should be ~8× tf32");
    }
}


/// Module I with each GEMM precision on the emulated CUDA backend: scores
/// against the f32 run and AUROC against the truth. Reduced widths and
/// epochs (seconds under emulation); the scorer as in tests/detect.rs's
/// accuracy test (100 steps at 1e-3) so the AUROC means something.
#[test]
fn detect_scores_with_tf32_and_bf16_gemms() {
    let (reference, target, truth) = simulate(96, 96, 40, 0.25, 21);
    let cfg = DetectConfig {
        score: ScoreMethod::Paper,
        batch_size: 32,
        mem_size: 64,
        hidden_dim: 64,
        latent_dim: 32,
        critic_hidden: 32,
        prepare_epochs: 6,
        train_epochs: 3,
        scorer_steps: 100,
        scorer_lr: 1e-3,
        seed: 1,
        preprocess: PreprocessMode::Never,
        ..DetectConfig::default()
    };
    let opts = DetectOptions::default();
    let runs: Vec<(GemmPrecision, Vec<f32>, f64)> = [F32, Tf32, Bf16]
        .into_iter()
        .map(|p| {
            let be = emu_backend().with_gemm_precision(p);
            let res = detect_with(&be, &reference, &target, &cfg, &opts).unwrap();
            assert_eq!(res.report.backend, if p == F32 { "cuda-emu".to_string() } else { format!("cuda-emu ({p} GEMMs)") });
            let s: Vec<f64> = res.scores.iter().map(|&v| v as f64).collect();
            let auroc = metrics::auroc(&truth, &s).unwrap();
            (p, res.scores, auroc)
        })
        .collect();
    let (f32_scores, f32_auroc) = (&runs[0].1, runs[0].2);
    eprintln!("f32: AUROC {f32_auroc:.4}");
    for (p, scores, auroc) in &runs[1..] {
        let max_d = scores.iter().zip(f32_scores).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let mean_d = scores.iter().zip(f32_scores).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / scores.len() as f64;
        eprintln!("{p}: AUROC {auroc:.4} (Δ {:+.4}), max |Δscore| {max_d:.2e}, mean |Δscore| {mean_d:.2e}", auroc - f32_auroc);
        assert!(f32_auroc > 0.85, "the f32 run should separate the groups: {f32_auroc}");
        assert!((auroc - f32_auroc).abs() < 0.05, "{p}: AUROC {auroc} vs f32 {f32_auroc}");
        assert!(max_d < 0.2, "{p}: max |Δscore| {max_d}");
    }
}
