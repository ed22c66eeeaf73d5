//! Twin test of kernels/desc.cu (DESC soft assignment and KL backward):
//! the kernels run on the CPU emulation, through the CUDA backend's own
//! code path (`EmuBackend`: buffer checks, ops_desc.rs geometry, the f64
//! row-loss scratch), against the CPU twin (`CpuBackend` → cpu_desc.rs) on
//! shapes that are not multiples of the warp or block size.
//!
//! Tolerances: distances and the centroid-gradient sums run in the same
//! order as the twin except for the warp tree over `dim` (1e-5 relative);
//! `log1pf`/`expf`/`logf` of the C library may differ from Rust's by an ulp
//! and the row sums of the softmax are tree-ordered: q, g, dz, dmu to 1e-4
//! of the largest value, the loss to 1e-5 relative.

use acsleuth::backend::cuda::emu::emu_backend;
use acsleuth::backend::{Backend, CpuBackend};

mod common;
use common::{close, lcg};

/// Rows normalised to sum to 1, some entries exactly 0 (the `p = 0` terms).
fn target(seed: &mut u64, rows: usize, k: usize) -> Vec<f32> {
    let mut p = lcg(seed, rows * k, -0.3, 1.0);
    for r in p.chunks_mut(k.max(1)) {
        r.iter_mut().for_each(|v| *v = v.max(0.0));
        let s: f32 = r.iter().sum();
        if s > 0.0 {
            r.iter_mut().for_each(|v| *v /= s);
        }
    }
    p
}

#[test]
fn desc_kernels_match_the_cpu_twin() {
    let emu = emu_backend();
    let cpu = CpuBackend::new();
    let mut seed = 11u64;
    // (rows, k, dim): single row/centroid, k > 32 (several warps and block
    // strides), dim not a multiple of 32, dim > 256 (threads loop).
    for &(rows, k, dim) in &[(1, 1, 1), (3, 2, 5), (17, 3, 33), (64, 7, 256), (5, 40, 31), (9, 300, 7), (2, 4, 300)] {
        for &nu in &[1.0f32, 2.5] {
            let what = format!("rows {rows} k {k} dim {dim} nu {nu}");
            let z = lcg(&mut seed, rows * dim, -2.0, 2.0);
            let mu = lcg(&mut seed, k * dim, -2.0, 2.0);
            let p = target(&mut seed, rows, k);
            let dmu0 = lcg(&mut seed, k * dim, -0.1, 0.1);
            let scale = 1.0 / rows as f32;

            let on_cpu = || {
                let (zb, mb, pb) = (cpu.upload(&z), cpu.upload(&mu), cpu.upload(&p));
                let (mut d, mut q, mut g, mut dz) = (cpu.zeros(rows * k), cpu.zeros(rows * k), cpu.zeros(rows * k), cpu.zeros(rows * dim));
                let mut dmu = cpu.upload(&dmu0);
                cpu.desc_soft_assign(rows, k, dim, nu, &zb, &mb, &mut d, &mut q);
                let loss = cpu.desc_kl_grad(rows, k, dim, nu, scale, &zb, &mb, &pb, &d, &mut g, &mut dz);
                cpu.desc_centroid_grad(rows, k, dim, &zb, &mb, &g, &mut dmu);
                (cpu.download(&d), cpu.download(&q), cpu.download(&g), cpu.download(&dz), cpu.download(&dmu), loss)
            };
            let on_emu = || {
                let (zb, mb, pb) = (emu.upload(&z), emu.upload(&mu), emu.upload(&p));
                let (mut d, mut q, mut g, mut dz) = (emu.zeros(rows * k), emu.zeros(rows * k), emu.zeros(rows * k), emu.zeros(rows * dim));
                let mut dmu = emu.upload(&dmu0);
                emu.desc_soft_assign(rows, k, dim, nu, &zb, &mb, &mut d, &mut q);
                let loss = emu.desc_kl_grad(rows, k, dim, nu, scale, &zb, &mb, &pb, &d, &mut g, &mut dz);
                emu.desc_centroid_grad(rows, k, dim, &zb, &mb, &g, &mut dmu);
                (emu.download(&d), emu.download(&q), emu.download(&g), emu.download(&dz), emu.download(&dmu), loss)
            };
            let want = on_cpu();
            let got = on_emu();
            close(&format!("{what} dist"), &got.0, &want.0, 0.0, 1e-5);
            close(&format!("{what} q"), &got.1, &want.1, 0.0, 1e-4);
            close(&format!("{what} g"), &got.2, &want.2, 0.0, 1e-4);
            close(&format!("{what} dz"), &got.3, &want.3, 0.0, 1e-4);
            close(&format!("{what} dmu"), &got.4, &want.4, 0.0, 1e-4);
            assert!((got.5 - want.5).abs() <= 1e-5 * want.5.abs().max(1e-6), "{what} loss: {} vs {}", got.5, want.5);
            for r in got.1.chunks(k) {
                let s: f32 = r.iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "{what}: a row of q sums to {s}");
            }
        }
    }
}

/// A cell far from every centroid: q stays a distribution (log-space
/// softmax), no NaN anywhere.
#[test]
fn far_cells_stay_finite() {
    let emu = emu_backend();
    let (rows, k, dim) = (2, 3, 4);
    let z = vec![1e18, -1e18, 1e18, 0.0, 0.0, 0.0, 0.0, 0.0];
    let mu = vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, -3.0, 2.0, 0.5, 0.0];
    let p = vec![0.5, 0.5, 0.0, 1.0, 0.0, 0.0];
    let (zb, mb, pb) = (emu.upload(&z), emu.upload(&mu), emu.upload(&p));
    let (mut d, mut q, mut g, mut dz) = (emu.zeros(rows * k), emu.zeros(rows * k), emu.zeros(rows * k), emu.zeros(rows * dim));
    emu.desc_soft_assign(rows, k, dim, 1.0, &zb, &mb, &mut d, &mut q);
    let loss = emu.desc_kl_grad(rows, k, dim, 1.0, 0.5, &zb, &mb, &pb, &d, &mut g, &mut dz);
    let q = emu.download(&q);
    assert!(q.iter().all(|v| v.is_finite()) && loss.is_finite(), "q {q:?} loss {loss}");
    assert!((q[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(emu.download(&g).iter().all(|v| v.is_finite()));
}

/// `subtype()` end to end (fusion block, DESC steps, AdamW) on the CUDA
/// backend's code path with emulated kernels, against the CPU backend:
/// same seeds, so the same dropout masks and shuffles; the results differ
/// only by f32 summation order (soft assignments to 1e-3).
#[test]
fn subtype_on_the_kernel_backend_matches_the_cpu() {
    use acsleuth::backend::rng;
    use acsleuth::data::matrix::DenseMatrix;
    use acsleuth::model::subtype::{subtype, SubtypeConfig};
    let (n, d) = (24, 8);
    let mut z = DenseMatrix::zeros(n, d);
    let mut zeta = DenseMatrix::zeros(n, d);
    rng::fill_normal(1, 0, 0.0, 0.5, &mut z.data);
    rng::fill_normal(2, 0, 0.0, 1.0, &mut zeta.data);
    for i in 0..n {
        z.data[i * d + i % 2] += 3.0;
    }
    let cfg = SubtypeConfig {
        n_subtypes: Some(2),
        layers: 1,
        ffn: 16,
        batch_size: 10,
        max_epochs: 2,
        tol: 0.0,
        lr: 1e-3,
        restarts: 3,
        ..SubtypeConfig::default()
    };
    let want = subtype(&CpuBackend::new(), &z, &zeta, &cfg).unwrap();
    let got = subtype(&emu_backend(), &z, &zeta, &cfg).unwrap();
    assert_eq!(got.epochs, want.epochs);
    close("z*", &got.z_star.data, &want.z_star.data, 0.0, 1e-3);
    close("q", &got.q.data, &want.q.data, 0.0, 1e-3);
    assert_eq!(got.labels, want.labels);
    for (a, b) in got.log.iter().zip(&want.log) {
        assert!((a.kl - b.kl).abs() <= 1e-3 * b.kl.abs().max(1e-6), "kl {} vs {}", a.kl, b.kl);
    }
}
