//! Twin test of `kernels/argmax.cu` (`kin_argmax`, kin pairing's fused
//! GEMM + row argmax): the kernel runs on the CPU through the emulation
//! harness with the launch geometry and arguments of
//! `backend::cuda::ops_argmax` (and once through the whole `EmuBackend`),
//! and is compared with its CPU twin `cpu_argmax::kin_argmax_merge` and a
//! brute-force f64 search. Shapes include sizes that are not multiples of
//! the block's 64 rows, 64 keys or 32 coordinates.
//!
//! Tolerances: with integer-valued embeddings every product is exact in f32
//! whatever the summation order, so kernel, twin and brute force agree bit
//! for bit, ties included. With real values the f32 products differ by
//! rounding (~dim·2⁻²⁴ relative), so the chosen keys must agree wherever the
//! best product leads the runner-up by more than that, and elsewhere the
//! chosen key's exact product must be within it of the maximum.

use acsleuth::backend::cpu_argmax::{self, KIN_NONE};
use acsleuth::backend::cuda::emu::{self, Emu};
use acsleuth::backend::cuda::launch::DevPtr;
use acsleuth::backend::cuda::ops_argmax;
use acsleuth::backend::{Backend, CpuBackend};

mod common;
use common::Lcg;

const EMU: Emu = Emu;

/// Best (value, index bits) per row after the tiles, each `(key_base, keys)`.
type Best = (Vec<f32>, Vec<u32>);

fn start(rows: usize) -> (Vec<f32>, Vec<f32>) {
    (vec![f32::NEG_INFINITY; rows], vec![f32::from_bits(KIN_NONE); rows])
}

fn bits(idx: &[f32]) -> Vec<u32> {
    idx.iter().map(|v| v.to_bits()).collect()
}

/// The kernel over key tiles `tiles` (`(first key, count)`) of `k`.
fn kernel(rows: usize, dim: usize, q: &[f32], k: &[f32], tiles: &[(usize, usize)]) -> Best {
    let (mut best, mut idx) = start(rows);
    for &(k0, nk) in tiles {
        let kt = &k[k0 * dim..(k0 + nk) * dim];
        unsafe {
            ops_argmax::kin_argmax(
                &EMU,
                rows,
                nk,
                dim,
                k0,
                DevPtr::host(q),
                DevPtr::host(kt),
                DevPtr::host_mut(&mut best),
                DevPtr::host_mut(&mut idx),
            )
        }
        .unwrap();
    }
    (best, bits(&idx))
}

/// The CPU twin over the same tiles.
fn twin(rows: usize, dim: usize, q: &[f32], k: &[f32], tiles: &[(usize, usize)]) -> Best {
    let (mut best, mut idx) = start(rows);
    for &(k0, nk) in tiles {
        cpu_argmax::kin_argmax_merge(rows, nk, dim, k0, q, &k[k0 * dim..(k0 + nk) * dim], &mut best, &mut idx);
    }
    (best, bits(&idx))
}

/// Exact products in f64 of row `i` with every key.
fn products(dim: usize, q: &[f32], k: &[f32], i: usize) -> Vec<f64> {
    let qi = &q[i * dim..(i + 1) * dim];
    k.chunks_exact(dim).map(|kj| qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum()).collect()
}

fn one_tile(keys: usize) -> Vec<(usize, usize)> {
    vec![(0, keys)]
}

#[test]
fn integer_embeddings_agree_bit_for_bit_ties_included() {
    let mut r = Lcg(1);
    for (rows, keys, dim) in [(1, 1, 1), (3, 70, 1), (63, 65, 33), (64, 64, 32), (65, 129, 5), (130, 200, 70)] {
        // Values in [-1, 1]: many equal products, so ties are common.
        let q = r.ints(rows * dim, 1);
        let k = r.ints(keys * dim, 1);
        let want = twin(rows, dim, &q, &k, &one_tile(keys));
        let got = kernel(rows, dim, &q, &k, &one_tile(keys));
        assert_eq!(got, want, "{rows}x{keys}x{dim}");
        // Brute force: maximum, lowest index among equals.
        for i in 0..rows {
            let p = products(dim, &q, &k, i);
            let m = p.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let j = p.iter().position(|&v| v == m).unwrap();
            assert_eq!((want.0[i] as f64, want.1[i]), (m, j as u32), "{rows}x{keys}x{dim} row {i}");
        }
    }
}

#[test]
fn tiles_in_any_order_give_the_same_result() {
    let mut r = Lcg(2);
    let (rows, keys, dim) = (70, 150, 9);
    let q = r.ints(rows * dim, 1);
    let k = r.ints(keys * dim, 1);
    let whole = twin(rows, dim, &q, &k, &one_tile(keys));
    for tiles in [vec![(0, 64), (64, 64), (128, 22)], vec![(100, 50), (0, 37), (37, 63)], vec![(149, 1), (0, 149)]] {
        assert_eq!(kernel(rows, dim, &q, &k, &tiles), whole, "kernel, tiles {tiles:?}");
        assert_eq!(twin(rows, dim, &q, &k, &tiles), whole, "twin, tiles {tiles:?}");
    }
}

#[test]
fn real_embeddings_pick_the_same_key_up_to_rounding() {
    let mut r = Lcg(3);
    for (rows, keys, dim) in [(33, 31, 40), (100, 257, 64), (129, 70, 257)] {
        let q = r.vec(rows * dim, -1.0, 1.0);
        let k = r.vec(keys * dim, -1.0, 1.0);
        let tiles = [(0, keys / 2), (keys / 2, keys - keys / 2)];
        let got = kernel(rows, dim, &q, &k, &tiles);
        let want = twin(rows, dim, &q, &k, &tiles);
        for i in 0..rows {
            let p = products(dim, &q, &k, i);
            let scale: f64 = (0..dim).map(|c| (q[i * dim + c] as f64).abs()).sum::<f64>();
            let tol = 4.0 * dim as f64 * f32::EPSILON as f64 * scale;
            let mut sorted = p.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            for (what, b) in [("kernel", &got), ("twin", &want)] {
                let j = b.1[i] as usize;
                assert!((b.0[i] as f64 - p[j]).abs() <= tol, "{what} row {i}: reported {} vs {}", b.0[i], p[j]);
                assert!(sorted[0] - p[j] <= tol, "{what} row {i}: key {j} ({}) is not the maximum {}", p[j], sorted[0]);
            }
            if sorted[0] - sorted[1] > 2.0 * tol {
                assert_eq!(got.1[i], want.1[i], "row {i}: clear maximum, different keys");
            }
        }
    }
}

#[test]
fn nan_products_never_win() {
    let (rows, keys, dim) = (66, 67, 3);
    let mut r = Lcg(4);
    let mut q = r.ints(rows * dim, 2);
    let mut k = r.ints(keys * dim, 2);
    // Key 5 has a NaN coordinate: it is nobody's kin. Query row 65 is all
    // NaN: no key wins, it keeps the sentinel.
    k[5 * dim + 1] = f32::NAN;
    q[65 * dim..].fill(f32::NAN);
    let got = kernel(rows, dim, &q, &k, &one_tile(keys));
    let want = twin(rows, dim, &q, &k, &one_tile(keys));
    assert_eq!(bits(&got.0), bits(&want.0));
    assert_eq!(got.1, want.1);
    assert!(got.1[..65].iter().all(|&j| j != 5 && j != KIN_NONE));
    assert_eq!(got.1[65], KIN_NONE);
    assert_eq!(got.0[65], f32::NEG_INFINITY);
}

/// The trait method on the emulated CUDA backend (buffers, argument order,
/// length checks of `KernelBackend`) against the CPU backend.
#[test]
fn emu_backend_matches_cpu_backend() {
    let (rows, keys, dim) = (77, 90, 20);
    let mut r = Lcg(5);
    let q = r.ints(rows * dim, 3);
    let k = r.ints(keys * dim, 3);
    fn run<B: Backend>(be: &B, rows: usize, keys: usize, dim: usize, q: &[f32], k: &[f32]) -> (Vec<f32>, Vec<u32>) {
        let (b0, i0) = start(rows);
        let (qb, mut best, mut idx) = (be.upload(q), be.upload(&b0), be.upload(&i0));
        // Two tiles, the second first: key_base carries the global index.
        let split = keys / 3;
        let (k1, k2) = (be.upload(&k[..split * dim]), be.upload(&k[split * dim..]));
        be.kin_argmax_merge(rows, keys - split, dim, split, &qb, &k2, &mut best, &mut idx);
        be.kin_argmax_merge(rows, split, dim, 0, &qb, &k1, &mut best, &mut idx);
        (be.download(&best), bits(&be.download(&idx)))
    }
    let got = run(&emu::emu_backend(), rows, keys, dim, &q, &k);
    let want = run(&CpuBackend::new(), rows, keys, dim, &q, &k);
    assert_eq!(got, want);
    assert!(want.1.iter().all(|&j| (j as usize) < keys));
}
