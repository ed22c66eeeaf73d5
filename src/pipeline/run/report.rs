//! What a run gives back: the per-cell [`RunResult`] and the
//! `report.json` contents ([`RunReport`]) with their per-module parts.

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::modules::{ModuleIState, SubtypeState};
use super::stages::CorrectionPass;
use super::subtypes;
use super::truth::Evaluation;
use crate::backend::Backend;
use crate::data::{CsrMatrix, Dataset, DenseMatrix};
use crate::pipeline::batches::Batches;
use crate::pipeline::detect::Prepared;
use crate::model::kin::{KinPairs, KinSimilarity};
use crate::pipeline::detect::GeneReport;

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
    /// Distinct reference cells chosen as kin: far below `n_pairs` means a
    /// few reference cells are everyone's kin (the inner product's failure
    /// on embeddings of uneven norm).
    pub n_distinct_kin: usize,
    /// How the pairs were chosen.
    pub similarity: KinSimilarity,
    /// Mean similarity of the pairs (cosines under `cosine`).
    pub mean_similarity: f64,
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
    /// BH q-values of the calls (novelty score only).
    pub q_values: Option<Vec<f64>>,
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

pub(super) fn kin_report_of(p: &KinPairs, similarity: KinSimilarity) -> KinReport {
    let mut distinct = p.kin.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mean = if p.score.is_empty() { 0.0 } else { p.score.iter().map(|&s| s as f64).sum::<f64>() / p.score.len() as f64 };
    KinReport { n_pairs: p.kin.len(), n_distinct_kin: distinct.len(), similarity, mean_similarity: mean }
}

/// The modules' results, before they are assembled into a [`RunResult`].
pub(super) struct Done {
    pub m1: ModuleIState,
    pub kin: Option<KinReport>,
    pub style: Option<serde_json::Value>,
    pub subtypes: SubtypeState,
    pub anomalies: Vec<usize>,
    pub pass: CorrectionPass,
    pub latent: usize,
    pub resumed: Vec<String>,
    pub secs: RunTimings,
}

impl Done {
    /// Subtypes too small to keep are dropped (and the report says so),
    /// then the per-cell result and the report.
    pub fn into_result<B: Backend>(self, be: &B, target: &Dataset, batches: &Batches, prep: Prepared, cfg: &RunConfig) -> RunResult {
        let (m1, anomalies, mut st) = (self.m1, self.anomalies, self.subtypes);
        let n = prep.target.rows;
        let k_found = st.k;
        let (k, sizes) = subtypes::compact(&mut st.labels, &mut st.q, st.k);
        st.k = k;
        let dropped = |d: usize| format!("{d} of {k_found} subtypes ended with fewer than {} cells and were dropped", subtypes::MIN_SUBTYPE_CELLS);
        let note = match (st.note, k_found - k) {
            (n, 0) => n,
            (None, d) => Some(dropped(d)),
            (Some(n), d) => Some(format!("{n}; {}", dropped(d))),
        };
        let mut subtype_of = vec![None; n];
        for (&row, &l) in anomalies.iter().zip(&st.labels) {
            subtype_of[row] = Some(l);
        }
        let report = RunReport {
            settings: cfg.clone(),
            backend: be.name().to_string(),
            n_reference: prep.reference.rows,
            n_target: n,
            genes: prep.report.clone(),
            batches: batches.names.iter().enumerate().map(|(b, name)| (name.clone(), batches.of.iter().filter(|&&x| x as usize == b).count())).collect(),
            resumed: self.resumed,
            detect: m1.report,
            n_called: anomalies.len(),
            kin: self.kin,
            style: self.style,
            subtype: SubtypeReport { n_anomalies: anomalies.len(), k: st.k, k_inferred: st.k_inferred, epochs: st.epochs, sizes, note, log: st.log },
            seconds: self.secs,
            evaluation: None,
        };
        let z_cols = if anomalies.is_empty() { self.latent } else { st.z_star.len() / anomalies.len() };
        RunResult {
            cells: target.cell_names.clone(),
            genes: prep.genes,
            target_values: prep.target,
            scores: m1.scores,
            calls: m1.calls,
            deviation: m1.deviation,
            q_values: m1.q_value,
            batch_of: batches.of.clone(),
            q: DenseMatrix { rows: anomalies.len(), cols: st.k.max(1), data: st.q },
            z_star: DenseMatrix { rows: anomalies.len(), cols: z_cols, data: st.z_star },
            anomalies,
            subtypes: subtype_of,
            z: self.pass.z,
            corrected: self.pass.corrected,
            report,
        }
    }
}
