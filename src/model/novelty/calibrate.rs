//! From the novelty score to calibrated calls.
//!
//! - The score ([`super::statistics`]) of every reference cell (leave-one-
//!   out) and target cell; [`average_ranks`] is its rank step.
//! - p-values: conformal, against the reference cells' own leave-one-out
//!   scores, `p = (1 + #{reference scores ≥ s}) / (n_ref + 1)`. When a
//!   target's normal cells are distributed like the reference (what the
//!   correction is for), these are valid p-values without any model of the
//!   score's distribution.
//! - q-values: Benjamini–Hochberg; the default call is `q ≤ fdr`.

use crate::error::{Error, Result};

/// Average ranks (1-based; ties share their mean rank), as scipy's
/// `rankdata(method="average")`.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Conformal p-values of `scores` against calibration scores (higher =
/// more anomalous).
pub fn conformal_p(calibration: &[f64], scores: &[f64]) -> Vec<f64> {
    let mut cal = calibration.to_vec();
    cal.sort_by(f64::total_cmp);
    let n = cal.len() as f64;
    scores
        .iter()
        .map(|&s| {
            let below = cal.partition_point(|&c| c < s);
            (1.0 + (cal.len() - below) as f64) / (n + 1.0)
        })
        .collect()
}

/// Benjamini–Hochberg adjusted p-values (q-values), as
/// `statsmodels.multipletests(method="fdr_bh")`.
pub fn bh_qvalues(p: &[f64]) -> Vec<f64> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![0.0; n];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * n as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

/// The calls: the top `ratio` fraction by score when a ratio is given
/// (ties by input order), otherwise `q ≤ fdr`.
pub fn calls(scores: &[f64], q: &[f64], fdr: f64, ratio: Option<f64>) -> Result<Vec<bool>> {
    match ratio {
        Some(r) => {
            if !(r > 0.0 && r < 1.0) {
                return Err(Error::Config(format!("anomaly_ratio must be in (0, 1), got {r}")));
            }
            let k = ((r * scores.len() as f64).round() as usize).clamp(1, scores.len().saturating_sub(1).max(1));
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let mut c = vec![false; scores.len()];
            order[..k].iter().for_each(|&i| c[i] = true);
            Ok(c)
        }
        None => Ok(q.iter().map(|&v| v <= fdr).collect()),
    }
}
