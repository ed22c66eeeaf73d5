//! The CPU emulation of the kernels: every `__global__` kernel of
//! `kernels/*.cu`, compiled as C++ with `kernels/emu/cuda_emu.h` by build.rs,
//! launched with `cuLaunchKernel`'s shape (grid, block, dynamic shared
//! bytes, an array of pointers to the argument values). The twin tests
//! (tests/cuda_emu.rs) run the kernels through this against the CPU backend.
//!
//! Launches run on the calling thread; blocks one after another, the
//! threads of a block as fibers. A barrier mismatch or a warp operation
//! with an exited lane comes back as an error, not a hang.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::backend::{sgemm_reference, DeviceApi, KernelBackend, SgemmCall};
use super::launch::{Args, DevPtr, Dims, LaunchError, Launcher};

mod ffi {
    include!(concat!(env!("OUT_DIR"), "/emu_ffi.rs"));
}

/// Names of all emulated kernels.
pub fn kernel_names() -> impl Iterator<Item = &'static str> {
    ffi::KERNELS.iter().map(|(n, _)| *n)
}

/// Launch kernel `name` with `dims` and `args`.
///
/// # Safety
/// The arguments must match the kernel's parameters in type (their number
/// is checked), and every pointer must cover what the kernel reads and
/// writes with `dims`.
pub unsafe fn launch(name: &str, dims: &Dims, args: &mut Args) -> Result<(), LaunchError> {
    let Some((_, f)) = ffi::KERNELS.iter().find(|(n, _)| *n == name) else {
        return Err(LaunchError { kernel: name.to_string(), message: "no such emulated kernel".into() });
    };
    // The entry refuses a count other than the kernel's parameters before
    // unpacking (the stubs never pass one).
    let nargs = u32::try_from(args.len()).expect("argument count");
    // SAFETY: the entry reads 3 + 3 u32 and `nargs` pointers, each to a live
    // boxed value; the kernel's own accesses are the caller's duty.
    let rc = unsafe { f(dims.grid.as_ptr(), dims.block.as_ptr(), dims.shared, args.as_mut_ptr(), nargs) };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: a NUL-terminated thread-local string owned by the library.
        let msg = unsafe { CStr::from_ptr(ffi::acs_emu_last_error()) };
        Err(LaunchError { kernel: name.to_string(), message: msg.to_string_lossy().into_owned() })
    }
}

/// The emulation as a [`Launcher`]: device addresses are host addresses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Emu;

impl Launcher for Emu {
    unsafe fn launch(&self, kernel: &str, dims: &Dims, args: &mut Args) -> Result<(), LaunchError> {
        // SAFETY: forwarded to the caller of Launcher::launch.
        unsafe { launch(kernel, dims, args) }
    }
}

/// Emulated device memory: zeroed host bytes, 16-byte aligned, written by
/// the emulated kernels through the addresses [`DeviceApi::addr`] hands out
/// (hence the `UnsafeCell`s: the memory is mutated behind shared handles,
/// as device memory is).
pub struct EmuMem {
    cells: Box<[UnsafeCell<u128>]>,
    bytes: usize,
    /// The device's count of live bytes, given back on drop.
    live: Arc<AtomicUsize>,
}

// SAFETY: like device memory, an EmuMem is only touched through launches
// and copies that the owning backend issues in program order.
unsafe impl Send for EmuMem {}
unsafe impl Sync for EmuMem {}

impl EmuMem {
    fn base(&self) -> *mut u8 {
        UnsafeCell::raw_get(self.cells.as_ptr()).cast()
    }
}

impl Drop for EmuMem {
    fn drop(&mut self) {
        self.live.fetch_sub(self.cells.len() * 16, Ordering::Relaxed);
    }
}

/// Faults the emulated device injects, to test how the CUDA backend and the
/// pipeline handle a failing GPU (a real one fails the same calls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmuFaults {
    /// Device memory in bytes: an allocation that would take the live
    /// total above it fails with "out of memory", as `cuMemAlloc` does.
    pub memory_limit: Option<usize>,
    /// Fail the N-th allocation (1-based) whatever its size.
    pub fail_alloc: Option<usize>,
}

/// The emulated device: host memory, the emulated kernels ([`Emu`]), the
/// literal SGEMM ([`sgemm_reference`]), and optional injected faults.
#[derive(Default)]
pub struct EmuDevice {
    faults: EmuFaults,
    allocs: AtomicUsize,
    live: Arc<AtomicUsize>,
}

impl EmuFaults {
    /// Environment variable read by `acsleuth detect --device emu`.
    pub const ENV: &'static str = "ACSLEUTH_EMU_FAULTS";

    /// Parses `alloc=N` and/or `memory=BYTES`, comma-separated.
    pub fn parse(s: &str) -> Result<EmuFaults, String> {
        let mut f = EmuFaults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{}: {part:?} is not key=value", Self::ENV))?;
            let n: usize = value.trim().parse().map_err(|_| format!("{}: {part:?}: the value must be a whole number", Self::ENV))?;
            match key.trim() {
                "alloc" => f.fail_alloc = Some(n),
                "memory" => f.memory_limit = Some(n),
                k => return Err(format!("{}: unknown fault {k:?} (alloc=N, memory=BYTES)", Self::ENV)),
            }
        }
        Ok(f)
    }

    /// The faults named by [`EmuFaults::ENV`] (none when unset).
    pub fn from_env() -> Result<EmuFaults, String> {
        std::env::var(Self::ENV).map_or(Ok(EmuFaults::default()), |s| Self::parse(&s))
    }
}

impl EmuDevice {
    pub fn new(faults: EmuFaults) -> Self {
        EmuDevice { faults, ..Default::default() }
    }
    /// Allocations requested so far (including a failed one).
    pub fn allocations(&self) -> usize {
        self.allocs.load(Ordering::Relaxed)
    }
    /// Bytes of emulated device memory in use.
    pub fn live_bytes(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

impl Launcher for EmuDevice {
    unsafe fn launch(&self, kernel: &str, dims: &Dims, args: &mut Args) -> Result<(), LaunchError> {
        // SAFETY: forwarded to the caller of Launcher::launch.
        unsafe { launch(kernel, dims, args) }
    }
}

impl DeviceApi for EmuDevice {
    type Mem = EmuMem;
    fn alloc(&self, bytes: usize) -> Result<EmuMem, String> {
        let n = self.allocs.fetch_add(1, Ordering::Relaxed) + 1;
        let cells = bytes.div_ceil(16).max(1);
        if self.faults.fail_alloc == Some(n) {
            return Err(format!("allocation {n} of {bytes} bytes failed (injected fault)"));
        }
        let live = self.live.fetch_add(cells * 16, Ordering::Relaxed) + cells * 16;
        if let Some(limit) = self.faults.memory_limit.filter(|&l| live > l) {
            self.live.fetch_sub(cells * 16, Ordering::Relaxed);
            return Err(format!(
                "allocation of {bytes} bytes: out of memory ({} of {limit} bytes of emulated device memory in use)",
                live - cells * 16
            ));
        }
        let cells = (0..cells).map(|_| UnsafeCell::new(0u128)).collect();
        Ok(EmuMem { cells, bytes, live: self.live.clone() })
    }
    fn addr(&self, m: &EmuMem) -> DevPtr {
        DevPtr(m.base() as u64)
    }
    fn htod(&self, m: &mut EmuMem, byte_off: usize, data: &[u8]) -> Result<(), String> {
        assert!(byte_off + data.len() <= m.bytes, "htod: out of bounds");
        // SAFETY: bounds checked; distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), m.base().add(byte_off), data.len()) };
        Ok(())
    }
    fn dtoh(&self, m: &EmuMem, byte_off: usize, out: &mut [u8]) -> Result<(), String> {
        assert!(byte_off + out.len() <= m.bytes, "dtoh: out of bounds");
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(m.base().add(byte_off), out.as_mut_ptr(), out.len()) };
        Ok(())
    }
    fn dtod(&self, src: &EmuMem, src_off: usize, dst: &mut EmuMem, dst_off: usize, bytes: usize) -> Result<(), String> {
        assert!(src_off + bytes <= src.bytes && dst_off + bytes <= dst.bytes, "dtod: out of bounds");
        // SAFETY: bounds checked; `dst` is borrowed mutably, so distinct from `src`.
        unsafe { std::ptr::copy_nonoverlapping(src.base().add(src_off), dst.base().add(dst_off), bytes) };
        Ok(())
    }
    unsafe fn sgemm(&self, call: &SgemmCall) -> Result<(), String> {
        // SAFETY: forwarded to the caller.
        unsafe { sgemm_reference(call) };
        Ok(())
    }
    fn synchronize(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The whole [`crate::backend::Backend`] on emulated kernels: the CUDA
/// backend's code path, runnable without a GPU.
pub type EmuBackend = KernelBackend<EmuDevice>;

/// An [`EmuBackend`] (f32 GEMMs, no faults).
pub fn emu_backend() -> EmuBackend {
    KernelBackend::new(EmuDevice::default(), "cuda-emu")
}

/// An [`EmuBackend`] whose device injects `faults`.
pub fn emu_backend_with_faults(faults: EmuFaults) -> EmuBackend {
    KernelBackend::new(EmuDevice::new(faults), "cuda-emu")
}
