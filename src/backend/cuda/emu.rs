//! The CPU emulation of the kernels: every `__global__` kernel of
//! `kernels/*.cu`, compiled as C++ with `kernels/emu/cuda_emu.h` by build.rs,
//! launched with `cuLaunchKernel`'s shape (grid, block, dynamic shared
//! bytes, an array of pointers to the argument values). The twin tests
//! (tests/cuda_emu.rs) run the kernels through this against the CPU backend.
//!
//! Launches run on the calling thread; blocks one after another, the
//! threads of a block as fibers. A barrier mismatch or a warp operation
//! with an exited lane comes back as an error, not a hang.

use std::ffi::CStr;

use super::launch::{Args, Dims, LaunchError, Launcher};

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
