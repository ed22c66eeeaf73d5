//! How many subtypes, when none is given: the k-means partition with the
//! best mean silhouette, K from 2 up to the number of Louvain communities.
//!
//! Louvain at resolution 1 (DESC's rule, [`super::graph`]) finds
//! communities inside populations — on Kang's called B and NK cells six,
//! for two cell types — and every extra split costs NMI against the
//! populations a user asks about. The silhouette (Rousseeuw 1987: for
//! each cell, `(b − a) / max(a, b)` with `a` its mean distance to its own
//! cluster and `b` to the nearest other) prefers the partition whose
//! clusters are most apart from each other: the top level of a hierarchy
//! of populations. Louvain's count bounds the search: K never exceeds
//! the communities the graph holds, and one community stays one subtype.
//!
//! Silhouettes need all pairwise distances of the cells they are taken
//! on: a seeded sample of at most [`MAX_SILHOUETTE_CELLS`] keeps the work
//! bounded (the k-means themselves run on every cell).

use rayon::prelude::*;

use super::kmeans::{kmeans, KMeans};
use crate::data::matrix::DenseMatrix;
use crate::model::novelty::embed::sample_rows;
use crate::Result;

/// Cells the silhouettes are computed on at most (a seeded sample).
pub const MAX_SILHOUETTE_CELLS: usize = 2000;
/// Largest K tried.
pub const MAX_K: usize = 12;

/// Mean silhouette of `labels` (values `0..k`) over the rows `rows` of
/// `x`; cells alone in their cluster count 0, as in scikit-learn.
pub fn mean_silhouette(x: &DenseMatrix, labels: &[u32], k: usize, rows: &[usize]) -> f64 {
    let dist = |i: usize, j: usize| x.row(i).iter().zip(x.row(j)).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
    let mut sizes = vec![0usize; k];
    rows.iter().for_each(|&i| sizes[labels[i] as usize] += 1);
    let total: f64 = rows
        .par_iter()
        .map(|&i| {
            let own = labels[i] as usize;
            if sizes[own] < 2 {
                return 0.0;
            }
            let mut sums = vec![0.0f64; k];
            for &j in rows {
                if j != i {
                    sums[labels[j] as usize] += dist(i, j);
                }
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k).filter(|&c| c != own && sizes[c] > 0).map(|c| sums[c] / sizes[c] as f64).fold(f64::INFINITY, f64::min);
            if !b.is_finite() || a.max(b) == 0.0 { 0.0 } else { (b - a) / a.max(b) }
        })
        .sum();
    total / rows.len() as f64
}

/// The K in `2..=max_k` whose k-means partition has the best mean
/// silhouette (the lower K on ties), with that partition and every K's
/// silhouette. `max_k` is clamped to [`MAX_K`] and to the cells.
pub fn best_k(x: &DenseMatrix, max_k: usize, restarts: usize, seed: u64) -> Result<(KMeans, Vec<(usize, f64)>)> {
    let top = max_k.min(MAX_K).min(x.rows);
    let rows = sample_rows(x.rows, MAX_SILHOUETTE_CELLS, seed ^ 0x51_1405);
    let mut best: Option<(f64, KMeans)> = None;
    let mut scores = Vec::new();
    for k in 2..=top {
        let km = kmeans(x, k, restarts, seed)?;
        let s = mean_silhouette(x, &km.labels, k, &rows);
        scores.push((k, s));
        if best.as_ref().is_none_or(|(b, _)| s > *b) {
            best = Some((s, km));
        }
    }
    match best {
        Some((_, km)) => Ok((km, scores)),
        None => Ok((kmeans(x, 1, 1, seed)?, scores)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points per centre on a small ring around it (deterministic).
    fn blobs(centres: &[[f32; 2]], n: usize, spread: f32) -> DenseMatrix {
        let mut data = vec![];
        for c in centres {
            for i in 0..n {
                let t = i as f32 * 2.399;
                let r = spread * ((i % 7) as f32 + 1.0) / 7.0;
                data.extend_from_slice(&[c[0] + r * t.cos(), c[1] + r * t.sin()]);
            }
        }
        DenseMatrix { rows: centres.len() * n, cols: 2, data }
    }

    /// Against its definition and scikit-learn: `silhouette_score([[0,0],
    /// [0,1],[4,0],[4,1],[9,9]], [0,0,1,1,1])` = 0.281696… (sklearn 1.x).
    #[test]
    fn silhouette_matches_its_definition() {
        let x = DenseMatrix { rows: 5, cols: 2, data: vec![0.0, 0.0, 0.0, 1.0, 4.0, 0.0, 4.0, 1.0, 9.0, 9.0] };
        let labels = [0, 0, 1, 1, 1];
        let d = |i: usize, j: usize| x.row(i).iter().zip(x.row(j)).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
        let mut want = 0.0;
        for i in 0..5 {
            let own: Vec<usize> = (0..5).filter(|&j| j != i && labels[j] == labels[i]).collect();
            let other: Vec<usize> = (0..5).filter(|&j| labels[j] != labels[i]).collect();
            let a = own.iter().map(|&j| d(i, j)).sum::<f64>() / own.len() as f64;
            let b = other.iter().map(|&j| d(i, j)).sum::<f64>() / other.len() as f64;
            want += (b - a) / a.max(b);
        }
        want /= 5.0;
        let got = mean_silhouette(&x, &labels, 2, &[0, 1, 2, 3, 4]);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!((got - 0.281_696_108_931_290_8).abs() < 1e-9, "{got}");
    }

    /// Three populations, each made of two nearby communities: Louvain
    /// would see six; the best silhouette is at the top level, three.
    #[test]
    fn best_k_finds_the_top_level_of_nested_populations() {
        let centres = [[0.0, 0.0], [1.5, 0.0], [20.0, 0.0], [21.5, 0.0], [0.0, 20.0], [1.5, 20.0]];
        let x = blobs(&centres, 40, 0.4);
        let (km, scores) = best_k(&x, 6, 5, 1).unwrap();
        assert_eq!(km.centroids.rows, 3, "{scores:?}");
        assert_eq!(scores.len(), 5);
        // The pairs of communities share a label.
        for p in 0..3 {
            assert_eq!(km.labels[p * 80], km.labels[p * 80 + 40]);
        }
    }
}
