//! The CUDA backend's code path (`KernelBackend`: buffer handling, launch
//! orchestration, the row-major → cuBLAS GEMM mapping) on the emulated
//! device, against the CPU backend through the `Backend` trait: memory
//! operations, GEMMs with every transpose / offset / padded leading
//! dimension / batch, and three iterations of Module I's production
//! trainer (generator and critic, `tests/common/module_i.rs`), and the
//! scorer's RBF step (`Backend::mmd_pairwise_sums`).
//!
//! Tolerances: memory operations are exact; GEMMs accumulate in another
//! order (f32): 1e-5 relative to the largest |C|; the training iterations
//! chain ~100 GEMMs, BatchNorms and the gradient penalty: losses to 1e-4
//! relative (1e-2 absolute floor), outputs to 1e-3 of the largest value.

use acsleuth::backend::cuda::emu::emu_backend;
use acsleuth::backend::{Backend, Batch, CpuBackend, Gemm, Trans};
use acsleuth::model::scorer::{train_scorer, DeviationSet, RowCache, ScorerConfig};
use acsleuth::pipeline::{DetectConfig, Kernel};

mod common;
use common::{close, close64, lcg, module_i_steps};

#[test]
fn memory_operations_are_exact() {
    let emu = emu_backend();
    let data = lcg(&mut 1, 37, -1.0, 1.0);
    let mut b = emu.upload(&data);
    assert_eq!(emu.len(&b), 37);
    assert_eq!(emu.download(&b), data);
    emu.write(&mut b, 5, &[1.0, 2.0, 3.0]);
    let mut want = data.clone();
    want[5..8].copy_from_slice(&[1.0, 2.0, 3.0]);
    assert_eq!(emu.download(&b), want);
    let mut c = emu.zeros(40);
    assert_eq!(emu.download(&c), vec![0.0; 40]);
    emu.copy(&b, 4, &mut c, 10, 20);
    assert_eq!(&emu.download(&c)[10..30], &want[4..24]);
    emu.fill(&mut c, -0.5);
    assert_eq!(emu.download(&c), vec![-0.5; 40]);
    let e = emu.zeros(0);
    assert_eq!(emu.len(&e), 0);
    assert!(emu.download(&e).is_empty());
}

#[test]
fn gemm_mapping_matches_cpu() {
    let emu = emu_backend();
    let cpu = CpuBackend::new();
    let mut seed = 2;
    for ta in [Trans::N, Trans::T] {
        for tb in [Trans::N, Trans::T] {
            for (m, n, k) in [(1, 1, 1), (7, 5, 3), (33, 17, 65), (4, 9, 0)] {
                for (alpha, beta, pad, off) in [(1.0, 0.0, 0, 0), (0.5, 1.5, 3, 2)] {
                    let mut g = Gemm::new(ta, tb, m, n, k).alpha(alpha).beta(beta);
                    g.lda += pad;
                    g.ldb += pad;
                    g.ldc += pad;
                    g.a_off = off;
                    g.b_off = off + 1;
                    g.c_off = off;
                    let (ea, eb, ec) = g.extents();
                    let a = lcg(&mut seed, ea + 3, -1.0, 1.0);
                    let b = lcg(&mut seed, eb + 3, -1.0, 1.0);
                    let c0 = lcg(&mut seed, ec + 3, -1.0, 1.0);
                    let mut c_emu = emu.upload(&c0);
                    emu.gemm(&g, &emu.upload(&a), &emu.upload(&b), &mut c_emu);
                    let mut c_cpu = cpu.upload(&c0);
                    cpu.gemm(&g, &cpu.upload(&a), &cpu.upload(&b), &mut c_cpu);
                    close(&format!("gemm {ta:?}{tb:?} {m}x{n}x{k} α={alpha} β={beta} pad={pad}"), &emu.download(&c_emu), &c_cpu.0, 0.0, 1e-5);
                }
            }
            // Batched: 3 matrices, strides larger than one matrix.
            let (m, n, k) = (6, 5, 4);
            let g = Gemm::new(ta, tb, m, n, k).beta(0.5);
            let batch = Batch { count: 3, stride_a: m * k + 2, stride_b: k * n + 1, stride_c: m * n + 3 };
            let a = lcg(&mut seed, 3 * batch.stride_a, -1.0, 1.0);
            let b = lcg(&mut seed, 3 * batch.stride_b, -1.0, 1.0);
            let c0 = lcg(&mut seed, 3 * batch.stride_c, -1.0, 1.0);
            let mut c_emu = emu.upload(&c0);
            emu.gemm_batched(&g, &batch, &emu.upload(&a), &emu.upload(&b), &mut c_emu);
            let mut c_cpu = cpu.upload(&c0);
            cpu.gemm_batched(&g, &batch, &cpu.upload(&a), &cpu.upload(&b), &mut c_cpu);
            close(&format!("gemm_batched {ta:?}{tb:?}"), &emu.download(&c_emu), &c_cpu.0, 0.0, 1e-5);
        }
    }
}

/// Three iterations of Module I's production trainer on `be` against the
/// CPU backend: losses to 1e-4 relative (1e-2 absolute floor) on the
/// emulated device, 1e-3 on a GPU (FMA contraction, TF32-free cuBLAS
/// order), outputs to 1e-3.
fn module_i_steps_match_cpu<B: Backend>(be: &B) {
    let gpu = be.name() == "cuda";
    let (batch, genes) = if gpu { (64, 300) } else { (16, 20) };
    let x: Vec<f32> = lcg(&mut 3, batch * genes, -1.0, 1.0).iter().map(|v| v.abs() * 3.0).collect();
    let (loss, out) = module_i_steps(be, &x, batch, genes);
    let (loss_cpu, out_cpu) = module_i_steps(&CpuBackend::new(), &x, batch, genes);
    let worst = loss.iter().zip(&loss_cpu).map(|(a, b)| (a - b).abs() / b.abs().max(1e-2)).fold(0.0, f64::max);
    let tol = if gpu { 1e-3 } else { 1e-4 };
    assert!(worst <= tol, "losses {loss:?} vs {loss_cpu:?} (worst {worst:.1e})");
    close("generator output", &out, &out_cpu, if gpu { 1e-3 } else { 0.0 }, 1e-3);
}

test_device!(module_i_steps_match_cpu, module_i_steps_cpu, module_i_steps_emu, module_i_steps_cuda);

/// The scorer's RBF step on the backend: `mmd_pairwise_sums` (the
/// `mmd_pairwise` kernels off the CPU) against the CPU twin, then three RBF
/// scorer steps end to end. Gram entries are f32 dot products accumulated
/// in another order: u, v to 1e-5 of the largest, scores to 1e-3.
fn mmd_rbf_step_matches_cpu<B: Backend>(be: &B) {
    let (n, genes) = (70, 33);
    let delta = lcg(&mut 5, n * genes, -1.0, 1.0);
    let a: Vec<f64> = lcg(&mut 6, n, 0.0, 1.0).iter().map(|&x| x as f64).collect();
    let b: Vec<f64> = a.iter().map(|x| 1.0 - x).collect();
    let cpu = CpuBackend::new();
    for coefs in [vec![], vec![-0.5 / 9.0], vec![-0.5, -0.1, -0.02]] {
        let sums = |be: &dyn Fn(&mut [f64], &mut [f64])| {
            let (mut u, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
            be(&mut u, &mut v);
            (u, v)
        };
        let (u, v) = sums(&|u, v| be.mmd_pairwise_sums(&delta, genes, &a, &b, &coefs, u, v));
        let (cu, cv) = sums(&|u, v| cpu.mmd_pairwise_sums(&delta, genes, &a, &b, &coefs, u, v));
        close64(&format!("u {coefs:?}"), &u, &cu, 1e-5);
        close64(&format!("v {coefs:?}"), &v, &cv, 1e-5);
    }
    let scores = |be: &dyn Fn(&mut DeviationSet, &ScorerConfig) -> Vec<f32>| {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = RowCache::new(n, genes, usize::MAX, tmp.path()).unwrap();
        cache.write_rows(0, &delta).unwrap();
        let sq_norms = delta.chunks(genes).map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum()).collect();
        let mut dev = DeviationSet { cache, sq_norms };
        let det = DetectConfig { kernel: Kernel::Rbf, scorer_steps: 3, hidden_dim: 32, latent_dim: 16, seed: 4, ..DetectConfig::default() };
        be(&mut dev, &det.scorer_config(tmp.path().to_path_buf()))
    };
    let p = scores(&|dev, cfg| train_scorer(be, dev, cfg).unwrap().1.p);
    let p_cpu = scores(&|dev, cfg| train_scorer(&cpu, dev, cfg).unwrap().1.p);
    close("RBF scores", &p, &p_cpu, 1e-3, 1e-3);
}

test_device!(mmd_rbf_step_matches_cpu, mmd_rbf_step_cpu, mmd_rbf_step_emu, mmd_rbf_step_cuda);
