//! The whole workflow (ARCHITECTURE §2) as one run: Module I detects the
//! anomalies, Module II pairs the target's normal cells with their kin in
//! the reference, Module III learns the batches' styles from those pairs
//! and maps every target cell into reference space, Module IV sorts the
//! anomalies into subtypes. The modules are a [`chain`] of checkpointed
//! stages (see [`checkpoint`]), so an interrupted run resumes.
//!
//! Library use: [`run_workflow`] does it all on in-memory datasets; the
//! modules are also callable one by one ([`kin_pairing`],
//! [`correct_target`], [`subtype_anomalies`]) around
//! [`train_module_i`](crate::pipeline::detect::train_module_i).

pub mod chain;
pub mod checkpoint;
pub mod config;
mod modules;
pub mod outputs;
pub mod report;
pub mod stages;
pub mod subtypes;
pub mod truth;

use std::path::PathBuf;
use std::time::Instant;

use crate::backend::Backend;
use crate::data::{Dataset, DenseMatrix};
use crate::error::{Error, Result};
use crate::model::generator::Generator;
use crate::model::style::StyleGenerator;
use crate::pipeline::detect::{self, Inputs, ModuleI, Prepared};

pub use crate::pipeline::batches::Batches;
pub use chain::{Chain, Stage, MODULES};
pub use checkpoint::{Checkpoints, Fingerprint};
pub use config::{Correction, RunConfig};
pub use report::{KinReport, RunReport, RunResult, RunTimings, SubtypeReport};
pub use stages::{correct_target, kin_pairing, kin_pairing_by, kin_shift, subtype_anomalies, CorrectionPass};
pub use truth::{evaluate, Evaluation, Truth};
use modules::{KinState, SubtypeState};
use report::Done;

/// Options of a run that are not model settings.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Write a checkpoint here after each module, and resume from the ones
    /// that match the inputs and settings.
    pub checkpoint_dir: Option<PathBuf>,
    /// Directory for temporary files (default: the system's).
    pub spill_dir: Option<PathBuf>,
    /// Keep the batch-corrected expression of every target cell in the
    /// result (n_target × genes floats); otherwise only the anomalies'.
    pub keep_corrected: bool,
    /// Stop after the correction (Modules I–III; `acsleuth correct`).
    pub skip_subtyping: bool,
}

/// The four modules on two in-memory datasets. `batches` gives each target
/// cell's batch (see [`Batches::from_obs`]).
pub fn run_workflow<B: Backend>(
    be: &B,
    reference: &Dataset,
    target: &Dataset,
    batches: &Batches,
    cfg: &RunConfig,
    opts: &RunOptions,
) -> Result<RunResult> {
    cfg.validate_for(reference.n_cells(), target.n_cells())?;
    if batches.of.len() != target.n_cells() {
        return Err(Error::invalid(format!("{} batch labels for {} target cells", batches.of.len(), target.n_cells())));
    }
    let t0 = Instant::now();
    let mut secs = RunTimings::default();
    crate::progress::stage("preprocess");
    let prep = detect::prepare(reference, target, &cfg.detect)?;
    crate::progress::check_cancelled()?;
    secs.preprocess = t0.elapsed().as_secs_f64();
    let ck = opts.checkpoint_dir.as_deref().map(Checkpoints::new).transpose()?;
    let spill = opts.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let n = prep.target.rows;
    let inputs = Fingerprint::of_inputs(&prep.reference, &prep.target, &target.cell_names, &prep.genes);
    let mut chain = Chain::new(ck.as_ref(), &MODULES, inputs);

    // Module I: detection.
    let t = Instant::now();
    let cells = target.cell_names.clone();
    let m1_inputs = Inputs { reference: &prep.reference, target: &prep.target, cells, genes: prep.report.clone(), target_batches: None, preprocess_seconds: secs.preprocess };
    let (m1state, mut m1) = chain.stage_with_networks(
        &MODULES[0],
        &cfg.detect,
        |path| modules::module_i(be, &m1_inputs, batches, cfg, path, &spill),
        |path| ModuleI::<B>::load(be, &cfg.detect, prep.genes.len(), path),
    )?;
    be.check()?;
    secs.module_i = t.elapsed().as_secs_f64();
    let generator = &mut m1.trainer.generator;
    let anomalies: Vec<usize> = (0..n).filter(|&i| m1state.calls[i]).collect();
    let normal: Vec<usize> = (0..n).filter(|&i| !m1state.calls[i]).collect();

    // Modules II and III, then every target cell through the correction
    // (when on) and the encoder.
    let mut corr = correction_stages(&mut chain, be, generator, &prep, batches, cfg, &normal, &mut secs)?;
    let t = Instant::now();
    let pass = correct_target(be, generator, corr.style_model.as_mut(), corr.shift.as_ref(), &prep.target, &batches.of, &anomalies, cfg.chunk, opts.keep_corrected)?;
    be.check()?;
    secs.correction = t.elapsed().as_secs_f64();

    // Module IV: subtypes of the anomalies.
    let t = Instant::now();
    let st = if opts.skip_subtyping {
        let note = "subtyping skipped (Modules I–III only): every anomaly is in subtype S1";
        SubtypeState::single(anomalies.len(), generator.cfg.latent, note.into())
    } else {
        chain.stage(&MODULES[3], &cfg.subtype, || modules::module_iv(be, generator, &m1state, &anomalies, &pass.anomaly_values, cfg))?
    };
    be.check()?;
    secs.module_iv = t.elapsed().as_secs_f64();
    secs.total = t0.elapsed().as_secs_f64();
    let latent = generator.cfg.latent;
    let done = Done { m1: m1state, kin: corr.kin, style: corr.style, subtypes: st, anomalies, pass, latent, resumed: chain.resumed, secs };
    Ok(done.into_result(be, target, batches, prep, cfg))
}

/// What Modules II and III leave for the correction pass and the report.
struct CorrectionStages<B: Backend> {
    kin: Option<KinReport>,
    style: Option<serde_json::Value>,
    style_model: Option<StyleGenerator<B>>,
    shift: Option<DenseMatrix>,
}

/// Modules II and III when the batches are corrected: the kin pairs, then
/// the style generator or the kin shift (cheap: computed every time from
/// the pairs, so it keeps no checkpoint, only its place in the chain).
#[allow(clippy::too_many_arguments)]
fn correction_stages<B: Backend>(
    chain: &mut Chain,
    be: &B,
    generator: &mut Generator<B>,
    prep: &Prepared,
    batches: &Batches,
    cfg: &RunConfig,
    normal: &[usize],
    secs: &mut RunTimings,
) -> Result<CorrectionStages<B>> {
    let mut out = CorrectionStages { kin: None, style: None, style_model: None, shift: None };
    if !cfg.batch_correction {
        chain.extend(&("no batch correction", cfg.batch_correction))?;
        return Ok(out);
    }
    let t = Instant::now();
    let settings = ("kin pairs: exact maximum similarity of Module I encodings", &cfg.kin);
    let kin: KinState = chain.stage(&MODULES[1], &settings, || modules::module_ii(be, generator, prep, normal, cfg))?;
    be.check()?;
    secs.module_ii = t.elapsed().as_secs_f64();
    out.kin = Some(kin.report.clone());
    if cfg.correction == Correction::KinShift {
        chain.extend(&("kin shift", &batches.names, &batches.of))?;
        out.shift = Some(kin_shift(&prep.target, &prep.reference, &kin.normal, &kin.pair_ref(), &batches.of, batches.names.len())?);
        return Ok(out);
    }
    let t = Instant::now();
    let gcfg = generator.cfg.clone();
    let (log, model) = chain.stage_with_networks(
        &MODULES[2],
        &(&cfg.style, &batches.names, &batches.of),
        |path| modules::module_iii(be, generator, prep, &kin, batches, cfg, path),
        |path| modules::load_style(be, &gcfg, batches.names.len(), cfg, path),
    )?;
    be.check()?;
    secs.module_iii = t.elapsed().as_secs_f64();
    (out.style, out.style_model) = (Some(log), Some(model));
    Ok(out)
}
