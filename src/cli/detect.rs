//! `acsleuth detect`: Module I from the command line. Settings come from
//! the defaults (the authors'), then `--config FILE.toml`, then the flags;
//! everything is checked before any work starts.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::data::io::{self, ReadOptions};
use crate::data::store::Store;
use crate::error::{Error, Result};
use crate::pipeline::detect::{detect_inputs, detect_owned, DetectOptions, DetectResult, Inputs};
use crate::output::{write_deviations, write_json, write_scores_with};
use crate::pipeline::detector::Detector;
use crate::pipeline::{DetectConfig, Kernel, ScoreMethod};

use super::common::{IoArgs, Job, ScheduleArgs};

/// Find anomalous cells in a target set given a reference set of normal
/// cells.
///
/// Default score (`--score novelty`): reference and target in one joint
/// PCA, corrected with Harmony so that a shift shared by the target's
/// normal cells (condition, batch, technology) is not read as anomaly;
/// each target cell is scored by its distance to the nearest reference
/// cells and by how few reference cells its neighbourhood holds. Calls are
/// a discovery set at a false discovery rate (`--fdr`, default 0.1):
/// conformal p-values against the reference's own scores, then
/// Benjamini–Hochberg. `--score paper` runs the paper's Module I (GAN with
/// memory bank + MMD scorer) instead.
///
/// Writes DIR/scores.tsv (`cell<TAB>score<TAB>anomaly<TAB>pvalue<TAB>qvalue`,
/// target order; the last two with the novelty score) and DIR/report.json
/// (settings, genes, timings, call rule, number called, estimated anomaly
/// fraction). With `--score paper` also DIR/deviations.tsv
/// (`cell<TAB>deviation`: ‖x − x̂‖) and DIR/model.safetensors (Module I).
///
/// A reference prepared once scores many targets: `--save-model` writes
/// DIR/model.safetensors (the prepared reference, its genes and the
/// settings), and `--model FILE --target T` scores T with it instead of
/// `--reference`, with the same scores and calls.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub io: IoArgs,
    /// TOML file of detection settings (`acsleuth config --defaults` prints
    /// every key at its default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Expected anomaly fraction: calls the top fraction by score instead of
    /// the FDR rule (and, under --score paper, fixes the MMD group sizes).
    #[arg(long, value_name = "R")]
    pub anomaly_ratio: Option<f64>,
    /// The score that ranks and calls [default: novelty].
    #[arg(long, value_enum)]
    pub score: Option<ScoreMethod>,
    /// False discovery rate of the calls, in (0, 1): a cell is called when
    /// its Benjamini–Hochberg q-value (from conformal p-values against the
    /// reference's leave-one-out scores) is at most Q [default: 0.1].
    #[arg(long, value_name = "Q")]
    pub fdr: Option<f64>,
    /// Correction of the joint representation before scoring [default: harmony].
    #[arg(long, value_enum)]
    pub correction: Option<crate::model::novelty::Correction>,
    /// Target obs column naming each cell's batch (sample, donor,
    /// technology): each batch is corrected as its own, which makes the
    /// calls trustworthy when batches differ; without it the target is one
    /// batch.
    #[arg(long, value_name = "KEY")]
    pub batch_key: Option<String>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Kernel of the MMD scorer [default: linear].
    #[arg(long, value_enum)]
    pub kernel: Option<Kernel>,
    /// Score the target against a saved reference (a model.safetensors that
    /// `--save-model` or Python's `Detector.save` wrote) instead of
    /// --reference. Its genes and preprocessing are fixed; --fdr,
    /// --anomaly-ratio, --seed, --correction and --batch-key still apply.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "score", "kernel"])]
    pub model: Option<PathBuf>,
    /// Also write DIR/model.safetensors: the prepared reference, for
    /// `--model` (novelty score).
    #[arg(long, conflicts_with = "model")]
    pub save_model: bool,
}

/// Defaults ← config file ← flags.
pub fn settings(a: &Args) -> Result<DetectConfig> {
    let c = match &a.config {
        Some(p) => DetectConfig::from_toml_file(p)?,
        None => DetectConfig::default(),
    };
    with_flags(a, c)
}

/// `base` ← flags.
fn with_flags(a: &Args, mut c: DetectConfig) -> Result<DetectConfig> {
    if let Some(r) = a.anomaly_ratio {
        c.anomaly_ratio = Some(r);
    }
    if let Some(s) = a.schedule.seed {
        c.seed = s;
    }
    a.schedule.apply(&mut c)?;
    if let Some(k) = a.kernel {
        c.kernel = k;
    }
    if let Some(m) = a.score {
        c.score = m;
    }
    if let Some(q) = a.fdr {
        c.fdr = q;
    }
    if let Some(x) = a.correction {
        c.novelty.correction = x;
    }
    c.validate()?;
    Ok(c)
}

/// Reads (or streams) the inputs and runs Module I.
struct Detect<'a> {
    a: &'a Args,
    formats: (io::Format, io::Format),
    cfg: DetectConfig,
    opts: DetectOptions,
    /// The saved reference of `--model`.
    model: Option<Detector>,
}

impl Job for Detect<'_> {
    type Output = (DetectResult, Option<Detector>);
    fn run<B: Backend>(&self, be: &B) -> Result<Self::Output> {
        let io = &self.a.io;
        let opts = ReadOptions { use_raw: io.raw };
        if let Some(det) = &self.model {
            let target = io::read_dataset(&io.target, &opts)?;
            return Ok((det.score_with(be, &target, &self.cfg, &self.opts)?, None));
        }
        if self.a.save_model {
            let det = Detector::fit(&io::read_dataset(io.reference()?, &opts)?, &self.cfg)?;
            let target = io::read_dataset(&io.target, &opts)?;
            let res = det.score(be, &target, &self.opts)?;
            return Ok((res, Some(det)));
        }
        // Two stores of log-normalized values over the same genes are streamed
        // from their memory maps; everything else is loaded (and preprocessed).
        if let (io::Format::Store, io::Format::Store) = self.formats
            && !io.raw
        {
            let (r, t) = (Store::open(io.reference()?)?, Store::open(&io.target)?);
            if let Some(inputs) = Inputs::stores(&r, &t, self.opts.batch_key.as_deref(), &self.cfg)? {
                return Ok((detect_inputs(be, &inputs, &self.cfg, &self.opts)?, None));
            }
        }
        let reference = io::read_dataset(io.reference()?, &opts)?;
        let target = io::read_dataset(&io.target, &opts)?;
        Ok((detect_owned(be, reference, target, &self.cfg, &self.opts)?, None))
    }
}

pub fn run(a: Args) -> Result<()> {
    let (cfg, model, ref_format) = match &a.model {
        Some(path) => {
            if a.io.reference.is_some() {
                return Err(Error::Config("give --reference or --model, not both".into()));
            }
            let det = Detector::load(path)?;
            // The format of the (absent) reference is never looked at.
            (with_flags(&a, det.settings.clone())?, Some(det), io::Format::Store)
        }
        None => {
            let cfg = settings(&a)?;
            if a.save_model && cfg.score != ScoreMethod::Novelty {
                return Err(Error::Config("--save-model saves the novelty score's reference; --score paper writes its Module I checkpoint (DIR/model.safetensors) anyway".into()));
            }
            (cfg, None, io::detect(a.io.reference()?)?)
        }
    };
    let formats = (ref_format, io::detect(&a.io.target)?);
    let (dev, mut set) = a.io.setup()?;
    let out = a.io.out.clone();
    let model_path = (cfg.score == ScoreMethod::Paper).then(|| set.file("model.safetensors"));
    let opts = DetectOptions { model_path, spill_dir: Some(set.stage().to_path_buf()), mem_budget: None, batch_key: a.batch_key.clone() };
    let (res, fitted) = a.io.dispatch(dev, &Detect { a: &a, formats, cfg, opts, model })?;
    if let Some(det) = fitted {
        det.save(&set.file("model.safetensors"))?;
    }
    let pq = res.p_values.as_deref().zip(res.q_values.as_deref());
    write_scores_with(&set.file("scores.tsv"), &res.cells, &res.scores, &res.calls, pq)?;
    if let Some(d) = &res.deviation {
        write_deviations(&set.file("deviations.tsv"), &res.cells, d)?;
    }
    write_json(&set.file("report.json"), &res.report)?;
    set.commit()?;
    for w in &res.report.genes.warnings {
        eprintln!("warning: {w}");
    }
    let estimate = res
        .report
        .estimated_anomaly_fraction
        .map(|f| format!("; estimated anomaly fraction {:.1} %", 100.0 * f))
        .unwrap_or_default();
    println!(
        "{} of {} target cells called anomalous ({}){estimate}; results in {}",
        res.report.n_called,
        res.cells.len(),
        res.report.call_rule,
        out.display()
    );
    if res.report.score == ScoreMethod::Novelty && res.report.settings.anomaly_ratio.is_none()
        && let Some(n) = crate::pipeline::novelty::batch_note(res.report.n_called, res.cells.len(), a.batch_key.is_some())
    {
        eprintln!("{n}");
    }
    Ok(())
}
