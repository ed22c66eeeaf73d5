//! The simulator's parameters: every number that shapes the data, with
//! splatter-like defaults, serialisable so a run can be written down
//! (`params.json`) and replayed.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Differential expression of one family of cell types (normal or anomalous):
/// each gene is DE in a type with probability `prob`; a DE factor is
/// `LogNormal(loc, scale)`, inverted (down-regulation) with probability
/// `down_prob`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeParams {
    pub prob: f64,
    pub down_prob: f64,
    pub loc: f64,
    pub scale: f64,
}

impl Default for DeParams {
    /// Stronger than splatter's default (loc 0.1) so that types separate in a
    /// PCA of a few thousand cells, yet overlap gene by gene.
    fn default() -> Self {
        DeParams { prob: 0.1, down_prob: 0.5, loc: 0.5, scale: 0.4 }
    }
}

/// Splatter's dropout: a count is zeroed with probability
/// `1 / (1 + exp(-shape · (ln μ − mid)))`, μ the cell's expected count.
/// A negative `shape` drops low-mean genes more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub mid: f64,
    pub shape: f64,
}

/// Everything the simulator needs. Sizes first, then the model's
/// distributions (see the module documentation for the formulas).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Reference cells (normal types only).
    pub n_ref: usize,
    /// Target cells (normal types plus anomaly types).
    pub n_target: usize,
    pub n_genes: usize,
    /// Normal cell types, present in both sets.
    pub n_types: usize,
    /// Anomalous cell types, present only in the target. 0 gives a target
    /// without anomalies (whatever `anomaly_ratio` says).
    pub n_anomaly_types: usize,
    /// Fraction of target cells that are anomalous, in [0, 1); the count is
    /// exactly `round(anomaly_ratio · n_target)`, split evenly over the
    /// anomaly types. 0 gives a target without anomalies (a negative
    /// control: every call is a false positive).
    pub anomaly_ratio: f64,
    /// Batches in all; each has its own gene-wise multiplicative factors.
    pub n_batches: usize,
    /// Batches the reference cells come from (evenly split).
    pub ref_batches: Vec<usize>,
    /// Batches the target cells come from (evenly split); `None` = all.
    pub target_batches: Option<Vec<usize>>,
    pub seed: u64,

    /// Gene base means ~ Gamma(shape, rate).
    pub mean_shape: f64,
    pub mean_rate: f64,
    /// Outlier genes: with probability `outlier_prob` a gene's base mean is
    /// median(base means) · LogNormal(outlier_loc, outlier_scale).
    pub outlier_prob: f64,
    pub outlier_loc: f64,
    pub outlier_scale: f64,
    /// Library sizes ~ LogNormal(lib_loc, lib_scale).
    pub lib_loc: f64,
    pub lib_scale: f64,
    /// DE of the normal types.
    pub de: DeParams,
    /// DE of the anomaly types (relative to the same base means).
    pub anomaly_de: DeParams,
    /// Batch factors ~ LogNormal(0, batch_scale), per batch and gene.
    pub batch_scale: f64,
    /// A condition (say a stimulation) that moves each cell type its own
    /// way: every target cell of type t (anomaly types included) gets
    /// gene-wise factors ~ LogNormal(0, condition_shift), drawn once per
    /// (type, gene), on top of its batch's. The reference is untouched.
    /// 0 (the default) turns it off and draws nothing, so the output is
    /// the same as without the field; it is then left out of params.json.
    #[serde(skip_serializing_if = "is_zero")]
    pub condition_shift: f64,
    /// Fraction of genes the condition moves in each type (a per-type
    /// random subset; the others keep factor 1). Real stimulations are
    /// sparse: on Kang's IFN-β data 1.5–3.6 % of the HVGs move by more than
    /// 0.2 in log expression within a cell type. 1 (the default) moves all.
    #[serde(skip_serializing_if = "is_one")]
    pub condition_genes: f64,
    /// Biological coefficient of variation (splatter's `bcv.common`).
    pub bcv_common: f64,
    /// Degrees of freedom of the gene-wise BCV scatter (`bcv.df`).
    pub bcv_df: f64,
    /// Optional dropout; `None` keeps every sampled count.
    pub dropout: Option<Dropout>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            n_ref: 2000,
            n_target: 2000,
            n_genes: 3000,
            n_types: 5,
            n_anomaly_types: 2,
            anomaly_ratio: 0.1,
            n_batches: 2,
            ref_batches: vec![0],
            target_batches: None,
            seed: 0,
            mean_shape: 0.6,
            mean_rate: 0.3,
            outlier_prob: 0.05,
            outlier_loc: 4.0,
            outlier_scale: 0.5,
            // exp(8.0 + 0.3²/2) ≈ 3,130 counts per cell on average.
            lib_loc: 8.0,
            lib_scale: 0.3,
            de: DeParams::default(),
            anomaly_de: DeParams::default(),
            batch_scale: 0.2,
            condition_shift: 0.0,
            condition_genes: 1.0,
            bcv_common: 0.1,
            bcv_df: 60.0,
            dropout: None,
        }
    }
}

/// Type and batch indices are stored as u16 per cell.
const MAX_LABELS: usize = u16::MAX as usize;

impl SimConfig {
    /// The exact number of anomalous target cells (0 without anomaly types).
    pub fn n_anomalies(&self) -> usize {
        if self.n_anomaly_types == 0 {
            return 0;
        }
        (self.anomaly_ratio * self.n_target as f64).round() as usize
    }

    /// The batches target cells are drawn from.
    pub fn target_batch_list(&self) -> Vec<usize> {
        match &self.target_batches {
            Some(b) => b.clone(),
            None => (0..self.n_batches).collect(),
        }
    }

    /// Checks every value; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.n_ref == 0 {
            return bad("n_ref must be at least 1".into());
        }
        if self.n_target == 0 {
            return bad("n_target must be at least 1".into());
        }
        if self.n_genes == 0 || self.n_genes > u32::MAX as usize {
            return bad(format!("n_genes must be between 1 and {}, got {}", u32::MAX, self.n_genes));
        }
        if self.n_types == 0 {
            return bad("n_types must be at least 1".into());
        }
        if self.n_types + self.n_anomaly_types > MAX_LABELS {
            return bad(format!("at most {MAX_LABELS} cell types in all"));
        }
        if !(self.anomaly_ratio >= 0.0 && self.anomaly_ratio < 1.0) {
            return bad(format!("anomaly_ratio must be in [0, 1), got {}", self.anomaly_ratio));
        }
        let n_anom = self.n_anomalies();
        // A positive ratio that rounds below one cell per anomaly type is a
        // mistake; a ratio of 0 (or no anomaly type) asks for no anomalies.
        if self.anomaly_ratio > 0.0 && self.n_anomaly_types > 0 && n_anom < self.n_anomaly_types {
            return bad(format!(
                "anomaly_ratio {} of {} target cells gives {n_anom} anomalous cells, fewer than the {} anomaly types",
                self.anomaly_ratio, self.n_target, self.n_anomaly_types
            ));
        }
        if n_anom >= self.n_target {
            return bad(format!(
                "anomaly_ratio {} of {} target cells leaves no normal target cell",
                self.anomaly_ratio, self.n_target
            ));
        }
        if self.n_batches == 0 || self.n_batches > MAX_LABELS {
            return bad(format!("n_batches must be between 1 and {MAX_LABELS}, got {}", self.n_batches));
        }
        check_batches("ref_batches", &self.ref_batches, self.n_batches)?;
        check_batches("target_batches", &self.target_batch_list(), self.n_batches)?;

        positive("mean_shape", self.mean_shape)?;
        positive("mean_rate", self.mean_rate)?;
        probability("outlier_prob", self.outlier_prob)?;
        finite("outlier_loc", self.outlier_loc)?;
        non_negative("outlier_scale", self.outlier_scale)?;
        finite("lib_loc", self.lib_loc)?;
        non_negative("lib_scale", self.lib_scale)?;
        check_de("de", &self.de)?;
        check_de("anomaly_de", &self.anomaly_de)?;
        non_negative("batch_scale", self.batch_scale)?;
        if !(self.condition_shift.is_finite() && self.condition_shift >= 0.0) {
            return bad(format!(
                "condition_shift must be a finite number >= 0 (the log-scale sd of the target's factors; 0 = off), got {}",
                self.condition_shift
            ));
        }
        if !(self.condition_genes > 0.0 && self.condition_genes <= 1.0) {
            return bad(format!("condition_genes must be in (0, 1] (the fraction of genes the condition moves), got {}", self.condition_genes));
        }
        non_negative("bcv_common", self.bcv_common)?;
        positive("bcv_df", self.bcv_df)?;
        if let Some(d) = &self.dropout {
            finite("dropout.mid", d.mid)?;
            finite("dropout.shape", d.shape)?;
        }
        Ok(())
    }
}

/// Whether a field holds its "off" value (0), for `skip_serializing_if`.
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn check_batches(what: &str, list: &[usize], n_batches: usize) -> Result<()> {
    if list.is_empty() {
        return Err(Error::Config(format!("{what} is empty")));
    }
    for (i, &b) in list.iter().enumerate() {
        if b >= n_batches {
            return Err(Error::Config(format!(
                "{what} names batch {b}, but there are only {n_batches} batches (0..{})",
                n_batches - 1
            )));
        }
        if list[..i].contains(&b) {
            return Err(Error::Config(format!("{what} names batch {b} twice")));
        }
    }
    Ok(())
}

fn check_de(what: &str, de: &DeParams) -> Result<()> {
    probability(&format!("{what}.prob"), de.prob)?;
    probability(&format!("{what}.down_prob"), de.down_prob)?;
    finite(&format!("{what}.loc"), de.loc)?;
    non_negative(&format!("{what}.scale"), de.scale)
}

fn finite(what: &str, v: f64) -> Result<()> {
    if v.is_finite() { Ok(()) } else { Err(Error::Config(format!("{what} must be finite, got {v}"))) }
}

fn positive(what: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!("{what} must be positive, got {v}")))
    }
}

fn non_negative(what: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!("{what} must be zero or positive, got {v}")))
    }
}

fn probability(what: &str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::Config(format!("{what} must be in [0, 1], got {v}")))
    }
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}
