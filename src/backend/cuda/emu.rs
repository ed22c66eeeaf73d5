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
/// The arguments must match the kernel's parameters in number and type, and
/// every pointer must cover what the kernel reads and writes with `dims`.
pub unsafe fn launch(name: &str, dims: &Dims, args: &mut Args) -> Result<(), LaunchError> {
    let Some((_, f)) = ffi::KERNELS.iter().find(|(n, _)| *n == name) else {
        return Err(LaunchError { kernel: name.to_string(), message: "no such emulated kernel".into() });
    };
    // SAFETY: the entry reads 3 + 3 u32 and `args.ptrs.len()` pointers, each
    // to a live boxed value; the kernel's own accesses are the caller's duty.
    let rc = unsafe { f(dims.grid.as_ptr(), dims.block.as_ptr(), dims.shared, args.as_mut_ptr()) };
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

impl DeviceApi for Emu {
    type Mem = EmuMem;
    fn alloc(&self, bytes: usize) -> EmuMem {
        let cells = (0..bytes.div_ceil(16).max(1)).map(|_| UnsafeCell::new(0u128)).collect();
        EmuMem { cells, bytes }
    }
    fn addr(&self, m: &EmuMem) -> DevPtr {
        DevPtr(m.base() as u64)
    }
    fn htod(&self, m: &mut EmuMem, byte_off: usize, data: &[u8]) {
        assert!(byte_off + data.len() <= m.bytes, "htod: out of bounds");
        // SAFETY: bounds checked; distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), m.base().add(byte_off), data.len()) };
    }
    fn dtoh(&self, m: &EmuMem, byte_off: usize, out: &mut [u8]) {
        assert!(byte_off + out.len() <= m.bytes, "dtoh: out of bounds");
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(m.base().add(byte_off), out.as_mut_ptr(), out.len()) };
    }
    fn dtod(&self, src: &EmuMem, src_off: usize, dst: &mut EmuMem, dst_off: usize, bytes: usize) {
        assert!(src_off + bytes <= src.bytes && dst_off + bytes <= dst.bytes, "dtod: out of bounds");
        // SAFETY: bounds checked; `dst` is borrowed mutably, so distinct from `src`.
        unsafe { std::ptr::copy_nonoverlapping(src.base().add(src_off), dst.base().add(dst_off), bytes) };
    }
    unsafe fn sgemm(&self, call: &SgemmCall) {
        // SAFETY: forwarded to the caller.
        unsafe { sgemm_reference(call) }
    }
    fn synchronize(&self) {}
}

/// The whole [`crate::backend::Backend`] on emulated kernels: the CUDA
/// backend's code path, runnable without a GPU.
pub type EmuBackend = KernelBackend<Emu>;

/// An [`EmuBackend`].
pub fn emu_backend() -> EmuBackend {
    KernelBackend::new(Emu, "cuda-emu")
}
