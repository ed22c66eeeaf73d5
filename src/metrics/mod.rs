//! Detection and clustering metrics, defined as scikit-learn defines them so
//! that numbers are comparable with published benchmarks (cross-checked
//! against scikit-learn 1.9 in `tests/metrics.rs`).
//!
//! - Detection (truth: `true` = anomalous; score: higher = more anomalous):
//!   [`auroc`], [`average_precision`], [`roc_curve`], [`pr_curve`],
//!   [`f1_top_k`] (the authors' rule: call as many cells as there are true
//!   anomalies) and [`binary_scores`] (precision, recall, F1 of given calls).
//! - Clustering: [`nmi`] (arithmetic normalisation), [`ari`], and the
//!   product F1 × NMI that the ACsleuth paper reports for subtyping.
//! - Batch mixing and label preservation in an embedding ([`mixing`]):
//!   [`silhouette`], [`knn_mixing`] (iLISI-type), [`knn_label_accuracy`].
//!
//! Quantities that are undefined (one class only, NaN scores, no cells) are
//! typed [`Error::Invalid`] errors, where scikit-learn warns and returns NaN.

use std::collections::HashMap;
use std::hash::Hash;

use crate::error::{Error, Result};

pub mod evaluation;
pub mod mixing;

pub use mixing::{knn_indices, knn_label_accuracy, knn_mixing, silhouette};

/// Checks lengths and scores; returns (positives, negatives).
fn check_detection(truth: &[bool], scores: &[f64], what: &str) -> Result<(usize, usize)> {
    if truth.len() != scores.len() {
        return Err(Error::invalid(format!(
            "{what}: {} truth labels for {} scores",
            truth.len(),
            scores.len()
        )));
    }
    if truth.is_empty() {
        return Err(Error::invalid(format!("{what}: no cells")));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::invalid(format!("{what}: score of cell {i} is {}", scores[i])));
    }
    let pos = truth.iter().filter(|&&t| t).count();
    let neg = truth.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(Error::invalid(format!(
            "{what} is undefined when the truth has only one class ({} anomalous of {} cells)",
            pos,
            truth.len()
        )));
    }
    Ok((pos, neg))
}

/// Cumulative (true positives, false positives, threshold) at each distinct
/// score, from the highest score down: the operating points of a detector
/// that calls every cell with score >= threshold.
fn operating_points(truth: &[bool], scores: &[f64]) -> Vec<(usize, usize, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    for (r, &i) in order.iter().enumerate() {
        if truth[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // Emit a point only after the last cell of a run of equal scores.
        let last_of_run = r + 1 == order.len() || scores[order[r + 1]] != scores[i];
        if last_of_run {
            pts.push((tp, fp, scores[i]));
        }
    }
    pts
}

/// Area under the ROC curve, as `sklearn.metrics.roc_auc_score`: the
/// trapezoidal area, so tied scores count one half.
pub fn auroc(truth: &[bool], scores: &[f64]) -> Result<f64> {
    let (pos, neg) = check_detection(truth, scores, "AUROC")?;
    let (mut area, mut prev_tp, mut prev_fp) = (0.0f64, 0usize, 0usize);
    for (tp, fp, _) in operating_points(truth, scores) {
        area += (fp - prev_fp) as f64 * (tp + prev_tp) as f64 / 2.0;
        prev_tp = tp;
        prev_fp = fp;
    }
    Ok(area / (pos as f64 * neg as f64))
}

/// Average precision, as `sklearn.metrics.average_precision_score`: the
/// step-wise sum `Σ (R_i − R_{i−1}) P_i` over distinct thresholds (no
/// interpolation).
pub fn average_precision(truth: &[bool], scores: &[f64]) -> Result<f64> {
    let (pos, _) = check_detection(truth, scores, "average precision")?;
    let (mut ap, mut prev_recall) = (0.0f64, 0.0f64);
    for (tp, fp, _) in operating_points(truth, scores) {
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(ap)
}

/// ROC curve points, as `sklearn.metrics.roc_curve(drop_intermediate=False)`:
/// thresholds in decreasing order, starting with (+inf, fpr 0, tpr 0).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

pub fn roc_curve(truth: &[bool], scores: &[f64]) -> Result<RocCurve> {
    let (pos, neg) = check_detection(truth, scores, "ROC curve")?;
    let pts = operating_points(truth, scores);
    let mut c = RocCurve {
        fpr: Vec::with_capacity(pts.len() + 1),
        tpr: Vec::with_capacity(pts.len() + 1),
        thresholds: Vec::with_capacity(pts.len() + 1),
    };
    c.fpr.push(0.0);
    c.tpr.push(0.0);
    c.thresholds.push(f64::INFINITY);
    for (tp, fp, t) in pts {
        c.fpr.push(fp as f64 / neg as f64);
        c.tpr.push(tp as f64 / pos as f64);
        c.thresholds.push(t);
    }
    Ok(c)
}

/// Precision–recall curve, as `sklearn.metrics.precision_recall_curve`:
/// thresholds in increasing order; `precision` and `recall` have one more
/// entry, the final point (precision 1, recall 0).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PrCurve {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub thresholds: Vec<f64>,
}

pub fn pr_curve(truth: &[bool], scores: &[f64]) -> Result<PrCurve> {
    let (pos, _) = check_detection(truth, scores, "precision-recall curve")?;
    let pts = operating_points(truth, scores);
    let mut c = PrCurve {
        precision: Vec::with_capacity(pts.len() + 1),
        recall: Vec::with_capacity(pts.len() + 1),
        thresholds: Vec::with_capacity(pts.len()),
    };
    for &(tp, fp, t) in pts.iter().rev() {
        c.precision.push(tp as f64 / (tp + fp) as f64);
        c.recall.push(tp as f64 / pos as f64);
        c.thresholds.push(t);
    }
    c.precision.push(1.0);
    c.recall.push(0.0);
    Ok(c)
}

/// Precision, recall and F1 of binary calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct BinaryScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of cells called anomalous.
    pub n_called: usize,
}

/// Precision, recall and F1 of `calls` against `truth`, as scikit-learn's
/// `precision_score`/`recall_score`/`f1_score` with `zero_division=0`
/// (a score whose denominator is 0 is 0).
pub fn binary_scores(truth: &[bool], calls: &[bool]) -> Result<BinaryScores> {
    if truth.len() != calls.len() {
        return Err(Error::invalid(format!(
            "{} truth labels for {} calls",
            truth.len(),
            calls.len()
        )));
    }
    if truth.is_empty() {
        return Err(Error::invalid("F1: no cells"));
    }
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&t, &c) in truth.iter().zip(calls) {
        match (t, c) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(BinaryScores {
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        // F1 = 2TP / (2TP + FP + FN), as sklearn computes it.
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
        n_called: tp + fp,
    })
}

/// The calls of the authors' evaluation rule: with `k` cells to call, the
/// threshold is the k-th highest score and every cell scoring >= it is
/// called. Ties at the threshold are all called (so more than `k` cells can
/// be called; none is dropped arbitrarily). `k = 0` calls nothing.
pub fn top_k_calls(scores: &[f64], k: usize) -> Result<Vec<bool>> {
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::invalid(format!("score of cell {i} is {}", scores[i])));
    }
    if k > scores.len() {
        return Err(Error::invalid(format!("cannot call {k} of {} cells", scores.len())));
    }
    if k == 0 {
        return Ok(vec![false; scores.len()]);
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let thr = sorted[k - 1];
    Ok(scores.iter().map(|&s| s >= thr).collect())
}

/// The number of cells to call for an anomaly fraction: `round(fraction · N)`
/// (halves round away from zero).
pub fn k_for_fraction(fraction: f64, n: usize) -> Result<usize> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::invalid(format!("anomaly fraction {fraction} is not in [0, 1]")));
    }
    Ok((fraction * n as f64).round() as usize)
}

/// F1 at the authors' threshold: call the top k cells, k = number of true
/// anomalies (= round(true fraction · N)); see [`top_k_calls`] for ties.
pub fn f1_top_k(truth: &[bool], scores: &[f64]) -> Result<BinaryScores> {
    check_detection(truth, scores, "F1 at the true anomaly fraction")?;
    let k = truth.iter().filter(|&&t| t).count();
    binary_scores(truth, &top_k_calls(scores, k)?)
}

/// Maps labels to dense codes 0..n_classes.
fn encode<T: Eq + Hash>(labels: &[T]) -> (Vec<usize>, usize) {
    let mut map: HashMap<&T, usize> = HashMap::new();
    let codes = labels
        .iter()
        .map(|l| {
            let next = map.len();
            *map.entry(l).or_insert(next)
        })
        .collect();
    (codes, map.len())
}

/// Sparse contingency table: counts of (true class, predicted cluster) pairs,
/// plus the row and column sums.
struct Contingency {
    /// ((class, cluster), count) for the non-zero cells, sorted.
    cells: Vec<((usize, usize), usize)>,
    rows: Vec<usize>,
    cols: Vec<usize>,
    n: usize,
}

fn contingency<T: Eq + Hash, U: Eq + Hash>(a: &[T], b: &[U], what: &str) -> Result<Contingency> {
    if a.len() != b.len() {
        return Err(Error::invalid(format!(
            "{what}: {} true labels for {} predicted labels",
            a.len(),
            b.len()
        )));
    }
    if a.is_empty() {
        return Err(Error::invalid(format!("{what}: no cells")));
    }
    let (ca, na) = encode(a);
    let (cb, nb) = encode(b);
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    for (&x, &y) in ca.iter().zip(&cb) {
        *pairs.entry((x, y)).or_insert(0) += 1;
    }
    let (mut rows, mut cols) = (vec![0usize; na], vec![0usize; nb]);
    let mut keys: Vec<_> = pairs.into_iter().collect();
    keys.sort_unstable();
    for &((x, y), c) in &keys {
        rows[x] += c;
        cols[y] += c;
    }
    Ok(Contingency { cells: keys, rows, cols, n: a.len() })
}

fn entropy(counts: &[usize], n: usize) -> f64 {
    let ln_n = (n as f64).ln();
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| (c as f64 / n as f64) * ((c as f64).ln() - ln_n))
        .sum::<f64>()
}

/// Normalized mutual information with the arithmetic mean of the two
/// entropies, as `sklearn.metrics.normalized_mutual_info_score` (its default):
/// 1 when both labelings have a single class, 0 when the mutual information
/// is 0.
pub fn nmi<T: Eq + Hash, U: Eq + Hash>(labels_true: &[T], labels_pred: &[U]) -> Result<f64> {
    let ct = contingency(labels_true, labels_pred, "NMI")?;
    if ct.rows.len() == 1 && ct.cols.len() == 1 {
        return Ok(1.0);
    }
    // Mutual information from the contingency table (natural log).
    let n = ct.n as f64;
    let mut mi = 0.0f64;
    for &((x, y), c) in &ct.cells {
        let c = c as f64;
        let outer = ct.rows[x] as f64 * ct.cols[y] as f64;
        let term = (c / n) * (c.ln() - n.ln()) + (c / n) * (-outer.ln() + 2.0 * n.ln());
        if term.abs() >= f64::EPSILON {
            mi += term;
        }
    }
    let mi = mi.max(0.0);
    if mi == 0.0 {
        return Ok(0.0);
    }
    let norm = (entropy(&ct.rows, ct.n) + entropy(&ct.cols, ct.n)) / 2.0;
    Ok(mi / norm)
}

/// Adjusted Rand index, as `sklearn.metrics.adjusted_rand_score` (from the
/// pair confusion matrix; 1 for identical partitions up to relabelling).
pub fn ari<T: Eq + Hash, U: Eq + Hash>(labels_true: &[T], labels_pred: &[U]) -> Result<f64> {
    let ct = contingency(labels_true, labels_pred, "ARI")?;
    // Exact integer pair counts (i128: products reach N^4).
    let n = ct.n as i128;
    let sum_sq: i128 = ct.cells.iter().map(|&(_, c)| (c as i128) * (c as i128)).sum();
    let sum_rows_sq: i128 = ct.rows.iter().map(|&c| (c as i128) * (c as i128)).sum();
    let sum_cols_sq: i128 = ct.cols.iter().map(|&c| (c as i128) * (c as i128)).sum();
    let tp = sum_sq - n;
    let fp = sum_cols_sq - sum_sq;
    let fn_ = sum_rows_sq - sum_sq;
    let tn = n * n - fp - fn_ - sum_sq;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2.0 * ((tp * tn - fn_ * fp) as f64);
    let den = ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_scores() {
        let t = [true, false, true, false];
        assert_eq!(auroc(&t, &[0.9, 0.1, 0.8, 0.2]).unwrap(), 1.0);
        assert_eq!(auroc(&t, &[0.1, 0.9, 0.2, 0.8]).unwrap(), 0.0);
        assert_eq!(average_precision(&t, &[0.9, 0.1, 0.8, 0.2]).unwrap(), 1.0);
    }

    #[test]
    fn single_class_is_an_error() {
        assert!(matches!(auroc(&[true, true], &[0.1, 0.2]), Err(Error::Invalid(_))));
        assert!(matches!(average_precision(&[false], &[0.1]), Err(Error::Invalid(_))));
        assert!(matches!(auroc(&[true, false], &[f64::NAN, 0.2]), Err(Error::Invalid(_))));
    }

    #[test]
    fn top_k_keeps_ties() {
        let c = top_k_calls(&[0.5, 0.9, 0.5, 0.1], 2).unwrap();
        assert_eq!(c, vec![true, true, true, false]);
        assert_eq!(k_for_fraction(0.148, 1000).unwrap(), 148);
    }
}
