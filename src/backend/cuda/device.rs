//! The CUDA device through cudarc: context, stream, the kernel modules of
//! `kernels/` (embedded PTX when nvcc was found at build time, else the
//! embedded sources compiled by NVRTC here), and a [`Launcher`] over them.
//! Also `--device auto|cpu|cuda[:N]` parsing.
//!
//! cudarc loads libcuda/libnvrtc at run time and PANICS when they are
//! missing, so every entry point checks `is_culib_present()` first and
//! returns [`CudaError::NoDriver`] / [`CudaError::NoNvrtc`] instead.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
use cudarc::nvrtc::{CompileOptions, Ptx};

use super::kernels;
use super::backend::{DeviceApi, GemmPrecision, KernelBackend, SgemmCall};
use super::launch::{Args, DevPtr, Dims, LaunchError, Launcher};
use crate::backend::Trans;

/// Why the CUDA backend is not available or failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver found (libcuda could not be loaded)")]
    NoDriver,
    #[error(
        "no NVRTC library found (libnvrtc.so.12): this build embeds kernel sources only \
         (nvcc was not found at build time); install the CUDA runtime or NVIDIA's \
         nvidia-cuda-nvrtc-cu12 wheel and put its lib/ on LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    #[error("no cuBLAS library found (libcublas.so.12)")]
    NoCublas,
    #[error("CUDA device {ordinal} requested but {count} device(s) found")]
    NoDevice { ordinal: usize, count: usize },
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error("NVRTC could not compile {file}: {log}")]
    Compile { file: String, log: String },
    #[error("{0}")]
    Launch(#[from] LaunchError),
}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

impl From<CudaError> for crate::Error {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::NoDevice { .. } => crate::Error::Config(e.to_string()),
            other => crate::Error::Other(other.to_string()),
        }
    }
}

/// Whether the CUDA driver library can be loaded (never panics).
pub fn driver_present() -> bool {
    // SAFETY: tries to dlopen the library; no other effect.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC can be loaded (never panics).
pub fn nvrtc_present() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Number of CUDA devices; [`CudaError::NoDriver`] without a driver.
pub fn device_count() -> Result<usize, CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    Ok(CudaContext::device_count()?.max(0) as usize)
}

/// `--device`: where the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA device 0 when a driver and a device are present, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA device N (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| format!("bad device {s:?}: the CUDA ordinal must be a number (cuda:0)")),
                None => Err(format!("unknown device {s:?}: expected auto, cpu, cuda or cuda:N")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What `--device` resolved to.
pub enum Resolved {
    Cpu {
        /// Why `auto` chose the CPU (None when the CPU was asked for).
        reason: Option<String>,
    },
    Cuda(CudaDevice),
}

/// Resolve a [`DeviceSpec`]: `cuda:N` fails with a typed error when
/// unavailable; `auto` falls back to the CPU and says why.
pub fn resolve(spec: DeviceSpec) -> Result<Resolved, CudaError> {
    match spec {
        DeviceSpec::Cpu => Ok(Resolved::Cpu { reason: None }),
        DeviceSpec::Cuda(n) => CudaDevice::new(n).map(Resolved::Cuda),
        DeviceSpec::Auto => match device_count() {
            Ok(0) => Ok(Resolved::Cpu { reason: Some("no CUDA device found".into()) }),
            Ok(_) => match CudaDevice::new(0) {
                Ok(d) => Ok(Resolved::Cuda(d)),
                Err(e) => Ok(Resolved::Cpu { reason: Some(e.to_string()) }),
            },
            Err(e) => Ok(Resolved::Cpu { reason: Some(e.to_string()) }),
        },
    }
}

/// One CUDA device: context, its default stream and every kernel loaded.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    _modules: Vec<Arc<CudaModule>>,
}

impl CudaDevice {
    /// Open device `ordinal` and load the kernels.
    pub fn new(ordinal: usize) -> Result<CudaDevice, CudaError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)?;
        let stream = ctx.default_stream();
        let (major, minor) = ctx.compute_capability()?;
        let mut modules = Vec::new();
        let mut functions = HashMap::new();
        for (file, src) in kernels::sources().iter().filter(|(f, _)| f.ends_with(".cu")) {
            // Build-time PTX first; a driver older than the nvcc that wrote
            // it rejects it, and then NVRTC (when present) compiles the source.
            let prebuilt = kernels::ptx().and_then(|p| p.iter().find(|(f, _)| f == file));
            let module = match prebuilt.map(|(_, ptx)| ctx.load_module(Ptx::from_src(*ptx))) {
                Some(Ok(m)) => m,
                Some(Err(e)) if !nvrtc_present() => return Err(e.into()),
                _ => ctx.load_module(compile(file, src, major, minor)?)?,
            };
            for name in kernels::global_kernels(src) {
                // Names from the embedded sources live as long as the program.
                let name: &'static str = name;
                functions.insert(name, module.load_function(name)?);
            }
            modules.push(module);
        }
        // SAFETY: tries to dlopen the library; no other effect.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CudaError::NoCublas);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| CudaError::Driver(format!("cuBLAS: {e:?}")))?;
        Ok(CudaDevice { ctx, stream, blas, functions, _modules: modules })
    }

    pub fn name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "CUDA device".into())
    }
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// Wait for all launched work.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        Ok(self.stream.synchronize()?)
    }

    // ---- buffers ----
    pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>, CudaError> {
        Ok(self.stream.alloc_zeros::<T>(len.max(1))?)
    }
    pub fn upload<T: cudarc::driver::DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>, CudaError> {
        Ok(self.stream.clone_htod(data)?)
    }
    pub fn download<T: cudarc::driver::DeviceRepr>(&self, buf: &CudaSlice<T>, out: &mut [T]) -> Result<(), CudaError> {
        Ok(self.stream.memcpy_dtoh(buf, out)?)
    }
    /// The device address of a buffer, for [`super::ops`].
    pub fn ptr<T>(&self, buf: &CudaSlice<T>) -> DevPtr {
        let (p, _sync) = buf.device_ptr(&self.stream);
        DevPtr(p)
    }
}

impl DeviceApi for CudaDevice {
    type Mem = CudaSlice<u8>;
    fn alloc(&self, bytes: usize) -> Result<CudaSlice<u8>, String> {
        self.stream.alloc_zeros::<u8>(bytes.max(16)).map_err(|e| format!("allocation of {bytes} bytes: {e}"))
    }
    fn addr(&self, m: &CudaSlice<u8>) -> DevPtr {
        self.ptr(m)
    }
    fn htod(&self, m: &mut CudaSlice<u8>, byte_off: usize, data: &[u8]) -> Result<(), String> {
        let mut view = m.slice_mut(byte_off..byte_off + data.len());
        self.stream.memcpy_htod(data, &mut view).map_err(|e| format!("host→device copy: {e}"))
    }
    fn dtoh(&self, m: &CudaSlice<u8>, byte_off: usize, out: &mut [u8]) -> Result<(), String> {
        let view = m.slice(byte_off..byte_off + out.len());
        self.stream.memcpy_dtoh(&view, out).map_err(|e| format!("device→host copy: {e}"))
    }
    fn dtod(&self, src: &CudaSlice<u8>, src_off: usize, dst: &mut CudaSlice<u8>, dst_off: usize, bytes: usize) -> Result<(), String> {
        let from = src.slice(src_off..src_off + bytes);
        let mut to = dst.slice_mut(dst_off..dst_off + bytes);
        self.stream.memcpy_dtod(&from, &mut to).map_err(|e| format!("device→device copy: {e}"))
    }
    /// f32: `cublasSgemmStridedBatched` (default math mode, no TF32).
    /// TF32/BF16: `cublasGemmStridedBatchedEx` on f32 matrices with the
    /// compute type `CUBLAS_COMPUTE_32F_FAST_TF32` / `_FAST_16BF` (tensor
    /// cores, operands down-converted, f32 accumulation).
    unsafe fn sgemm(&self, c: &SgemmCall) -> Result<(), String> {
        use cudarc::cublas::sys::cublasComputeType_t::{CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_COMPUTE_32F_FAST_TF32};
        use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        use cudarc::cublas::sys::cudaDataType_t::CUDA_R_32F;
        let op = |t: Trans| if t == Trans::N { CUBLAS_OP_N } else { CUBLAS_OP_T };
        let int = |v: usize| i32::try_from(v).map_err(|_| format!("cuBLAS: GEMM dimension {v} above 2³¹ − 1"));
        let (m, n, k, batch) = (int(c.m)?, int(c.n)?, int(c.k)?, int(c.batch)?);
        let (lda, ldb, ldc) = (int(c.lda.max(1))?, int(c.ldb.max(1))?, int(c.ldc.max(1))?);
        let (sa, sb, sc) = (c.stride_a as i64, c.stride_b as i64, c.stride_c as i64);
        let handle = *self.blas.handle();
        // SAFETY: the caller guarantees the addresses cover the matrices.
        let r = unsafe {
            match c.precision {
                GemmPrecision::F32 => cudarc::cublas::result::sgemm_strided_batched(
                    handle,
                    op(c.transa),
                    op(c.transb),
                    m,
                    n,
                    k,
                    &c.alpha,
                    c.a.0 as *const f32,
                    lda,
                    sa,
                    c.b.0 as *const f32,
                    ldb,
                    sb,
                    &c.beta,
                    c.c.0 as *mut f32,
                    ldc,
                    sc,
                    batch,
                ),
                p => cudarc::cublas::result::gemm_strided_batched_ex(
                    handle,
                    op(c.transa),
                    op(c.transb),
                    m,
                    n,
                    k,
                    (&c.alpha as *const f32).cast(),
                    c.a.0 as *const std::ffi::c_void,
                    CUDA_R_32F,
                    lda,
                    sa,
                    c.b.0 as *const std::ffi::c_void,
                    CUDA_R_32F,
                    ldb,
                    sb,
                    (&c.beta as *const f32).cast(),
                    c.c.0 as *mut std::ffi::c_void,
                    CUDA_R_32F,
                    ldc,
                    sc,
                    batch,
                    if p == GemmPrecision::Tf32 { CUBLAS_COMPUTE_32F_FAST_TF32 } else { CUBLAS_COMPUTE_32F_FAST_16BF },
                    cudarc::cublas::sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                ),
            }
        };
        r.map_err(|e| format!("cuBLAS {} GEMM: {e:?}", c.precision))
    }
    fn synchronize(&self) -> Result<(), String> {
        self.stream.synchronize().map_err(|e| format!("synchronize: {e}"))
    }
}

impl KernelBackend<CudaDevice> {
    /// The CUDA backend on device `ordinal` (typed errors when CUDA is absent).
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        Ok(KernelBackend::new(CudaDevice::new(ordinal)?, "cuda"))
    }
}

/// NVRTC: `#include "common.cuh"` is inlined from the embedded header (no
/// file system needed); PTX for the device's own architecture.
fn compile(file: &str, src: &str, major: i32, minor: i32) -> Result<Ptx, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let header = kernels::source("common.cuh").unwrap_or_default();
    let src = src.replace("#include \"common.cuh\"", header);
    let arch: &'static str = match (major, minor) {
        (9, _) => "compute_90",
        (8, 9) => "compute_89",
        (8, 6..) => "compute_86",
        (8, _) => "compute_80",
        (7, 5) => "compute_75",
        (m, _) if m >= 10 => "compute_90",
        _ => "compute_70",
    };
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(file.to_string()),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts)
        .map_err(|e| CudaError::Compile { file: file.to_string(), log: e.to_string() })
}

impl Launcher for CudaDevice {
    unsafe fn launch(&self, kernel: &str, dims: &Dims, args: &mut Args) -> Result<(), LaunchError> {
        let f = self
            .functions
            .get(kernel)
            .ok_or_else(|| LaunchError { kernel: kernel.into(), message: "no such kernel loaded".into() })?;
        let g = (dims.grid[0], dims.grid[1], dims.grid[2]);
        let b = (dims.block[0], dims.block[1], dims.block[2]);
        // SAFETY: the argument array matches the kernel (the caller's duty,
        // see Launcher::launch); the function belongs to this context.
        unsafe {
            cudarc::driver::result::launch_kernel(f.cu_function(), g, b, dims.shared, self.stream.cu_stream(), args.as_mut_slice())
        }
        .map_err(|e| LaunchError { kernel: kernel.into(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_spec_parses() {
        assert_eq!("auto".parse(), Ok(DeviceSpec::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("cuda:x".parse::<DeviceSpec>().unwrap_err().contains("ordinal"));
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("expected auto, cpu, cuda"));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    /// The run-time compilation path (NVRTC on the embedded sources, header
    /// inlined) works for every family, when NVRTC can be loaded (CI puts
    /// the wheel's lib/ on LD_LIBRARY_PATH; no GPU is needed).
    #[test]
    fn nvrtc_compiles_embedded_sources() {
        if !nvrtc_present() {
            return;
        }
        for (file, src) in kernels::sources().iter().filter(|(f, _)| f.ends_with(".cu")) {
            for (major, minor) in [(8, 0), (9, 0)] {
                if let Err(e) = compile(file, src, major, minor) {
                    panic!("{e}");
                }
            }
        }
    }

    /// With no driver (this machine, CI), asking for CUDA is a typed error,
    /// not a panic, and `auto` falls back to the CPU with a reason.
    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        if driver_present() {
            return;
        }
        assert!(matches!(CudaDevice::new(0), Err(CudaError::NoDriver)));
        let e = CudaDevice::new(0).err().unwrap();
        assert_eq!(e.to_string(), "no CUDA driver found (libcuda could not be loaded)");
        match resolve(DeviceSpec::Auto) {
            Ok(Resolved::Cpu { reason: Some(r) }) => assert!(r.contains("no CUDA driver found")),
            _ => panic!("auto without a driver must resolve to the CPU"),
        }
        assert!(matches!(resolve(DeviceSpec::Cuda(1)), Err(CudaError::NoDriver)));
    }
}
