//! The novelty statistics of every cell, reference (leave-one-out) and
//! target, and their rank-sum score.
//!
//! - **distance**: mean distance to the `k_distance` nearest reference
//!   cells. Far from the reference = novel, but a reference outlier is as
//!   far from the other reference cells as an anomaly is.
//! - **abundance**: the fraction of reference cells among the
//!   `k_abundance` nearest cells of both sets (Milo's quantity). Low = the
//!   neighbourhood is target-rich.
//! - **density ratio**: distance to the reference over distance to the
//!   target (both means over `k_distance` nearest cells; a k-NN estimate
//!   of how much denser the target is than the reference near the cell,
//!   to the power 1/dimension). An anomaly population is dense where the
//!   reference is absent: high. A reference outlier is far from both sets:
//!   near 1, where the first two read it as novel as an anomaly — a
//!   reference cell beside an anomaly population has no reference cell
//!   among its nearest, so its abundance is 0 like the anomalies', and
//!   such cells in the reference's leave-one-out scores set a floor under
//!   every anomaly's p-value (1 % of the reference: no call at all when
//!   anomalies are 10 % of the target at FDR 0.1). Being a ratio of
//!   distances, it hardly moves when a normal type is two times more
//!   frequent in the target (2^(1/d)), unlike the abundance.
//!
//! The score is half the sum of the distance's and the abundance's ranks
//! over all cells (each scaled to (0, 1]: free of units, neither
//! dominates by its scale) and of the density ratio's **excess**: how many
//! robust standard deviations of the reference its log lies above the
//! reference's median, 10 of them per unit. A rank term would not do: an
//! anomaly population fills as many ranks as it has cells, so a lone
//! reference outlier at the top of two terms outranks it; the excess
//! keeps the magnitude — an anomaly population's ratio lies tens of
//! deviations out, a reference outlier's a few.

use crate::backend::Backend;
use crate::data::matrix::DenseMatrix;
use crate::error::Result;

use super::{calibrate, knn, NoveltyConfig};

/// The statistics and the combined score of every cell, reference first.
pub(super) struct Stats {
    pub score: Vec<f64>,
    pub distance: Vec<f64>,
    pub abundance: Vec<f64>,
    /// Distance to the reference over distance to the target (None when
    /// the term is off or the target has a single cell).
    pub density_ratio: Option<Vec<f64>>,
}

/// Reference spreads of the log density ratio per unit of score: one rank
/// term's whole range per 10 robust standard deviations. Cells within the
/// reference's usual variation (|z| ≲ 3) move by under a third of a term
/// and the ranks order them; cells far beyond anything in the reference
/// are ordered by how far (README, "Detection": 5–20 give the same
/// calls on the simulations and pbmc68k; Kang prefers 10–20).
const RATIO_Z_PER_UNIT: f64 = 10.0;

/// `max(0, z) / RATIO_Z_PER_UNIT` of every cell's log density ratio, z
/// robust against the reference cells (median, 1.4826 · MAD). None when
/// the reference's MAD is 0 (no spread to measure against).
fn ratio_excess(ratio: &[f64], nr: usize) -> Option<Vec<f64>> {
    let logs: Vec<f64> = ratio.iter().map(|r| r.ln()).collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
    };
    let mut r = logs[..nr].to_vec();
    let centre = median(&mut r);
    let mut dev: Vec<f64> = r.iter().map(|v| (v - centre).abs()).collect();
    let scale = 1.4826 * median(&mut dev);
    (scale.is_finite() && scale > 0.0).then(|| logs.iter().map(|v| ((v - centre) / scale).max(0.0) / RATIO_Z_PER_UNIT).collect())
}

/// Leave-one-out neighbours of target cells among the graph keys: the
/// `k + 1` nearest without the cell itself, or without the farthest when
/// the cell is not a key.
fn leave_out(nb: &knn::Neighbours, t: usize, own_key: u32, k: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
    let (idx, dist) = nb.row(t);
    let own = idx.iter().position(|&i| i == own_key).unwrap_or(idx.len() - 1);
    idx.iter().zip(dist).enumerate().filter(move |&(j, _)| j != own).map(|(_, (&i, &d))| (i, d)).take(k)
}

/// The statistics of reference cells (leave-one-out) and target cells.
/// `graph_rows`: the target cells that serve as neighbours (all, or a
/// seeded sample on large targets; every target cell is scored).
pub(super) fn statistics<B: Backend>(be: &B, zr: &DenseMatrix, zt: &DenseMatrix, graph_rows: &[usize], cfg: &NoveltyConfig) -> Result<Stats> {
    let (nr, nt) = (zr.rows, zt.rows);
    let mut distance = knn::knn(be, zr, zr, cfg.k_distance, Some(0))?.mean_dist();
    distance.extend(knn::knn(be, zt, zr, cfg.k_distance, None)?.mean_dist());

    // Graph keys: every reference cell, then the sampled target cells.
    let mut keys = zr.clone();
    let mut key_of_target = vec![u32::MAX; nt];
    for (j, &t) in graph_rows.iter().enumerate() {
        keys.data.extend_from_slice(zt.row(t));
        key_of_target[t] = (nr + j) as u32;
    }
    keys.rows = nr + graph_rows.len();
    let ka = cfg.k_abundance.min(keys.rows - 1);
    let ref_frac = |idx: &mut dyn Iterator<Item = u32>| {
        let (mut m, mut r) = (0usize, 0usize);
        idx.for_each(|i| {
            m += 1;
            r += ((i as usize) < nr) as usize;
        });
        r as f64 / m as f64
    };
    let nb = knn::knn(be, zr, &keys, ka, Some(0))?;
    let mut abundance: Vec<f64> = (0..nr).map(|i| ref_frac(&mut nb.row(i).0.iter().copied())).collect();
    let nb = knn::knn(be, zt, &keys, (ka + 1).min(keys.rows), None)?;
    for (t, &own_key) in key_of_target.iter().enumerate() {
        abundance.push(ref_frac(&mut leave_out(&nb, t, own_key, ka).map(|(i, _)| i)));
    }
    drop(nb);

    let density_ratio = if cfg.density_ratio && graph_rows.len() >= 2 {
        // Target keys only: the graph's target rows.
        let tkeys = DenseMatrix { rows: graph_rows.len(), cols: zt.cols, data: keys.data[nr * zt.cols..].to_vec() };
        drop(keys);
        let kt = cfg.k_distance.min(tkeys.rows - 1);
        let mut to_target = knn::knn(be, zr, &tkeys, kt, None)?.mean_dist();
        let nb = knn::knn(be, zt, &tkeys, kt + 1, None)?;
        for (t, &own_key) in key_of_target.iter().enumerate() {
            // Target keys are numbered from 0 here.
            let own = own_key.wrapping_sub(nr as u32);
            to_target.push(leave_out(&nb, t, own, kt).map(|(_, d)| d as f64).sum::<f64>() / kt as f64);
        }
        // Coincident cells (distance 0 to the target): the ratio is
        // infinite when the reference is farther, 1 when both are 0.
        Some(distance.iter().zip(&to_target).map(|(&d, &t)| if t > 0.0 { d / t } else if d > 0.0 { f64::INFINITY } else { 1.0 }).collect::<Vec<f64>>())
    } else {
        None
    };

    let n = (nr + nt) as f64;
    let neg: Vec<f64> = abundance.iter().map(|a| -a).collect();
    let (rd, ra) = (calibrate::average_ranks(&distance), calibrate::average_ranks(&neg));
    let excess = density_ratio.as_ref().and_then(|r| ratio_excess(r, nr));
    let score = (0..nr + nt).map(|i| (rd[i] / n + ra[i] / n + excess.as_ref().map_or(0.0, |e| e[i])) / 2.0).collect();
    Ok(Stats { score, distance, abundance, density_ratio })
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::test_points::squares as blobs;
    use crate::backend::CpuBackend;

    /// Reference: 300 cells at the origin and 4 outliers strewn around
    /// where the target's anomalies lie; target: 270 normal cells and
    /// 30 anomalies packed together. Returns (reference, target, target
    /// anomaly rows).
    fn outliers_beside_anomalies() -> (DenseMatrix, DenseMatrix, std::ops::Range<usize>) {
        let mut r = blobs(&[[0.0, 0.0]], 300, 1);
        r.extend_from_slice(&[6.0, 2.0, 6.0, -2.0, 10.0, 2.0, 10.0, -2.0]);
        let mut t = blobs(&[[0.0, 0.0]], 270, 2);
        t.extend(blobs(&[[8.0, 0.0]], 30, 3));
        (DenseMatrix { rows: 304, cols: 2, data: r }, DenseMatrix { rows: 300, cols: 2, data: t }, 270..300)
    }

    fn anomaly_p(density_ratio: bool) -> Vec<f64> {
        let (zr, zt, anomalies) = outliers_beside_anomalies();
        let cfg = NoveltyConfig { density_ratio, ..NoveltyConfig::default() };
        let graph: Vec<usize> = (0..zt.rows).collect();
        let s = statistics(&CpuBackend::new(), &zr, &zt, &graph, &cfg).unwrap();
        assert_eq!(s.density_ratio.is_some(), density_ratio);
        let p = calibrate::conformal_p(&s.score[..zr.rows], &s.score[zr.rows..]);
        p[anomalies].to_vec()
    }

    /// Regression (the demo called no cell with the MNN refinement on):
    /// reference outliers whose nearest cells are anomalies score as high
    /// as the anomalies on distance and abundance, so every anomaly's
    /// p-value has a floor of (1 + outliers) / (n_ref + 1); the density
    /// ratio tells the two apart and the anomalies reach the least p-value.
    #[test]
    fn reference_outliers_beside_anomalies_do_not_floor_their_p_values() {
        let least = 1.0 / 305.0;
        let two_terms = anomaly_p(false);
        assert!(two_terms.iter().all(|&p| p >= 3.0 * least), "{two_terms:?}");
        let three_terms = anomaly_p(true);
        assert!(three_terms.iter().all(|&p| (p - least).abs() < 1e-12), "{three_terms:?}");
    }

    /// A ratio of distances: scaling every coordinate leaves it unchanged,
    /// and on a one-cell target the term is left out.
    #[test]
    fn density_ratio_is_scale_free_and_needs_two_target_cells() {
        let (zr, zt, _) = outliers_beside_anomalies();
        let cfg = NoveltyConfig::default();
        let graph: Vec<usize> = (0..zt.rows).collect();
        let be = CpuBackend::new();
        let a = statistics(&be, &zr, &zt, &graph, &cfg).unwrap();
        let scale = |m: &DenseMatrix| DenseMatrix { data: m.data.iter().map(|v| v * 3.0).collect(), ..m.clone() };
        let b = statistics(&be, &scale(&zr), &scale(&zt), &graph, &cfg).unwrap();
        for (x, y) in a.density_ratio.unwrap().iter().zip(b.density_ratio.unwrap()) {
            // f32 distances from ‖q‖² + ‖k‖² − 2q·k: ~1e-4 relative on tight clusters.
            assert!((x - y).abs() < 1e-3 * x.abs().max(1.0), "{x} vs {y}");
        }
        let one = DenseMatrix { rows: 1, cols: 2, data: zt.row(0).to_vec() };
        let s = statistics(&be, &zr, &one, &[0], &cfg).unwrap();
        assert!(s.density_ratio.is_none() && s.score.len() == zr.rows + 1);
    }
}
