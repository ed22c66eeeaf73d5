//! The whole workflow (ARCHITECTURE §2) as one run: Module I detects the
//! anomalies, Module II pairs the target's normal cells with their kin in
//! the reference, Module III learns the batches' styles from those pairs
//! and maps every target cell into reference space, Module IV sorts the
//! anomalies into subtypes. Each module checkpoints (see [`checkpoint`]),
//! so an interrupted run resumes.
//!
//! Library use: [`run_workflow`] does it all on in-memory datasets; the
//! modules are also callable one by one ([`kin_pairing`],
//! [`correct_target`], [`subtype_anomalies`]) around
//! [`detect_sources_full`](crate::pipeline::detect::detect_sources_full).

pub mod batches;
pub mod checkpoint;
pub mod config;
pub mod outputs;
pub mod report;
pub mod stages;
pub mod subtypes;
pub mod truth;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::rng::Stream;
use crate::backend::Backend;
use crate::data::{Dataset, DenseMatrix};
use crate::error::{Error, Result};
use crate::model::novelty;
use crate::model::subtype::{self, SubtypeConfig, SubtypeFeatures};
use crate::model::style::{self, StyleGenerator};
use crate::nn::params;
use crate::pipeline::detect::{self, DetectOptions, ModuleI};
use crate::pipeline::ScoreMethod;

pub use batches::Batches;
pub use checkpoint::{Checkpoints, Fingerprint};
pub use config::{Correction, RunConfig};
pub use report::{KinReport, RunReport, RunResult, RunTimings, SubtypeReport};
use report::kin_report_of;
pub use stages::{correct_target, kin_pairing, kin_pairing_by, kin_shift, subtype_anomalies, CorrectionPass};
pub use truth::{evaluate, Evaluation, Truth};

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

#[derive(Serialize, Deserialize)]
struct ModuleIState {
    scores: Vec<f32>,
    calls: Vec<bool>,
    deviation: Vec<f32>,
    /// BH q-values of the novelty score's calls (absent under `score = paper`).
    #[serde(default)]
    q_value: Option<Vec<f64>>,
    /// The target's corrected joint coordinates ([n × embedding_cols],
    /// row-major; novelty score only): Module IV's default features.
    #[serde(default)]
    embedding: Option<Vec<f32>>,
    #[serde(default)]
    embedding_cols: usize,
    report: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct KinState {
    normal: Vec<usize>,
    kin: Vec<u32>,
    score: Vec<f32>,
    report: KinReport,
}

#[derive(Serialize, Deserialize)]
struct SubtypeState {
    labels: Vec<u32>,
    k: usize,
    k_inferred: bool,
    epochs: usize,
    q: Vec<f32>,
    z_star: Vec<f32>,
    log: serde_json::Value,
}

const CKPT_ORDER: [&str; 4] = ["module1", "module2", "module3", "module4"];

/// Forgets the checkpoint of module `name` and of every later one before
/// `name` is recomputed, so a half-finished recomputation can never be
/// paired with an older, matching record.
fn invalidate(ck: &Option<Checkpoints>, name: &str) -> Result<()> {
    let Some(ck) = ck else { return Ok(()) };
    let from = CKPT_ORDER.iter().position(|n| *n == name).unwrap_or(0);
    for n in &CKPT_ORDER[from..] {
        let p = ck.path(&format!("{n}.json"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
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
    if cfg.detect.score == ScoreMethod::Novelty {
        // Shape checks of the novelty score before hours of training.
        cfg.detect.novelty.validate_for(prep.reference.rows, prep.target.rows)?;
    }
    secs.preprocess = t0.elapsed().as_secs_f64();
    let ck = opts.checkpoint_dir.as_deref().map(Checkpoints::new).transpose()?;
    let spill = opts.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (n, genes) = (prep.target.rows, prep.genes.len());
    let mut resumed = Vec::new();

    // Module I: detection.
    let t = Instant::now();
    let fp1 = Fingerprint::of_inputs(&prep.reference, &prep.target, &target.cell_names, &prep.genes).then(&cfg.detect);
    let saved = match &ck {
        Some(c) if c.path("module1.safetensors").exists() => c.load::<ModuleIState>("module1", fp1)?,
        _ => None,
    };
    let (m1state, mut m1) = match saved {
        Some(st) => {
            let path = ck.as_ref().map(|c| c.path("module1.safetensors")).unwrap_or_default();
            resumed.push("module I".to_string());
            (st, ModuleI::<B>::load(be, &cfg.detect, genes, &path)?)
        }
        None => {
            invalidate(&ck, "module1")?;
            let dopts = DetectOptions {
                model_path: ck.as_ref().map(|c| c.path("module1.safetensors")),
                spill_dir: Some(spill.clone()),
                mem_budget: None,
                batch_key: None,
            };
            let (mut res, m) = detect::detect_sources_full(
                be,
                &prep.reference,
                &prep.target,
                target.cell_names.clone(),
                prep.report.clone(),
                &cfg.detect,
                &dopts,
            )?;
            res.report.seconds.preprocess = secs.preprocess;
            if cfg.detect.score == ScoreMethod::Novelty {
                // Module I stays trained for the later modules; the novelty
                // score ranks and calls, each target batch corrected as its own.
                let tb = (batches.names.len() > 1).then_some(&batches.of[..]);
                let tn = Instant::now();
                crate::progress::stage("novelty score");
                let nov = novelty::score_novelty(be, &prep.reference, &prep.target, tb, &cfg.detect.novelty, cfg.detect.seed)?;
                detect::apply_novelty(&mut res, nov, &cfg.detect)?;
                res.report.seconds.novelty = tn.elapsed().as_secs_f64();
            }
            let st = ModuleIState {
                scores: res.scores,
                calls: res.calls,
                deviation: res.deviation.unwrap_or_default(),
                q_value: res.q_values,
                embedding_cols: res.embedding.as_ref().map_or(0, |e| e.cols),
                embedding: res.embedding.map(|e| e.data),
                report: serde_json::to_value(&res.report).map_err(|e| Error::Other(format!("report: {e}")))?,
            };
            if let Some(c) = &ck {
                c.save("module1", fp1, &st)?;
            }
            (st, m)
        }
    };
    be.check()?;
    secs.module_i = t.elapsed().as_secs_f64();
    let generator = &mut m1.trainer.generator;
    let anomalies: Vec<usize> = (0..n).filter(|&i| m1state.calls[i]).collect();
    let normal: Vec<usize> = (0..n).filter(|&i| !m1state.calls[i]).collect();

    // Modules II and III: kin pairs, then the style generator.
    let mut fp3 = fp1.then(&("no batch correction", cfg.batch_correction));
    let (mut kin_report, mut style_report, mut style_model) = (None, None, None);
    let mut shift: Option<DenseMatrix> = None;
    if cfg.batch_correction {
        let t = Instant::now();
        let fp2 = fp1.then(&("kin pairs: exact maximum similarity of Module I encodings", &cfg.kin));
        let st = match ck.as_ref().map(|c| c.load::<KinState>("module2", fp2)).transpose()?.flatten() {
            Some(st) => {
                resumed.push("module II".to_string());
                st
            }
            None => {
                invalidate(&ck, "module2")?;
                crate::progress::stage("kin pairs");
                let sim = cfg.kin.similarity;
                let p = kin_pairing_by(be, generator, &prep.reference, &prep.target, &normal, cfg.chunk, sim)?;
                be.check()?;
                let st = KinState { report: kin_report_of(&p, sim), normal: normal.clone(), kin: p.kin, score: p.score };
                if let Some(c) = &ck {
                    c.save("module2", fp2, &st)?;
                }
                st
            }
        };
        be.check()?;
        secs.module_ii = t.elapsed().as_secs_f64();
        kin_report = Some(st.report.clone());

        if cfg.correction == Correction::KinShift {
            fp3 = fp2.then(&("kin shift", &batches.names, &batches.of));
            let pair_ref: Vec<usize> = st.kin.iter().map(|&k| k as usize).collect();
            shift = Some(kin_shift(&prep.target, &prep.reference, &st.normal, &pair_ref, &batches.of, batches.names.len())?);
        } else {
            let t = Instant::now();
            fp3 = fp2.then(&(&cfg.style, &batches.names, &batches.of));
            let path = ck.as_ref().map(|c| c.path("module3.safetensors"));
            let saved = match (&ck, &path) {
                (Some(c), Some(p)) if p.exists() => c.load::<serde_json::Value>("module3", fp3)?,
                _ => None,
            };
            let model = match (saved, &path) {
                (Some(log), Some(p)) => {
                    resumed.push("module III".to_string());
                    let mut m = StyleGenerator::new(be, &generator.cfg, batches.names.len(), &mut Stream::new(cfg.style.seed));
                    params::load(be, &mut m, p)?;
                    style_report = Some(log);
                    m
                }
                _ => {
                    invalidate(&ck, "module3")?;
                    let pair_ref: Vec<usize> = st.kin.iter().map(|&k| k as usize).collect();
                    let (mut m, log) = style::train_style(
                        be,
                        Some(&mut *generator),
                        &prep.reference,
                        &prep.target,
                        &st.normal,
                        &pair_ref,
                        &batches.of,
                        batches.names.len(),
                        &cfg.style,
                    )?;
                    be.check()?;
                    let log = serde_json::to_value(&log).map_err(|e| Error::Other(format!("style log: {e}")))?;
                    if let (Some(c), Some(p)) = (&ck, &path) {
                        params::save(be, &mut m, p, None)?;
                        c.save("module3", fp3, &log)?;
                    }
                    style_report = Some(log);
                    m
                }
            };
            be.check()?;
            secs.module_iii = t.elapsed().as_secs_f64();
            style_model = Some(model);
        }
    }

    // Every target cell through the correction (when on) and the encoder.
    let t = Instant::now();
    let pass = correct_target(be, generator, style_model.as_mut(), shift.as_ref(), &prep.target, &batches.of, &anomalies, cfg.chunk, opts.keep_corrected)?;
    be.check()?;
    secs.correction = t.elapsed().as_secs_f64();

    // Module IV: subtypes of the anomalies.
    let t = Instant::now();
    let fp4 = fp3.then(&cfg.subtype);
    let saved = match (&ck, opts.skip_subtyping) {
        (Some(c), false) => c.load::<SubtypeState>("module4", fp4)?,
        _ => None,
    };
    let latent = generator.cfg.latent;
    let (st, note) = match saved {
        Some(st) => {
            resumed.push("module IV".to_string());
            (st, None)
        }
        None => {
            if !opts.skip_subtyping {
                invalidate(&ck, "module4")?;
            }
            let empty = |note: String| {
                let st = SubtypeState {
                    labels: vec![0; anomalies.len()],
                    k: anomalies.len().min(1),
                    k_inferred: false,
                    epochs: 0,
                    q: vec![1.0; anomalies.len()],
                    z_star: vec![0.0; anomalies.len() * latent],
                    log: serde_json::Value::Null,
                };
                (st, Some(note))
            };
            let (st, note) = if opts.skip_subtyping {
                empty("subtyping skipped (Modules I–III only): every anomaly is in subtype S1".into())
            } else if anomalies.len() < 2 {
                empty(format!("{} anomalies called: too few to subtype", anomalies.len()))
            } else {
                crate::progress::stage("subtypes");
                let r = match (&m1state.embedding, cfg.subtype.features) {
                    (Some(e), SubtypeFeatures::Joint) => {
                        // DESC on the corrected joint coordinates; no fusion block.
                        let d = m1state.embedding_cols;
                        let rows = DenseMatrix { rows: anomalies.len(), cols: d, data: anomalies.iter().flat_map(|&i| e[i * d..(i + 1) * d].to_vec()).collect() };
                        subtype::subtype(be, &rows, &rows, &SubtypeConfig { layers: 0, ..cfg.subtype.clone() })?
                    }
                    _ => subtype_anomalies(be, generator, &pass.anomaly_values, &cfg.subtype, cfg.chunk)?,
                };
                be.check()?;
                let log = serde_json::to_value(&r.log).map_err(|e| Error::Other(format!("subtype log: {e}")))?;
                let st = SubtypeState { labels: r.labels, k: r.k, k_inferred: r.k_inferred, epochs: r.epochs, q: r.q.data, z_star: r.z_star.data, log };
                (st, None)
            };
            if let (Some(c), false) = (&ck, opts.skip_subtyping) {
                c.save("module4", fp4, &st)?;
            }
            (st, note)
        }
    };
    be.check()?;
    secs.module_iv = t.elapsed().as_secs_f64();
    secs.total = t0.elapsed().as_secs_f64();

    let mut st = st;
    let k_found = st.k;
    let (k, sizes) = subtypes::compact(&mut st.labels, &mut st.q, st.k);
    st.k = k;
    let note = match (note, k_found - k) {
        (n, 0) => n,
        (None, d) => Some(format!("{d} of {k_found} subtypes ended with fewer than {} cells and were dropped", subtypes::MIN_SUBTYPE_CELLS)),
        (Some(n), d) => Some(format!("{n}; {d} of {k_found} subtypes ended with fewer than {} cells and were dropped", subtypes::MIN_SUBTYPE_CELLS)),
    };
    let mut subtypes = vec![None; n];
    for (&row, &l) in anomalies.iter().zip(&st.labels) {
        subtypes[row] = Some(l);
    }
    let report = RunReport {
        settings: cfg.clone(),
        backend: be.name().to_string(),
        n_reference: prep.reference.rows,
        n_target: n,
        genes: prep.report.clone(),
        batches: batches.names.iter().enumerate().map(|(b, name)| (name.clone(), batches.of.iter().filter(|&&x| x as usize == b).count())).collect(),
        resumed,
        detect: m1state.report,
        n_called: anomalies.len(),
        kin: kin_report,
        style: style_report,
        subtype: SubtypeReport {
            n_anomalies: anomalies.len(),
            k: st.k,
            k_inferred: st.k_inferred,
            epochs: st.epochs,
            sizes,
            note,
            log: st.log,
        },
        seconds: secs,
        evaluation: None,
    };
    let k = st.k.max(1);
    Ok(RunResult {
        cells: target.cell_names.clone(),
        genes: prep.genes,
        target_values: prep.target,
        scores: m1state.scores,
        calls: m1state.calls,
        deviation: m1state.deviation,
        q_values: m1state.q_value,
        batch_of: batches.of.clone(),
        q: DenseMatrix { rows: anomalies.len(), cols: k, data: st.q },
        z_star: DenseMatrix { rows: anomalies.len(), cols: if anomalies.is_empty() { latent } else { st.z_star.len() / anomalies.len() }, data: st.z_star },
        anomalies,
        subtypes,
        z: pass.z,
        corrected: pass.corrected,
        report,
    })
}
