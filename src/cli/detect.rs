//! `acsleuth detect`: Module I from the command line. Settings come from
//! the defaults (the authors'), then `--config FILE.toml`, then the flags;
//! everything is checked before any work starts.

use std::path::{Path, PathBuf};

use crate::data::io::{self, ReadOptions};
use crate::error::{Error, Result};
use crate::data::store::Store;
use crate::pipeline::detect::{detect_stores, detect_with, DetectOptions};
use crate::pipeline::output::{prepare_out_dir, write_deviations, write_json, write_scores};
use crate::backend::cuda::precision::GemmPrecision;
use crate::pipeline::{DetectConfig, Kernel, PreprocessMode};

fn parse_precision(s: &str) -> std::result::Result<GemmPrecision, String> {
    s.parse()
}

/// Find anomalous cells in a target set given a reference set of normal
/// cells (Module I: GAN with memory bank + MMD scorer).
///
/// Writes DIR/scores.tsv (`cell<TAB>score<TAB>anomaly`, target order),
/// DIR/deviations.tsv (`cell<TAB>deviation`: ‖x − x̂‖, a ranking that is
/// often sharper than the MMD score), DIR/report.json (settings, genes,
/// timings, losses, call rule, orientation) and DIR/model.safetensors.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Reference (normal) cells: .h5ad, 10x folder or acsleuth store.
    #[arg(long, value_name = "PATH")]
    pub reference: PathBuf,
    /// Target cells to score: .h5ad, 10x folder or acsleuth store.
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// Output directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// TOML file of detection settings (keys as in report.json's `settings`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Expected anomaly fraction: fixes the group sizes and calls the top fraction.
    #[arg(long, value_name = "R")]
    pub anomaly_ratio: Option<f64>,
    /// Seed of every random draw.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Epochs without the memory block [default: 50].
    #[arg(long, value_name = "N")]
    pub epochs_prepare: Option<usize>,
    /// Epochs with the memory block [default: 20].
    #[arg(long, value_name = "N")]
    pub epochs_train: Option<usize>,
    /// Kernel of the MMD scorer [default: linear].
    #[arg(long, value_enum)]
    pub kernel: Option<Kernel>,
    /// Use the values as they are (no normalization, log1p or HVG selection).
    #[arg(long)]
    pub no_preprocess: bool,
    /// Highly variable genes chosen on the reference (0 = all) [default: 3000].
    #[arg(long, value_name = "N")]
    pub n_hvg: Option<usize>,
    /// Read the .raw matrix of .h5ad inputs instead of X.
    #[arg(long)]
    pub raw: bool,
    /// Where to compute: auto (a CUDA GPU when one is found, else the CPU),
    /// cpu, cuda or cuda:N. `emu` runs the CUDA kernels under the CPU
    /// emulation (for developers: slow, small inputs only; the environment
    /// variable ACSLEUTH_EMU_FAULTS=alloc=N,memory=BYTES makes the emulated
    /// device fail its N-th allocation or run out of memory).
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

/// Defaults ← config file ← flags.
pub fn settings(a: &Args) -> Result<DetectConfig> {
    let mut c = match &a.config {
        Some(p) => DetectConfig::from_toml_file(p)?,
        None => DetectConfig::default(),
    };
    if let Some(r) = a.anomaly_ratio {
        c.anomaly_ratio = Some(r);
    }
    if let Some(s) = a.seed {
        c.seed = s;
    }
    if let Some(n) = a.epochs_prepare {
        c.prepare_epochs = n;
    }
    if let Some(n) = a.epochs_train {
        c.train_epochs = n;
    }
    if let Some(k) = a.kernel {
        c.kernel = k;
    }
    if a.no_preprocess {
        c.preprocess = PreprocessMode::Never;
    }
    if let Some(n) = a.n_hvg {
        c.n_hvg = n;
    }
    c.validate()?;
    Ok(c)
}

/// The resolved `--device`.
pub(crate) enum Device {
    Cpu,
    Emu,
    Cuda(crate::backend::cuda::device::CudaDevice),
}

/// Parses and resolves `--device`; `auto` falls back to the CPU and says why
/// on stderr, `cuda[:N]` without a usable GPU is an error.
pub(crate) fn device(spec: &str) -> Result<Device> {
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

/// Reads (or streams) the inputs and runs Module I on backend `be`.
fn run_on<B: crate::backend::Backend>(
    be: &B,
    a: &Args,
    formats: &(io::Format, io::Format),
    cfg: &DetectConfig,
    dopts: &DetectOptions,
) -> Result<crate::pipeline::detect::DetectResult> {
    // Two stores of log-normalized values over the same genes are streamed
    // from their memory maps; everything else is loaded (and preprocessed).
    if let (io::Format::Store, io::Format::Store) = formats {
        if !a.raw {
            let (r, t) = (Store::open(&a.reference)?, Store::open(&a.target)?);
            if let Some(res) = detect_stores(be, &r, &t, cfg, dopts)? {
                return Ok(res);
            }
        }
    }
    let opts = ReadOptions { use_raw: a.raw };
    let reference = io::read_dataset(&a.reference, &opts)?;
    let target = io::read_dataset(&a.target, &opts)?;
    detect_with(be, &reference, &target, cfg, dopts)
}

/// Creates `dir` and checks that a file can be written in it.
pub(crate) fn check_writable(dir: &Path) -> Result<()> {
    prepare_out_dir(dir)?;
    let probe = dir.join(format!(".acsleuth-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| Error::io(dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))
}

pub fn run(a: Args) -> Result<()> {
    let cfg = settings(&a)?;
    if let Some(t) = a.threads {
        if t == 0 {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        // Fails only if a pool already exists (then its size stays).
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
    }
    let formats = (io::detect(&a.reference)?, io::detect(&a.target)?);
    let dev = device(&a.device)?;
    if matches!(dev, Device::Cpu) && a.gemm_precision != GemmPrecision::F32 {
        if a.device.trim().eq_ignore_ascii_case("cpu") {
            return Err(Error::Config(format!(
                "--gemm-precision {} needs the CUDA backend; the CPU backend computes GEMMs in f32 (drop the flag or use --device cuda)",
                a.gemm_precision
            )));
        }
        eprintln!("--gemm-precision {} ignored: the CPU backend computes GEMMs in f32", a.gemm_precision);
    }
    check_writable(&a.out)?;
    let dopts = DetectOptions {
        model_path: Some(a.out.join("model.safetensors")),
        spill_dir: Some(a.out.clone()),
        mem_budget: None,
    };
    let res = match dev {
        Device::Cpu => run_on(&crate::backend::CpuBackend::new(), &a, &formats, &cfg, &dopts)?,
        Device::Emu => {
            // Developers test failure handling with injected device faults.
            use crate::backend::cuda::emu::{emu_backend_with_faults, EmuFaults};
            let faults = EmuFaults::from_env().map_err(Error::Config)?;
            let be = emu_backend_with_faults(faults).with_gemm_precision(a.gemm_precision);
            run_on(&be, &a, &formats, &cfg, &dopts)?
        }
        Device::Cuda(dev) => {
            let be = crate::backend::cuda::backend::KernelBackend::new(dev, "cuda").with_gemm_precision(a.gemm_precision);
            run_on(&be, &a, &formats, &cfg, &dopts)?
        }
    };
    write_scores(&a.out.join("scores.tsv"), &res.cells, &res.scores, &res.calls)?;
    write_deviations(&a.out.join("deviations.tsv"), &res.cells, &res.deviation)?;
    write_json(&a.out.join("report.json"), &res.report)?;
    eprintln!(
        "{} of {} target cells called anomalous ({}); results in {}",
        res.report.n_called,
        res.cells.len(),
        res.report.call_rule,
        a.out.display()
    );
    Ok(())
}
