//! Exact k-nearest-neighbour search in Euclidean distance, tiled: the
//! query × key products of one tile at a time run as a GEMM on the
//! [`Backend`]; the squared distances `‖q‖² + ‖k‖² − 2 q·k` and the running
//! top-k per query row are kept on the host. Never more than one tile of
//! products exists, so memory does not grow with N_query × N_key.
//!
//! The CPU backend is the reference; on CUDA the GEMM runs in cuBLAS and
//! each tile's products are downloaded for the top-k merge (a fused top-k
//! kernel, like the kin argmax kernel, is the obvious next step if this
//! ever dominates).

use rayon::prelude::*;

use crate::backend::{Backend, Gemm, Trans};
use crate::data::matrix::DenseMatrix;
use crate::error::{Error, Result};

/// Query rows per tile.
const QUERY_TILE: usize = 2048;
/// Key rows per tile.
const KEY_TILE: usize = 4096;

/// The k nearest keys of every query row, nearest first.
#[derive(Clone, Debug)]
pub struct Neighbours {
    pub k: usize,
    /// Key indices, [n_query × k].
    pub index: Vec<u32>,
    /// Euclidean distances, [n_query × k], ascending per row.
    pub dist: Vec<f32>,
}

impl Neighbours {
    pub fn n_query(&self) -> usize {
        self.index.len() / self.k.max(1)
    }
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        (&self.index[i * self.k..(i + 1) * self.k], &self.dist[i * self.k..(i + 1) * self.k])
    }
    /// Mean distance to the k neighbours of every query row.
    pub fn mean_dist(&self) -> Vec<f64> {
        self.dist.chunks(self.k).map(|r| r.iter().map(|&d| d as f64).sum::<f64>() / self.k as f64).collect()
    }
}

fn sq_norms(m: &DenseMatrix) -> Vec<f32> {
    m.data.par_chunks(m.cols.max(1)).map(|r| r.iter().map(|&v| v * v).sum()).collect()
}

/// The `k` nearest rows of `keys` for every row of `query` (exact; ties to
/// the lower key index). `self_offset = Some(o)` says query row `i` is key
/// row `o + i`, which is then left out (leave-one-out neighbours).
pub fn knn<B: Backend>(
    be: &B,
    query: &DenseMatrix,
    keys: &DenseMatrix,
    k: usize,
    self_offset: Option<usize>,
) -> Result<Neighbours> {
    knn_tiled(be, query, keys, k, self_offset, QUERY_TILE, KEY_TILE)
}

/// [`knn`] with explicit tile sizes (the result does not depend on them).
pub fn knn_tiled<B: Backend>(
    be: &B,
    query: &DenseMatrix,
    keys: &DenseMatrix,
    k: usize,
    self_offset: Option<usize>,
    query_tile: usize,
    key_tile: usize,
) -> Result<Neighbours> {
    let d = query.cols;
    if keys.cols != d {
        return Err(Error::invalid(format!("nearest neighbours: queries have {d} coordinates, keys {}", keys.cols)));
    }
    let available = keys.rows - usize::from(self_offset.is_some());
    if k == 0 || k > available {
        return Err(Error::invalid(format!("nearest neighbours: k = {k} but only {available} candidate cells")));
    }
    if keys.rows > u32::MAX as usize {
        return Err(Error::invalid("nearest neighbours: more than 2^32 key cells"));
    }
    if query_tile == 0 || key_tile == 0 {
        return Err(Error::invalid("nearest neighbours: tile sizes must be at least 1 row"));
    }
    let (nq, nk) = (query.rows, keys.rows);
    let qn = sq_norms(query);
    let kn = sq_norms(keys);
    let mut index = vec![u32::MAX; nq * k];
    let mut dist2 = vec![f32::INFINITY; nq * k];
    let (qt, kt) = (query_tile.min(nq.max(1)), key_tile.min(nk));
    let mut prod_host = vec![0.0f32; qt * kt];
    for q0 in (0..nq).step_by(qt) {
        let r = qt.min(nq - q0);
        let qb = be.upload(&query.data[q0 * d..(q0 + r) * d]); // [r, d]
        for k0 in (0..nk).step_by(kt) {
            let c = kt.min(nk - k0);
            let kb = be.upload(&keys.data[k0 * d..(k0 + c) * d]); // [c, d]
            let mut prod = be.zeros(r * c); // [r, c] = Q Kᵀ
            be.gemm(&Gemm::new(Trans::N, Trans::T, r, c, d), &qb, &kb, &mut prod);
            let ph = &mut prod_host[..r * c];
            be.download_into(&prod, ph);
            let (idx_rows, d_rows) = (&mut index[q0 * k..(q0 + r) * k], &mut dist2[q0 * k..(q0 + r) * k]);
            idx_rows.par_chunks_mut(k).zip(d_rows.par_chunks_mut(k)).enumerate().for_each(|(i, (ir, dr))| {
                let qi = q0 + i;
                let skip = self_offset.map(|o| o + qi);
                let row = &ph[i * c..(i + 1) * c];
                for (j, &p) in row.iter().enumerate() {
                    let kj = k0 + j;
                    if skip == Some(kj) {
                        continue;
                    }
                    let d2 = (qn[qi] + kn[kj] - 2.0 * p).max(0.0);
                    // Strictly smaller: equal distances keep the lower index.
                    if d2 < dr[k - 1] {
                        let mut pos = k - 1;
                        while pos > 0 && dr[pos - 1] > d2 {
                            dr[pos] = dr[pos - 1];
                            ir[pos] = ir[pos - 1];
                            pos -= 1;
                        }
                        dr[pos] = d2;
                        ir[pos] = kj as u32;
                    }
                }
            });
        }
    }
    be.check()?;
    if let Some(i) = dist2.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("nearest neighbours: no finite distance for query cell {}", i / k)));
    }
    let dist = dist2.into_iter().map(f32::sqrt).collect();
    Ok(Neighbours { k, index, dist })
}
