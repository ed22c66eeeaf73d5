//! Twin test of `kernels/knn.cu` (`knn_topk_merge`, the k-nearest-neighbour
//! search's fused top-k merge): the kernel runs on the CPU through the
//! emulation harness with the launch geometry and arguments of
//! `backend::cuda::ops_knn`, and is compared with its CPU twin
//! `cpu_knn::knn_topk_merge` and a brute-force sort; then the trait method
//! and the whole `knn_tiled` search run on every device (`test_device!`).
//!
//! The products are an INPUT of the merge, so kernel and twin do the same
//! f32 operations on the same values and must agree bit for bit on any
//! data. With integer coordinates the GEMM is exact too, so the whole
//! search agrees across devices bit for bit, ties included.

use acsleuth::backend::cpu_knn::{self, KNN_NONE};
use acsleuth::backend::cuda::emu::Emu;
use acsleuth::backend::cuda::launch::DevPtr;
use acsleuth::backend::cuda::ops_knn::{self, KnnTile};
use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::data::matrix::DenseMatrix;
use acsleuth::model::novelty::knn::knn_tiled;

mod common;
use common::Lcg;

/// Lists after the tiles: (dist2, index bits), each `[rows, k]`.
type Lists = (Vec<f32>, Vec<u32>);

/// A tile's inputs: products `[rows, keys]` and both squared norms, from
/// query and key coordinates (f64 sums rounded once: exact for integers).
struct Case {
    rows: usize,
    keys: usize,
    prod: Vec<f32>,
    qn: Vec<f32>,
    kn: Vec<f32>,
}

fn case(r: &mut Lcg, rows: usize, keys: usize, dim: usize, ints: bool) -> Case {
    let draw = |r: &mut Lcg, n| if ints { r.ints(n, 2) } else { r.vec(n, -1.0, 1.0) };
    let (q, k) = (draw(r, rows * dim), draw(r, keys * dim));
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32;
    let prod = q.chunks(dim).flat_map(|qi| k.chunks(dim).map(move |kj| dot(qi, kj))).collect();
    let (qn, kn) = (q.chunks(dim).map(|v| dot(v, v)).collect(), k.chunks(dim).map(|v| dot(v, v)).collect());
    Case { rows, keys, prod, qn, kn }
}

fn start(rows: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    (vec![f32::INFINITY; rows * k], vec![f32::from_bits(KNN_NONE); rows * k])
}

/// The tile `[k0, k0 + c)` of the products, row-major `[rows, c]`.
fn tile(c: &Case, k0: usize, n: usize) -> Vec<f32> {
    c.prod.chunks(c.keys).flat_map(|row| row[k0..k0 + n].to_vec()).collect()
}

fn tiles(keys: usize, width: usize) -> Vec<(usize, usize)> {
    (0..keys).step_by(width).map(|k0| (k0, width.min(keys - k0))).collect()
}

/// The kernel, key tiles of `width` in increasing order.
fn kernel(c: &Case, k: usize, width: usize, self_base: Option<usize>) -> Lists {
    let (mut d, mut ix) = start(c.rows, k);
    for (k0, n) in tiles(c.keys, width) {
        let p = tile(c, k0, n);
        let t = KnnTile { rows: c.rows, cols: n, k, key_base: k0, self_base };
        unsafe {
            ops_knn::knn_topk_merge(
                &Emu,
                &t,
                DevPtr::host(&p),
                DevPtr::host(&c.qn),
                DevPtr::host(&c.kn[k0..k0 + n]),
                DevPtr::host_mut(&mut d),
                DevPtr::host_mut(&mut ix),
            )
        }
        .unwrap();
    }
    (d, ix.iter().map(|v| v.to_bits()).collect())
}

/// The CPU twin over the same tiles.
fn twin(c: &Case, k: usize, width: usize, self_base: Option<usize>) -> Lists {
    let (mut d, mut ix) = start(c.rows, k);
    for (k0, n) in tiles(c.keys, width) {
        let p = tile(c, k0, n);
        cpu_knn::knn_topk_merge(c.rows, n, k, k0, self_base, &p, &c.qn, &c.kn[k0..k0 + n], &mut d, &mut ix);
    }
    (d, ix.iter().map(|v| v.to_bits()).collect())
}

/// Brute force: every candidate sorted by (distance, index), the first k
/// (slots beyond the candidates stay empty).
fn brute(c: &Case, k: usize, self_base: Option<usize>) -> Lists {
    let (mut d, mut ix) = (vec![f32::INFINITY; c.rows * k], vec![KNN_NONE; c.rows * k]);
    for i in 0..c.rows {
        let mut all: Vec<(f32, u32)> = (0..c.keys)
            .filter(|&j| self_base.map(|o| o + i) != Some(j))
            .map(|j| ((c.qn[i] + c.kn[j] - 2.0 * c.prod[i * c.keys + j]).max(0.0), j as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (s, (v, j)) in all.into_iter().take(k).enumerate() {
            (d[i * k + s], ix[i * k + s]) = (v, j);
        }
    }
    (d, ix)
}

fn bits(l: &Lists) -> (Vec<u32>, &[u32]) {
    (l.0.iter().map(|v| v.to_bits()).collect(), &l.1)
}

#[test]
fn kernel_twin_and_brute_force_agree_ties_and_self_skip_included() {
    let mut r = Lcg(1);
    // (rows, keys, dim, k, tile width): k = 1 and 30, tiles narrower than
    // k, rows across several 128-thread blocks, a tile of one key.
    for (rows, keys, dim, k, width) in
        [(1, 1, 1, 1, 1), (5, 40, 3, 1, 7), (130, 160, 4, 30, 5), (129, 64, 2, 30, 64), (300, 200, 6, 8, 33), (7, 31, 1, 30, 1)]
    {
        let c = case(&mut r, rows, keys, dim, true);
        // Leave-one-out only where query row i can be key i (rows ≤ keys).
        for self_base in [None, Some(0), Some(keys.saturating_sub(rows) / 2)].into_iter().filter(|o| o.is_none() || rows <= keys) {
            let what = format!("{rows}x{keys}x{dim} k={k} tile {width} self {self_base:?}");
            let want = twin(&c, k, width, self_base);
            let got = kernel(&c, k, width, self_base);
            assert_eq!(bits(&got), bits(&want), "kernel vs twin, {what}");
            assert_eq!(bits(&want), bits(&brute(&c, k, self_base)), "twin vs brute force, {what}");
            if let Some(o) = self_base {
                assert!((0..rows).all(|i| !want.1[i * k..(i + 1) * k].contains(&((o + i) as u32))), "{what}: self kept");
            }
        }
    }
}

#[test]
fn real_valued_data_agree_bit_for_bit() {
    let mut r = Lcg(2);
    for (rows, keys, dim, k, width) in [(200, 300, 16, 10, 128), (33, 50, 8, 30, 20), (64, 9, 5, 1, 4)] {
        let c = case(&mut r, rows, keys, dim, false);
        assert!(c.prod.iter().all(|v| v.is_finite()));
        for self_base in [None, Some(0)].into_iter().filter(|o| o.is_none() || rows <= keys) {
            let want = twin(&c, k, width, self_base);
            assert_eq!(bits(&kernel(&c, k, width, self_base)), bits(&want), "{rows}x{keys} k={k}");
            assert_eq!(bits(&want), bits(&brute(&c, k, self_base)), "{rows}x{keys} k={k} brute force");
        }
    }
}

/// The trait method (buffers, argument order, length checks) and the whole
/// tiled search on one device, against the CPU backend.
fn device_matches_cpu<B: Backend>(be: &B) {
    let cpu = CpuBackend::new();
    let mut r = Lcg(3);
    let c = case(&mut r, 70, 45, 3, true);
    for (k, width, self_base) in [(1, 45, None), (30, 8, Some(0)), (5, 13, None)] {
        let on = |b: &B| {
            let (d0, i0) = start(c.rows, k);
            let (qn, mut d, mut ix) = (b.upload(&c.qn), b.upload(&d0), b.upload(&i0));
            for (k0, n) in tiles(c.keys, width) {
                let (p, kn) = (b.upload(&tile(&c, k0, n)), b.upload(&c.kn[k0..k0 + n]));
                b.knn_topk_merge(c.rows, n, k, k0, self_base, &p, &qn, &kn, &mut d, &mut ix);
            }
            (b.download(&d), b.download(&ix).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        let got = on(be);
        let want = twin(&c, k, width, self_base);
        assert_eq!(bits(&got), bits(&want), "trait method, k={k} tile {width}");
    }
    // The whole search, integer coordinates: exact GEMMs, so bit-identical.
    let q = r.int_matrix(150, 7, 3);
    let keys = DenseMatrix { rows: 150, cols: 7, data: q.data.clone() };
    let other = r.int_matrix(40, 7, 3);
    for (query, self_offset, k, qt, kt) in [(&q, Some(0), 30, 64, 20), (&other, None, 1, 16, 150), (&other, None, 12, 40, 7)] {
        let want = knn_tiled(&cpu, query, &keys, k, self_offset, qt, kt).unwrap();
        let got = knn_tiled(be, query, &keys, k, self_offset, qt, kt).unwrap();
        assert_eq!(got.index, want.index, "knn_tiled k={k} tiles {qt}x{kt}");
        assert_eq!(got.dist.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.dist.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}

test_device!(device_matches_cpu, knn_cpu_backend, knn_emu_backend, knn_gpu_backend);
