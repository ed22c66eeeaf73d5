//! Row-major GEMM on the CPU through the `gemm` crate (strided operands, so
//! transposes, leading dimensions and offsets cost nothing extra).
//!
//! Threading: `gemm` can parallelise internally over rayon, or C can be split
//! into one block of rows/columns per thread with a single-threaded `gemm`
//! each. On the 2-core development machine the column split was the fastest
//! or within noise of it at every shape of a training iteration (the critic's
//! 128×256×3000 product above all), so [`GemmThreading::Auto`] (the
//! default) splits columns, or rows for tall narrow outputs. Products under
//! ~2 MFLOP run single-threaded; vector shapes (`m = 1` or `k = 1`: the
//! spectral norm's power iteration and rank-1 corrections, row broadcasts)
//! take plain loops.

use gemm::Parallelism;
use rayon::prelude::*;

use super::cpu::GemmThreading;
use super::{Batch, Gemm, Trans};

/// A raw pointer shared by the rayon tasks of one product (also used by
/// `cpu_sparse`).
#[derive(Clone, Copy)]
pub(super) struct Ptr(pub(super) *mut f32);
// SAFETY: the tasks that share a `Ptr` write disjoint blocks of C and only
// read A and B; the spawning call waits for all of them.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}
impl Ptr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

fn check(g: &Gemm, a: usize, b: usize, c: usize) {
    let (ea, eb, ec) = g.extents();
    assert!(
        ea <= a && eb <= b && ec <= c,
        "gemm {g:?}: buffers too short (A {a} < {ea}, B {b} < {eb} or C {c} < {ec})"
    );
    let lda_min = if g.ta == Trans::N { g.k } else { g.m };
    let ldb_min = if g.tb == Trans::N { g.n } else { g.k };
    assert!(g.lda >= lda_min && g.ldb >= ldb_min && g.ldc >= g.n, "gemm {g:?}: leading dimension too small");
}

/// Strides (row, column) of op(A) as stored.
fn strides(t: Trans, ld: usize) -> (isize, isize) {
    match t {
        Trans::N => (ld as isize, 1),
        Trans::T => (1, ld as isize),
    }
}

/// One single-call product on raw pointers: C block `[m, n]`.
///
/// # Safety
/// Pointers and strides must describe valid, non-overlapping (for C) memory.
#[allow(clippy::too_many_arguments)]
unsafe fn raw(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    (ars, acs): (isize, isize),
    b: *const f32,
    (brs, bcs): (isize, isize),
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // C = beta·C (gemm crate would do the same, but be explicit).
        for i in 0..m {
            for j in 0..n {
                let p = unsafe { c.add(i * ldc + j) };
                unsafe { *p = if beta == 0.0 { 0.0 } else { beta * *p } };
            }
        }
        return;
    }
    // gemm crate convention: dst = alpha·dst + beta·lhs·rhs.
    unsafe {
        gemm::gemm(
            m, n, k, c, 1, ldc as isize, beta != 0.0, a, acs, ars, b, bcs, brs, beta, alpha, false, false, false, par,
        )
    };
}

pub(crate) fn gemm(threading: GemmThreading, g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    check(g, a.len(), b.len(), c.len());
    let sa = strides(g.ta, g.lda);
    let sb = strides(g.tb, g.ldb);
    let ap = a.as_ptr().wrapping_add(g.a_off);
    let bp = b.as_ptr().wrapping_add(g.b_off);
    let cp = c.as_mut_ptr().wrapping_add(g.c_off);
    // Vector shapes (rank-1 updates, GEMVs, dots) are memory-bound: the
    // blocked kernels' packing costs more than the product.
    if g.k == 1 || g.m == 1 {
        // SAFETY: extents checked above.
        unsafe { vector_shape(g, ap, sa, bp, sb, cp) };
        return;
    }
    // A mostly-zero left operand (an expression batch): skip its zeros.
    // SAFETY: extents checked above.
    let parallel = threading != GemmThreading::Single;
    if unsafe { super::cpu_sparse::try_sparse_lhs(g, ap, sa, bp, sb, cp, parallel) } {
        return;
    }
    let threads = rayon::current_num_threads();
    let flops = 2.0 * g.m as f64 * g.n as f64 * g.k as f64;
    // Below ~2 MFLOP threading costs more than it saves.
    let threading = if flops < 2e6 || threads == 1 { GemmThreading::Single } else { threading };
    match threading {
        GemmThreading::Single => unsafe {
            raw(g.m, g.n, g.k, ap, sa, bp, sb, cp, g.ldc, g.alpha, g.beta, Parallelism::None)
        },
        GemmThreading::Internal => unsafe {
            raw(g.m, g.n, g.k, ap, sa, bp, sb, cp, g.ldc, g.alpha, g.beta, Parallelism::Rayon(threads))
        },
        GemmThreading::RowSplit => split(g, ap, sa, bp, sb, cp, true, threads),
        GemmThreading::ColSplit => split(g, ap, sa, bp, sb, cp, false, threads),
        GemmThreading::Auto => {
            // Measured on 2 cores at the model's shapes in one training
            // iteration (best of 30, interleaved): one single-threaded
            // `gemm` per block of columns of C was fastest or within 5 % of
            // the fastest for every shape (128×256×3000 NT: 196 GFLOP/s vs
            // 141 for `gemm`'s own threading); tall narrow outputs split by rows.
            split(g, ap, sa, bp, sb, cp, g.n * 4 < g.m, threads)
        }
    }
}

/// `C = alpha·op(A)·op(B) + beta·C` when `k == 1` (outer product) or
/// `m == 1` (row vector times matrix): plain loops, rows or columns of C
/// spread over rayon tasks when large.
///
/// # Safety
/// Pointers and strides must describe the extents checked by the caller.
unsafe fn vector_shape(g: &Gemm, ap: *const f32, sa: (isize, isize), bp: *const f32, sb: (isize, isize), cp: *mut f32) {
    let (ap, bp, cp) = (Ptr(ap as *mut f32), Ptr(bp as *mut f32), Ptr(cp));
    let (alpha, beta) = (g.alpha, g.beta);
    let update = move |c: *mut f32, v: f32| unsafe { *c = if beta == 0.0 { alpha * v } else { alpha * v + beta * *c } };
    let large = g.m * g.n * g.k >= 1 << 16;
    if g.k == 1 {
        // C[i, j] = α a_i b_j + β C[i, j], one task per block of rows.
        let row = move |i: usize| unsafe {
            let a = *ap.get().offset(i as isize * sa.0);
            let c = cp.get().add(i * g.ldc);
            for j in 0..g.n {
                update(c.add(j), a * *bp.get().offset(j as isize * sb.1));
            }
        };
        if large { (0..g.m).into_par_iter().with_min_len(8).for_each(row) } else { (0..g.m).for_each(row) }
        return;
    }
    // m == 1: c_j = α Σ_l a_l op(B)[l, j] + β c_j, one task per block of
    // columns.
    let contiguous_rows = sb.1 == 1;
    let block = if contiguous_rows { 512 } else { 32 };
    let cols = move |t: usize| unsafe {
        let (lo, hi) = (t * block, ((t + 1) * block).min(g.n));
        let a = |l: usize| *ap.get().offset(l as isize * sa.1);
        if contiguous_rows {
            // Rows of op(B) contiguous: axpy along them.
            let mut acc = [0.0f32; 512];
            let acc = &mut acc[..hi - lo];
            for l in 0..g.k {
                let b = std::slice::from_raw_parts(bp.get().offset(l as isize * sb.0).add(lo), hi - lo);
                let al = a(l);
                acc.iter_mut().zip(b).for_each(|(s, &bv)| *s += al * bv);
            }
            for (j, &s) in acc.iter().enumerate() {
                update(cp.get().add(lo + j), s);
            }
        } else {
            // op(B) = Bᵀ: one dot product along each stored row of B.
            for j in lo..hi {
                let b = bp.get().offset(j as isize * sb.1);
                let d = if sa.1 == 1 && sb.0 == 1 {
                    dot(std::slice::from_raw_parts(ap.get(), g.k), std::slice::from_raw_parts(b, g.k))
                } else {
                    (0..g.k).map(|l| a(l) * *b.offset(l as isize * sb.0)).sum()
                };
                update(cp.get().add(j), d);
            }
        }
    };
    let nblocks = g.n.div_ceil(block);
    if large { (0..nblocks).into_par_iter().for_each(cols) } else { (0..nblocks).for_each(cols) }
}

/// `Σ a_l b_l` with eight running sums (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One single-threaded `gemm` per block of rows (or columns) of C.
#[allow(clippy::too_many_arguments)]
fn split(
    g: &Gemm,
    ap: *const f32,
    sa: (isize, isize),
    bp: *const f32,
    sb: (isize, isize),
    cp: *mut f32,
    split_rows: bool,
    threads: usize,
) {
    let (ap, bp, cp) = (Ptr(ap as *mut f32), Ptr(bp as *mut f32), Ptr(cp));
    // Blocks rounded to 16 (a multiple of the microkernel's register block).
    let len = if split_rows { g.m } else { g.n };
    let block = len.div_ceil(threads).div_ceil(16) * 16;
    let nblocks = len.div_ceil(block);
    (0..nblocks).into_par_iter().for_each(|t| {
        let lo = t * block;
        let hi = (lo + block).min(len);
        // SAFETY: blocks [lo, hi) of rows (or columns) of C are disjoint;
        // offsets stay inside the extents checked by the caller.
        unsafe {
            if split_rows {
                let a0 = ap.get().offset(lo as isize * sa.0);
                let c0 = cp.get().add(lo * g.ldc);
                raw(hi - lo, g.n, g.k, a0, sa, bp.get(), sb, c0, g.ldc, g.alpha, g.beta, Parallelism::None);
            } else {
                let b0 = bp.get().offset(lo as isize * sb.1);
                let c0 = cp.get().add(lo);
                raw(g.m, hi - lo, g.k, ap.get(), sa, b0, sb, c0, g.ldc, g.alpha, g.beta, Parallelism::None);
            }
        }
    });
}

pub(crate) fn gemm_batched(g: &Gemm, batch: &Batch, a: &[f32], b: &[f32], c: &mut [f32]) {
    if batch.count == 0 {
        return;
    }
    let last = Gemm {
        a_off: g.a_off + (batch.count - 1) * batch.stride_a,
        b_off: g.b_off + (batch.count - 1) * batch.stride_b,
        c_off: g.c_off + (batch.count - 1) * batch.stride_c,
        ..*g
    };
    check(g, a.len(), b.len(), c.len());
    check(&last, a.len(), b.len(), c.len());
    let (_, _, ec) = Gemm { c_off: 0, ..*g }.extents();
    assert!(
        batch.count == 1 || batch.stride_c >= ec,
        "gemm_batched: output matrices overlap (stride_c {} < {ec})",
        batch.stride_c
    );
    let sa = strides(g.ta, g.lda);
    let sb = strides(g.tb, g.ldb);
    let (ap, bp, cp) = (Ptr(a.as_ptr() as *mut f32), Ptr(b.as_ptr() as *mut f32), Ptr(c.as_mut_ptr()));
    (0..batch.count).into_par_iter().with_min_len(8).for_each(|i| {
        // SAFETY: each task writes its own C matrix (strides checked not to
        // overlap); reads stay inside the checked extents.
        unsafe {
            raw(
                g.m,
                g.n,
                g.k,
                ap.get().add(g.a_off + i * batch.stride_a),
                sa,
                bp.get().add(g.b_off + i * batch.stride_b),
                sb,
                cp.get().add(g.c_off + i * batch.stride_c),
                g.ldc,
                g.alpha,
                g.beta,
                Parallelism::None,
            )
        }
    });
}
