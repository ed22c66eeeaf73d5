//! Kin pairing on a real CUDA device (`CudaBackend`, the `kin_argmax`
//! kernel of kernels/argmax.cu) against the CPU backend. Returns at once
//! where no CUDA driver or device is found; tests/cuda_emu_argmax.rs and
//! tests/kin.rs run the same kernel and host code under emulation.
//!
//! Integer-valued embeddings make every product exact in f32, so the GPU
//! (which contracts the dot products into FMAs) must agree bit for bit,
//! ties included; real-valued ones are checked up to rounding.
//!
//! Timing: `cargo bench --bench gpu` (kin pairing at 10⁵ × 10⁴ × 256).

use acsleuth::backend::cuda::CudaBackend;
use acsleuth::backend::CpuBackend;
use acsleuth::data::DenseMatrix;
use acsleuth::model::kin::{kin_pairs, kin_pairs_tiled};

mod common;
use common::{cuda_backend, Lcg};

fn gpu() -> Option<CudaBackend> {
    cuda_backend()
}

fn matrix(seed: u64, rows: usize, cols: usize, ints: bool) -> DenseMatrix {
    let mut r = Lcg(seed);
    if ints { r.int_matrix(rows, cols, 2) } else { r.dense(rows, cols) }
}

#[test]
fn gpu_kin_pairs_match_the_cpu() {
    let Some(be) = gpu() else { return };
    let cpu = CpuBackend::new();
    for (nq, nk, d) in [(1, 1, 1), (65, 63, 33), (3000, 2049, 64), (10_000, 5000, 256)] {
        let (q, k) = (matrix(1, nq, d, true), matrix(2, nk, d, true));
        let want = kin_pairs(&cpu, &q, &k).unwrap();
        assert_eq!(kin_pairs(&be, &q, &k).unwrap(), want, "ints {nq}x{nk}x{d}");
        assert_eq!(kin_pairs_tiled(&be, &q, &k, 1000, 700).unwrap(), want, "ints tiled {nq}x{nk}x{d}");
        let (q, k) = (matrix(3, nq, d, false), matrix(4, nk, d, false));
        let (got, want) = (kin_pairs(&be, &q, &k).unwrap(), kin_pairs(&cpu, &q, &k).unwrap());
        let tol = 4.0 * d as f32 * f32::EPSILON * d as f32;
        let mut same = 0;
        for i in 0..nq {
            assert!((got.score[i] - want.score[i]).abs() <= tol, "row {i}: {} vs {}", got.score[i], want.score[i]);
            same += (got.kin[i] == want.kin[i]) as usize;
        }
        // Different keys only where two products are within rounding.
        assert!(same as f64 >= 0.99 * nq as f64, "{same} of {nq} rows agree");
    }
}
