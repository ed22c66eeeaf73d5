//! The CUDA side of the engine: the hand-written kernels of `kernels/`
//! ([`kernels`]: embedded sources/PTX), their launch geometry ([`launch`]),
//! and their CPU emulation ([`emu`]) used by the twin tests; the device
//! itself through cudarc ([`device`]: context, kernel modules, `--device`).

pub mod device;
pub mod emu;
pub mod kernels;
pub mod launch;
pub mod ops;
