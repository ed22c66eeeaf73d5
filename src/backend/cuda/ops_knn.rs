//! Host orchestration of `kernels/knn.cu` (exact k-nearest neighbours):
//! the launch geometry and arguments of `knn_topk_merge`, written once
//! against [`Launcher`] so the CUDA backend and the emulation twin test
//! (tests/cuda_emu_knn.rs) run the same code. Safety: as [`super::ops`]
//! (live device addresses covering the stated shapes, no aliasing).
#![allow(clippy::missing_safety_doc)]

use super::launch::{stub, DevPtr, Dims, LaunchError, Launcher};

/// Threads (query rows) per block.
pub const KNN_THREADS: u32 = 128;

/// The shape of one `knn_topk_merge` launch (see
/// `Backend::knn_topk_merge`): `rows` query rows, `cols` keys of the tile
/// starting at global key `key_base`, lists of `k`, leave-one-out base.
#[derive(Clone, Copy, Debug)]
pub struct KnnTile {
    pub rows: usize,
    pub cols: usize,
    pub k: usize,
    pub key_base: usize,
    pub self_base: Option<usize>,
}

/// `knn_topk_merge` over `rows` query rows: a thread per row, block 128,
/// grid ⌈rows/128⌉, no shared memory.
pub fn knn_topk_dims(rows: usize) -> Dims {
    let grid = u32::try_from((rows as u64).div_ceil(KNN_THREADS as u64).max(1)).expect("grid too large for one launch");
    Dims { grid: [grid, 1, 1], block: [KNN_THREADS, 1, 1], shared: 0 }
}

/// One launch of `knn_topk_merge`: `prod: [rows, cols]`, `q_norms: [rows]`,
/// `k_norms: [cols]`, `dist2: [rows, k]` f32, `index: [rows, k]` u32 (an
/// f32 buffer holding index bits). No launch when there is no work.
pub unsafe fn knn_topk_merge(
    l: &dyn Launcher,
    t: &KnnTile,
    prod: DevPtr,
    q_norms: DevPtr,
    k_norms: DevPtr,
    dist2: DevPtr,
    index: DevPtr,
) -> Result<(), LaunchError> {
    assert!(t.k > 0, "knn_topk_merge: k = 0");
    if t.rows == 0 || t.cols == 0 {
        return Ok(());
    }
    let u = |v: usize, what: &str| u32::try_from(v).unwrap_or_else(|_| panic!("knn_topk_merge: {what} {v} exceeds u32"));
    // Every index stays at or below the last u32 below the "none" sentinel.
    assert!(t.key_base + t.cols <= u32::MAX as usize, "knn_topk_merge: key indices reach u32::MAX");
    let (rows, cols, k, base) = (u(t.rows, "rows"), u(t.cols, "cols"), u(t.k, "k"), u(t.key_base, "key_base"));
    let (has_self, self_base) = t.self_base.map_or((0, 0), |o| (1, o as u64));
    // SAFETY: forwarded to the caller.
    unsafe {
        stub::knn_topk_merge(
            l,
            knn_topk_dims(t.rows),
            rows,
            cols,
            k,
            base,
            has_self,
            self_base,
            prod,
            q_norms,
            k_norms,
            dist2,
            index,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_covers_the_rows() {
        assert_eq!(knn_topk_dims(1).grid[0], 1);
        assert_eq!(knn_topk_dims(128).grid[0], 1);
        assert_eq!(knn_topk_dims(129).grid[0], 2);
    }
}
