//! Host orchestration of `kernels/argmax.cu` (kin pairing): the launch
//! geometry and arguments of `kin_argmax`, written once against
//! [`Launcher`] so the CUDA backend and the emulation twin test
//! (tests/cuda_emu_argmax.rs) run the same code. Safety: as [`super::ops`]
//! (live device addresses covering the stated shapes, no aliasing).
#![allow(clippy::missing_safety_doc)]

use super::launch::{stub, DevPtr, Dims, LaunchError, Launcher};

/// Query rows per block (`AQ` in argmax.cu).
pub const KIN_ROWS_PER_BLOCK: u32 = 64;
/// Keys per step (`AK`).
pub const KIN_KEYS_PER_STEP: u32 = 64;
/// Embedding coordinates per shared-memory chunk (`AD`).
pub const KIN_DIM_CHUNK: u32 = 32;
/// Threads per block (16 × 16, a 4 × 4 register block each).
pub const KIN_THREADS: u32 = 256;

/// `kin_argmax` over `rows` query rows: a block per 64 rows, 256 threads,
/// two transposed 32 × 65 f32 chunks of dynamic shared memory (16,640 B).
pub fn kin_argmax_dims(rows: usize) -> Dims {
    let grid = u32::try_from((rows as u64).div_ceil(KIN_ROWS_PER_BLOCK as u64).max(1)).expect("grid too large for one launch");
    Dims {
        grid: [grid, 1, 1],
        block: [KIN_THREADS, 1, 1],
        shared: 2 * KIN_DIM_CHUNK * (KIN_ROWS_PER_BLOCK + 1) * 4,
    }
}

/// One launch of `kin_argmax` (see `Backend::kin_argmax_merge`): `q:
/// [rows, dim]`, `k: [keys, dim]`, `best: [rows]` f32, `best_idx: [rows]`
/// u32 (an f32 buffer holding index bits). No launch when there is no work.
#[allow(clippy::too_many_arguments)]
pub unsafe fn kin_argmax(
    l: &dyn Launcher,
    rows: usize,
    keys: usize,
    dim: usize,
    key_base: usize,
    q: DevPtr,
    k: DevPtr,
    best: DevPtr,
    best_idx: DevPtr,
) -> Result<(), LaunchError> {
    if rows == 0 || keys == 0 {
        return Ok(());
    }
    let u = |v: usize, what: &str| u32::try_from(v).unwrap_or_else(|_| panic!("kin_argmax: {what} {v} exceeds u32"));
    // Every index stays below the "none" sentinel u32::MAX, and the
    // kernel's u32 key loop (steps of 64) clear of overflow.
    assert!((key_base + keys) < u32::MAX as usize, "kin_argmax: key indices reach u32::MAX");
    assert!(keys <= (u32::MAX - KIN_KEYS_PER_STEP) as usize, "kin_argmax: too many keys for one launch");
    let (rows32, keys32, dim32, base32) = (u(rows, "rows"), u(keys, "keys"), u(dim, "dim"), u(key_base, "key_base"));
    // SAFETY: forwarded to the caller.
    unsafe { stub::kin_argmax(l, kin_argmax_dims(rows), rows32, keys32, dim32, base32, q, k, best, best_idx) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_covers_the_rows() {
        assert_eq!(kin_argmax_dims(1).grid[0], 1);
        assert_eq!(kin_argmax_dims(64).grid[0], 1);
        assert_eq!(kin_argmax_dims(65).grid[0], 2);
        assert_eq!(kin_argmax_dims(65).shared, 16_640);
    }
}
