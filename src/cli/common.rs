//! What the commands that train models (`detect`, `run`, `correct`) share:
//! the input/output/machine flags, the Module I schedule flags, and running
//! a job on the backend `--device` names.

use std::path::{Path, PathBuf};

use crate::backend::cuda::backend::GemmPrecision;
use crate::backend::Backend;
use crate::data::io::{self, ReadOptions};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::output::OutputSet;
use crate::pipeline::{DetectConfig, PreprocessMode};

/// Inputs, output folder and machine.
#[derive(clap::Args, Debug)]
pub struct IoArgs {
    /// Reference (normal) cells: .h5ad, 10x folder or acsleuth store.
    /// Required, except by `detect --model`.
    #[arg(long, value_name = "PATH")]
    pub reference: Option<PathBuf>,
    /// Target cells: .h5ad, 10x folder or acsleuth store.
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// Output directory (created when the outputs are complete; another
    /// command writing it at the same time is refused).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Read the .raw matrix of .h5ad inputs instead of X.
    #[arg(long)]
    pub raw: bool,
    /// Where to compute: auto (a CUDA GPU when one is found, else the CPU),
    /// cpu, cuda or cuda:N (`emu`, for developers, runs the CUDA kernels
    /// under the CPU emulation: see ARCHITECTURE.md).
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: String,
    /// Arithmetic of the CUDA backend's GEMMs: f32 (exact SGEMM), tf32 or
    /// bf16 (tensor cores: faster, relative GEMM error ≈ 3e-4 / 2e-3).
    /// The CPU backend computes in f32: another value is an error with
    /// --device cpu and ignored with a note when auto falls back to the CPU.
    #[arg(long, value_name = "P", default_value = "f32", value_parser = parse_precision)]
    pub gemm_precision: GemmPrecision,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn parse_precision(s: &str) -> std::result::Result<GemmPrecision, String> {
    s.parse()
}

/// Module I's schedule and preprocessing.
#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// Seed of every random draw: the same seed gives the same bytes
    /// [default: 0].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Module I epochs without the memory block [default: 50].
    #[arg(long, value_name = "N")]
    pub epochs_prepare: Option<usize>,
    /// Module I epochs with the memory block [default: 20].
    #[arg(long, value_name = "N")]
    pub epochs_train: Option<usize>,
    /// Use the values as they are (no normalization, log1p or HVG selection).
    #[arg(long)]
    pub no_preprocess: bool,
    /// Highly variable genes chosen on the reference (0 = all) [default:
    /// 3000, on raw counts]. Given, it selects them on log-normalized input
    /// too (scanpy's `seurat` flavour), which otherwise is used as it is.
    #[arg(long, value_name = "N")]
    pub n_hvg: Option<usize>,
}

impl ScheduleArgs {
    /// Overrides `c` with the flags given (the seed is set by the caller:
    /// `run` gives it to every module). An explicit `--n-hvg N > 0` turns
    /// `preprocess = auto` into `always`: a scanpy user who asks for N
    /// genes gets N genes whatever the input holds (log-normalized values
    /// are not normalized again, only filtered and reduced to HVGs).
    pub fn apply(&self, c: &mut DetectConfig) -> Result<()> {
        if let Some(n) = self.epochs_prepare {
            c.prepare_epochs = n;
        }
        if let Some(n) = self.epochs_train {
            c.train_epochs = n;
        }
        if self.no_preprocess {
            c.preprocess = PreprocessMode::Never;
        }
        if let Some(n) = self.n_hvg {
            if self.no_preprocess && n > 0 {
                return Err(Error::Config(format!(
                    "--n-hvg {n} selects genes, which --no-preprocess turns off; drop one of the two"
                )));
            }
            c.n_hvg = n;
            if n > 0 && c.preprocess == PreprocessMode::Auto {
                c.preprocess = PreprocessMode::Always;
            }
        }
        Ok(())
    }
}

/// The resolved `--device`.
pub enum Device {
    Cpu,
    Emu,
    Cuda(crate::backend::cuda::device::CudaDevice),
}

/// Parses and resolves `--device`; `auto` falls back to the CPU and says why
/// on stderr, `cuda[:N]` without a usable GPU is an error.
pub fn device(spec: &str) -> Result<Device> {
    use crate::backend::cuda::device::{resolve, DeviceSpec, Resolved};
    if spec.trim().eq_ignore_ascii_case("emu") {
        return Ok(Device::Emu);
    }
    let parsed: DeviceSpec = spec.parse().map_err(|e: String| Error::Config(format!("--device: {e}")))?;
    match resolve(parsed).map_err(|e| Error::Config(format!("--device {spec}: {e}")))? {
        Resolved::Cpu { reason } => {
            if let Some(r) = reason {
                eprintln!("running on the CPU ({r})");
            }
            Ok(Device::Cpu)
        }
        Resolved::Cuda(d) => Ok(Device::Cuda(d)),
    }
}

/// Work to run on whichever backend `--device` resolves to.
pub trait Job {
    type Output;
    fn run<B: Backend>(&self, be: &B) -> Result<Self::Output>;
}

/// Runs `job` on the backend of `dev` (the CLI's and the Python binding's
/// one way onto a device).
pub fn dispatch<J: Job>(dev: Device, precision: GemmPrecision, job: &J) -> Result<J::Output> {
    match dev {
        Device::Cpu => job.run(&crate::backend::CpuBackend::new()),
        Device::Emu => {
            // Developers test failure handling with injected device faults.
            use crate::backend::cuda::emu::{emu_backend_with_faults, EmuFaults};
            let faults = EmuFaults::from_env().map_err(Error::Config)?;
            job.run(&emu_backend_with_faults(faults).with_gemm_precision(precision))
        }
        Device::Cuda(d) => {
            let be = crate::backend::cuda::backend::KernelBackend::new(d, "cuda").with_gemm_precision(precision);
            job.run(&be)
        }
    }
}

impl IoArgs {
    /// Thread pool, device (and GEMM precision) and the output set (the
    /// folder's lock and a staging folder beside it; `--out` itself is not
    /// created), checked before any input is read.
    pub fn setup(&self) -> Result<(Device, OutputSet)> {
        if self.threads == Some(0) {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        crate::backend::thread_pool::init_global(self.threads);
        let dev = device(&self.device)?;
        if matches!(dev, Device::Cpu) && self.gemm_precision != GemmPrecision::F32 {
            if self.device.trim().eq_ignore_ascii_case("cpu") {
                return Err(Error::Config(format!(
                    "--gemm-precision {} needs the CUDA backend; the CPU backend computes GEMMs in f32 (drop the flag or use --device cuda)",
                    self.gemm_precision
                )));
            }
            eprintln!("--gemm-precision {} ignored: the CPU backend computes GEMMs in f32", self.gemm_precision);
        }
        let set = OutputSet::begin(&self.out)?;
        Ok((dev, set))
    }

    /// Runs `job` on the backend of `dev`.
    pub fn dispatch<J: Job>(&self, dev: Device, job: &J) -> Result<J::Output> {
        dispatch(dev, self.gemm_precision, job)
    }

    /// `--reference`, which every command but `detect --model` needs.
    pub fn reference(&self) -> Result<&Path> {
        self.reference.as_deref().ok_or_else(|| Error::Config("--reference PATH is required".into()))
    }

    /// Reads both inputs into memory.
    pub fn read(&self) -> Result<(Dataset, Dataset)> {
        let opts = ReadOptions { use_raw: self.raw };
        Ok((io::read_dataset(self.reference()?, &opts)?, io::read_dataset(&self.target, &opts)?))
    }
}
