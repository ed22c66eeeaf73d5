//! GEMMs whose left operand is mostly zeros, on the CPU.
//!
//! A batch of log-normalized expression over highly variable genes is
//! mostly zeros (3.8 % non-zeros on Kang's 3,000 HVGs), and it is the left
//! operand of the input layers' products when their weights are stored
//! transposed, `[in, out]` (see `nn::DenseConfig::sparse_input`):
//! `z = x·Wᵀ` (an (N, N) product with `Wᵀ`) and `∂Wᵀ = xᵀ·dz` (a (T, N)
//! product). Both are sums of rows of the right operand weighted by the
//! non-zeros of `x`, so skipping the zeros skips their work. Each row of C
//! is built 64 columns at a time in registers from its non-zeros (found 32
//! at a time by vector compares), so C is written once and B is the only
//! stream; an earlier axpy per non-zero into a row buffer was bound by its
//! loads and stores and took 1.3–2× as long (`SPARSE_BEST_OF=30 cargo bench
//! --bench gemm`). A sum of outer products instead (an L1 block of C per
//! task, each row of B held in registers) was faster alone, when B is in
//! cache, but not within a training iteration, where the weights come from
//! memory after each optimiser step. [`try_sparse_lhs`] takes such a product
//! when op(B)'s rows are contiguous and op(A) is sparse enough; the dense
//! `gemm` crate takes everything else. The CUDA backend runs the same
//! products through cuBLAS: the skip is a CPU optimisation, not a new op.

use rayon::prelude::*;

use super::cpu_gemm::Ptr;
use super::Gemm;

/// Above this fraction of non-zeros the dense kernel is faster. Measured at
/// the input layers' shapes on 2 cores (best of 20): at 10 % non-zeros the
/// sparse loop takes 0.5–0.7 of the dense time, at 30 % longer than dense.
pub(crate) const MAX_DENSITY: f64 = 0.15;

/// Run `C = α·op(A)·op(B) + β·C` by skipping the zeros of op(A) when that
/// pays: a large product, op(B) rows contiguous (`sb.1 == 1`), op(A) stored
/// with unit stride along one of its axes, and at most [`MAX_DENSITY`]
/// non-zeros. Returns false (and does nothing) otherwise. Rows of C are
/// spread over rayon tasks when `parallel`.
///
/// # Safety
/// Pointers and strides must describe the extents the caller checked.
pub(crate) unsafe fn try_sparse_lhs(
    g: &Gemm,
    ap: *const f32,
    sa: (isize, isize),
    bp: *const f32,
    sb: (isize, isize),
    cp: *mut f32,
    parallel: bool,
) -> bool {
    let big = g.k >= 64 && (g.m * g.n * g.k) as f64 >= 4e6;
    if !big || sb.1 != 1 || !(sa.1 == 1 || sa.0 == 1) {
        return false;
    }
    // Density from every 8th line along op(A)'s unit-stride axis: the
    // choice only affects speed, and a full count would cost as much as a
    // tenth of the sparse product.
    let (nnz, seen) = unsafe { sample_nonzeros(g, ap, sa, 8) };
    if nnz as f64 > MAX_DENSITY * seen as f64 {
        return false;
    }
    let (ap, bp, cp) = (Ptr(ap as *mut f32), Ptr(bp as *mut f32), Ptr(cp));
    // Rows of C per task: a few tasks per thread, each row's non-zeros
    // gathered once.
    let block = (g.m / (8 * rayon::current_num_threads().max(1))).clamp(4, 64);
    let nblocks = g.m.div_ceil(block);
    let task = |t: usize| {
        let (lo, hi) = (t * block, ((t + 1) * block).min(g.m));
        // SAFETY: rows lo..hi of op(A) lie inside the checked extent.
        let rows = unsafe { block_rows(g, ap.get(), sa, lo, hi) };
        for i in lo..hi {
            let (s, e) = (rows.start[i - lo] as usize, rows.start[i - lo + 1] as usize);
            // The row's non-zeros sweep whole rows of op(B), block by block
            // of columns.
            for j0 in (0..g.n).step_by(WIDE) {
                // SAFETY: the rows of op(B) named by `col` and row i of C lie
                // inside the checked extents; rows of different tasks are
                // disjoint.
                unsafe {
                    let b = bp.get().add(j0);
                    sparse_chunk(&rows.col[s..e], &rows.val[s..e], b, sb.0, WIDE.min(g.n - j0), g.alpha, g.beta, cp.get().add(i * g.ldc + j0))
                };
            }
        }
    };
    if parallel {
        (0..nblocks).into_par_iter().for_each(task);
    } else {
        (0..nblocks).for_each(task);
    }
    true
}

/// Rows `lo..hi` of op(A) in compressed form: the non-zeros of row
/// `lo + r` are `col[start[r]..start[r + 1]]` and `val[..]`, in column order.
struct BlockRows {
    start: Vec<u32>,
    col: Vec<u32>,
    val: Vec<f32>,
}

/// Gather the non-zeros of rows `lo..hi` of op(A), each stored line scanned
/// contiguously.
unsafe fn block_rows(g: &Gemm, ap: *const f32, sa: (isize, isize), lo: usize, hi: usize) -> BlockRows {
    let mut start = vec![0u32; hi - lo + 1];
    let (mut col, mut val) = (Vec::new(), Vec::new());
    if sa.1 == 1 {
        // op(A) = A: rows are contiguous.
        for i in lo..hi {
            // SAFETY: inside the checked extent of A.
            let row = unsafe { std::slice::from_raw_parts(ap.offset(i as isize * sa.0), g.k) };
            for_each_nonzero(row, |l, v| {
                col.push(l as u32);
                val.push(v);
            });
            start[i - lo + 1] = col.len() as u32;
        }
    } else {
        // op(A) = Aᵀ: the block's entries of column l are contiguous; count
        // per row, then place (a counting sort by row).
        // SAFETY: inside the checked extent of A.
        let line = |l: usize| unsafe { std::slice::from_raw_parts(ap.offset(l as isize * sa.1).add(lo), hi - lo) };
        for l in 0..g.k {
            for_each_nonzero(line(l), |r, _| start[r + 1] += 1);
        }
        for r in 0..hi - lo {
            start[r + 1] += start[r];
        }
        let nnz = start[hi - lo] as usize;
        (col, val) = (vec![0; nnz], vec![0.0; nnz]);
        let mut next = start.clone();
        for l in 0..g.k {
            for_each_nonzero(line(l), |r, v| {
                let at = next[r] as usize;
                (col[at], val[at]) = (l as u32, v);
                next[r] += 1;
            });
        }
    }
    BlockRows { start, col, val }
}

/// `c = α·Σ val[t]·B[col[t], 0..w] + β·c` for one block of at most
/// [`WIDE`] columns of one row of C (`c` not read when β = 0), with AVX2 +
/// FMA where the CPU has them.
///
/// # Safety
/// Rows `col` of B (row stride `ldb`) and `c` must hold `w` values.
#[allow(clippy::too_many_arguments)] // a kernel's operands, stride and scales
unsafe fn sparse_chunk(col: &[u32], val: &[f32], b: *const f32, ldb: isize, w: usize, alpha: f32, beta: f32, c: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected; extents as the caller's.
        return unsafe { sparse_chunk_avx2(col, val, b, ldb, w, alpha, beta, c) };
    }
    // SAFETY: as the caller's.
    unsafe { sparse_chunk_plain(col, val, b, ldb, w, alpha, beta, c) }
}

/// Columns per block of C: 8 accumulators of 8 lanes, kept in registers
/// across all of a row's non-zeros (C is stored once, B is the only
/// stream).
const WIDE: usize = 64;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)] // a kernel's operands, stride and scales
unsafe fn sparse_chunk_avx2(col: &[u32], val: &[f32], b: *const f32, ldb: isize, w: usize, alpha: f32, beta: f32, c: *mut f32) {
    use std::arch::x86_64::*;
    // SAFETY (the whole body): loads and stores stay inside the rows the
    // caller vouches for; the features are enabled on this function.
    unsafe {
        if w == WIDE {
            let mut acc = [_mm256_setzero_ps(); WIDE / 8];
            for (&l, &v) in col.iter().zip(val) {
                let row = b.offset(l as isize * ldb);
                let a = _mm256_set1_ps(v);
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(a, _mm256_loadu_ps(row.add(8 * r)), *acc);
                }
            }
            for (r, &acc) in acc.iter().enumerate() {
                store8(acc, alpha, beta, c.add(8 * r));
            }
            return;
        }
        let mut j = 0;
        while j + 8 <= w {
            let mut acc = _mm256_setzero_ps();
            for (&l, &v) in col.iter().zip(val) {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(v), _mm256_loadu_ps(b.offset(l as isize * ldb).add(j)), acc);
            }
            store8(acc, alpha, beta, c.add(j));
            j += 8;
        }
        sparse_chunk_plain(col, val, b.add(j), ldb, w - j, alpha, beta, c.add(j));
    }
}

/// `c[0..8] = α·acc + β·c` (`c` not read when β = 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store8(acc: std::arch::x86_64::__m256, alpha: f32, beta: f32, c: *mut f32) {
    use std::arch::x86_64::*;
    let scaled = _mm256_mul_ps(_mm256_set1_ps(alpha), acc);
    // SAFETY: `c` holds eight values (the caller's row).
    unsafe {
        let out = if beta == 0.0 { scaled } else { _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), scaled) };
        _mm256_storeu_ps(c, out);
    }
}

/// The portable twin of [`sparse_chunk_avx2`] (and its tail).
#[allow(clippy::too_many_arguments)] // a kernel's operands, stride and scales
unsafe fn sparse_chunk_plain(col: &[u32], val: &[f32], b: *const f32, ldb: isize, w: usize, alpha: f32, beta: f32, c: *mut f32) {
    let mut acc = [0.0f32; WIDE];
    let acc = &mut acc[..w];
    for (&l, &v) in col.iter().zip(val) {
        // SAFETY: as the caller's.
        let row = unsafe { std::slice::from_raw_parts(b.offset(l as isize * ldb), w) };
        acc.iter_mut().zip(row).for_each(|(a, &x)| *a = v.mul_add(x, *a));
    }
    // SAFETY: as the caller's.
    let out = unsafe { std::slice::from_raw_parts_mut(c, w) };
    if beta == 0.0 {
        out.iter_mut().zip(acc.iter()).for_each(|(c, &a)| *c = alpha * a);
    } else {
        out.iter_mut().zip(acc.iter()).for_each(|(c, &a)| *c = alpha * a + beta * *c);
    }
}

/// `f(j, s[j])` for every non-zero of `s`, in order: entries are compared
/// many at once into a bit mask, so runs of zeros cost little.
fn for_each_nonzero(s: &[f32], f: impl FnMut(usize, f32)) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the feature was just detected.
        return unsafe { for_each_nonzero_avx2(s, f) };
    }
    for_each_nonzero_plain(s, 0, f)
}

/// [`for_each_nonzero`] 32 entries per mask, by AVX2 compares.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn for_each_nonzero_avx2(s: &[f32], mut f: impl FnMut(usize, f32)) {
    use std::arch::x86_64::*;
    let chunks = s.chunks_exact(32);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        // NEQ_UQ: NaN counts as non-zero, as `v != 0.0` does.
        // SAFETY: the chunk holds 32 values.
        let byte = |q: usize| unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(_mm256_loadu_ps(chunk.as_ptr().add(8 * q)), _mm256_setzero_ps())) as u32 };
        let mut mask = byte(0) | byte(1) << 8 | byte(2) << 16 | byte(3) << 24;
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            f(c * 32 + j, chunk[j]);
            mask &= mask - 1;
        }
    }
    for_each_nonzero_plain(tail, s.len() - tail.len(), f)
}

/// The portable [`for_each_nonzero`], indices offset by `base`.
fn for_each_nonzero_plain(s: &[f32], base: usize, mut f: impl FnMut(usize, f32)) {
    for (j, &v) in s.iter().enumerate() {
        if v != 0.0 {
            f(base + j, v);
        }
    }
}

/// Non-zeros and entries seen in every `step`-th line of op(A) (`[m, k]`,
/// strides `sa`, one of them 1) along its unit-stride axis.
unsafe fn sample_nonzeros(g: &Gemm, ap: *const f32, sa: (isize, isize), step: usize) -> (usize, usize) {
    let (outer, inner, stride) = if sa.1 == 1 { (g.m, g.k, sa.0) } else { (g.k, g.m, sa.1) };
    let lines = (0..outer).step_by(step);
    let seen = lines.len() * inner;
    let nnz = lines
        .map(|o| {
            // SAFETY: inside the checked extent of A.
            let s = unsafe { std::slice::from_raw_parts(ap.offset(o as isize * stride), inner) };
            s.iter().filter(|v| **v != 0.0).count()
        })
        .sum();
    (nnz, seen)
}
