//! `acsleuth run`: the whole workflow from the command line. Settings come
//! from the defaults (the authors'), then `--config FILE.toml` (tables
//! `[detect]`, `[style]`, `[subtype]`), then the flags; everything is
//! checked before any work starts.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::data::io::{self, ReadOptions};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::pipeline::output::prepare_out_dir;
use crate::pipeline::run::{outputs, run_workflow, Batches, RunConfig, RunOptions, RunResult, Truth};
use crate::pipeline::PreprocessMode;

use super::detect::{check_writable, device, Device};

/// Find anomalous cells and sort them into subtypes: detection (Module I),
/// kin pairing (II), style-transfer batch correction (III), transformer
/// fusion + DESC subtyping (IV).
///
/// Writes DIR/cells.tsv (`cell score anomaly subtype batch`, target order),
/// DIR/target.h5ad (the target over the genes used, its obs plus the
/// acsleuth_* columns, obsm embeddings, optionally the corrected values as
/// a layer), DIR/report.json, PNG plots (score distribution, embeddings by
/// call and by subtype, ROC/PR with --truth-key) and DIR/checkpoints/: a
/// rerun of the same command resumes after the last finished module.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Number of subtypes, or `auto` (community detection on a kNN graph of
    /// the fused embeddings) [default: auto].
    #[arg(long, value_name = "K|auto")]
    pub n_subtypes: Option<String>,
    /// Target obs column with the truth (booleans, or cell-type labels: the
    /// labels absent from the reference's column of that name are the
    /// anomalies): adds metrics to the report and ROC/PR plots.
    #[arg(long, value_name = "COL")]
    pub truth_key: Option<String>,
    /// With --truth-key: the labels that are anomalous (comma-separated),
    /// instead of "absent from the reference".
    #[arg(long, value_name = "LABELS", value_delimiter = ',')]
    pub anomaly_labels: Vec<String>,
    /// Expected anomaly fraction: fixes the group sizes and calls the top fraction.
    #[arg(long, value_name = "R")]
    pub anomaly_ratio: Option<f64>,
    /// Skip Modules II and III: subtype the uncorrected expression.
    #[arg(long)]
    pub no_batch_correction: bool,
    /// Keep the corrected expression of every target cell (layer
    /// `corrected` of target.h5ad; n_target × genes floats in memory).
    #[arg(long)]
    pub keep_corrected: bool,
    /// Start from scratch even when DIR/checkpoints holds a matching run.
    #[arg(long)]
    pub no_resume: bool,
}

/// The flags `run` and `correct` share.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Reference (normal) cells: .h5ad, 10x folder or acsleuth store.
    #[arg(long, value_name = "PATH")]
    pub reference: PathBuf,
    /// Target cells: .h5ad, 10x folder or acsleuth store.
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// Output directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// TOML settings: top-level keys batch_correction, chunk; tables
    /// [detect] (the keys of `acsleuth detect --config`), [style], [subtype]
    /// (keys as in report.json's `settings`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Target obs column naming each cell's batch (sample, donor,
    /// technology); without it the target is one batch.
    #[arg(long, value_name = "KEY")]
    pub batch_key: Option<String>,
    /// Seed of every random draw.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Module I epochs without the memory block [default: 50].
    #[arg(long, value_name = "N")]
    pub epochs_prepare: Option<usize>,
    /// Module I epochs with the memory block [default: 20].
    #[arg(long, value_name = "N")]
    pub epochs_train: Option<usize>,
    /// Module III (style transfer) epochs [default: 50].
    #[arg(long, value_name = "N")]
    pub epochs_style: Option<usize>,
    /// Batch correction: `style` (Module III's style-transfer generator, the
    /// paper's) or `kin-shift` (subtract each batch's mean shift from its
    /// kin pairs; keeps the anomalies' own expression) [default: style].
    #[arg(long, value_enum)]
    pub correction: Option<crate::pipeline::run::Correction>,
    /// Use the values as they are (no normalization, log1p or HVG selection).
    #[arg(long)]
    pub no_preprocess: bool,
    /// Highly variable genes chosen on the reference (0 = all) [default: 3000].
    #[arg(long, value_name = "N")]
    pub n_hvg: Option<usize>,
    /// Read the .raw matrix of .h5ad inputs instead of X.
    #[arg(long)]
    pub raw: bool,
    /// Where to compute: auto, cpu, cuda or cuda:N (see `acsleuth detect --help`).
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: String,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl Common {
    /// Defaults ← config file ← these flags.
    pub fn settings(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::from_toml_file(p)?,
            None => RunConfig::default(),
        };
        if let Some(s) = self.seed {
            c.set_seed(s);
        }
        if let Some(n) = self.epochs_prepare {
            c.detect.prepare_epochs = n;
        }
        if let Some(n) = self.epochs_train {
            c.detect.train_epochs = n;
        }
        if let Some(n) = self.epochs_style {
            c.style.epochs = n;
        }
        if let Some(m) = self.correction {
            c.correction = m;
        }
        if self.no_preprocess {
            c.detect.preprocess = PreprocessMode::Never;
        }
        if let Some(n) = self.n_hvg {
            c.detect.n_hvg = n;
        }
        Ok(c)
    }

    /// Thread pool, device and output folder, checked before any reading.
    pub(crate) fn setup(&self) -> Result<Device> {
        if let Some(t) = self.threads {
            if t == 0 {
                return Err(Error::Config("--threads must be at least 1".into()));
            }
            // Fails only if a pool already exists (then its size stays).
            let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
        }
        let dev = device(&self.device)?;
        prepare_out_dir(&self.out)?;
        check_writable(&self.out)?;
        Ok(dev)
    }

    /// Reads both inputs.
    pub fn read(&self) -> Result<(Dataset, Dataset)> {
        let opts = ReadOptions { use_raw: self.raw };
        Ok((io::read_dataset(&self.reference, &opts)?, io::read_dataset(&self.target, &opts)?))
    }
}

/// Parses `--n-subtypes`: a positive integer or `auto`.
pub fn parse_n_subtypes(s: &str) -> Result<Option<usize>> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match s.trim().parse::<usize>() {
        Ok(k) if k >= 1 => Ok(Some(k)),
        _ => Err(Error::Config(format!("--n-subtypes must be a positive integer or 'auto', got '{s}'"))),
    }
}

/// Defaults ← config file ← flags.
pub fn settings(a: &Args) -> Result<RunConfig> {
    let mut c = a.common.settings()?;
    if let Some(r) = a.anomaly_ratio {
        c.detect.anomaly_ratio = Some(r);
    }
    if let Some(k) = &a.n_subtypes {
        c.subtype.n_subtypes = parse_n_subtypes(k)?;
    }
    if a.no_batch_correction {
        c.batch_correction = false;
    }
    c.validate()?;
    Ok(c)
}

/// Everything checked before the models start: settings, the truth and
/// batch columns, the device and the output folder.
struct Plan {
    cfg: RunConfig,
    reference: Dataset,
    target: Dataset,
    batches: Batches,
    truth: Option<Truth>,
    opts: RunOptions,
}

fn plan(a: &Args) -> Result<Plan> {
    let cfg = settings(a)?;
    if !a.anomaly_labels.is_empty() && a.truth_key.is_none() {
        return Err(Error::Config("--anomaly-labels needs --truth-key".into()));
    }
    let (reference, target) = a.common.read()?;
    let batches = Batches::from_obs(&target, a.common.batch_key.as_deref())?;
    let truth = a.truth_key.as_deref().map(|k| Truth::from_obs(&reference, &target, k, &a.anomaly_labels)).transpose()?;
    let ck = a.common.out.join("checkpoints");
    if a.no_resume && ck.exists() {
        std::fs::remove_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
    }
    let opts = RunOptions { checkpoint_dir: Some(ck), spill_dir: Some(a.common.out.clone()), keep_corrected: a.keep_corrected, skip_subtyping: false };
    Ok(Plan { cfg, reference, target, batches, truth, opts })
}

fn run_on<B: Backend>(be: &B, p: &Plan) -> Result<RunResult> {
    run_workflow(be, &p.reference, &p.target, &p.batches, &p.cfg, &p.opts)
}

/// Prints a short summary of a finished run to stdout.
pub fn print_summary(res: &RunResult, files: &[PathBuf]) {
    let r = &res.report;
    println!(
        "{} of {} target cells called anomalous; {} subtype(s){}",
        r.n_called,
        r.n_target,
        r.subtype.k,
        if r.subtype.k_inferred { " (inferred)" } else { "" }
    );
    if !r.resumed.is_empty() {
        println!("resumed from checkpoints: {}", r.resumed.join(", "));
    }
    if let Some(e) = &r.evaluation {
        println!("against {}: AUROC {:.3}, AP {:.3}, F1 {:.3} (at the true fraction {:.3})", e.truth_rule, e.auroc, e.average_precision, e.f1, e.f1_at_true_fraction);
        if let (Some(n), Some(x)) = (e.nmi, e.f1_x_nmi) {
            println!("subtypes: NMI {n:.3}, ARI {:.3}, F1×NMI {x:.3}", e.ari.unwrap_or(0.0));
        }
    }
    for f in files {
        println!("  {}", f.display());
    }
}

pub fn run(a: Args) -> Result<()> {
    let dev = a.common.setup()?;
    let p = plan(&a)?;
    let mut res = match dev {
        Device::Cpu => run_on(&crate::backend::CpuBackend::new(), &p)?,
        Device::Emu => run_on(&crate::backend::cuda::emu::emu_backend(), &p)?,
        Device::Cuda(d) => run_on(&crate::backend::cuda::backend::KernelBackend::new(d, "cuda"), &p)?,
    };
    if let Some(t) = &p.truth {
        res.report.evaluation = Some(crate::pipeline::run::evaluate(t, &res.scores, &res.calls, &res.subtypes)?);
    }
    let files = outputs::write_outputs(&a.common.out, &p.target, &res, p.truth.as_ref())?;
    print_summary(&res, &files);
    Ok(())
}
