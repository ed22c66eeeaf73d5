//! What each module of a run computes and keeps in its checkpoint: the
//! bodies of the stages that [`run_workflow`](super::run_workflow) chains
//! (see [`chain`](super::chain)).

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::report::{kin_report_of, KinReport};
use super::stages::{kin_pairing_by, subtype_anomalies};
use super::{Batches, RunConfig};
use crate::backend::rng::Stream;
use crate::backend::Backend;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::model::generator::{Generator, GeneratorConfig};
use crate::model::novelty;
use crate::model::style::{self, StyleGenerator};
use crate::model::subtype::{self, SubtypeConfig, SubtypeFeatures};
use crate::nn::params;
use crate::pipeline::detect::{self, DetectOptions, Inputs, ModuleI, Prepared};
use crate::pipeline::ScoreMethod;

fn json<T: Serialize>(what: &str, v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Other(format!("{what}: {e}")))
}

/// Module I's checkpoint.
#[derive(Serialize, Deserialize)]
pub(super) struct ModuleIState {
    pub scores: Vec<f32>,
    pub calls: Vec<bool>,
    pub deviation: Vec<f32>,
    /// BH q-values of the novelty score's calls (absent under `score = paper`).
    #[serde(default)]
    pub q_value: Option<Vec<f64>>,
    /// The target's corrected joint coordinates ([n × embedding_cols],
    /// row-major; novelty score only): Module IV's default features.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    #[serde(default)]
    pub embedding_cols: usize,
    pub report: serde_json::Value,
}

/// Module II's checkpoint.
#[derive(Serialize, Deserialize)]
pub(super) struct KinState {
    pub normal: Vec<usize>,
    pub kin: Vec<u32>,
    pub score: Vec<f32>,
    pub report: KinReport,
}

impl KinState {
    /// The reference row paired with each row of `normal`.
    pub fn pair_ref(&self) -> Vec<usize> {
        self.kin.iter().map(|&k| k as usize).collect()
    }
}

/// Module IV's checkpoint.
#[derive(Serialize, Deserialize)]
pub(super) struct SubtypeState {
    pub labels: Vec<u32>,
    pub k: usize,
    pub k_inferred: bool,
    pub epochs: usize,
    pub q: Vec<f32>,
    pub z_star: Vec<f32>,
    pub log: serde_json::Value,
    /// Why there was nothing to cluster, when so.
    #[serde(default)]
    pub note: Option<String>,
}

impl SubtypeState {
    /// Every one of `n` anomalies in one subtype, and why.
    pub fn single(n: usize, latent: usize, note: String) -> Self {
        let (labels, q, z_star) = (vec![0; n], vec![1.0; n], vec![0.0; n * latent]);
        SubtypeState { labels, k: n.min(1), k_inferred: false, epochs: 0, q, z_star, log: serde_json::Value::Null, note: Some(note) }
    }
}

/// Module I: the paper's networks trained (the later modules use them),
/// written to `model_path`; the novelty score then ranks and calls, each
/// target batch corrected as its own.
pub(super) fn module_i<B: Backend>(
    be: &B,
    inputs: &Inputs,
    batches: &Batches,
    cfg: &RunConfig,
    model_path: Option<&Path>,
    spill: &Path,
) -> Result<(ModuleIState, ModuleI<B>)> {
    let dopts = DetectOptions { model_path: model_path.map(Path::to_path_buf), spill_dir: Some(spill.to_path_buf()), mem_budget: None, batch_key: None };
    let (mut res, m) = detect::train_module_i(be, inputs, &cfg.detect, &dopts)?;
    res.report.seconds.preprocess = inputs.preprocess_seconds;
    if cfg.detect.score == ScoreMethod::Novelty {
        let tb = (batches.names.len() > 1).then_some(&batches.of[..]);
        let t = Instant::now();
        crate::progress::stage("novelty score");
        let nov = novelty::score_novelty(be, inputs.reference, inputs.target, tb, &cfg.detect.novelty, cfg.detect.seed)?;
        detect::apply_novelty(&mut res, nov, &cfg.detect)?;
        res.report.seconds.novelty = t.elapsed().as_secs_f64();
    }
    let st = ModuleIState {
        scores: res.scores,
        calls: res.calls,
        deviation: res.deviation.unwrap_or_default(),
        q_value: res.q_values,
        embedding_cols: res.embedding.as_ref().map_or(0, |e| e.cols),
        embedding: res.embedding.map(|e| e.data),
        report: json("report", &res.report)?,
    };
    Ok((st, m))
}

/// Module II: the kin of each normal target cell.
pub(super) fn module_ii<B: Backend>(be: &B, generator: &mut Generator<B>, prep: &Prepared, normal: &[usize], cfg: &RunConfig) -> Result<KinState> {
    crate::progress::stage("kin pairs");
    let sim = cfg.kin.similarity;
    let p = kin_pairing_by(be, generator, &prep.reference, &prep.target, normal, cfg.chunk, sim)?;
    be.check()?;
    Ok(KinState { report: kin_report_of(&p, sim), normal: normal.to_vec(), kin: p.kin, score: p.score })
}

/// Module III: the style generator trained on the kin pairs (its log is
/// the state), written to `path`.
pub(super) fn module_iii<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    prep: &Prepared,
    kin: &KinState,
    batches: &Batches,
    cfg: &RunConfig,
    path: Option<&Path>,
) -> Result<(serde_json::Value, StyleGenerator<B>)> {
    let (mut m, log) = style::train_style(be, Some(generator), &prep.reference, &prep.target, &kin.normal, &kin.pair_ref(), &batches.of, batches.names.len(), &cfg.style)?;
    be.check()?;
    if let Some(p) = path {
        params::save(be, &mut m, p, None)?;
    }
    Ok((json("style log", &log)?, m))
}

/// Module III's style generator from its checkpoint.
pub(super) fn load_style<B: Backend>(be: &B, generator: &GeneratorConfig, n_batches: usize, cfg: &RunConfig, path: &Path) -> Result<StyleGenerator<B>> {
    let mut m = StyleGenerator::new(be, generator, n_batches, &mut Stream::new(cfg.style.seed));
    params::load(be, &mut m, path)?;
    Ok(m)
}

/// Module IV: the anomalies (`anomaly_values`, corrected) sorted into
/// subtypes, on Module I's joint coordinates when it has them and
/// `features = joint`, else through the fusion block.
pub(super) fn module_iv<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    m1: &ModuleIState,
    anomalies: &[usize],
    anomaly_values: &DenseMatrix,
    cfg: &RunConfig,
) -> Result<SubtypeState> {
    let n = anomalies.len();
    if n < 2 {
        return Ok(SubtypeState::single(n, generator.cfg.latent, format!("{n} anomalies called: too few to subtype")));
    }
    // Asked for more subtypes than were called: the run's calls and scores
    // stand, and the note says why there are no subtypes (an error here
    // would throw away the modules before it).
    if let Some(k) = cfg.subtype.n_subtypes
        && k > n
    {
        return Ok(SubtypeState::single(n, generator.cfg.latent, format!("{k} subtypes asked for but {n} anomalies called: not subtyped")));
    }
    crate::progress::stage("subtypes");
    let r = match (&m1.embedding, cfg.subtype.features) {
        (Some(e), SubtypeFeatures::Joint) => {
            // DESC on the corrected joint coordinates; no fusion block.
            let d = m1.embedding_cols;
            let rows = DenseMatrix { rows: anomalies.len(), cols: d, data: anomalies.iter().flat_map(|&i| e[i * d..(i + 1) * d].to_vec()).collect() };
            subtype::subtype(be, &rows, &rows, &SubtypeConfig { layers: 0, ..cfg.subtype.clone() })?
        }
        _ => subtype_anomalies(be, generator, anomaly_values, &cfg.subtype, cfg.chunk)?,
    };
    be.check()?;
    let log = json("subtype log", &r.log)?;
    Ok(SubtypeState { labels: r.labels, k: r.k, k_inferred: r.k_inferred, epochs: r.epochs, q: r.q.data, z_star: r.z_star.data, log, note: None })
}
