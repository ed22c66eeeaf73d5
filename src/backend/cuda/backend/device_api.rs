//! What [`KernelBackend`](super::KernelBackend) needs of a device beyond
//! kernel launches ([`DeviceApi`]: memory, copies, one SGEMM), the cuBLAS
//! call it makes ([`SgemmCall`], with the row-major → column-major mapping),
//! and the literal SGEMM the emulation answers that call with.

use crate::backend::cuda::launch::{DevPtr, Launcher};
use crate::backend::cuda::precision::GemmPrecision;
use crate::backend::{Batch, Gemm, Trans};

/// One `cublasSgemmStridedBatched` call, column-major, arguments in
/// cuBLAS order (addresses already offset).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgemmCall {
    pub transa: Trans,
    pub transb: Trans,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: DevPtr,
    pub lda: usize,
    pub stride_a: usize,
    pub b: DevPtr,
    pub ldb: usize,
    pub stride_b: usize,
    pub beta: f32,
    pub c: DevPtr,
    pub ldc: usize,
    pub stride_c: usize,
    pub batch: usize,
    /// Operand rounding (TF32/BF16 tensor-core math) or plain f32.
    pub precision: GemmPrecision,
}

impl SgemmCall {
    /// The documented mapping of a row-major [`Gemm`] (see its doc): the
    /// row-major `C[m,n]` is the column-major `Cᵀ[n,m] = op(B)ᵀ·op(A)ᵀ`, so
    /// cuBLAS gets `(opB, opA, n, m, k, B, ldb, A, lda, C, ldc)`.
    pub fn from_row_major(g: &Gemm, batch: Option<&Batch>, a: DevPtr, b: DevPtr, c: DevPtr) -> SgemmCall {
        let (count, sa, sb, sc) = match batch {
            Some(bt) => (bt.count, bt.stride_a, bt.stride_b, bt.stride_c),
            None => (1, 0, 0, 0),
        };
        SgemmCall {
            transa: g.tb,
            transb: g.ta,
            m: g.n,
            n: g.m,
            k: g.k,
            alpha: g.alpha,
            a: b.f32_at(g.b_off),
            lda: g.ldb,
            stride_a: sb,
            b: a.f32_at(g.a_off),
            ldb: g.lda,
            stride_b: sa,
            beta: g.beta,
            c: c.f32_at(g.c_off),
            ldc: g.ldc,
            stride_c: sc,
            batch: count,
            precision: GemmPrecision::F32,
        }
    }
}

/// Memory and GEMM of a device (kernel launches come from [`Launcher`]).
/// Buffers are byte buffers aligned to at least 16 bytes, zeroed at birth.
/// Failures come back as the device's message; [`KernelBackend`](super::KernelBackend) records
/// the first one (see the module doc).
pub trait DeviceApi: Launcher + Send + Sync {
    type Mem: Send + Sync;
    fn alloc(&self, bytes: usize) -> Result<Self::Mem, String>;
    fn addr(&self, m: &Self::Mem) -> DevPtr;
    fn htod(&self, m: &mut Self::Mem, byte_off: usize, data: &[u8]) -> Result<(), String>;
    fn dtoh(&self, m: &Self::Mem, byte_off: usize, out: &mut [u8]) -> Result<(), String>;
    fn dtod(&self, src: &Self::Mem, src_off: usize, dst: &mut Self::Mem, dst_off: usize, bytes: usize) -> Result<(), String>;
    /// # Safety
    /// The addresses in `call` must cover the matrices it describes.
    unsafe fn sgemm(&self, call: &SgemmCall) -> Result<(), String>;
    /// Wait for all queued work (a no-op where work is synchronous); errors
    /// of earlier asynchronous work surface here on a GPU.
    fn synchronize(&self) -> Result<(), String>;
}

/// A column-major SGEMM done literally (f32 products, f32 accumulation in
/// order), the emulation's stand-in for cuBLAS: it reads the addresses and
/// leading dimensions exactly as cuBLAS would, so a wrong mapping fails.
/// With TF32/BF16 [`SgemmCall::precision`] both operands are first rounded
/// to that format (to nearest, ties to even), as tensor-core math does, and
/// the products still accumulate in f32, so the emulation carries the
/// accuracy cost of those modes.
///
/// # Safety
/// The addresses in `call` must be host addresses covering the matrices.
pub unsafe fn sgemm_reference(call: &SgemmCall) {
    let c = call;
    let prec = c.precision;
    // Column-major element (i, j) of op(X), rounded to the operand format.
    let at = |base: DevPtr, stride: usize, bi: usize, i: usize, j: usize, ld: usize, t: Trans| -> f32 {
        let idx = if t == Trans::N { i + j * ld } else { j + i * ld };
        // SAFETY: covered by the caller's contract.
        prec.round(unsafe { *(base.f32_at(bi * stride + idx).0 as *const f32) })
    };
    // Per matrix: the rows of op(A) and the columns of op(B) gathered
    // contiguously ([m, k] and [n, k]) so the dot products stream; the sum
    // over l is still sequential f32, the order a literal loop has.
    let (mut ar, mut bc) = (vec![0.0f32; c.m * c.k], vec![0.0f32; c.n * c.k]);
    for bi in 0..c.batch {
        for i in 0..c.m {
            for l in 0..c.k {
                ar[i * c.k + l] = at(c.a, c.stride_a, bi, i, l, c.lda, c.transa);
            }
        }
        for j in 0..c.n {
            for l in 0..c.k {
                bc[j * c.k + l] = at(c.b, c.stride_b, bi, l, j, c.ldb, c.transb);
            }
        }
        for j in 0..c.n {
            let col = &bc[j * c.k..(j + 1) * c.k];
            for i in 0..c.m {
                let row = &ar[i * c.k..(i + 1) * c.k];
                let acc = row.iter().zip(col).fold(0.0f32, |s, (x, y)| s + x * y);
                let p = c.c.f32_at(bi * c.stride_c + i + j * c.ldc).0 as *mut f32;
                // SAFETY: as above; with beta = 0, C is not read (as cuBLAS).
                unsafe { *p = if c.beta == 0.0 { c.alpha * acc } else { c.alpha * acc + c.beta * *p } };
            }
        }
    }
}
