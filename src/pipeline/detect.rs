//! Module I as one call: inputs → preprocessing → adversarial training on
//! the reference → deviations of the target → MMD scorer → oriented scores
//! and calls, with a report of everything that was decided.
//!
//! ```no_run
//! # fn main() -> acsleuth::Result<()> {
//! use acsleuth::data::io::{read_dataset, ReadOptions};
//! use acsleuth::pipeline::{detect::detect, DetectConfig};
//! let reference = read_dataset("ref.h5ad".as_ref(), &ReadOptions::default())?;
//! let target = read_dataset("target.h5ad".as_ref(), &ReadOptions::default())?;
//! let result = detect(&reference, &target, &DetectConfig::default())?;
//! println!("{} cells called anomalous", result.calls.iter().filter(|&&c| c).count());
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::backend::{Backend, CpuBackend};
use crate::data::preprocess::{PreprocessReport, ValueKind};
use crate::data::{Dataset, DenseMatrix};
use crate::error::{Error, Result};
use crate::model::scorer::{self, StepLog};
use crate::model::train::{self, TrainLog};
use crate::nn::{params, Module, Param};
use crate::model::novelty::NoveltyReport;
pub use crate::pipeline::inputs::Inputs;
pub use crate::pipeline::novelty::{apply_novelty, detect_novelty};
pub use crate::pipeline::prepare::{prepare, prepare_reference, prepare_target, Prepared, PreparedReference};
use crate::pipeline::{DetectConfig, ScoreMethod};

/// Options of a run that are not model settings.
#[derive(Clone, Debug, Default)]
pub struct DetectOptions {
    /// Save generator, critic and scorer here (safetensors).
    pub model_path: Option<PathBuf>,
    /// Directory for temporary files when the deviations do not fit in
    /// memory (default: the system's temporary directory).
    pub spill_dir: Option<PathBuf>,
    /// Largest in-memory cache in bytes (default 1 GiB).
    pub mem_budget: Option<usize>,
    /// Target obs column naming each cell's batch: the novelty score's
    /// correction then treats each batch as its own.
    pub batch_key: Option<String>,
}

/// Seconds spent per stage.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub preprocess: f64,
    pub prepare: f64,
    pub train: f64,
    pub deviations: f64,
    pub scorer: f64,
    /// The novelty score (joint PCA, correction, neighbours).
    pub novelty: f64,
    pub total: f64,
}

/// How the two groups were told apart, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct OrientationReport {
    pub rule: String,
    pub flipped: bool,
    pub mean_deviation_anomalous: f64,
    pub mean_deviation_normal: f64,
    pub weighted: bool,
}

/// How genes were matched when the values were used as they are.
#[derive(Clone, Debug, Serialize)]
pub struct GeneReport {
    pub mode: String,
    pub reference_value_kind: Option<ValueKind>,
    pub target_value_kind: Option<ValueKind>,
    pub genes_used: usize,
    pub target_genes_shared: usize,
    pub target_genes_missing: usize,
    pub missing_examples: Vec<String>,
    /// The scanpy-equivalent chain's report, when it ran.
    pub preprocess: Option<PreprocessReport>,
    /// What about the input a user should know (each also printed on
    /// stderr by the CLI): counts used unnormalized, HVGs not selected on
    /// log-normalized input, empty target cells.
    pub warnings: Vec<String>,
}

/// What only the paper's Module I (GAN + MMD scorer) produces, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleIReport {
    /// Seconds per training iteration (G step + n_critic critic steps).
    pub seconds_per_iteration_prepare: Option<f64>,
    pub seconds_per_iteration_train: Option<f64>,
    pub training: TrainLog,
    pub scorer_steps: Vec<StepLog>,
    pub rbf_bandwidth: Option<f64>,
    pub deviations_on_disk: bool,
    pub orientation: OrientationReport,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct DetectReport {
    pub settings: DetectConfig,
    pub backend: String,
    pub n_reference: usize,
    pub n_target: usize,
    pub genes: GeneReport,
    pub seconds: Timings,
    /// The score that ranked and called the cells.
    pub score: ScoreMethod,
    pub call_rule: String,
    pub n_called: usize,
    /// Called cells × (1 − fdr) / target cells: the expected share of true
    /// anomalies among the target (a lower bound: anomalies the score cannot
    /// tell from normal cells are not counted). Only for FDR calls.
    pub estimated_anomaly_fraction: Option<f64>,
    /// The novelty detector's report (absent under `score = paper`).
    pub novelty: Option<NoveltyReport>,
    /// Module I's report (absent when the GAN was not trained).
    pub module_i: Option<ModuleIReport>,
}

impl DetectReport {
    /// What every score's report shares, for `inputs` under `cfg` on the
    /// backend named `backend`; each score's path fills in the rest.
    pub fn begin(cfg: &DetectConfig, backend: &str, inputs: &Inputs, score: ScoreMethod) -> Self {
        DetectReport {
            settings: cfg.clone(),
            backend: backend.to_string(),
            n_reference: inputs.reference.n_rows(),
            n_target: inputs.target.n_rows(),
            genes: inputs.genes.clone(),
            seconds: Timings::default(),
            score,
            call_rule: String::new(),
            n_called: 0,
            estimated_anomaly_fraction: None,
            novelty: None,
            module_i: None,
        }
    }
}

/// Scores and calls in the target's cell order, and the report.
#[derive(Clone, Debug)]
pub struct DetectResult {
    pub cells: Vec<String>,
    /// Anomaly score, higher = more anomalous (novelty: ≥ 0, within (0, 1]
    /// unless the density ratio is far beyond the reference's; paper: p).
    pub scores: Vec<f32>,
    pub calls: Vec<bool>,
    /// Conformal p-values and BH q-values (novelty score only).
    pub p_values: Option<Vec<f64>>,
    pub q_values: Option<Vec<f64>>,
    /// Corrected joint coordinates of the target (novelty score only),
    /// [n_target × n_components].
    pub embedding: Option<DenseMatrix>,
    /// Reconstruction deviation ‖x − x̂‖ of every target cell (the
    /// quantity the orientation rule compares between the two groups);
    /// only when Module I's GAN was trained.
    pub deviation: Option<Vec<f32>>,
    pub report: DetectReport,
}

/// Module I on two in-memory datasets with the CPU backend.
pub fn detect(reference: &Dataset, target: &Dataset, cfg: &DetectConfig) -> Result<DetectResult> {
    detect_with(&CpuBackend::new(), reference, target, cfg, &DetectOptions::default())
}

/// Module I on two in-memory datasets with a chosen backend and options:
/// both are prepared (see [`prepare`]), then scored by [`detect_inputs`].
pub fn detect_with<B: Backend>(
    be: &B,
    reference: &Dataset,
    target: &Dataset,
    cfg: &DetectConfig,
    opts: &DetectOptions,
) -> Result<DetectResult> {
    let (prep, secs) = prepared(reference, target, cfg)?;
    let inputs = Inputs::prepared(&prep, target, opts.batch_key.as_deref(), cfg, secs)?;
    detect_inputs(be, &inputs, cfg, opts)
}

/// Both datasets prepared, and the seconds it took.
fn prepared(reference: &Dataset, target: &Dataset, cfg: &DetectConfig) -> Result<(Prepared, f64)> {
    cfg.validate()?;
    let t0 = Instant::now();
    crate::progress::stage("preprocess");
    target.validate()?;
    let prep = prepare_target(prepare_reference(reference, cfg)?, target, cfg)?;
    crate::progress::check_cancelled()?;
    Ok((prep, t0.elapsed().as_secs_f64()))
}

/// [`detect_with`] taking the datasets, which are freed once prepared: the
/// inputs as read (raw counts over every gene, for a large input many
/// times the prepared HVG matrices) do not stay in memory for the whole
/// detection. The CLI and the Python package call this.
pub fn detect_owned<B: Backend>(be: &B, reference: Dataset, target: Dataset, cfg: &DetectConfig, opts: &DetectOptions) -> Result<DetectResult> {
    let (prep, secs) = prepared(&reference, &target, cfg)?;
    drop(reference);
    let inputs = Inputs::prepared(&prep, &target, opts.batch_key.as_deref(), cfg, secs)?;
    drop(target);
    detect_inputs(be, &inputs, cfg, opts)
}

/// Module I on prepared inputs, by the score `cfg.score` names: the novelty
/// score (nothing trained), or the paper's GAN and scorer.
pub fn detect_inputs<B: Backend>(be: &B, inputs: &Inputs, cfg: &DetectConfig, opts: &DetectOptions) -> Result<DetectResult> {
    let t0 = Instant::now();
    let mut res = match cfg.score {
        ScoreMethod::Novelty => {
            crate::progress::stage("novelty score");
            detect_novelty(be, inputs, cfg)?
        }
        ScoreMethod::Paper => train_module_i(be, inputs, cfg, opts)?.0,
    };
    res.report.seconds.preprocess = inputs.preprocess_seconds;
    res.report.seconds.total = inputs.preprocess_seconds + t0.elapsed().as_secs_f64();
    Ok(res)
}

/// Checkpoint of the three networks (`generator.*`, `critic.*`, `scorer.*`).
struct All<'a, B: Backend> {
    models: train::Models<'a, B>,
    scorer: &'a mut scorer::ScorerMlp<B>,
}

impl<B: Backend> Module<B> for All<'_, B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.models.visit(prefix, f);
        self.scorer.visit(&crate::nn::join(prefix, "scorer"), f);
    }
}

/// Module I's trained networks, kept for the later modules (kin pairing
/// embeds with the encoder, subtyping with the whole generator).
pub struct ModuleI<B: Backend> {
    pub trainer: train::Trainer<B>,
    pub scorer: scorer::ScorerMlp<B>,
}

impl<B: Backend> ModuleI<B> {
    /// Loads the networks of a Module I checkpoint (as `detect` and `run`
    /// write it) trained with `cfg` on `genes` genes.
    pub fn load(be: &B, cfg: &DetectConfig, genes: usize, path: &std::path::Path) -> Result<Self> {
        let mut trainer = train::Trainer::new(be, &cfg.train_config(genes));
        let s = cfg.scorer_config(std::env::temp_dir());
        let mut rng = crate::backend::rng::Stream::new(cfg.seed).fork(0x5C04E);
        let mut mlp = scorer::ScorerMlp::new(be, genes, s.h1, s.h2, s.slope, s.dropout, &mut rng);
        let mut all = All {
            models: train::Models { generator: &mut trainer.generator, critic: &mut trainer.critic },
            scorer: &mut mlp,
        };
        params::load(be, &mut all, path)?;
        Ok(ModuleI { trainer, scorer: mlp })
    }
}

/// The paper's Module I on prepared inputs (the GAN trained on the
/// reference, the scorer on the target's deviations), and its trained
/// networks, which the later modules of a run use.
pub fn train_module_i<B: Backend>(be: &B, inputs: &Inputs, cfg: &DetectConfig, opts: &DetectOptions) -> Result<(DetectResult, ModuleI<B>)> {
    let (reference, target) = (inputs.reference, inputs.target);
    cfg.validate()?;
    if reference.n_cols() != target.n_cols() {
        return Err(Error::invalid(format!(
            "reference has {} genes, target {}; align them first",
            reference.n_cols(),
            target.n_cols()
        )));
    }
    if inputs.cells.len() != target.n_rows() {
        return Err(Error::invalid(format!("{} cell names for {} target cells", inputs.cells.len(), target.n_rows())));
    }
    if let Some(r) = cfg.anomaly_ratio {
        // Fail before training when the ratio leaves a group empty.
        crate::model::mmd::groups(&vec![0.5f32; target.n_rows()], crate::model::mmd::Counts::Ratio(r))?;
    }
    let t0 = Instant::now();
    let (mut trainer, log) = train::train(be, reference, &cfg.train_config(reference.n_cols()))?;

    let spill = opts.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let budget = opts.mem_budget.unwrap_or(1 << 30);
    let t1 = Instant::now();
    let mut dev = scorer::compute_deviations(be, &mut trainer.generator, target, 1024, budget, &spill)?;
    let secs_dev = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let mut scfg = cfg.scorer_config(spill);
    scfg.mem_budget = budget;
    let (mut mlp, out) = scorer::train_scorer(be, &mut dev, &scfg)?;
    let calls = scorer::calls(&out.p, cfg.anomaly_ratio)?;
    let secs_scorer = t2.elapsed().as_secs_f64();
    // Nothing is written from a device that failed.
    be.check()?;

    if let Some(path) = &opts.model_path {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "acsleuth module I".to_string());
        meta.insert("settings".to_string(), toml::to_string(cfg).unwrap_or_default());
        let mut all = All {
            models: train::Models { generator: &mut trainer.generator, critic: &mut trainer.critic },
            scorer: &mut mlp,
        };
        params::save(be, &mut all, path, Some(meta))?;
        // The checkpoint downloaded every parameter: a device that failed
        // meanwhile gave zeros, so the file must not stay.
        if let Err(e) = be.check() {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    }

    let per_iter = |secs: f64, epochs: usize| (epochs > 0).then(|| secs / (epochs * log.batches_per_epoch).max(1) as f64);
    let call_rule = match cfg.anomaly_ratio {
        Some(r) => format!("top {r} fraction of cells by score (anomaly_ratio; ties by input order)"),
        None => "score p > 0.5".into(),
    };
    let o = out.orientation;
    let report = DetectReport {
        seconds: Timings {
            preprocess: 0.0,
            prepare: log.seconds_prepare,
            train: log.seconds_train,
            deviations: secs_dev,
            scorer: secs_scorer,
            novelty: 0.0,
            total: t0.elapsed().as_secs_f64(),
        },
        call_rule,
        n_called: calls.iter().filter(|&&c| c).count(),
        module_i: Some(ModuleIReport {
            seconds_per_iteration_prepare: per_iter(log.seconds_prepare, cfg.prepare_epochs),
            seconds_per_iteration_train: per_iter(log.seconds_train, cfg.train_epochs),
            training: log,
            scorer_steps: out.steps,
            rbf_bandwidth: out.bandwidth,
            deviations_on_disk: out.deviations_on_disk,
            orientation: OrientationReport {
                rule: "the group with the larger mean reconstruction deviation ‖δ‖ is anomalous (p > 0.5 side vs the rest; p-weighted means when one side is empty); p is replaced by 1 − p when needed".into(),
                flipped: o.flipped,
                // mean_high/mean_low are the p > 0.5 side and the rest before any flip.
                mean_deviation_anomalous: if o.flipped { o.mean_low } else { o.mean_high },
                mean_deviation_normal: if o.flipped { o.mean_high } else { o.mean_low },
                weighted: o.weighted,
            },
        }),
        ..DetectReport::begin(cfg, be.name(), inputs, ScoreMethod::Paper)
    };
    let res = DetectResult { cells: inputs.cells.clone(), scores: out.p, calls, p_values: None, q_values: None, embedding: None, deviation: Some(out.deviation), report };
    Ok((res, ModuleI { trainer, scorer: mlp }))
}
