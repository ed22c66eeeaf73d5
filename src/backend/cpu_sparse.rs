//! GEMMs whose left operand is mostly zeros, on the CPU.
//!
//! A batch of log-normalized expression over highly variable genes is
//! mostly zeros (3.8 % non-zeros on Kang's 3,000 HVGs), and it is the left
//! operand of the input layers' products when their weights are stored
//! transposed, `[in, out]` (see `nn::DenseConfig::sparse_input`):
//! `z = x·Wᵀ` (an (N, N) product with `Wᵀ`) and `∂Wᵀ = xᵀ·dz` (a (T, N)
//! product). Both are sums of rows of the right operand weighted by the
//! non-zeros of `x`, so skipping the zeros skips their work: a contiguous
//! axpy of one row of B per non-zero. [`try_sparse_lhs`] takes such a product
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
    // Rows of C per task: enough work per task, accumulators in L2.
    let block = (16384 / g.n.max(1)).clamp(1, 64);
    let nblocks = g.m.div_ceil(block);
    let task = |t: usize| {
        let (lo, hi) = (t * block, ((t + 1) * block).min(g.m));
        let mut acc = vec![0.0f32; (hi - lo) * g.n];
        // The block's non-zeros ordered by l (the row of op(B) they weight),
        // so that each row of B is read once per block while it is hot.
        let entries = unsafe { block_entries(g, ap.get(), sa, lo, hi) };
        for &(l, i, v) in &entries {
            // SAFETY: row l of op(B) lies inside the checked extent.
            let brow = unsafe { std::slice::from_raw_parts(bp.get().offset(l as isize * sb.0), g.n) };
            let i = i as usize - lo;
            axpy(v, brow, &mut acc[i * g.n..(i + 1) * g.n]);
        }
        for i in lo..hi {
            // SAFETY: row i of C lies inside the checked extent; rows of
            // different tasks are disjoint.
            let c = unsafe { std::slice::from_raw_parts_mut(cp.get().add(i * g.ldc), g.n) };
            let a = &acc[(i - lo) * g.n..(i - lo + 1) * g.n];
            if g.beta == 0.0 {
                c.iter_mut().zip(a).for_each(|(c, &a)| *c = g.alpha * a);
            } else {
                c.iter_mut().zip(a).for_each(|(c, &a)| *c = g.alpha * a + g.beta * *c);
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

/// The non-zeros `(l, i, op(A)[i, l])` of rows `lo..hi` of op(A), ordered by
/// `l`, each stored line scanned contiguously.
unsafe fn block_entries(g: &Gemm, ap: *const f32, sa: (isize, isize), lo: usize, hi: usize) -> Vec<(u32, u32, f32)> {
    let mut out = Vec::new();
    if sa.0 == 1 {
        // op(A) = Aᵀ: for each l, the block's entries are contiguous.
        for l in 0..g.k {
            // SAFETY: inside the checked extent of A.
            let s = unsafe { std::slice::from_raw_parts(ap.offset(l as isize * sa.1).add(lo), hi - lo) };
            for_each_nonzero(s, |i, v| out.push((l as u32, (lo + i) as u32, v)));
        }
    } else {
        // op(A) = A: scan each row twice, counting then placing by l.
        let row = |i: usize| unsafe { std::slice::from_raw_parts(ap.offset(i as isize * sa.0), g.k) };
        let mut start = vec![0u32; g.k + 1];
        for i in lo..hi {
            for_each_nonzero(row(i), |l, _| start[l + 1] += 1);
        }
        for l in 0..g.k {
            start[l + 1] += start[l];
        }
        out.resize(start[g.k] as usize, (0, 0, 0.0));
        for i in lo..hi {
            for_each_nonzero(row(i), |l, v| {
                out[start[l] as usize] = (l as u32, i as u32, v);
                start[l] += 1;
            });
        }
    }
    out
}

/// `f(j, s[j])` for every non-zero of `s`, in order: eight entries are
/// compared at once into a bit mask, so runs of zeros cost little.
fn for_each_nonzero(s: &[f32], mut f: impl FnMut(usize, f32)) {
    let chunks = s.chunks_exact(8);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let mut mask = 0u32;
        for (j, v) in chunk.iter().enumerate() {
            mask |= ((*v != 0.0) as u32) << j;
        }
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            f(c * 8 + j, chunk[j]);
            mask &= mask - 1;
        }
    }
    let base = s.len() - tail.len();
    for (j, &v) in tail.iter().enumerate() {
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

/// `y += a·x`, with AVX2 + FMA where the CPU has them.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { axpy_avx2(a, x, y) };
    }
    axpy_plain(a, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = a.mul_add(x, *y));
}

fn axpy_plain(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}
