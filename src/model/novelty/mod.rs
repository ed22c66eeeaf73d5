//! The default detector: novelty of target cells against the reference in a
//! joint, batch-corrected representation, with calls at a stated false
//! discovery rate.
//!
//! A cell state absent from the reference shows three symptoms in a joint
//! embedding of reference and target: it lies **far from every reference
//! cell** (mean distance to its `k_distance` nearest reference cells), its
//! neighbourhood holds **few reference cells** (the fraction of reference
//! cells among its `k_abundance` nearest cells of both sets, the quantity
//! Milo tests for differential abundance), and the target is **denser
//! than the reference** around it (distance to the reference over
//! distance to the target, which tells an anomaly population from a lone
//! reference outlier: [`statistics`]). A shift shared by the
//! target's normal cells produces both symptoms too, so before scoring the
//! joint coordinates are corrected with Harmony ([`harmony`]), and the
//! correction is fitted twice: once on all cells, then again without the
//! target cells the first pass found likely anomalous (p ≤
//! `refit_min_p`), so that anomalies are not pulled onto reference cells
//! (test-time adaptation on likely-normal cells only). The refit happens
//! only when the first pass gives evidence of anomalies (significantly more
//! than `refit_min_p` of the target at p ≤ `refit_min_p`): on a target
//! without anomalies it would only withhold normal cells from the
//! correction and turn them into false calls.
//!
//! Harmony's correction is one offset per soft cluster; what it leaves —
//! normal target cells shifted differently within a cluster (batches not
//! given as a key, a condition response that varies along a cell type) —
//! a local correction from mutual nearest neighbours removes ([`mnn`]).
//! The density-ratio term is what keeps the refinement safe: without it,
//! reference outliers beside an anomaly population pair with its cells,
//! pull them in, and floor their p-values (the demo called no cell).
//!
//! Steps: [`embed`] (joint z-scores, PCA) → [`harmony`] (→ refit) →
//! [`mnn`] → [`statistics`] (exact [`knn`] searches, tiled, on the backend) →
//! [`calibrate`] (rank-sum score, conformal p-values against the
//! reference's leave-one-out scores, BH q-values).

pub mod calibrate;
pub mod embed;
pub mod harmony;
pub mod knn;
pub mod mnn;
pub mod statistics;

/// Points for the unit tests of the neighbour-based steps.
#[cfg(test)]
mod test_points {
    /// `n` points uniform in a square of side 0.6 around each 2-D centre,
    /// row-major (a fixed LCG, so every test sees the same points).
    pub fn squares(centres: &[[f32; 2]], n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.6
        };
        let mut data = Vec::with_capacity(centres.len() * n * 2);
        for c in centres {
            for _ in 0..n {
                data.push(c[0] + next());
                data.push(c[1] + next());
            }
        }
        data
    }
}

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::data::matrix::DenseMatrix;
use crate::model::source::RowSource;
use crate::error::{Error, Result};

use statistics::statistics;

pub use harmony::HarmonyConfig;
pub use mnn::{MnnConfig, MnnReport};

/// How the joint coordinates are corrected before scoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// Harmony, refitted on likely-normal cells, then the local MNN
    /// refinement (`[novelty.mnn] enabled = false` skips it) (default).
    #[default]
    Harmony,
    /// The MNN refinement alone, on the joint PCA (an ablation).
    Mnn,
    /// No correction: the joint PCA as it is.
    None,
}

/// One-sided 1 % quantile of the standard normal: the refit gate's test
/// level (see [`score_novelty`]).
pub const REFIT_GATE_Z: f64 = 2.326;

/// Which target cells a refit leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RefitRule {
    /// Cells with conformal p ≤ refit_min_p.
    #[default]
    PValue,
    /// Cells with BH q ≤ refit_min_q (the cells the pass called).
    QValue,
}

/// Settings of the novelty detector. Field names are the TOML keys of the
/// `[novelty]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoveltyConfig {
    /// Principal components of the joint representation.
    pub n_components: usize,
    /// Standardised values are clipped to ±max_value (scanpy's `scale`).
    pub max_value: f64,
    /// Reference neighbours whose mean distance is the distance statistic.
    pub k_distance: usize,
    /// Neighbours (of both sets) whose reference fraction is the abundance statistic.
    pub k_abundance: usize,
    /// Add the density-ratio term (distance to the reference over distance
    /// to the target) to the score ([`statistics`]); `false` is the
    /// two-term score of earlier versions (an ablation).
    pub density_ratio: bool,
    pub correction: Correction,
    /// Refit the correction without the target cells the previous pass
    /// found likely anomalous.
    pub refit: bool,
    /// How "likely anomalous" is read before a refit.
    pub refit_rule: RefitRule,
    /// Passes after the first (each refit starts from the uncorrected
    /// coordinates; the excluded set comes from the pass before).
    pub refit_passes: usize,
    /// Under `refit_rule = p-value`: target cells with p above this take
    /// part. 0.05: a cell that can be called at FDR 0.1 has p ≤ 0.1 · k/n,
    /// so the cells left out are about the ones that could be called;
    /// 0.2 (the rule before) also left out a sixth of the normal cells —
    /// the most shifted ones — and the refit left their shift (sim: 12 %
    /// called for 10 % true, sim-dense 35 %; README, "Detection").
    pub refit_min_p: f64,
    /// Under `refit_rule = q-value`: target cells with q above this take
    /// part in the refit.
    pub refit_min_q: f64,
    pub harmony: HarmonyConfig,
    /// The local MNN refinement after the correction ([`mnn`]).
    pub mnn: MnnConfig,
    /// Most cells the PCA is fitted on (every cell is projected).
    pub max_fit_cells: usize,
    /// Most target cells in the neighbourhood graph of the abundance
    /// statistic (a seeded sample beyond; every target cell is scored).
    pub max_graph_target: usize,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        NoveltyConfig {
            n_components: 50,
            max_value: 10.0,
            k_distance: 15,
            k_abundance: 30,
            density_ratio: true,
            correction: Correction::Harmony,
            refit: true,
            refit_rule: RefitRule::PValue,
            refit_passes: 1,
            refit_min_p: 0.05,
            refit_min_q: 0.1,
            harmony: HarmonyConfig::default(),
            mnn: MnnConfig::default(),
            max_fit_cells: 50_000,
            max_graph_target: 100_000,
        }
    }
}

impl NoveltyConfig {
    /// Checks that need no data.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("novelty: {m}")));
        if self.n_components == 0 {
            return bad("n_components must be at least 1".into());
        }
        if !(self.max_value.is_finite() && self.max_value > 0.0) {
            return bad(format!("max_value must be a finite number > 0, got {}", self.max_value));
        }
        if self.k_distance == 0 || self.k_abundance == 0 {
            return bad("k_distance and k_abundance must be at least 1".into());
        }
        if !(self.refit_min_p > 0.0 && self.refit_min_p < 1.0) {
            return bad(format!("refit_min_p must be in (0, 1), got {}", self.refit_min_p));
        }
        if !(self.refit_min_q > 0.0 && self.refit_min_q < 1.0) {
            return bad(format!("refit_min_q must be in (0, 1), got {}", self.refit_min_q));
        }
        if self.max_fit_cells < 2 || self.max_graph_target == 0 {
            return bad("max_fit_cells must be at least 2 and max_graph_target at least 1".into());
        }
        self.mnn.validate()?;
        self.harmony.validate()
    }

    /// Checks that need the data's shape, before any work.
    pub fn validate_for(&self, n_reference: usize, n_target: usize) -> Result<()> {
        self.validate()?;
        if n_reference < MIN_REFERENCE_CELLS {
            return Err(Error::invalid(format!(
                "the reference has {n_reference} cells; the novelty score needs at least {MIN_REFERENCE_CELLS} \
                 (its p-values are ranks among the reference's cells: with fewer, none is below 0.1)"
            )));
        }
        if n_target == 0 {
            return Err(Error::invalid("the target has no cells"));
        }
        Ok(())
    }

    /// The settings as used on a reference of `n_reference` cells: a
    /// reference cell's distance leaves itself out, so at most
    /// `n_reference − 1` reference neighbours exist (the other neighbour
    /// counts are capped where they are used).
    pub fn for_reference(&self, n_reference: usize) -> NoveltyConfig {
        NoveltyConfig { k_distance: self.k_distance.min(n_reference.saturating_sub(1).max(1)), ..self.clone() }
    }
}

/// Fewest reference cells the novelty score accepts: a conformal p-value
/// against n reference cells is at least 1/(n + 1), so below 10 no cell
/// could be called at FDR 0.1 (small references — a few dozen cells, as in
/// plate-based tumour studies — work; their p-values are coarse).
pub const MIN_REFERENCE_CELLS: usize = 10;

/// What the detector did, for report.json.
#[derive(Clone, Debug, Serialize)]
pub struct NoveltyReport {
    pub n_components: usize,
    /// Reference neighbours of the distance statistic (k_distance, capped
    /// at the reference's size − 1).
    pub k_distance: usize,
    pub explained_variance_ratio: f64,
    pub pca_fit_cells: usize,
    pub correction: Correction,
    pub harmony_clusters: Option<usize>,
    pub harmony_batches: Option<usize>,
    /// Target cells with p ≤ refit_min_p after the first Harmony pass, and
    /// the count above which a refit happens (see [`REFIT_GATE_Z`]).
    pub first_pass_low_p: Option<usize>,
    pub refit_gate: Option<f64>,
    /// Target cells that took part in the (last) refit (None without refit).
    pub refit_target_cells: Option<usize>,
    /// The MNN refinement (None when disabled).
    pub mnn: Option<MnnReport>,
    pub graph_target_cells: usize,
    pub seconds_embed: f64,
    pub seconds_correct: f64,
    pub seconds_score: f64,
}

/// Per target cell, in input order.
#[derive(Clone, Debug)]
pub struct NoveltyScores {
    /// Novelty score (≥ 0, higher = more novel; see [`statistics`]).
    pub score: Vec<f64>,
    /// Conformal p-value against the reference's leave-one-out scores.
    pub p_value: Vec<f64>,
    /// Benjamini–Hochberg q-value.
    pub q_value: Vec<f64>,
    /// Mean distance to the k_distance nearest reference cells.
    pub distance: Vec<f64>,
    /// Fraction of reference cells among the k_abundance nearest cells.
    pub abundance: Vec<f64>,
    /// Mean distance to the k_distance nearest reference cells over that
    /// to the nearest other target cells (None when the term is off or the
    /// target has one cell).
    pub density_ratio: Option<Vec<f64>>,
    /// Corrected joint coordinates of the target, [n_target × n_components].
    pub embedding: DenseMatrix,
    pub report: NoveltyReport,
}

fn stack(a: &DenseMatrix, b: &DenseMatrix) -> DenseMatrix {
    let mut data = a.data.clone();
    data.extend_from_slice(&b.data);
    DenseMatrix { rows: a.rows + b.rows, cols: a.cols, data }
}

fn split(m: &DenseMatrix, at: usize) -> (DenseMatrix, DenseMatrix) {
    let d = m.cols;
    (
        DenseMatrix { rows: at, cols: d, data: m.data[..at * d].to_vec() },
        DenseMatrix { rows: m.rows - at, cols: d, data: m.data[at * d..].to_vec() },
    )
}

/// Scores every target cell against the reference (both log-normalized on
/// the same genes; in memory or streamed from stores). `target_batches`
/// (values in `0..n`) lets the correction treat each target batch as its
/// own; `None` = one target batch.
pub fn score_novelty<B: Backend>(
    be: &B,
    reference: &dyn RowSource,
    target: &dyn RowSource,
    target_batches: Option<&[u32]>,
    cfg: &NoveltyConfig,
    seed: u64,
) -> Result<NoveltyScores> {
    use std::time::Instant;
    let (nr, nt) = (reference.n_rows(), target.n_rows());
    cfg.validate_for(nr, nt)?;
    let cfg = &cfg.for_reference(nr);
    if let Some(b) = target_batches
        && b.len() != nt
    {
        return Err(Error::invalid(format!("{} batch labels for {nt} target cells", b.len())));
    }
    // The inputs as read and their preparation were just freed, and the
    // PCA's sample is next; then the sample is freed and the searches come.
    crate::allocator::release_free_memory();
    let t0 = Instant::now();
    let opts = embed::EmbedOptions { n_components: cfg.n_components, max_value: cfg.max_value, max_fit_cells: cfg.max_fit_cells, seed };
    let emb = embed::embed(reference, target, &opts)?;
    crate::allocator::release_free_memory();
    let seconds_embed = t0.elapsed().as_secs_f64();
    let graph_rows = embed::sample_rows(nt, cfg.max_graph_target, seed ^ 0x6A09);

    let t1 = Instant::now();
    let mut report = NoveltyReport {
        n_components: emb.reference.cols,
        k_distance: cfg.k_distance,
        explained_variance_ratio: emb.explained_variance_ratio,
        pca_fit_cells: emb.n_fit,
        correction: cfg.correction,
        harmony_clusters: None,
        harmony_batches: None,
        first_pass_low_p: None,
        refit_gate: None,
        refit_target_cells: None,
        mnn: None,
        graph_target_cells: graph_rows.len(),
        seconds_embed,
        seconds_correct: 0.0,
        seconds_score: 0.0,
    };
    // `eligible`: the target cells the MNN refinement may pair (see
    // [`mnn::refine`]); None = all.
    let (zr, zt, stats, secs_in_scoring, eligible) = match cfg.correction {
        Correction::None => {
            let s = statistics(be, &emb.reference, &emb.target, &graph_rows, cfg)?;
            (emb.reference, emb.target, Some(s), 0.0, None)
        }
        Correction::Mnn => (emb.reference, emb.target, None, 0.0, None),
        Correction::Harmony => {
            let z = stack(&emb.reference, &emb.target);
            let mut batch = vec![0u32; nr];
            let n_batches = match target_batches {
                Some(b) => {
                    batch.extend(b.iter().map(|&v| v + 1));
                    1 + b.iter().map(|&v| v as usize + 1).max().unwrap_or(1)
                }
                None => {
                    batch.extend(std::iter::repeat_n(1u32, nt));
                    2
                }
            };
            let mut fit = vec![true; nr + nt];
            let (c, h) = harmony::harmonize(&z, &batch, n_batches, &fit, &cfg.harmony, seed)?;
            report.harmony_clusters = Some(h.n_clusters);
            report.harmony_batches = Some(h.n_batches);
            let (cr, ct) = split(&c, nr);
            let ts = Instant::now();
            let s1 = statistics(be, &cr, &ct, &graph_rows, cfg)?;
            let mut in_scoring = ts.elapsed().as_secs_f64();
            let (mut cr, mut ct, mut st) = (cr, ct, s1);
            // Refit only when the first pass gives evidence of anomalies:
            // significantly more target cells at p ≤ refit_min_p than the
            // refit_min_p share a target without anomalies has (one-sided
            // binomial test at level 0.01, normal approximation). Without
            // that, the refit would only withhold normal cells from the
            // correction and turn them into false calls.
            let p1 = calibrate::conformal_p(&st.score[..nr], &st.score[nr..]);
            let low = p1.iter().filter(|&&v| v <= cfg.refit_min_p).count();
            let (nt_f, p0) = (nt as f64, cfg.refit_min_p);
            let gate = nt_f * p0 + REFIT_GATE_Z * (nt_f * p0 * (1.0 - p0)).sqrt();
            report.first_pass_low_p = Some(low);
            report.refit_gate = Some(gate);
            if cfg.refit && low as f64 > gate {
                let passes = cfg.refit_passes.max(1);
                for pass in 0..passes {
                    let p = calibrate::conformal_p(&st.score[..nr], &st.score[nr..]);
                    let keep: Vec<bool> = match cfg.refit_rule {
                        RefitRule::PValue => p.iter().map(|&v| v > cfg.refit_min_p).collect(),
                        RefitRule::QValue => calibrate::bh_qvalues(&p).iter().map(|&v| v > cfg.refit_min_q).collect(),
                    };
                    fit[nr..].copy_from_slice(&keep);
                    report.refit_target_cells = Some(keep.iter().filter(|&&f| f).count());
                    let (c2, _) = harmony::harmonize(&z, &batch, n_batches, &fit, &cfg.harmony, seed)?;
                    (cr, ct) = split(&c2, nr);
                    // After the last pass the MNN step computes them.
                    if pass + 1 < passes || !cfg.mnn.enabled {
                        let ts = Instant::now();
                        st = statistics(be, &cr, &ct, &graph_rows, cfg)?;
                        in_scoring += ts.elapsed().as_secs_f64();
                    }
                }
            }
            if cfg.mnn.enabled && cfg.mnn.pair_likely_normal {
                // Pairs only for cells the last scoring found likely
                // normal (the refit's rule, whether or not it refitted).
                let p = calibrate::conformal_p(&st.score[..nr], &st.score[nr..]);
                let eligible: Vec<bool> = p.iter().map(|&v| v > cfg.refit_min_p).collect();
                (cr, ct, None, in_scoring, Some(eligible))
            } else if cfg.mnn.enabled {
                (cr, ct, None, in_scoring, None)
            } else {
                (cr, ct, Some(st), in_scoring, None)
            }
        }
    };
    // The local refinement, then the final statistics.
    let (_, zt, stats, secs_in_scoring) = match stats {
        Some(s) => (zr, zt, s, secs_in_scoring),
        None => {
            let (zt, rep) = mnn::refine(be, &zr, &zt, eligible.as_deref(), &cfg.mnn, seed)?;
            report.mnn = Some(rep);
            let ts = Instant::now();
            let s = statistics(be, &zr, &zt, &graph_rows, cfg)?;
            (zr, zt, s, secs_in_scoring + ts.elapsed().as_secs_f64())
        }
    };
    let total = t1.elapsed().as_secs_f64();
    report.seconds_score = secs_in_scoring;
    report.seconds_correct = total - secs_in_scoring;
    let p_value = calibrate::conformal_p(&stats.score[..nr], &stats.score[nr..]);
    let q_value = calibrate::bh_qvalues(&p_value);
    Ok(NoveltyScores {
        score: stats.score[nr..].to_vec(),
        p_value,
        q_value,
        distance: stats.distance[nr..].to_vec(),
        abundance: stats.abundance[nr..].to_vec(),
        density_ratio: stats.density_ratio.as_ref().map(|r| r[nr..].to_vec()),
        embedding: zt,
        report,
    })
}
