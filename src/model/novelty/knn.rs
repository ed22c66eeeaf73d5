//! Exact k-nearest-neighbour search in Euclidean distance, tiled: the
//! query × key products of one tile at a time run as a GEMM on the
//! [`Backend`], and [`Backend::knn_topk_merge`] folds them into the running
//! top-k lists of the query tile, which stay on the backend across key
//! tiles. Never more than one tile of products exists, so memory does not
//! grow with N_query × N_key, and on CUDA only the final lists of each
//! query tile are downloaded, never a product tile.
//!
//! The CPU backend is the reference (its merge is `cpu_knn`).

use rayon::prelude::*;

use crate::backend::cpu_knn::KNN_NONE;
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
    let mut index_bits = vec![f32::from_bits(KNN_NONE); nq * k];
    let mut dist2 = vec![f32::INFINITY; nq * k];
    let (qt, kt) = (query_tile.min(nq.max(1)), key_tile.min(nk));
    // Keys that fit in one tile (and their norms) are uploaded once.
    let resident = (nk <= kt).then(|| (be.upload(&keys.data), be.upload(&kn)));
    for q0 in (0..nq).step_by(qt) {
        let r = qt.min(nq - q0);
        let qb = be.upload(&query.data[q0 * d..(q0 + r) * d]); // [r, d]
        let qnb = be.upload(&qn[q0..q0 + r]); // [r]
        let (d_rows, i_rows) = (&mut dist2[q0 * k..(q0 + r) * k], &mut index_bits[q0 * k..(q0 + r) * k]);
        let (mut db, mut ib) = (be.upload(d_rows), be.upload(i_rows)); // [r, k]
        let mut prod = be.zeros(r * kt.min(nk)); // [r, c] = Q Kᵀ
        for k0 in (0..nk).step_by(kt) {
            let c = kt.min(nk - k0);
            let tile;
            let (kb, knb) = match &resident {
                Some((kb, knb)) => (kb, knb),
                None => {
                    tile = (be.upload(&keys.data[k0 * d..(k0 + c) * d]), be.upload(&kn[k0..k0 + c])); // [c, d], [c]
                    (&tile.0, &tile.1)
                }
            };
            be.gemm(&Gemm::new(Trans::N, Trans::T, r, c, d), &qb, kb, &mut prod);
            be.knn_topk_merge(r, c, k, k0, self_offset.map(|o| o + q0), &prod, &qnb, knb, &mut db, &mut ib);
        }
        be.download_into(&db, d_rows);
        be.download_into(&ib, i_rows);
    }
    be.check()?;
    if let Some(i) = dist2.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("nearest neighbours: no finite distance for query cell {}", i / k)));
    }
    let dist = dist2.into_iter().map(f32::sqrt).collect();
    let index = index_bits.into_iter().map(f32::to_bits).collect();
    Ok(Neighbours { k, index, dist })
}
