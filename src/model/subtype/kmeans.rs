//! k-means: greedy k-means++ seeding and Lloyd iterations, the best of
//! several restarts by inertia — what `sklearn.cluster.KMeans(init=
//! "k-means++", n_init=restarts, algorithm="lloyd")` does. DESC seeds its
//! centroids with it; the paper's ablation also runs it on raw expression,
//! hence public.
//!
//! Distances and sums are in f64 (the data stay f32); rows are spread over
//! rayon. Work is O(n·k·d) per Lloyd iteration, no n² anywhere.

use rayon::prelude::*;

use crate::backend::rng;
use crate::data::matrix::DenseMatrix;
use crate::{Error, Result};

/// Lloyd iterations per restart at most (sklearn's `max_iter`).
const MAX_ITER: usize = 300;

/// A clustering: hard labels `[n]`, centroids `[k, d]` and the inertia
/// (sum of squared distances of the cells to their centroid).
#[derive(Clone, Debug)]
pub struct KMeans {
    pub labels: Vec<u32>,
    pub centroids: DenseMatrix,
    pub inertia: f64,
}

/// A reproducible uniform stream in (0, 1) over the Philox counter stream
/// (seeding draws, shuffles).
pub struct Uniforms {
    seed: u64,
    next: u64,
}

impl Uniforms {
    pub fn new(seed: u64) -> Self {
        Uniforms { seed, next: 0 }
    }
    pub fn uniform(&mut self) -> f64 {
        // Two 24-bit draws combined: 48 bits, enough to resolve one cell's
        // weight among millions.
        let hi = rng::uniform(self.seed, self.next) as f64;
        let lo = rng::uniform(self.seed, self.next + 1) as f64;
        self.next += 2;
        ((hi * 16_777_216.0).floor() + lo) / 16_777_216.0
    }
    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }
}

fn sqdist(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

fn sqdist64(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum()
}

/// Checks shared by the clustering entry points.
pub(crate) fn check_points(x: &DenseMatrix, what: &str) -> Result<()> {
    if x.rows == 0 {
        return Err(Error::invalid(format!("{what}: no cells")));
    }
    if x.cols == 0 {
        return Err(Error::invalid(format!("{what}: zero features")));
    }
    if x.data.len() != x.rows * x.cols {
        return Err(Error::invalid(format!("{what}: matrix holds {} values for {}×{}", x.data.len(), x.rows, x.cols)));
    }
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("{what}: non-finite value at cell {}, feature {}", i / x.cols, i % x.cols)));
    }
    Ok(())
}

/// k-means with `restarts` k-means++ seedings (at least one), keeping the
/// lowest inertia. Errors: no cells, non-finite values, `k = 0`, `k` larger
/// than the number of cells.
pub fn kmeans(x: &DenseMatrix, k: usize, restarts: usize, seed: u64) -> Result<KMeans> {
    check_points(x, "k-means")?;
    if k == 0 {
        return Err(Error::Config("k-means: k must be at least 1".into()));
    }
    if k > x.rows {
        return Err(Error::invalid(format!("k-means: k = {k} clusters but only {} cells", x.rows)));
    }
    let mut best: Option<KMeans> = None;
    for r in 0..restarts.max(1) {
        let mut u = Uniforms::new(rng::Stream::new(seed).fork(r as u64).seed);
        let init = plus_plus(x, k, &mut u);
        let run = lloyd(x, init);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| Error::Other("k-means: no restart ran".into()))
}

/// Squared distance of every cell to its nearest centroid and that
/// centroid's index.
fn assign(x: &DenseMatrix, c: &[f64], k: usize) -> Vec<(u32, f64)> {
    let d = x.cols;
    (0..x.rows)
        .into_par_iter()
        .map(|i| {
            let xi = x.row(i);
            let mut best = (0u32, f64::INFINITY);
            for j in 0..k {
                let dj = sqdist64(xi, &c[j * d..(j + 1) * d]);
                if dj < best.1 {
                    best = (j as u32, dj);
                }
            }
            best
        })
        .collect()
}

/// Greedy k-means++ (Arthur & Vassilvitskii; sklearn's variant with
/// `2 + ln k` candidate draws per centre, keeping the one that lowers the
/// potential most). Returns centroids `[k·d]` in f64.
fn plus_plus(x: &DenseMatrix, k: usize, u: &mut Uniforms) -> Vec<f64> {
    let (n, d) = (x.rows, x.cols);
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centres: Vec<f64> = Vec::with_capacity(k * d);
    let first = u.below(n);
    centres.extend(x.row(first).iter().map(|&v| v as f64));
    let mut closest: Vec<f64> = (0..n).into_par_iter().map(|i| sqdist(x.row(i), x.row(first))).collect();
    let mut pot: f64 = closest.iter().sum();
    for _ in 1..k {
        // Candidate cells drawn with probability ∝ squared distance (uniform
        // when every cell already sits on a centre).
        let cands: Vec<usize> = (0..trials)
            .map(|_| {
                if pot <= 0.0 {
                    return u.below(n);
                }
                let target = u.uniform() * pot;
                let mut acc = 0.0;
                for (i, &w) in closest.iter().enumerate() {
                    acc += w;
                    if acc > target {
                        return i;
                    }
                }
                closest.iter().rposition(|&w| w > 0.0).unwrap_or(n - 1)
            })
            .collect();
        let mut best: Option<(usize, f64, Vec<f64>)> = None;
        for &c in &cands {
            let upd: Vec<f64> = (0..n).into_par_iter().map(|i| closest[i].min(sqdist(x.row(i), x.row(c)))).collect();
            let p: f64 = upd.iter().sum();
            if best.as_ref().is_none_or(|b| p < b.1) {
                best = Some((c, p, upd));
            }
        }
        let (c, p, upd) = best.expect("at least two candidates");
        centres.extend(x.row(c).iter().map(|&v| v as f64));
        closest = upd;
        pot = p;
    }
    centres
}

/// Lloyd iterations from `centres` until the labels stop changing (or
/// [`MAX_ITER`]). An emptied cluster takes the cell farthest from its
/// centroid, as sklearn does.
fn lloyd(x: &DenseMatrix, mut centres: Vec<f64>) -> KMeans {
    let (n, d) = (x.rows, x.cols);
    let k = centres.len() / d;
    let mut labels: Vec<u32> = vec![u32::MAX; n];
    for _ in 0..MAX_ITER {
        let a = assign(x, &centres, k);
        let changed = a.iter().zip(&labels).filter(|((l, _), old)| l != *old).count();
        labels.iter_mut().zip(&a).for_each(|(l, (j, _))| *l = *j);
        if changed == 0 {
            break;
        }
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for (i, &l) in labels.iter().enumerate() {
            let j = l as usize;
            counts[j] += 1;
            for (s, &v) in sums[j * d..(j + 1) * d].iter_mut().zip(x.row(i)) {
                *s += v as f64;
            }
        }
        // Empty clusters: relocate to the cells farthest from their centre
        // (distinct cells, farthest first).
        let mut far: Vec<usize> = Vec::new();
        if counts.contains(&0) {
            far = (0..n).collect();
            far.sort_by(|&p, &q| a[q].1.total_cmp(&a[p].1));
        }
        let mut far = far.into_iter();
        for j in 0..k {
            let c = &mut centres[j * d..(j + 1) * d];
            if counts[j] > 0 {
                for (cv, s) in c.iter_mut().zip(&sums[j * d..(j + 1) * d]) {
                    *cv = s / counts[j] as f64;
                }
            } else if let Some(i) = far.next() {
                c.iter_mut().zip(x.row(i)).for_each(|(cv, &v)| *cv = v as f64);
            }
        }
    }
    let a = assign(x, &centres, k);
    let labels: Vec<u32> = a.iter().map(|(j, _)| *j).collect();
    let inertia = a.iter().map(|(_, dd)| dd).sum();
    let centroids = DenseMatrix { rows: k, cols: d, data: centres.iter().map(|&v| v as f32).collect() };
    KMeans { labels, centroids, inertia }
}
