//! [`KernelBackend`]: the [`Backend`] trait implemented with the kernels of
//! `kernels/` (through [`super::ops`]) and a column-major SGEMM, over any
//! [`DeviceApi`]. Two devices implement it: [`super::device::CudaDevice`]
//! (cudarc: driver memory, cuBLAS) and [`super::emu::EmuDevice`] (host
//! memory, emulated kernels, a literal column-major SGEMM), so every line of
//! this file — buffer sizes, launch geometry, the row-major → cuBLAS GEMM
//! mapping — runs in the normal test suite without a GPU.
//!
//! Errors are sticky, as in CUDA itself: the trait's methods return no
//! errors, so the first failure of the device (an allocation, a copy, a
//! launch, cuBLAS) is recorded and every later operation becomes a no-op —
//! nothing more is launched on buffers that may not exist, downloads give
//! zeros. The pipeline calls [`Backend::check`] at natural boundaries (each
//! epoch, the deviations pass, each scorer step, before anything is
//! written), which returns the recorded error as [`crate::Error::Device`]
//! with a hint. Shape mismatches still panic: they are programming errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::launch::{Args, DevPtr, Dims, LaunchError, Launcher};
use super::ops::{self, BnBwdPtrs, BnFwdPtrs};
use super::ops_desc;
pub use super::precision::GemmPrecision;
use crate::backend::{Act, AdamStep, Backend, Batch, BnBwd, BnFwd, DropoutMask, Fused, Gemm, Trans};

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
/// Failures come back as the device's message; [`KernelBackend`] records
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

/// An f32 device buffer of `len` values (no memory when its allocation
/// failed; the backend is then in its failed state and never touches it).
pub struct DevBuf<M> {
    mem: Option<M>,
    len: usize,
}

/// The kernels-and-SGEMM backend over a device; see the module doc.
pub struct KernelBackend<D: DeviceApi> {
    dev: D,
    name: &'static str,
    precision: GemmPrecision,
    /// Set with the first device error; every operation checks it first.
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

/// Stands in for the device once it has failed: launches nothing.
struct Skip;

impl Launcher for Skip {
    unsafe fn launch(&self, _: &str, _: &Dims, _: &mut Args) -> Result<(), LaunchError> {
        Ok(())
    }
}

/// What to do about a device error, appended to its message.
fn hint(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("out of memory") || m.contains("out_of_memory") || m.contains("alloc_failed") {
        "out of GPU memory: try a smaller batch_size (and mem_size), fewer genes (n_hvg), or --device cpu"
    } else {
        "the run was stopped; --device cpu runs without the GPU"
    }
}

fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns as bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}
fn f32_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: every byte pattern is a valid f32.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

impl<D: DeviceApi> KernelBackend<D> {
    pub fn new(dev: D, name: &'static str) -> Self {
        KernelBackend {
            dev,
            name,
            precision: GemmPrecision::F32,
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }
    /// The same backend with its GEMMs in `precision` (see
    /// [`GemmPrecision`] for the accuracy cost); the name gains the
    /// precision (`"cuda (tf32 GEMMs)"`) so reports say what ran.
    pub fn with_gemm_precision(mut self, precision: GemmPrecision) -> Self {
        self.precision = precision;
        self.name = match precision {
            GemmPrecision::F32 => self.name.split(" (").next().unwrap_or(self.name),
            // One short string per backend built, for the program's life.
            p => Box::leak(format!("{} ({p} GEMMs)", self.name.split(" (").next().unwrap_or(self.name)).into_boxed_str()),
        };
        self
    }
    pub fn gemm_precision(&self) -> GemmPrecision {
        self.precision
    }
    pub fn device(&self) -> &D {
        &self.dev
    }
    /// The first device error, if any (sticky; see the module doc).
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
    /// Records `msg` unless an earlier error is already recorded.
    fn fail(&self, msg: String) {
        let mut e = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(msg);
        }
        self.failed.store(true, Ordering::Release);
    }
    fn record<T>(&self, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(msg) => {
                self.fail(msg);
                None
            }
        }
    }
    /// Records a failed launch.
    fn launched<T>(&self, r: ops::Result<T>) -> Option<T> {
        self.record(r.map_err(|e| e.to_string()))
    }
    fn alloc(&self, bytes: usize) -> Option<D::Mem> {
        if self.failed() {
            return None;
        }
        self.record(self.dev.alloc(bytes))
    }
    /// Device → host, or zeros once the device has failed.
    fn dtoh(&self, m: &Option<D::Mem>, byte_off: usize, out: &mut [u8]) {
        match m {
            Some(m) if !self.failed() => {
                if self.record(self.dev.dtoh(m, byte_off, out)).is_none() {
                    out.fill(0);
                }
            }
            _ => out.fill(0),
        }
    }
    fn htod(&self, m: &mut Option<D::Mem>, byte_off: usize, data: &[u8]) {
        if let Some(m) = m.as_mut().filter(|_| !self.failed()) {
            self.record(self.dev.htod(m, byte_off, data));
        }
    }
    fn p(&self, b: &DevBuf<D::Mem>) -> DevPtr {
        b.mem.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m))
    }
    /// The device's launcher, or one that launches nothing once it failed.
    fn l(&self) -> &dyn Launcher {
        if self.failed() { &Skip } else { &self.dev }
    }
    /// A temporary f64 buffer of `n` values (scratch for sums).
    fn scratch64(&self, n: usize) -> Option<D::Mem> {
        self.alloc(8 * n)
    }
    fn read64(&self, m: &Option<D::Mem>, i: usize, n: usize) -> Vec<f64> {
        let mut bytes = vec![0u8; 8 * n];
        self.dtoh(m, 8 * i, &mut bytes);
        bytes.chunks_exact(8).map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()
    }
    fn same_len(&self, what: &str, a: &DevBuf<D::Mem>, b: &DevBuf<D::Mem>) -> usize {
        assert_eq!(a.len, b.len, "{what}: length mismatch");
        a.len
    }
    fn sum_impl(&self, x: &DevBuf<D::Mem>, square: bool) -> f32 {
        let scratch = self.scratch64(ops::SUM_SCRATCH);
        let at = scratch.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m));
        // SAFETY: x holds x.len values; scratch SUM_SCRATCH doubles.
        self.launched(unsafe { ops::sum(self.l(), x.len, square, self.p(x), at) });
        self.read64(&scratch, ops::SUM_SCRATCH - 1, 1)[0] as f32
    }
    unsafe fn sgemm(&self, mut call: SgemmCall) {
        if self.failed() {
            return;
        }
        call.precision = self.precision;
        // SAFETY: forwarded to the caller.
        self.record(unsafe { self.dev.sgemm(&call) });
    }
}

// SAFETY (for every `unsafe` block below): buffers are sized by their own
// `len`, checked against the shapes by asserts in these methods or in
// `ops` before any launch.
impl<D: DeviceApi> Backend for KernelBackend<D> {
    type Buf = DevBuf<D::Mem>;

    fn name(&self) -> &'static str {
        self.name
    }
    /// Waits for the queued work, then returns the first device error (if
    /// any) with a hint.
    fn check(&self) -> crate::Result<()> {
        if !self.failed() {
            self.record(self.dev.synchronize());
        }
        match self.error() {
            None => Ok(()),
            Some(msg) => Err(crate::Error::Device(format!("{} device error: {msg}; {}", self.name, hint(&msg)))),
        }
    }

    fn zeros(&self, len: usize) -> Self::Buf {
        DevBuf { mem: self.alloc(4 * len.max(1)), len }
    }
    fn upload(&self, data: &[f32]) -> Self::Buf {
        let mut b = self.zeros(data.len());
        self.htod(&mut b.mem, 0, f32_bytes(data));
        b
    }
    fn download_into(&self, buf: &Self::Buf, out: &mut [f32]) {
        assert_eq!(out.len(), buf.len, "download_into: length mismatch");
        self.dtoh(&buf.mem, 0, f32_bytes_mut(out));
    }
    fn write(&self, dst: &mut Self::Buf, dst_off: usize, data: &[f32]) {
        assert!(dst_off + data.len() <= dst.len, "write: out of bounds");
        self.htod(&mut dst.mem, 4 * dst_off, f32_bytes(data));
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len
    }
    fn copy(&self, src: &Self::Buf, src_off: usize, dst: &mut Self::Buf, dst_off: usize, len: usize) {
        assert!(src_off + len <= src.len && dst_off + len <= dst.len, "copy: out of bounds");
        if let (Some(s), Some(d), false) = (&src.mem, &mut dst.mem, self.failed()) {
            self.record(self.dev.dtod(s, 4 * src_off, d, 4 * dst_off, 4 * len));
        }
    }
    fn fill(&self, buf: &mut Self::Buf, value: f32) {
        self.launched(unsafe { ops::fill(self.l(), buf.len, value, self.p(buf)) });
    }

    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) {
        let (ea, eb, ec) = g.extents();
        assert!(a.len >= ea && b.len >= eb && c.len >= ec, "gemm: buffers shorter than the descriptor");
        if g.m == 0 || g.n == 0 {
            return;
        }
        let call = SgemmCall::from_row_major(g, None, self.p(a), self.p(b), self.p(c));
        unsafe { self.sgemm(call) };
    }
    fn gemm_batched(&self, g: &Gemm, batch: &Batch, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) {
        if batch.count == 0 || g.m == 0 || g.n == 0 {
            return;
        }
        let (ea, eb, ec) = g.extents();
        let last = batch.count - 1;
        assert!(
            a.len >= ea + last * batch.stride_a && b.len >= eb + last * batch.stride_b && c.len >= ec + last * batch.stride_c,
            "gemm_batched: buffers shorter than the batch"
        );
        let call = SgemmCall::from_row_major(g, Some(batch), self.p(a), self.p(b), self.p(c));
        unsafe { self.sgemm(call) };
    }

    fn fused_forward(&self, cfg: &Fused, z: &Self::Buf, bias: Option<&Self::Buf>, bn: Option<BnFwd<'_, Self::Buf>>, y: &mut Self::Buf) {
        let n = cfg.rows * cfg.cols;
        assert!(z.len >= n && y.len >= n, "fused_forward: z/y shorter than rows·cols");
        assert!(bias.is_none_or(|b| b.len >= cfg.cols), "fused_forward: bias shorter than cols");
        let bn = bn.map(|b| {
            for v in [b.gamma.len, b.beta.len, b.running_mean.len, b.running_var.len, b.save_mean.len, b.save_invstd.len] {
                assert!(v >= cfg.cols, "fused_forward: BatchNorm buffer shorter than cols");
            }
            BnFwdPtrs {
                gamma: self.p(b.gamma),
                beta: self.p(b.beta),
                running_mean: self.p(b.running_mean),
                running_var: self.p(b.running_var),
                save_mean: self.p(b.save_mean),
                save_invstd: self.p(b.save_invstd),
            }
        });
        self.launched(unsafe { ops::fused_forward(self.l(), cfg, self.p(z), bias.map(|b| self.p(b)), bn, self.p(y)) });
    }
    fn fused_backward(
        &self,
        cfg: &Fused,
        z: &Self::Buf,
        bias: Option<&Self::Buf>,
        bn: Option<BnBwd<'_, Self::Buf>>,
        dy: &Self::Buf,
        dz: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
    ) {
        let n = cfg.rows * cfg.cols;
        assert!(z.len >= n && dy.len >= n && dz.len >= n, "fused_backward: buffers shorter than rows·cols");
        assert!(bias.is_none_or(|b| b.len >= cfg.cols), "fused_backward: bias shorter than cols");
        assert!(dbias.as_ref().is_none_or(|b| b.len >= cfg.cols), "fused_backward: dbias shorter than cols");
        let bn = bn.map(|b| {
            for v in [b.gamma.len, b.beta.len, b.save_mean.len, b.save_invstd.len, b.dgamma.len, b.dbeta.len] {
                assert!(v >= cfg.cols, "fused_backward: BatchNorm buffer shorter than cols");
            }
            BnBwdPtrs {
                gamma: self.p(b.gamma),
                beta: self.p(b.beta),
                save_mean: self.p(b.save_mean),
                save_invstd: self.p(b.save_invstd),
                dgamma: self.p(b.dgamma),
                dbeta: self.p(b.dbeta),
            }
        });
        let dbias = dbias.map(|b| self.p(b));
        self.launched(unsafe { ops::fused_backward(self.l(), cfg, self.p(z), bias.map(|b| self.p(b)), bn, self.p(dy), self.p(dz), dbias) });
    }
    fn layer_norm_forward(
        &self,
        rows: usize,
        cols: usize,
        eps: f32,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        invstd: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(x.len >= n && y.len >= n && mean.len >= rows && invstd.len >= rows, "layer_norm_forward: buffers too short");
        assert!(gamma.len >= cols && beta.len >= cols, "layer_norm_forward: parameters too short");
        self.launched(unsafe {
            ops::layer_norm_forward(self.l(), rows, cols, eps, self.p(x), self.p(gamma), self.p(beta), self.p(y), self.p(mean), self.p(invstd))
        });
    }
    fn layer_norm_backward(
        &self,
        rows: usize,
        cols: usize,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        invstd: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(x.len >= n && dy.len >= n && dx.len >= n, "layer_norm_backward: buffers too short");
        assert!(gamma.len >= cols && dgamma.len >= cols && dbeta.len >= cols && mean.len >= rows && invstd.len >= rows);
        self.launched(unsafe {
            ops::layer_norm_backward(
                self.l(),
                rows,
                cols,
                self.p(x),
                self.p(gamma),
                self.p(mean),
                self.p(invstd),
                self.p(dy),
                self.p(dx),
                self.p(dgamma),
                self.p(dbeta),
            )
        });
    }
    fn softmax_rows(&self, rows: usize, cols: usize, scale: f32, x: &Self::Buf, y: &mut Self::Buf) {
        assert!(x.len >= rows * cols && y.len >= rows * cols, "softmax_rows: buffers too short");
        self.launched(unsafe { ops::softmax_rows(self.l(), rows, cols, scale, self.p(x), self.p(y)) });
    }
    fn softmax_rows_backward(&self, rows: usize, cols: usize, scale: f32, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        let n = rows * cols;
        assert!(y.len >= n && dy.len >= n && dx.len >= n, "softmax_rows_backward: buffers too short");
        self.launched(unsafe { ops::softmax_rows_backward(self.l(), rows, cols, scale, self.p(y), self.p(dy), self.p(dx)) });
    }

    fn memory_attention_forward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        logits: &Self::Buf,
        w_saved: &mut Self::Buf,
        out: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(logits.len >= n && w_saved.len >= n && out.len >= n, "memory_attention_forward: buffers too short");
        self.launched(unsafe {
            ops::memory_forward(self.l(), rows, cols, inv_tau, lambda, self.p(logits), self.p(w_saved), self.p(out))
        });
    }
    fn memory_attention_backward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        w_saved: &Self::Buf,
        dout: &Self::Buf,
        dlogits: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(w_saved.len >= n && dout.len >= n && dlogits.len >= n, "memory_attention_backward: buffers too short");
        self.launched(unsafe {
            ops::memory_backward(self.l(), rows, cols, inv_tau, lambda, self.p(w_saved), self.p(dout), self.p(dlogits))
        });
    }

    fn row_sums(&self, rows: usize, cols: usize, x: &Self::Buf, out: &mut Self::Buf) {
        assert!(x.len >= rows * cols && out.len >= rows, "row_sums: buffers too short");
        self.launched(unsafe { ops::row_sums(self.l(), rows, cols, false, self.p(x), self.p(out)) });
    }
    fn row_sumsq(&self, rows: usize, cols: usize, x: &Self::Buf, out: &mut Self::Buf) {
        assert!(x.len >= rows * cols && out.len >= rows, "row_sumsq: buffers too short");
        self.launched(unsafe { ops::row_sums(self.l(), rows, cols, true, self.p(x), self.p(out)) });
    }
    fn col_sums(&self, rows: usize, cols: usize, x: &Self::Buf, beta: f32, out: &mut Self::Buf) {
        assert!(x.len >= rows * cols && out.len >= cols, "col_sums: buffers too short");
        self.launched(unsafe { ops::col_sums(self.l(), rows, cols, self.p(x), beta, self.p(out)) });
    }
    fn sum(&self, x: &Self::Buf) -> f32 {
        self.sum_impl(x, false)
    }
    fn sumsq(&self, x: &Self::Buf) -> f32 {
        self.sum_impl(x, true)
    }

    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) {
        let n = self.same_len("axpy", x, y);
        self.launched(unsafe { ops::axpy(self.l(), n, alpha, self.p(x), self.p(y)) });
    }
    fn scale(&self, alpha: f32, x: &mut Self::Buf) {
        self.launched(unsafe { ops::scale(self.l(), x.len, alpha, self.p(x)) });
    }
    fn add(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("add", a, b);
        self.same_len("add", a, out);
        self.launched(unsafe { ops::add(self.l(), n, self.p(a), self.p(b), self.p(out)) });
    }
    fn mul(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("mul", a, b);
        self.same_len("mul", a, out);
        self.launched(unsafe { ops::mul(self.l(), n, self.p(a), self.p(b), self.p(out)) });
    }
    fn add_bias(&self, rows: usize, cols: usize, bias: &Self::Buf, x: &mut Self::Buf) {
        assert!(x.len >= rows * cols && bias.len >= cols, "add_bias: buffers too short");
        self.launched(unsafe { ops::add_bias(self.l(), rows, cols, self.p(bias), self.p(x)) });
    }
    fn act_forward(&self, act: Act, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("act_forward", x, out);
        self.launched(unsafe { ops::act_forward(self.l(), n, act, self.p(x), self.p(out)) });
    }
    fn act_backward(&self, act: Act, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        let n = self.same_len("act_backward", x, dy);
        self.same_len("act_backward", x, dx);
        self.launched(unsafe { ops::act_backward(self.l(), n, act, self.p(x), self.p(dy), self.p(dx)) });
    }
    fn sigmoid(&self, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("sigmoid", x, out);
        self.launched(unsafe { ops::sigmoid(self.l(), n, self.p(x), self.p(out)) });
    }
    fn sigmoid_backward(&self, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        let n = self.same_len("sigmoid_backward", y, dy);
        self.same_len("sigmoid_backward", y, dx);
        self.launched(unsafe { ops::sigmoid_backward(self.l(), n, self.p(y), self.p(dy), self.p(dx)) });
    }
    fn abs(&self, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("abs", x, out);
        self.launched(unsafe { ops::abs(self.l(), n, self.p(x), self.p(out)) });
    }
    fn sign(&self, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("sign", x, out);
        self.launched(unsafe { ops::sign(self.l(), n, self.p(x), self.p(out)) });
    }
    fn dropout(&self, mask: &DropoutMask, x: &Self::Buf, y: &mut Self::Buf) {
        let n = self.same_len("dropout", x, y);
        self.launched(unsafe { ops::dropout(self.l(), n, mask, self.p(x), self.p(y)) });
    }
    fn l1_loss(&self, pred: &Self::Buf, target: &Self::Buf, scale: f32, grad: &mut Self::Buf) -> f32 {
        let n = self.same_len("l1_loss", pred, target);
        self.same_len("l1_loss", pred, grad);
        assert!(n > 0, "l1_loss: empty input");
        let partial = self.scratch64(super::launch::MAX_GRID as usize);
        let at = partial.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m));
        let parts = self.launched(unsafe { ops::l1_loss(self.l(), n, scale, self.p(pred), self.p(target), self.p(grad), at) });
        // After a failure nothing ran: no partials to read (the loss reads 0).
        let parts = if self.failed() { 0 } else { parts.unwrap_or(0) };
        (self.read64(&partial, 0, parts).iter().sum::<f64>() / n as f64) as f32
    }

    fn fill_uniform(&self, x: &mut Self::Buf, seed: u64, offset: u64, lo: f32, hi: f32) {
        self.launched(unsafe { ops::fill_uniform(self.l(), x.len, seed, offset, lo, hi, self.p(x)) });
    }
    fn fill_normal(&self, x: &mut Self::Buf, seed: u64, offset: u64, mean: f32, std: f32) {
        self.launched(unsafe { ops::fill_normal(self.l(), x.len, seed, offset, mean, std, self.p(x)) });
    }

    fn adam_step(&self, s: &AdamStep, param: &mut Self::Buf, grad: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf) {
        let n = grad.len;
        assert!(param.len == n && m.len == n && v.len == n, "adam_step: length mismatch");
        self.launched(unsafe { ops::adam_step(self.l(), s, n, self.p(param), self.p(grad), self.p(m), self.p(v)) });
    }

    // ==== DESC soft assignment (kernels/desc.cu via ops_desc.rs) ====
    fn desc_soft_assign(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        z: &Self::Buf,
        mu: &Self::Buf,
        dist: &mut Self::Buf,
        q: &mut Self::Buf,
    ) {
        assert!(z.len >= rows * dim && mu.len >= k * dim, "desc_soft_assign: inputs too short");
        assert!(dist.len >= rows * k && q.len >= rows * k, "desc_soft_assign: outputs too short");
        self.launched(unsafe { ops_desc::soft_assign(self.l(), rows, k, dim, nu, self.p(z), self.p(mu), self.p(dist), self.p(q)) });
    }
    fn desc_kl_grad(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        scale: f32,
        z: &Self::Buf,
        mu: &Self::Buf,
        p: &Self::Buf,
        dist: &Self::Buf,
        g: &mut Self::Buf,
        dz: &mut Self::Buf,
    ) -> f32 {
        assert!(z.len >= rows * dim && mu.len >= k * dim, "desc_kl_grad: inputs too short");
        assert!(p.len >= rows * k && dist.len >= rows * k, "desc_kl_grad: inputs too short");
        assert!(g.len >= rows * k && dz.len >= rows * dim, "desc_kl_grad: outputs too short");
        if rows == 0 {
            return 0.0;
        }
        let row_loss = self.scratch64(rows);
        self.launched(unsafe {
            ops_desc::kl_grad(
                self.l(),
                rows,
                k,
                dim,
                nu,
                scale,
                self.p(z),
                self.p(mu),
                self.p(p),
                self.p(dist),
                self.p(g),
                self.p(dz),
                row_loss.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m)),
            )
        });
        self.read64(&row_loss, 0, rows).iter().sum::<f64>() as f32
    }
    fn desc_centroid_grad(&self, rows: usize, k: usize, dim: usize, z: &Self::Buf, mu: &Self::Buf, g: &Self::Buf, dmu: &mut Self::Buf) {
        assert!(z.len >= rows * dim && mu.len >= k * dim && g.len >= rows * k, "desc_centroid_grad: inputs too short");
        assert!(dmu.len >= k * dim, "desc_centroid_grad: output too short");
        self.launched(unsafe { ops_desc::centroid_grad(self.l(), rows, k, dim, self.p(z), self.p(mu), self.p(g), self.p(dmu)) });
    }
    // ==== end DESC ====
    fn kin_argmax_merge(
        &self,
        rows: usize,
        keys: usize,
        dim: usize,
        key_base: usize,
        q: &Self::Buf,
        k: &Self::Buf,
        best: &mut Self::Buf,
        best_idx: &mut Self::Buf,
    ) {
        assert!(q.len >= rows * dim && k.len >= keys * dim, "kin_argmax_merge: q/k shorter than the tile");
        assert!(best.len >= rows && best_idx.len >= rows, "kin_argmax_merge: best/best_idx shorter than rows");
        self.launched(unsafe {
            super::ops_argmax::kin_argmax(
                self.l(),
                rows,
                keys,
                dim,
                key_base,
                self.p(q),
                self.p(k),
                self.p(best),
                self.p(best_idx),
            )
        });
    }
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
