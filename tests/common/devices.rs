//! The devices a test body runs on: the CPU backend, the CUDA backend on
//! the emulated device, and the CUDA backend on a real GPU when one is
//! found (candle's `test_device!`). Where no GPU is found the GPU variant
//! returns at once, unless `ACSLEUTH_REQUIRE_GPU=1`: then "no GPU" is a
//! failure, so a GPU runner cannot pass by skipping.

use acsleuth::backend::cuda::device::{device_count, CudaDevice};
use acsleuth::backend::cuda::CudaBackend;

/// Whether a missing GPU fails the test (`ACSLEUTH_REQUIRE_GPU=1`).
pub fn gpu_required() -> bool {
    std::env::var("ACSLEUTH_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Device 0, or None where there is no CUDA driver or device (a panic
/// instead under `ACSLEUTH_REQUIRE_GPU=1`).
pub fn cuda_device() -> Option<CudaDevice> {
    match device_count() {
        Ok(n) if n > 0 => Some(CudaDevice::new(0).expect("a CUDA device is present but cannot be opened")),
        other => {
            let why = match other {
                Ok(_) => "no CUDA device".to_string(),
                Err(e) => format!("no CUDA driver ({e})"),
            };
            assert!(!gpu_required(), "ACSLEUTH_REQUIRE_GPU=1 but {why}");
            None
        }
    }
}

/// The CUDA backend on device 0, as [`cuda_device`].
pub fn cuda_backend() -> Option<CudaBackend> {
    cuda_device().map(|_| CudaBackend::open(0).expect("a CUDA device is present but the backend cannot be opened"))
}

/// `test_device!(body, cpu_name, emu_name, cuda_name)`: three tests that
/// run `fn body<B: Backend>(be: &B)` on the CPU backend, on the CUDA
/// backend over the emulated device, and on a GPU (see [`cuda_backend`]).
#[macro_export]
macro_rules! test_device {
    ($body:ident, $cpu:ident, $emu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(&acsleuth::backend::CpuBackend::new());
        }
        #[test]
        fn $emu() {
            $body(&acsleuth::backend::cuda::emu::emu_backend());
        }
        #[test]
        fn $cuda() {
            if let Some(be) = common::cuda_backend() {
                $body(&be);
            }
        }
    };
}
