//! [`KernelBackend`]'s state and plumbing: the device, the GEMM precision
//! and the sticky first error (see the parent module), and the memory,
//! copy and launch helpers through which every trait method touches the
//! device, so that none of them runs once it has failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::device_api::{DeviceApi, SgemmCall};
use crate::backend::cuda::launch::{Args, DevPtr, Dims, LaunchError, Launcher};
use crate::backend::cuda::ops;
use crate::backend::cuda::precision::GemmPrecision;

/// An f32 device buffer of `len` values (no memory when its allocation
/// failed; the backend is then in its failed state and never touches it).
pub struct DevBuf<M> {
    pub(super) mem: Option<M>,
    pub(super) len: usize,
}

/// The kernels-and-SGEMM backend over a device; see the module doc.
pub struct KernelBackend<D: DeviceApi> {
    pub(super) dev: D,
    pub(super) name: &'static str,
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
pub(super) fn hint(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("out of memory") || m.contains("out_of_memory") || m.contains("alloc_failed") {
        "out of GPU memory: try a smaller batch_size (and mem_size), fewer genes (n_hvg), or --device cpu"
    } else {
        "the run was stopped; --device cpu runs without the GPU"
    }
}

pub(super) fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns as bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}
pub(super) fn f32_bytes_mut(v: &mut [f32]) -> &mut [u8] {
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
    pub(super) fn failed(&self) -> bool {
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
    pub(super) fn record<T>(&self, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(msg) => {
                self.fail(msg);
                None
            }
        }
    }
    /// Records a failed launch.
    pub(super) fn launched<T>(&self, r: ops::Result<T>) -> Option<T> {
        self.record(r.map_err(|e| e.to_string()))
    }
    pub(super) fn alloc(&self, bytes: usize) -> Option<D::Mem> {
        if self.failed() {
            return None;
        }
        self.record(self.dev.alloc(bytes))
    }
    /// Device → host, or zeros once the device has failed.
    pub(super) fn dtoh(&self, m: &Option<D::Mem>, byte_off: usize, out: &mut [u8]) {
        match m {
            Some(m) if !self.failed() => {
                if self.record(self.dev.dtoh(m, byte_off, out)).is_none() {
                    out.fill(0);
                }
            }
            _ => out.fill(0),
        }
    }
    pub(super) fn htod(&self, m: &mut Option<D::Mem>, byte_off: usize, data: &[u8]) {
        if let Some(m) = m.as_mut().filter(|_| !self.failed()) {
            self.record(self.dev.htod(m, byte_off, data));
        }
    }
    pub(super) fn p(&self, b: &DevBuf<D::Mem>) -> DevPtr {
        b.mem.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m))
    }
    /// The device's launcher, or one that launches nothing once it failed.
    pub(super) fn l(&self) -> &dyn Launcher {
        if self.failed() { &Skip } else { &self.dev }
    }
    /// A temporary f64 buffer of `n` values (scratch for sums).
    pub(super) fn scratch64(&self, n: usize) -> Option<D::Mem> {
        self.alloc(8 * n)
    }
    pub(super) fn read64(&self, m: &Option<D::Mem>, i: usize, n: usize) -> Vec<f64> {
        let mut bytes = vec![0u8; 8 * n];
        self.dtoh(m, 8 * i, &mut bytes);
        bytes.chunks_exact(8).map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()
    }
    pub(super) fn same_len(&self, what: &str, a: &DevBuf<D::Mem>, b: &DevBuf<D::Mem>) -> usize {
        assert_eq!(a.len, b.len, "{what}: length mismatch");
        a.len
    }
    pub(super) fn sum_impl(&self, x: &DevBuf<D::Mem>, square: bool) -> f32 {
        let scratch = self.scratch64(ops::SUM_SCRATCH);
        let at = scratch.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m));
        // SAFETY: x holds x.len values; scratch SUM_SCRATCH doubles.
        self.launched(unsafe { ops::sum(self.l(), x.len, square, self.p(x), at) });
        self.read64(&scratch, ops::SUM_SCRATCH - 1, 1)[0] as f32
    }
    pub(super) unsafe fn sgemm(&self, mut call: SgemmCall) {
        if self.failed() {
            return;
        }
        call.precision = self.precision;
        // SAFETY: forwarded to the caller.
        self.record(unsafe { self.dev.sgemm(&call) });
    }
}
