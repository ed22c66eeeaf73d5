//! The whole workflow (DESIGN §1) as one run: Module I detects the
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
pub mod truth;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::rng::Stream;
use crate::backend::Backend;
use crate::data::{CsrMatrix, Dataset, DenseMatrix};
use crate::error::{Error, Result};
use crate::model::generator::Generator;
use crate::model::kin::{self, KinPairs};
use crate::model::source::RowSource;
use crate::model::style::{self, StyleGenerator};
use crate::model::subtype::{self, SubtypeResult};
use crate::nn::params;
use crate::pipeline::detect::{self, DetectOptions, GeneReport, ModuleI};

pub use batches::Batches;
pub use checkpoint::{Checkpoints, Fingerprint};
pub use config::{Correction, RunConfig};
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

/// Seconds per stage (0 for a stage resumed from its checkpoint).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunTimings {
    pub preprocess: f64,
    pub module_i: f64,
    pub module_ii: f64,
    pub module_iii: f64,
    pub correction: f64,
    pub module_iv: f64,
    pub total: f64,
}

/// Module II in the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KinReport {
    pub n_pairs: usize,
    /// Distinct reference cells chosen as kin.
    pub n_distinct_kin: usize,
    pub mean_inner_product: f64,
}

/// Module IV in the report.
#[derive(Clone, Debug, Serialize)]
pub struct SubtypeReport {
    pub n_anomalies: usize,
    pub k: usize,
    pub k_inferred: bool,
    pub epochs: usize,
    /// Anomalies per subtype.
    pub sizes: Vec<usize>,
    pub note: Option<String>,
    pub log: serde_json::Value,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub settings: RunConfig,
    pub backend: String,
    pub n_reference: usize,
    pub n_target: usize,
    pub genes: GeneReport,
    pub batches: Vec<(String, usize)>,
    /// Modules taken from their checkpoints instead of recomputed.
    pub resumed: Vec<String>,
    /// Module I's own report (as `acsleuth detect` writes it).
    pub detect: serde_json::Value,
    pub n_called: usize,
    pub kin: Option<KinReport>,
    pub style: Option<serde_json::Value>,
    pub subtype: SubtypeReport,
    pub seconds: RunTimings,
    /// Scores against `--truth-key`, when given.
    pub evaluation: Option<Evaluation>,
}

/// What a run gives back, per target cell in input order unless said.
pub struct RunResult {
    pub cells: Vec<String>,
    /// Genes the models used (the highly variable genes when preprocessed).
    pub genes: Vec<String>,
    /// The target's values over `genes` as the models saw them
    /// (log-normalized).
    pub target_values: CsrMatrix,
    pub scores: Vec<f32>,
    pub calls: Vec<bool>,
    /// Reconstruction deviation ‖x − x̂‖ (Module I).
    pub deviation: Vec<f32>,
    /// Batch index of each cell (names in `report.batches`).
    pub batch_of: Vec<u32>,
    /// Target rows called anomalous, ascending.
    pub anomalies: Vec<usize>,
    /// Subtype of each cell; `None` for cells called normal.
    pub subtypes: Vec<Option<u32>>,
    /// `[n_anomalies, K]` soft assignments, rows in `anomalies` order.
    pub q: DenseMatrix,
    /// `[n_target, latent]` Module I encoder on the corrected expression.
    pub z: DenseMatrix,
    /// `[n_anomalies, latent]` fused embedding of the anomalies.
    pub z_star: DenseMatrix,
    /// `[n_target, genes]` corrected expression (with `keep_corrected`).
    pub corrected: Option<DenseMatrix>,
    pub report: RunReport,
}

#[derive(Serialize, Deserialize)]
struct ModuleIState {
    scores: Vec<f32>,
    calls: Vec<bool>,
    deviation: Vec<f32>,
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
    cfg.validate()?;
    if batches.of.len() != target.n_cells() {
        return Err(Error::invalid(format!("{} batch labels for {} target cells", batches.of.len(), target.n_cells())));
    }
    let t0 = Instant::now();
    let mut secs = RunTimings::default();
    let prep = detect::prepare(reference, target, &cfg.detect)?;
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
            let st = ModuleIState {
                scores: res.scores,
                calls: res.calls,
                deviation: res.deviation,
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
        let fp2 = fp1.then(&"kin pairs: exact maximum inner product of Module I encodings");
        let st = match ck.as_ref().map(|c| c.load::<KinState>("module2", fp2)).transpose()?.flatten() {
            Some(st) => {
                resumed.push("module II".to_string());
                st
            }
            None => {
                invalidate(&ck, "module2")?;
                let p = kin_pairing(be, generator, &prep.reference, &prep.target, &normal, cfg.chunk)?;
                be.check()?;
                let st = KinState { report: kin_report_of(&p), normal: normal.clone(), kin: p.kin, score: p.score };
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
                let r = subtype_anomalies(be, generator, &pass.anomaly_values, &cfg.subtype, cfg.chunk)?;
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

    let mut subtypes = vec![None; n];
    let mut sizes = vec![0usize; st.k];
    for (&row, &l) in anomalies.iter().zip(&st.labels) {
        subtypes[row] = Some(l);
        if let Some(s) = sizes.get_mut(l as usize) {
            *s += 1;
        }
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
        batch_of: batches.of.clone(),
        q: DenseMatrix { rows: anomalies.len(), cols: k, data: st.q },
        z_star: DenseMatrix { rows: anomalies.len(), cols: latent, data: st.z_star },
        anomalies,
        subtypes,
        z: pass.z,
        corrected: pass.corrected,
        report,
    })
}

fn kin_report_of(p: &KinPairs) -> KinReport {
    let mut distinct = p.kin.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mean = if p.score.is_empty() { 0.0 } else { p.score.iter().map(|&s| s as f64).sum::<f64>() / p.score.len() as f64 };
    KinReport { n_pairs: p.kin.len(), n_distinct_kin: distinct.len(), mean_inner_product: mean }
}

/// Module II: the kin of each target row in `normal` — the reference cell
/// whose Module I encoding has the largest inner product with its own.
pub fn kin_pairing<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    reference: &dyn RowSource,
    target: &dyn RowSource,
    normal: &[usize],
    chunk: usize,
) -> Result<KinPairs> {
    if normal.is_empty() {
        return Err(Error::invalid("kin pairing: Module I called every target cell anomalous; no normal cell to pair"));
    }
    let zr = kin::embed(be, generator, reference, None, chunk)?;
    let zt = kin::embed(be, generator, target, Some(normal), chunk)?;
    kin::kin_pairs(be, &zt, &zr)
}

/// What one pass over the target gives the later stages.
pub struct CorrectionPass {
    /// `[n_target, latent]` encodings of the corrected expression.
    pub z: DenseMatrix,
    /// `[n_anomalies, genes]` corrected expression of the anomalies.
    pub anomaly_values: DenseMatrix,
    /// `[n_target, genes]`, when asked for.
    pub corrected: Option<DenseMatrix>,
}

/// Streams the target `chunk` rows at a time through the style generator
/// (Module III), or subtracts each batch's kin shift (`shift`, see
/// [`kin_shift`]); with neither the values pass unchanged; and the
/// Module I encoder, keeping the encodings, the anomalies' corrected rows
/// (`anomalies` ascending) and, with `keep_all`, every corrected row.
#[allow(clippy::too_many_arguments)]
pub fn correct_target<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    mut style: Option<&mut StyleGenerator<B>>,
    shift: Option<&DenseMatrix>,
    target: &dyn RowSource,
    batch_of: &[u32],
    anomalies: &[usize],
    chunk: usize,
    keep_all: bool,
) -> Result<CorrectionPass> {
    let (n, g) = (target.n_rows(), target.n_cols());
    let latent = generator.cfg.latent;
    let chunk = chunk.max(1);
    let mut z = DenseMatrix::zeros(n, latent);
    let mut anomaly_values = DenseMatrix::zeros(anomalies.len(), g);
    let mut corrected = keep_all.then(|| DenseMatrix::zeros(n, g));
    let pb = crate::progress::bar(n as u64, if style.is_some() || shift.is_some() { "correcting" } else { "encoding" });
    let mut next_anomaly = 0;
    let mut r0 = 0;
    while r0 < n {
        let r = chunk.min(n - r0);
        let mut x = DenseMatrix::zeros(r, g);
        target.gather_range(r0, r, &mut x.data)?;
        let x = match (style.as_deref_mut(), shift) {
            (Some(s), _) => style::correct(be, s, &x, &batch_of[r0..r0 + r], chunk)?,
            (None, Some(d)) => apply_shift(x, d, &batch_of[r0..r0 + r]),
            (None, None) => x,
        };
        let zc = kin::embed(be, generator, &x, None, chunk)?;
        z.data[r0 * latent..(r0 + r) * latent].copy_from_slice(&zc.data);
        while next_anomaly < anomalies.len() && anomalies[next_anomaly] < r0 + r {
            let row = anomalies[next_anomaly] - r0;
            anomaly_values.row_mut(next_anomaly).copy_from_slice(x.row(row));
            next_anomaly += 1;
        }
        if let Some(c) = corrected.as_mut() {
            c.data[r0 * g..(r0 + r) * g].copy_from_slice(&x.data);
        }
        pb.inc(r as u64);
        r0 += r;
    }
    pb.finish_and_clear();
    Ok(CorrectionPass { z, anomaly_values, corrected })
}

/// Module IV on the (corrected) expression `x: [n, genes]` of the
/// anomalies: `z = Enc(x)`, `ζ = Enc(x − G(x))` with Module I's frozen
/// generator, then fusion + DESC.
pub fn subtype_anomalies<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    x: &DenseMatrix,
    cfg: &subtype::SubtypeConfig,
    chunk: usize,
) -> Result<SubtypeResult> {
    let residual = residuals(be, generator, x, chunk)?;
    let z = kin::embed(be, generator, x, None, chunk)?;
    let zeta = kin::embed(be, generator, &residual, None, chunk)?;
    subtype::subtype(be, &z, &zeta, cfg)
}

/// `r = x − G(x)`, generator in eval mode, `chunk` rows at a time.
fn residuals<B: Backend>(be: &B, generator: &mut Generator<B>, x: &DenseMatrix, chunk: usize) -> Result<DenseMatrix> {
    // Module I's deviation pass, held in memory (the anomalies are few).
    let dev = crate::model::scorer::compute_deviations(be, generator, x, chunk.max(1), usize::MAX, &std::env::temp_dir())?;
    let data = dev.cache.in_memory().ok_or_else(|| Error::Other("internal: residuals spilled to disk".into()))?.to_vec();
    Ok(DenseMatrix { rows: x.rows, cols: x.cols, data })
}

/// Each batch's kin shift `[n_batches, genes]`: for every gene, the mean
/// over the batch's kin pairs of `x_target − x_kin`, taken over the pairs
/// where both values are non-zero (zero for a gene or batch with no such
/// pair). A batch effect scales a gene's counts, which on log-normalized
/// values shifts the expressed entries; it does not create or remove
/// zeros, so zeros are neither counted nor corrected.
pub fn kin_shift(
    target: &dyn RowSource,
    reference: &dyn RowSource,
    pair_target: &[usize],
    pair_ref: &[usize],
    batch_of: &[u32],
    n_batches: usize,
) -> Result<DenseMatrix> {
    if pair_target.len() != pair_ref.len() {
        return Err(Error::invalid(format!("{} target rows for {} kin", pair_target.len(), pair_ref.len())));
    }
    let g = target.n_cols();
    if reference.n_cols() != g {
        return Err(Error::invalid(format!("target has {g} genes, reference {}", reference.n_cols())));
    }
    let mut sum = vec![0.0f64; n_batches * g];
    let mut count = vec![0u32; n_batches * g];
    let (mut xt, mut xr) = (vec![0.0f32; g], vec![0.0f32; g]);
    for (&t, &r) in pair_target.iter().zip(pair_ref) {
        let b = *batch_of.get(t).ok_or_else(|| Error::invalid(format!("kin pair row {t} has no batch")))? as usize;
        if b >= n_batches {
            return Err(Error::invalid(format!("batch index {b} of {n_batches}")));
        }
        target.gather_dense(&[t], &mut xt)?;
        reference.gather_dense(&[r], &mut xr)?;
        let (s, c) = (&mut sum[b * g..(b + 1) * g], &mut count[b * g..(b + 1) * g]);
        for j in 0..g {
            if xt[j] > 0.0 && xr[j] > 0.0 {
                s[j] += (xt[j] - xr[j]) as f64;
                c[j] += 1;
            }
        }
    }
    let data = sum.iter().zip(&count).map(|(s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 }).collect();
    Ok(DenseMatrix { rows: n_batches, cols: g, data })
}

/// `x − shift[b]` on the non-zero entries of each row (b = the row's
/// batch), clamped at 0; zeros stay zero.
fn apply_shift(mut x: DenseMatrix, shift: &DenseMatrix, batch_of: &[u32]) -> DenseMatrix {
    let g = x.cols;
    for (row, &b) in x.data.chunks_mut(g).zip(batch_of) {
        for (v, s) in row.iter_mut().zip(shift.row(b as usize)) {
            if *v > 0.0 {
                *v = (*v - s).max(0.0);
            }
        }
    }
    x
}
