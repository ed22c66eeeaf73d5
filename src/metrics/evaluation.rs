//! Detection and subtyping metrics of one result against the truth: the
//! one [`Evaluation`] that `run --truth-key` (report.json), `demo`,
//! `evaluate` and the examples report, so they cannot disagree.

use serde::Serialize;

use super::{auroc, average_precision, binary_scores, f1_top_k, nmi, ari, BinaryScores};
use crate::error::{Error, Result};

/// Per cell, a subtype label or `None`.
pub type Labels<'a> = &'a [Option<&'a str>];

/// What is evaluated, per cell: the truth and the result.
pub struct Scored<'a> {
    /// Whether each cell is truly anomalous.
    pub truth: &'a [bool],
    /// The anomaly score (higher = more anomalous).
    pub scores: &'a [f64],
    /// The tool's own calls, when it made them.
    pub calls: Option<&'a [bool]>,
    /// True and predicted subtype labels (`None` where a cell has none):
    /// enables NMI, ARI and F1 × NMI.
    pub subtypes: Option<(Labels<'a>, Labels<'a>)>,
}

/// Detection and subtyping scores against the truth.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Where the truth came from (obs column and rule, or file and column).
    pub truth_rule: String,
    /// Cells scored and joined to the truth: the metrics cover these only.
    pub n_cells: usize,
    /// Truth cells with no score (a subset was scored).
    pub n_truth_cells_not_scored: usize,
    pub n_true_anomalies: usize,
    pub auroc: f64,
    pub average_precision: f64,
    /// The top true-fraction of cells called (the authors' rule).
    pub f1_at_true_fraction: BinaryScores,
    /// The tool's own calls.
    pub own_calls: Option<BinaryScores>,
    /// Subtypes against the true labels, when both are given.
    pub subtyping: Option<Subtyping>,
}

/// Subtyping metrics over the true anomalies called anomalous that have
/// both a true and a predicted subtype.
#[derive(Clone, Debug, Serialize)]
pub struct Subtyping {
    pub n_cells: usize,
    /// `None` (with `note`) below 2 cells: a partition of fewer than two
    /// cells has no information to compare, so NMI and ARI are undefined —
    /// neither 0 (a bad result) nor an error (the detection metrics stand).
    pub nmi: Option<f64>,
    pub ari: Option<f64>,
    /// F1 of the own calls × NMI: the paper's joint score.
    pub f1_x_nmi: Option<f64>,
    pub note: Option<String>,
}

impl Evaluation {
    /// Computes every metric; `truth_rule` says where the truth came from.
    pub fn compute(truth_rule: String, s: &Scored) -> Result<Evaluation> {
        let n = s.truth.len();
        let lens = [Some(s.scores.len()), s.calls.map(<[bool]>::len), s.subtypes.map(|t| t.0.len()), s.subtypes.map(|t| t.1.len())];
        if let Some(bad) = lens.into_iter().flatten().find(|&l| l != n) {
            return Err(Error::invalid(format!("evaluation: {bad} values for {n} cells")));
        }
        let own_calls = s.calls.map(|c| binary_scores(s.truth, c)).transpose()?;
        let subtyping = match (s.subtypes, s.calls) {
            (Some((t, p)), Some(calls)) => Some(subtyping(s.truth, calls, t, p, own_calls.map(|c| c.f1))?),
            (Some(_), None) => return Err(Error::invalid("subtyping metrics need the tool's calls")),
            (None, _) => None,
        };
        Ok(Evaluation {
            truth_rule,
            n_cells: n,
            n_truth_cells_not_scored: 0,
            n_true_anomalies: s.truth.iter().filter(|&&a| a).count(),
            auroc: auroc(s.truth, s.scores)?,
            average_precision: average_precision(s.truth, s.scores)?,
            f1_at_true_fraction: f1_top_k(s.truth, s.scores)?,
            own_calls,
            subtyping,
        })
    }

    /// F1 of the own calls (0 without calls).
    pub fn f1(&self) -> f64 {
        self.own_calls.map_or(0.0, |c| c.f1)
    }

    /// NMI of the subtypes, when defined.
    pub fn nmi(&self) -> Option<f64> {
        self.subtyping.as_ref().and_then(|s| s.nmi)
    }

    /// F1 × NMI, when defined.
    pub fn f1_x_nmi(&self) -> Option<f64> {
        self.subtyping.as_ref().and_then(|s| s.f1_x_nmi)
    }
}

fn subtyping(truth: &[bool], calls: &[bool], t: &[Option<&str>], p: &[Option<&str>], f1: Option<f64>) -> Result<Subtyping> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..truth.len() {
        if let (true, true, Some(tl), Some(pl)) = (truth[i], calls[i], t[i], p[i]) {
            a.push(tl);
            b.push(pl);
        }
    }
    if a.len() < 2 {
        let note = format!("{} true anomalies called with a subtype: NMI and ARI are undefined", a.len());
        return Ok(Subtyping { n_cells: a.len(), nmi: None, ari: None, f1_x_nmi: None, note: Some(note) });
    }
    let n = nmi(&a, &b)?;
    Ok(Subtyping { n_cells: a.len(), nmi: Some(n), ari: Some(ari(&a, &b)?), f1_x_nmi: f1.map(|f| f * n), note: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(v: &[&'a str]) -> Vec<Option<&'a str>> {
        v.iter().map(|s| (!s.is_empty()).then_some(*s)).collect()
    }

    #[test]
    fn detection_and_subtypes_are_scored() {
        let truth = [false, false, true, true, true, true];
        let scores = [0.1, 0.2, 0.9, 0.8, 0.7, 0.95];
        let calls = [false, false, true, true, true, true];
        let (t, p) = (labels(&["", "", "B", "B", "NK", "NK"]), labels(&["", "", "S1", "S1", "S2", "S2"]));
        let e = Evaluation::compute("x".into(), &Scored { truth: &truth, scores: &scores, calls: Some(&calls), subtypes: Some((&t, &p)) }).unwrap();
        assert_eq!((e.auroc, e.f1(), e.n_true_anomalies), (1.0, 1.0, 4));
        assert!((e.nmi().unwrap() - 1.0).abs() < 1e-12 && (e.f1_x_nmi().unwrap() - 1.0).abs() < 1e-12);
    }

    /// Issue 16: `run --truth-key` reported NMI = ARI = 0 and `evaluate`
    /// failed when fewer than two true anomalies were called with a
    /// subtype; both now report them undefined, with the detection metrics.
    #[test]
    fn fewer_than_two_subtyped_anomalies_leave_nmi_undefined() {
        let truth = [false, true, true];
        let scores = [0.1, 0.9, 0.2];
        let calls = [false, true, false];
        let (t, p) = (labels(&["", "B", "NK"]), labels(&["", "S1", ""]));
        let e = Evaluation::compute("x".into(), &Scored { truth: &truth, scores: &scores, calls: Some(&calls), subtypes: Some((&t, &p)) }).unwrap();
        let s = e.subtyping.as_ref().unwrap();
        assert_eq!((s.n_cells, s.nmi, s.ari, s.f1_x_nmi), (1, None, None, None));
        assert!(s.note.as_deref().unwrap().contains("undefined"));
        assert_eq!(e.auroc, 1.0);
    }

    #[test]
    fn lengths_must_agree() {
        let e = Evaluation::compute("x".into(), &Scored { truth: &[true, false], scores: &[1.0], calls: None, subtypes: None });
        assert!(e.unwrap_err().to_string().contains("1 values for 2 cells"));
    }
}
