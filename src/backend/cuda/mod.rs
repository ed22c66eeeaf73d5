//! The CUDA side of the engine: the hand-written kernels of `kernels/`
//! ([`kernels`]: embedded sources/PTX), their launch geometry ([`launch`]),
//! and their CPU emulation ([`emu`]) used by the twin tests; the device
//! itself through cudarc ([`device`]: context, kernel modules, `--device`);
//! and the [`crate::backend::Backend`] built on them ([`backend`]):
//! [`CudaBackend`] on a GPU, [`emu::EmuBackend`] on the emulation.

pub mod backend;
pub mod device;
pub mod emu;
pub mod kernels;
pub mod launch;
pub mod ops;
pub mod ops_desc;
pub mod ops_argmax;
pub mod ops_knn;
pub mod precision;
pub mod signature;

/// The CUDA backend: kernels + cuBLAS on a [`device::CudaDevice`].
pub type CudaBackend = backend::KernelBackend<device::CudaDevice>;
