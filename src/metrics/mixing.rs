//! Batch-mixing and label-preservation metrics of an embedding (cells ×
//! features, e.g. corrected expression or its PCA), for judging batch
//! correction: batches should mix, cell types should stay apart.
//!
//! - [`silhouette`]: scikit-learn's `silhouette_score` (Euclidean). With
//!   cell-type labels, higher is better (types stay separated); with batch
//!   labels, values near 0 (or below) mean the batches are mixed.
//! - [`knn_mixing`]: an iLISI-type score, the mean over cells of the inverse
//!   Simpson index `1 / Σ_l p_l²` of the label frequencies `p_l` among the
//!   cell's `k` nearest neighbours (itself excluded). It ranges from 1
//!   (every neighbourhood holds one label) to `min(k, L)` for `L` labels; for
//!   `L` equally frequent batches that mix perfectly it approaches `L`
//!   (slightly less for finite `k`). LISI proper (Korsunsky et al. 2019, as
//!   in Harmony and scib) weights the neighbours by a Gaussian kernel
//!   calibrated to a perplexity; this unweighted form keeps the same range
//!   and reading and needs no calibration.
//! - [`knn_label_accuracy`]: cell-type preservation, the fraction of cells
//!   whose kNN majority label is their own (a tie between labels goes to
//!   the label whose nearest member is closest).
//!
//! All are exact brute force: `O(N²·G)` time for `N` cells of `G` features,
//! `O(N·k)` memory (the `N × N` distance matrix is never stored). Query cells
//! are processed in blocks of [`QUERY_BLOCK`] in parallel (rayon), each block
//! scanning the cells in tiles of [`TILE`] rows so a tile stays in cache
//! while the block's queries pass over it. Distances are summed in f64. For
//! atlases, score a random subsample of cells (a few 10⁴), as scib does.
//!
//! Neighbour order is by distance, then by cell index, so results are
//! deterministic when distances tie.
//!
//! Cross-checked against scikit-learn on `fixtures/mixing/cases.json`
//! (written by `scripts/make_mixing_fixtures.py`) in `tests/mixing.rs`.

use rayon::prelude::*;

use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// Query cells per parallel task.
pub const QUERY_BLOCK: usize = 32;
/// Cells per tile the queries of a block scan together.
pub const TILE: usize = 256;

/// Labels and values are usable: one label per row, at least one cell, no
/// NaN or infinity.
fn check(x: &DenseMatrix, labels: &[u32], what: &str) -> Result<()> {
    if labels.len() != x.rows {
        return Err(Error::invalid(format!("{what}: {} labels for {} cells", labels.len(), x.rows)));
    }
    if x.rows == 0 {
        return Err(Error::invalid(format!("{what}: no cells")));
    }
    if x.data.len() != x.rows * x.cols {
        return Err(Error::invalid(format!(
            "{what}: the matrix holds {} values, {} × {} expected",
            x.data.len(),
            x.rows,
            x.cols
        )));
    }
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{what}: value {} at cell {}, feature {}",
            x.data[i],
            i / x.cols.max(1),
            i % x.cols.max(1)
        )));
    }
    Ok(())
}

/// Labels as dense ids `0..L` (in order of value) and each id's count.
fn dense_labels(labels: &[u32]) -> (Vec<usize>, Vec<usize>) {
    let mut values: Vec<u32> = labels.to_vec();
    values.sort_unstable();
    values.dedup();
    let ids: Vec<usize> = labels.iter().map(|l| values.binary_search(l).unwrap_or(0)).collect();
    let mut counts = vec![0usize; values.len()];
    for &i in &ids {
        counts[i] += 1;
    }
    (ids, counts)
}

/// Squared Euclidean distance, accumulated in f64 over four lanes.
#[inline]
fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for l in 0..4 {
            let d = p[l] as f64 - q[l] as f64;
            acc[l] += d * d;
        }
    }
    for (p, q) in ra.iter().zip(rb) {
        let d = *p as f64 - *q as f64;
        acc[0] += d * d;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// For every cell `i`: a state from `init()`, `visit(state, j, d²(i, j))`
/// for every other cell `j` in increasing `j`, then `finish(i, state)`.
/// Returns the finished values in cell order.
fn scan<S, T: Send>(
    x: &DenseMatrix,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, f64) + Sync,
    finish: impl Fn(usize, S) -> T + Sync,
) -> Vec<T> {
    let n = x.rows;
    let starts: Vec<usize> = (0..n).step_by(QUERY_BLOCK).collect();
    starts
        .par_iter()
        .flat_map_iter(|&start| {
            let end = (start + QUERY_BLOCK).min(n);
            let mut states: Vec<S> = (start..end).map(|_| init()).collect();
            for tile in (0..n).step_by(TILE) {
                let tile_end = (tile + TILE).min(n);
                for (q, st) in (start..end).zip(states.iter_mut()) {
                    let a = x.row(q);
                    for j in tile..tile_end {
                        if j != q {
                            visit(st, j, sq_dist(a, x.row(j)));
                        }
                    }
                }
            }
            states.into_iter().enumerate().map(|(o, s)| finish(start + o, s)).collect::<Vec<T>>()
        })
        .collect()
}

/// Mean silhouette coefficient over all cells, as
/// `sklearn.metrics.silhouette_score(x, labels, metric="euclidean")`:
/// `s_i = (b_i − a_i) / max(a_i, b_i)` with `a_i` the mean distance to the
/// other cells of its label, `b_i` the smallest mean distance to the cells
/// of another label; `s_i = 0` for a cell alone in its label (and where
/// `a_i = b_i = 0`). Needs `2 ≤ labels ≤ cells − 1`, as scikit-learn.
pub fn silhouette(x: &DenseMatrix, labels: &[u32]) -> Result<f64> {
    check(x, labels, "silhouette")?;
    let (ids, counts) = dense_labels(labels);
    let n_labels = counts.len();
    if n_labels < 2 || n_labels > x.rows - 1 {
        return Err(Error::invalid(format!(
            "silhouette needs between 2 and {} distinct labels (cells − 1), got {n_labels}",
            x.rows.saturating_sub(1)
        )));
    }
    let s = scan(
        x,
        || vec![0.0f64; n_labels], // sum of distances to each label's cells
        |sums, j, d2| sums[ids[j]] += d2.sqrt(),
        |i, sums| {
            let own = ids[i];
            if counts[own] == 1 {
                return 0.0;
            }
            let a = sums[own] / (counts[own] - 1) as f64;
            let b = (0..n_labels).filter(|&l| l != own).map(|l| sums[l] / counts[l] as f64).fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 { (b - a) / m } else { 0.0 }
        },
    );
    Ok(s.iter().sum::<f64>() / x.rows as f64)
}

/// The `k` nearest other cells of every cell, `[cells, k]` row-major,
/// nearest first (ties by cell index). Needs `1 ≤ k < cells`.
pub fn knn_indices(x: &DenseMatrix, k: usize) -> Result<Vec<u32>> {
    check(x, &vec![0; x.rows], "kNN")?;
    if k == 0 || k >= x.rows {
        return Err(Error::invalid(format!("kNN: k must be between 1 and cells − 1 = {}, got {k}", x.rows - 1)));
    }
    let lists = scan(
        x,
        || Vec::<(f64, u32)>::with_capacity(k + 1), // sorted by (d², j)
        |best, j, d2| {
            if best.len() == k {
                if d2 >= best[k - 1].0 {
                    return; // j increases, so an equal distance loses the tie
                }
                best.pop();
            }
            let at = best.partition_point(|e| e.0 <= d2);
            best.insert(at, (d2, j as u32));
        },
        |_, best| best.into_iter().map(|(_, j)| j).collect::<Vec<u32>>(),
    );
    Ok(lists.concat())
}

/// Per cell, the dense label ids of its neighbours (nearest first).
fn neighbour_labels(x: &DenseMatrix, labels: &[u32], k: usize, what: &str) -> Result<(Vec<usize>, Vec<usize>)> {
    check(x, labels, what)?;
    if k == 0 || k >= x.rows {
        return Err(Error::invalid(format!("{what}: k must be between 1 and cells − 1 = {}, got {k}", x.rows - 1)));
    }
    let (ids, _) = dense_labels(labels);
    let nb: Vec<usize> = knn_indices(x, k)?.iter().map(|&j| ids[j as usize]).collect();
    Ok((ids, nb))
}

/// `(label id, count)` runs of a neighbourhood's labels, sorted by id.
fn label_counts(labs: &[usize]) -> Vec<(usize, usize)> {
    let mut sorted = labs.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for l in sorted {
        match runs.last_mut() {
            Some((m, c)) if *m == l => *c += 1,
            _ => runs.push((l, 1)),
        }
    }
    runs
}

/// iLISI-type batch mixing: the mean over cells of the inverse Simpson
/// index `1 / Σ_l p_l²` of the label frequencies among the `k` nearest
/// neighbours (see the module doc). 1 = no mixing; `min(k, labels)` at
/// most. Needs `1 ≤ k < cells`.
pub fn knn_mixing(x: &DenseMatrix, labels: &[u32], k: usize) -> Result<f64> {
    let (_, nb) = neighbour_labels(x, labels, k, "kNN mixing")?;
    let kk = (k * k) as f64;
    let total: f64 = nb
        .par_chunks(k)
        .map(|labs| {
            let sumsq: usize = label_counts(labs).iter().map(|&(_, c)| c * c).sum();
            kk / sumsq as f64
        })
        .sum();
    Ok(total / x.rows as f64)
}

/// Label preservation: the fraction of cells whose majority label among
/// their `k` nearest neighbours is their own. Among labels tied for the
/// majority, the one of the nearest neighbour wins. Needs `1 ≤ k < cells`.
pub fn knn_label_accuracy(x: &DenseMatrix, labels: &[u32], k: usize) -> Result<f64> {
    let (ids, nb) = neighbour_labels(x, labels, k, "kNN label accuracy")?;
    let hits = nb
        .par_chunks(k)
        .zip(ids.par_iter())
        .filter(|(labs, own)| {
            let runs = label_counts(labs);
            let best = runs.iter().map(|&(_, c)| c).max().unwrap_or(0);
            let count_of = |l: usize| runs.iter().find(|&&(m, _)| m == l).map_or(0, |&(_, c)| c);
            labs.iter().find(|&&l| count_of(l) == best) == Some(*own)
        })
        .count();
    Ok(hits as f64 / x.rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: &[f32]) -> DenseMatrix {
        DenseMatrix { rows: points.len(), cols: 1, data: points.to_vec() }
    }

    #[test]
    fn hand_worked_silhouette() {
        // Cells at 0, 1 (label 0) and 4 (label 1).
        // s_0: a = 1, b = 4 → 3/4; s_1: a = 1, b = 3 → 2/3; s_2: singleton → 0.
        let s = silhouette(&line(&[0.0, 1.0, 4.0]), &[0, 0, 1]).unwrap();
        assert!((s - (0.75 + 2.0 / 3.0) / 3.0).abs() < 1e-12, "{s}");
    }

    #[test]
    fn knn_ties_go_to_the_lower_index() {
        // From 1.0, cells 0 and 2 are both at distance 1.
        let nb = knn_indices(&line(&[0.0, 1.0, 2.0, 5.0]), 1).unwrap();
        assert_eq!(nb, vec![1, 0, 1, 2]);
        let nb = knn_indices(&line(&[0.0, 1.0, 2.0, 5.0]), 3).unwrap();
        assert_eq!(&nb[3..6], &[0, 2, 3]);
    }

    #[test]
    fn mixing_and_accuracy_on_a_line() {
        // Alternating labels along a line: every 2-neighbourhood is {other, other}.
        let x = line(&[0.0, 1.0, 2.1, 3.3, 4.6, 6.0]);
        let alt = [0, 1, 0, 1, 0, 1];
        assert!((knn_mixing(&x, &alt, 1).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(knn_label_accuracy(&x, &alt, 1).unwrap(), 0.0);
        let blocks = [0, 0, 0, 1, 1, 1];
        // k = 2: the end cells see one label; cells 2 and 3 see {own, other} → 2.
        let m = knn_mixing(&x, &blocks, 2).unwrap();
        assert!((m - (4.0 + 2.0 * 2.0) / 6.0).abs() < 1e-12, "{m}");
        // Cells 2 and 3 see one cell of each label, and the nearer one
        // decides: cell 2's is cell 1 (its own label, d 1.1 < 1.2), cell 3's
        // is cell 2 (the other label, d 1.2 < 1.3).
        assert!((knn_label_accuracy(&x, &blocks, 2).unwrap() - 5.0 / 6.0).abs() < 1e-12);
    }
}
