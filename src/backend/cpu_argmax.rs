//! Kin pairing's tile operation on the CPU (the twin of `kernels/argmax.cu`,
//! see [`crate::backend::Backend::kin_argmax_merge`]): the running row
//! argmax of `q kᵀ` over one tile of keys.
//!
//! The products are computed block by block — [`QUERY_BLOCK`] query rows ×
//! [`KEY_BLOCK`] keys, one single-threaded GEMM into a per-task scratch of
//! at most 512 KB that stays in cache — and each block's rows are merged
//! into the running best at once. So no `rows × keys` matrix is ever held;
//! rayon runs the query blocks in parallel.
//!
//! Order of candidates, as in the kernel: `(v, j)` beats `(b, i)` when
//! `v > b`, or `v == b` and `j < i`. It is a total order on non-NaN values
//! (NaN products never win), so the result does not depend on the blocking.

use rayon::prelude::*;

use super::cpu::GemmThreading;
use super::cpu_gemm;
use super::{Gemm, Trans};

/// The "no key yet" index (`u32::MAX`): where a search starts, and what a
/// row whose products were all NaN keeps.
pub const KIN_NONE: u32 = u32::MAX;

/// Query rows per rayon task.
pub const QUERY_BLOCK: usize = 256;
/// Keys per GEMM into the scratch (`QUERY_BLOCK × KEY_BLOCK` f32 = 512 KB).
/// 256 × 512 blocks ran the search at 0.75× the CPU time of 64 × 1024 ones
/// (d = 256, examples/kin_bench.rs, one thread): `gemm` packs each key
/// block once per query block, so taller blocks pack less per product.
pub const KEY_BLOCK: usize = 512;

/// Whether candidate `(v, j)` beats the running best `(b, i)` (NaN `v`
/// never does; ties go to the lower key index).
#[inline(always)]
pub fn beats(v: f32, j: u32, b: f32, i: u32) -> bool {
    v > b || (v == b && j < i)
}

/// Largest non-NaN value of `row` (−∞ when there is none), in eight lanes
/// so that the loop compiles to vector max instructions.
#[inline]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            // `v > m ? v : m`: skips NaN v (a NaN never enters the lanes).
            if v > *m {
                *m = v;
            }
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        if v > m {
            m = v;
        }
    }
    m
}

/// Merges one row of products (key `base + j` at position `j`) into the
/// running best `(best, best_idx bits)`.
#[inline]
fn merge_row(row: &[f32], base: u32, best: &mut f32, best_idx: &mut f32) {
    let m = row_max(row);
    if m < *best {
        return;
    }
    // The first position holding the maximum is the row's lowest key index;
    // none when the row was all NaN (m = −∞ then matches nothing).
    if let Some(j) = row.iter().position(|&v| v == m) {
        let j = base + j as u32;
        if beats(m, j, *best, best_idx.to_bits()) {
            *best = m;
            *best_idx = f32::from_bits(j);
        }
    }
}

/// See [`crate::backend::Backend::kin_argmax_merge`]: `q: [rows, dim]`,
/// `k: [keys, dim]`, `best`, `best_idx: [rows]` (indices as f32 bits).
#[allow(clippy::too_many_arguments)]
pub fn kin_argmax_merge(
    rows: usize,
    keys: usize,
    dim: usize,
    key_base: usize,
    q: &[f32],
    k: &[f32],
    best: &mut [f32],
    best_idx: &mut [f32],
) {
    assert!(q.len() >= rows * dim && k.len() >= keys * dim, "kin_argmax_merge: q/k shorter than the tile");
    assert!(best.len() >= rows && best_idx.len() >= rows, "kin_argmax_merge: best/best_idx shorter than rows");
    assert!(key_base + keys < KIN_NONE as usize, "kin_argmax_merge: key indices reach u32::MAX");
    if rows == 0 || keys == 0 {
        return;
    }
    let kb = KEY_BLOCK.min(keys);
    best[..rows]
        .par_chunks_mut(QUERY_BLOCK)
        .zip(best_idx[..rows].par_chunks_mut(QUERY_BLOCK))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; QUERY_BLOCK.min(rows) * kb], // [block rows, block keys]
            |scratch, (t, (b, bi))| {
                let (r0, nr) = (t * QUERY_BLOCK, b.len());
                for k0 in (0..keys).step_by(KEY_BLOCK) {
                    let nk = KEY_BLOCK.min(keys - k0);
                    // scratch[r, c] = q[r0 + r] · k[k0 + c]
                    let g = Gemm {
                        a_off: r0 * dim,
                        b_off: k0 * dim,
                        ..Gemm::new(Trans::N, Trans::T, nr, nk, dim)
                    };
                    let s = &mut scratch[..nr * nk];
                    cpu_gemm::gemm(GemmThreading::Single, &g, q, k, s);
                    let base = (key_base + k0) as u32;
                    for ((row, b), bi) in s.chunks_exact(nk).zip(b.iter_mut()).zip(bi.iter_mut()) {
                        merge_row(row, base, b, bi);
                    }
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(rows: usize) -> (Vec<f32>, Vec<f32>) {
        (vec![f32::NEG_INFINITY; rows], vec![f32::from_bits(KIN_NONE); rows])
    }

    #[test]
    fn ties_go_to_the_lowest_index_and_nan_never_wins() {
        // One query (1, 0); keys: 2, NaN, 5, 5, 1 (first coordinate).
        let q = [1.0, 0.0];
        let k = [2.0, 0.0, f32::NAN, 0.0, 5.0, 1.0, 5.0, -1.0, 1.0, 0.0];
        let (mut b, mut bi) = start(1);
        kin_argmax_merge(1, 5, 2, 10, &q, &k, &mut b, &mut bi);
        assert_eq!((b[0], bi[0].to_bits()), (5.0, 12));
        // A later tile with an equal product and a higher index loses; a
        // lower index (tiles out of order) wins.
        kin_argmax_merge(1, 1, 2, 20, &q, &k[4..6], &mut b, &mut bi);
        assert_eq!(bi[0].to_bits(), 12);
        kin_argmax_merge(1, 1, 2, 3, &q, &k[4..6], &mut b, &mut bi);
        assert_eq!(bi[0].to_bits(), 3);
        // All-NaN products leave the start state; −∞ products are real candidates.
        let (mut b, mut bi) = start(1);
        kin_argmax_merge(1, 1, 2, 0, &q, &k[2..4], &mut b, &mut bi);
        assert_eq!(bi[0].to_bits(), KIN_NONE);
        kin_argmax_merge(1, 1, 2, 7, &[f32::NEG_INFINITY, 0.0], &[1.0, 0.0], &mut b, &mut bi);
        assert_eq!((b[0], bi[0].to_bits()), (f32::NEG_INFINITY, 7));
    }

    #[test]
    fn row_max_skips_nan_in_every_lane_position() {
        for n in [1, 7, 8, 9, 17] {
            for p in 0..n {
                let mut v: Vec<f32> = (0..n).map(|i| i as f32).collect();
                v[p] = f32::NAN;
                let want = if p == n - 1 { (n as f32 - 2.0).max(f32::NEG_INFINITY) } else { n as f32 - 1.0 };
                let want = if n == 1 { f32::NEG_INFINITY } else { want };
                assert_eq!(row_max(&v), want, "n {n} nan at {p}");
            }
        }
    }
}
