//! A local correction of the target after Harmony, from mutual nearest
//! neighbours (MNN) between target and reference, smoothed over the target
//! (after fastMNN, Haghverdi et al. 2018).
//!
//! Harmony corrects by soft clusters: target cells of one cluster get one
//! offset, whatever part of the target they come from. When the target's
//! normal cells are shifted differently within a cluster — donors or
//! batches not given as a key, a condition response that varies along a
//! cell type — part of the shift is left, and those normal cells read as
//! novel. Here every target cell gets its own correction vector, estimated
//! where target and reference correspond and only there:
//!
//! 1. MNN pairs: target cell `i` and reference cell `j` are paired when
//!    each is among the other's `k` nearest cells of the other set. A cell
//!    state absent from the reference has (almost) no pairs: the reference
//!    cells near it have nearer target cells of their own kind.
//! 2. A paired target cell's vector is the mean of its partners minus
//!    itself.
//! 3. Every target cell moves by the Gaussian-weighted mean vector of its
//!    `k_smooth` nearest paired target cells (in target coordinates; the
//!    bandwidth is the median distance to the `k_smooth`-th of them). The
//!    smoothing makes the correction a field that varies slowly across the
//!    target, so a novel cell moves with its normal neighbours and is not
//!    pulled onto the reference, and a paired cell is not moved exactly
//!    onto its partners (which would make target cells nearer to the
//!    reference than reference cells are to each other, and the calls too
//!    conservative).
//!
//! The correction is partial by construction: the mean of a cell's
//! nearest reference partners lies between the cell and the reference
//! cluster's centre, so a residual shift is shrunk, not removed (on three
//! 2-D clusters shifted by a fraction of their spread, ~20 % of it is
//! removed; in 50 joint PCs after Harmony it removes most of what makes
//! normal cells read as novel: README, "Detection"). Shrinking errs on the
//! conservative side: an anomaly is never pulled further than its normal
//! neighbours. Centring both ends of each pair on their neighbourhoods'
//! centres of mass (batchelor's answer to this) removed more of the shift
//! but called fewer true anomalies on the real benchmarks, and needs a
//! target × target search.
//!
//! The reference is not moved: it is the frame the scores are calibrated in.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::data::matrix::DenseMatrix;
use crate::error::{Error, Result};

use super::embed::sample_rows;
use super::knn;

/// Settings of the MNN refinement (the `[novelty.mnn]` TOML table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MnnConfig {
    /// Apply the refinement after the correction (default): it removes
    /// what Harmony leaves of a shift that varies within its clusters, so
    /// normal cells of differently shifted target batches that are not
    /// given as a key are not called. README, "Detection".
    pub enabled: bool,
    /// Neighbours searched in the other set for mutual pairs: at most
    /// this many (fastMNN's default, 20; see `k_fraction`).
    pub k: usize,
    /// Fewer neighbours on small sets: k = `k_fraction` × the smaller
    /// set's size, between [`K_MIN`] and `k` (0: `k` as is). Mutuality
    /// keeps a novel population unpaired only while k is below the size of
    /// the normal population beside it, in the other set; fastMNN's 20 is
    /// 1 % of the sets of thousands it was made for, and on a 156-cell
    /// target with 14 normal cells (oligodendroglioma) 20 neighbours of a
    /// reference cell reach into the tumour cells, which then pair and are
    /// pulled onto the reference (README, "Detection").
    pub k_fraction: f64,
    /// Paired target cells whose vectors are averaged for each cell.
    pub k_smooth: usize,
    /// Most paired cells the smoothing draws on (a seeded sample beyond),
    /// so that time stays linear in the target's size.
    pub max_smooth_cells: usize,
    /// Pair only target cells the scoring before the refinement found
    /// likely normal (p > `refit_min_p`; see [`refine`]). Off by default:
    /// where the first scoring over-calls (a strong shift, batches not
    /// given) it withholds the most shifted normal cells from the pairs
    /// and leaves their shift (sim: 34 % called for 10 % true).
    pub pair_likely_normal: bool,
}

impl Default for MnnConfig {
    fn default() -> Self {
        MnnConfig { enabled: true, k: 20, k_fraction: 0.01, k_smooth: 100, max_smooth_cells: 100_000, pair_likely_normal: false }
    }
}

/// Fewest neighbours `k_fraction` leaves.
pub const K_MIN: usize = 3;

impl MnnConfig {
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.k_smooth == 0 {
            return Err(Error::Config("novelty.mnn: k and k_smooth must be at least 1".into()));
        }
        if !(self.k_fraction.is_finite() && (0.0..=1.0).contains(&self.k_fraction)) {
            return Err(Error::Config(format!("novelty.mnn: k_fraction must be in [0, 1], got {}", self.k_fraction)));
        }
        if self.max_smooth_cells < self.k_smooth {
            return Err(Error::Config(format!(
                "novelty.mnn: max_smooth_cells ({}) must be at least k_smooth ({})",
                self.max_smooth_cells, self.k_smooth
            )));
        }
        Ok(())
    }

    /// The neighbours searched for pairs between sets of `nr` and `nt` cells.
    pub fn k_for(&self, nr: usize, nt: usize) -> usize {
        let k = if self.k_fraction > 0.0 {
            ((self.k_fraction * nr.min(nt) as f64).round() as usize).clamp(K_MIN.min(self.k), self.k)
        } else {
            self.k
        };
        k.min(nr).min(nt).max(1)
    }
}

/// What the refinement did, for report.json.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MnnReport {
    /// Neighbours searched for pairs ([`MnnConfig::k_for`]).
    pub k: usize,
    /// Target cells with at least one mutual reference neighbour.
    pub paired_target_cells: usize,
    /// Mutual pairs found.
    pub pairs: usize,
    /// Paired cells the smoothing drew on.
    pub smoothing_cells: usize,
    /// Gaussian bandwidth (median distance to the k_smooth-th paired cell).
    pub bandwidth: f64,
    /// Mean length of the correction vectors applied.
    pub mean_shift: f64,
}

/// The target corrected towards the reference (see the module doc); the
/// target unchanged, with `paired_target_cells = 0`, when no cell pairs.
/// `eligible` (one flag per target cell) restricts the pairs to the
/// target cells a previous scoring found likely normal: a reference
/// outlier beside an anomaly population has anomalies for its nearest
/// target cells and pairs with them (on the demo 135 of its 150 anomalies
/// were paired). Ineligible cells still fill the reference cells'
/// neighbour lists, and still move with their paired neighbours. (Off by
/// default, see [`MnnConfig::pair_likely_normal`]: the density-ratio term
/// keeps such anomalies apart from the outliers they are pulled to.)
pub fn refine<B: Backend>(
    be: &B,
    zr: &DenseMatrix,
    zt: &DenseMatrix,
    eligible: Option<&[bool]>,
    cfg: &MnnConfig,
    seed: u64,
) -> Result<(DenseMatrix, MnnReport)> {
    cfg.validate()?;
    let (nr, nt, d) = (zr.rows, zt.rows, zt.cols);
    if zr.cols != d {
        return Err(Error::invalid(format!("MNN: reference has {} coordinates, target {d}", zr.cols)));
    }
    if let Some(e) = eligible
        && e.len() != nt
    {
        return Err(Error::invalid(format!("MNN: {} eligibility flags for {nt} target cells", e.len())));
    }
    let k = cfg.k_for(nr, nt);
    let t2r = knn::knn(be, zt, zr, k, None)?;
    let r2t = knn::knn(be, zr, zt, k, None)?;
    let (vectors, is_paired, pairs) = pair_vectors(zr, zt, &t2r, &r2t, eligible);
    drop((t2r, r2t));
    let paired: Vec<usize> = (0..nt).filter(|&i| is_paired[i]).collect();
    let mut report = MnnReport { k, paired_target_cells: paired.len(), pairs, smoothing_cells: 0, bandwidth: 0.0, mean_shift: 0.0 };
    if paired.is_empty() {
        return Ok((zt.clone(), report));
    }
    let pick = sample_rows(paired.len(), cfg.max_smooth_cells, seed ^ 0x3C6E_F372);
    let sources: Vec<usize> = pick.iter().map(|&j| paired[j]).collect();
    let mut keys = DenseMatrix { rows: sources.len(), cols: d, data: Vec::with_capacity(sources.len() * d) };
    for &i in &sources {
        keys.data.extend_from_slice(zt.row(i));
    }
    let ks = cfg.k_smooth.min(sources.len());
    let nb = knn::knn(be, zt, &keys, ks, None)?;
    let mut last: Vec<f32> = (0..nt).map(|i| nb.row(i).1[ks - 1]).collect();
    last.sort_by(f32::total_cmp);
    let bandwidth = last[nt / 2] as f64;
    report.smoothing_cells = sources.len();
    report.bandwidth = bandwidth;

    let mut out = zt.clone();
    let mut shift_sum = 0.0f64;
    let mut acc = vec![0.0f64; d];
    for i in 0..nt {
        let (idx, dist) = nb.row(i);
        acc.iter_mut().for_each(|a| *a = 0.0);
        let mut wsum = 0.0f64;
        for (&j, &dj) in idx.iter().zip(dist) {
            // Uniform weights if every distance is 0 (bandwidth 0).
            let w = if bandwidth > 0.0 { (-(dj as f64 / bandwidth).powi(2)).exp() } else { 1.0 };
            let v = vectors.row(sources[j as usize]);
            acc.iter_mut().zip(v).for_each(|(a, &x)| *a += w * x as f64);
            wsum += w;
        }
        // The nearest source always has weight > 0 unless it lies beyond
        // ~26 bandwidths; then fall back to the nearest one alone.
        if wsum <= f64::MIN_POSITIVE {
            let v = vectors.row(sources[idx[0] as usize]);
            acc.iter_mut().zip(v).for_each(|(a, &x)| *a = x as f64);
            wsum = 1.0;
        }
        let row = &mut out.data[i * d..(i + 1) * d];
        let mut len2 = 0.0f64;
        for (x, a) in row.iter_mut().zip(&acc) {
            let s = a / wsum;
            *x += s as f32;
            len2 += s * s;
        }
        shift_sum += len2.sqrt();
    }
    report.mean_shift = shift_sum / nt as f64;
    Ok((out, report))
}

/// Per target cell: the mean of its mutual reference partners minus the
/// cell ([n_target × d]; zero for a cell without partners), whether it
/// has partners, and the number of pairs. Cells not `eligible` have none.
fn pair_vectors(
    zr: &DenseMatrix,
    zt: &DenseMatrix,
    t2r: &knn::Neighbours,
    r2t: &knn::Neighbours,
    eligible: Option<&[bool]>,
) -> (DenseMatrix, Vec<bool>, usize) {
    let d = zt.cols;
    let mut vectors = DenseMatrix::zeros(zt.rows, d);
    let counts: Vec<usize> = vectors
        .data
        .par_chunks_mut(d.max(1))
        .enumerate()
        .map(|(i, out)| {
            if eligible.is_some_and(|e| !e[i]) {
                return 0;
            }
            let partners = t2r.row(i).0.iter().map(|&j| j as usize).filter(|&j| r2t.row(j).0.contains(&(i as u32)));
            let mut v = vec![0.0f64; d];
            let mut m = 0usize;
            for j in partners {
                v.iter_mut().zip(zr.row(j)).for_each(|(a, &x)| *a += x as f64);
                m += 1;
            }
            if m > 0 {
                for ((o, a), &x) in out.iter_mut().zip(&v).zip(zt.row(i)) {
                    *o = (a / m as f64 - x as f64) as f32;
                }
            }
            m
        })
        .collect();
    let pairs = counts.iter().sum();
    (vectors, counts.iter().map(|&c| c > 0).collect(), pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    /// `n` points around each centre, spread ±0.3.
    fn blobs(centres: &[[f32; 2]], n: usize, seed: u64) -> DenseMatrix {
        DenseMatrix { rows: centres.len() * n, cols: 2, data: super::super::test_points::squares(centres, n, seed) }
    }

    fn centroid(m: &DenseMatrix, rows: std::ops::Range<usize>) -> [f32; 2] {
        let n = rows.len() as f32;
        let (mut x, mut y) = (0.0, 0.0);
        for r in rows {
            x += m.row(r)[0];
            y += m.row(r)[1];
        }
        [x / n, y / n]
    }

    #[test]
    fn a_shared_shift_shrinks_and_a_novel_cluster_is_not_paired() {
        // Reference: three clusters. Target: the same clusters shifted by
        // (0.3, −0.2) (a residual after Harmony: smaller than a cluster's
        // spread, so target and reference cells interleave), and a fourth
        // cluster far from all of them.
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let zr = blobs(&centres, 60, 1);
        let shifted: Vec<[f32; 2]> = centres.iter().map(|c| [c[0] + 0.3, c[1] - 0.2]).collect();
        let mut zt = blobs(&shifted, 60, 2);
        let novel = blobs(&[[30.0, 30.0]], 20, 3);
        zt.data.extend_from_slice(&novel.data);
        zt.rows += novel.rows;
        let be = CpuBackend::new();
        let cfg = MnnConfig { k: 10, k_fraction: 0.0, k_smooth: 30, ..MnnConfig::default() };
        let (out, rep) = refine(&be, &zr, &zt, None, &cfg, 1).unwrap();
        let (t2r, r2t) = (knn::knn(&be, &zt, &zr, 10, None).unwrap(), knn::knn(&be, &zr, &zt, 10, None).unwrap());
        let (_, paired, _) = pair_vectors(&zr, &zt, &t2r, &r2t, None);
        assert!(!paired[180..].iter().any(|&p| p), "a novel cell was paired");
        // Cells marked ineligible (a previous scoring found them likely
        // anomalous) get no pairs, the others keep theirs.
        let eligible: Vec<bool> = (0..200).map(|i| i >= 60).collect();
        let (_, restricted, _) = pair_vectors(&zr, &zt, &t2r, &r2t, Some(&eligible));
        assert!(!restricted[..60].iter().any(|&p| p));
        assert_eq!(&restricted[60..], &paired[60..]);
        assert!(rep.paired_target_cells > 90, "{rep:?}");
        // Each shared cluster moves towards its reference counterpart (part
        // of the way: see the module doc on shrinkage) …
        let gap = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        for c in 0..3 {
            let rows = c * 60..(c + 1) * 60;
            let (before, after) = (gap(centroid(&zt, rows.clone()), centroid(&zr, rows.clone())), gap(centroid(&out, rows.clone()), centroid(&zr, rows)));
            assert!(after < 0.9 * before, "cluster {c}: gap {before} → {after}");
        }
        // … and the novel one moves with its nearest paired cells, by no
        // more than the shift: it stays far from the reference.
        let moved = gap(centroid(&out, 180..200), centroid(&zt, 180..200));
        assert!(moved < 0.4, "the novel cluster moved {moved}");
    }

    #[test]
    fn k_shrinks_with_the_smaller_set() {
        let cfg = MnnConfig::default();
        assert_eq!(cfg.k_for(5631, 7451), 20);
        assert_eq!(cfg.k_for(2000, 2000), 20);
        assert_eq!(cfg.k_for(600, 400), 4);
        assert_eq!(cfg.k_for(28, 156), K_MIN);
        assert_eq!(cfg.k_for(2, 156), 2);
        assert_eq!(MnnConfig { k_fraction: 0.0, ..cfg.clone() }.k_for(28, 156), 20);
        assert_eq!(MnnConfig { k: 2, ..cfg }.k_for(28, 156), 2);
    }

    /// Regression (oligodendroglioma split): a reference population with
    /// few target counterparts (5 target cells for 14 reference cells)
    /// beside a large novel population. With 20 neighbours each reference
    /// cell's list reached into the novel cells, which were paired and
    /// pulled onto the reference; k scaled to the sets' size pairs none.
    #[test]
    fn a_novel_majority_beside_a_small_normal_population_is_not_paired() {
        let zr = blobs(&[[0.0, 0.0], [10.0, 0.0]], 14, 1);
        let mut zt = blobs(&[[0.0, 0.0]], 5, 2);
        for (c, n, seed) in [([10.0, 0.0], 9, 3), ([2.0, 0.0], 140, 4)] {
            let b = blobs(&[c], n, seed);
            zt.data.extend_from_slice(&b.data);
            zt.rows += b.rows;
        }
        let novel_paired = |cfg: &MnnConfig| {
            let be = CpuBackend::new();
            let k = cfg.k_for(zr.rows, zt.rows);
            let (t2r, r2t) = (knn::knn(&be, &zt, &zr, k, None).unwrap(), knn::knn(&be, &zr, &zt, k, None).unwrap());
            pair_vectors(&zr, &zt, &t2r, &r2t, None).1[14..].iter().filter(|&&p| p).count()
        };
        assert_eq!(novel_paired(&MnnConfig::default()), 0);
        assert!(novel_paired(&MnnConfig { k_fraction: 0.0, ..MnnConfig::default() }) > 10);
    }

    #[test]
    fn a_single_pair_gives_a_constant_field() {
        // k = 1: every target cell's nearest reference cell is cell 0, whose
        // nearest target cell is target 0 only. (Some pair always exists:
        // the closest target–reference pair is mutual.)
        let zr = DenseMatrix { rows: 2, cols: 1, data: vec![0.0, 100.0] };
        let zt = DenseMatrix { rows: 3, cols: 1, data: vec![10.0, 11.0, 12.0] };
        let cfg = MnnConfig { k: 1, k_smooth: 1, ..MnnConfig::default() };
        let (out, rep) = refine(&CpuBackend::new(), &zr, &zt, None, &cfg, 1).unwrap();
        assert_eq!(rep.paired_target_cells, 1);
        // Every cell takes target 0's vector (−10): the field is constant.
        assert_eq!(out.data, vec![0.0, 1.0, 2.0]);
        let zr = DenseMatrix { rows: 1, cols: 1, data: vec![0.0] };
        let zt = DenseMatrix { rows: 1, cols: 1, data: vec![5.0] };
        let (out, rep) = refine(&CpuBackend::new(), &zr, &zt, None, &cfg, 1).unwrap();
        assert_eq!((rep.paired_target_cells, out.data.clone()), (1, vec![0.0]));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(MnnConfig { k: 0, ..MnnConfig::default() }.validate().is_err());
        assert!(MnnConfig { k_smooth: 200, max_smooth_cells: 100, ..MnnConfig::default() }.validate().is_err());
    }
}
