//! The number of subtypes when none is given: Louvain community detection
//! on a kNN graph of the embeddings, as DESC does (through scanpy's
//! `neighbors` + `louvain`).
//!
//! - Graph: the `knn` nearest neighbours of every cell by Euclidean
//!   distance (exact, brute force in row tiles: one GEMM per tile for the
//!   cross products), symmetrised as a union with unit weights.
//! - Louvain (Blondel et al. 2008) with a resolution γ: local moving of
//!   single nodes to the neighbouring community of best modularity gain
//!   `k_i,in(C) − γ·Σ_tot(C)·k_i/2m` (nodes in a seeded random order),
//!   then aggregation of the communities into nodes, until a level moves
//!   nothing.

use std::collections::HashMap;

use rayon::prelude::*;

use super::kmeans::{check_points, Uniforms};
use crate::backend::{Backend, CpuBackend, CpuBuf, Gemm, Trans};
use crate::data::matrix::DenseMatrix;
use crate::{Error, Result};

/// Query rows per tile of the kNN search (a `[TILE, n]` f32 distance block).
const TILE: usize = 512;
/// Sweeps of local moving per level at most.
const MAX_SWEEPS: usize = 100;

/// Community detection on the kNN graph of `x: [n, d]`; returns the number
/// of communities and each cell's community (numbered by decreasing size).
/// `knn` is clamped to `n − 1`; one cell is one community.
pub fn infer_k(x: &DenseMatrix, knn: usize, resolution: f64, seed: u64) -> Result<(usize, Vec<u32>)> {
    check_points(x, "community detection")?;
    if knn == 0 {
        return Err(Error::Config("community detection: knn must be at least 1".into()));
    }
    if !(resolution.is_finite() && resolution > 0.0) {
        return Err(Error::Config(format!("community detection: resolution must be positive, got {resolution}")));
    }
    let n = x.rows;
    if n == 1 {
        return Ok((1, vec![0]));
    }
    let nbrs = knn_graph(x, knn.min(n - 1));
    let labels = louvain(&nbrs, resolution, seed);
    let k = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(1);
    Ok((k, labels))
}

/// The `k` nearest other cells of every cell (ascending distance).
pub fn knn_indices(x: &DenseMatrix, k: usize) -> Vec<Vec<u32>> {
    let (n, d) = (x.rows, x.cols);
    let be = CpuBackend::new();
    let xb = CpuBuf(x.data.clone());
    let norms: Vec<f32> = (0..n).map(|i| x.row(i).iter().map(|v| v * v).sum()).collect();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(TILE) {
        let t = TILE.min(n - start);
        // cross[a, b] = x_{start+a} · x_b
        let mut g = Gemm::new(Trans::N, Trans::T, t, n, d);
        g.a_off = start * d;
        let mut cross = CpuBuf(vec![0.0; t * n]);
        be.gemm(&g, &xb, &xb, &mut cross);
        let tile: Vec<Vec<u32>> = cross
            .0
            .par_chunks(n)
            .enumerate()
            .map(|(a, row)| {
                let i = start + a;
                let mut cand: Vec<(f32, u32)> = row
                    .iter()
                    .enumerate()
                    .filter(|&(b, _)| b != i)
                    .map(|(b, &c)| ((norms[i] + norms[b] - 2.0 * c).max(0.0), b as u32))
                    .collect();
                let kk = k.min(cand.len());
                if kk < cand.len() {
                    cand.select_nth_unstable_by(kk, |p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
                    cand.truncate(kk);
                }
                cand.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
                cand.into_iter().map(|(_, b)| b).collect()
            })
            .collect();
        out.extend(tile);
    }
    out
}

/// Symmetrised (union) kNN graph with unit weights, as adjacency lists.
fn knn_graph(x: &DenseMatrix, k: usize) -> Vec<Vec<(u32, f64)>> {
    let knn = knn_indices(x, k);
    let mut adj: Vec<Vec<u32>> = vec![Vec::new(); x.rows];
    for (i, nb) in knn.iter().enumerate() {
        for &j in nb {
            adj[i].push(j);
            adj[j as usize].push(i as u32);
        }
    }
    adj.into_iter()
        .map(|mut a| {
            a.sort_unstable();
            a.dedup();
            a.into_iter().map(|j| (j, 1.0)).collect()
        })
        .collect()
}

/// A weighted graph of one Louvain level: neighbours (no self entries),
/// self-loop weight `A_ii` (ordered pairs inside an aggregated node) and
/// degree `k_i = Σ_j A_ij`.
struct Level {
    nbrs: Vec<Vec<(u32, f64)>>,
    loops: Vec<f64>,
    deg: Vec<f64>,
}

/// Louvain on a symmetric graph; community of every node, numbered by
/// decreasing size (ties: smallest member first).
fn louvain(nbrs: &[Vec<(u32, f64)>], gamma: f64, seed: u64) -> Vec<u32> {
    let n = nbrs.len();
    let mut g = Level {
        nbrs: nbrs.to_vec(),
        loops: vec![0.0; n],
        deg: nbrs.iter().map(|a| a.iter().map(|e| e.1).sum()).collect(),
    };
    let two_m: f64 = g.deg.iter().sum();
    // Community of each original node.
    let mut of: Vec<u32> = (0..n as u32).collect();
    if two_m <= 0.0 {
        return of;
    }
    let mut u = Uniforms::new(seed);
    loop {
        let (comm, count) = local_moving(&g, gamma, two_m, &mut u);
        of.iter_mut().for_each(|c| *c = comm[*c as usize]);
        if count == g.deg.len() {
            break;
        }
        g = aggregate(&g, &comm, count);
    }
    renumber_by_size(&of)
}

/// One level of local moving; returns each node's community (renumbered
/// `0..count`) and `count`.
fn local_moving(g: &Level, gamma: f64, two_m: f64, u: &mut Uniforms) -> (Vec<u32>, usize) {
    let n = g.deg.len();
    let mut comm: Vec<u32> = (0..n as u32).collect();
    let mut tot: Vec<f64> = g.deg.clone();
    // Fisher–Yates order.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, u.below(i + 1));
    }
    let mut w_to = vec![0.0f64; n];
    let mut touched: Vec<u32> = Vec::new();
    for _ in 0..MAX_SWEEPS {
        let mut moved = 0usize;
        for &i in &order {
            let ki = g.deg[i];
            let old = comm[i];
            tot[old as usize] -= ki;
            for &(j, w) in &g.nbrs[i] {
                let c = comm[j as usize];
                if w_to[c as usize] == 0.0 {
                    touched.push(c);
                }
                w_to[c as usize] += w;
            }
            let gain = |c: u32, w: f64| w - gamma * tot[c as usize] * ki / two_m;
            let (mut best, mut best_gain) = (old, gain(old, w_to[old as usize]));
            for &c in &touched {
                let gc = gain(c, w_to[c as usize]);
                if gc > best_gain + 1e-12 {
                    best = c;
                    best_gain = gc;
                }
            }
            for &c in &touched {
                w_to[c as usize] = 0.0;
            }
            touched.clear();
            tot[best as usize] += ki;
            if best != old {
                comm[i] = best;
                moved += 1;
            }
        }
        if moved == 0 {
            break;
        }
    }
    // Renumber 0..count in order of first appearance.
    let mut map: HashMap<u32, u32> = HashMap::new();
    for c in comm.iter_mut() {
        let next = map.len() as u32;
        *c = *map.entry(*c).or_insert(next);
    }
    let count = map.len();
    (comm, count)
}

/// The graph of communities: `A'_CD = Σ_{i∈C, j∈D} A_ij`.
fn aggregate(g: &Level, comm: &[u32], count: usize) -> Level {
    let mut maps: Vec<HashMap<u32, f64>> = vec![HashMap::new(); count];
    let mut loops = vec![0.0; count];
    let mut deg = vec![0.0; count];
    for (i, nb) in g.nbrs.iter().enumerate() {
        let ci = comm[i];
        loops[ci as usize] += g.loops[i];
        deg[ci as usize] += g.deg[i];
        for &(j, w) in nb {
            let cj = comm[j as usize];
            if cj == ci {
                loops[ci as usize] += w;
            } else {
                *maps[ci as usize].entry(cj).or_insert(0.0) += w;
            }
        }
    }
    let nbrs = maps
        .into_iter()
        .map(|m| {
            let mut v: Vec<(u32, f64)> = m.into_iter().collect();
            v.sort_by_key(|e| e.0);
            v
        })
        .collect();
    Level { nbrs, loops, deg }
}

/// Labels renumbered by decreasing community size (ties: the community of
/// the smaller first member first).
fn renumber_by_size(of: &[u32]) -> Vec<u32> {
    let mut size: HashMap<u32, (usize, usize)> = HashMap::new();
    for (i, &c) in of.iter().enumerate() {
        let e = size.entry(c).or_insert((0, i));
        e.0 += 1;
    }
    let mut cs: Vec<(u32, usize, usize)> = size.into_iter().map(|(c, (s, f))| (c, s, f)).collect();
    cs.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    let map: HashMap<u32, u32> = cs.iter().enumerate().map(|(r, e)| (e.0, r as u32)).collect();
    of.iter().map(|c| map[c]).collect()
}
