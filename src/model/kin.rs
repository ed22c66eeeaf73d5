//! Module II — kin pairing (ARCHITECTURE §2): each target cell called normal is
//! paired with its "kin", the reference cell whose embedding (Module I's
//! trained encoder, eval mode) is most similar to its own: by default the
//! largest **cosine** similarity ([`KinSimilarity::Cosine`]), optionally
//! the raw inner product, as the paper has it
//! ([`KinSimilarity::InnerProduct`]).
//!
//! Why cosine by default: the raw inner product favours the reference
//! cells of largest norm, whatever their direction. On real data (Kang et
//! al.'s IFN-β PBMCs) 4,488 target cells were paired with only 20 distinct
//! reference cells, so a batch's kin shift was the mean over a handful of
//! cells. Cosine is the inner product of L2-normalised rows, so it runs
//! through the same search ([`kin_pairs`]) on normalised copies
//! ([`normalize_rows`]); zero rows stay zero and pair by the tie rule.
//!
//! The search is exact and streaming: the queries are cut into tiles of
//! about [`QUERY_TILE_BYTES`], the keys into tiles of about
//! [`KEY_TILE_BYTES`], and every (query tile, key tile) pair goes through
//! [`Backend::kin_argmax_merge`], which folds the tile's products into a
//! running best per query row without storing them (on a GPU one fused
//! kernel, `kernels/argmax.cu`; on the CPU blocks of 256 × 512 products in
//! cache). So memory is the two embedding matrices plus two tiles, never
//! `N_T × N_R` products.
//!
//! Ties go to the lowest reference index, on every backend and whatever the
//! tiling (the backend op's order is total). The paper's learnable
//! non-negative mapping matrix (a GAN over ReLU(M)·Z_R) is not offered: it
//! is `N_T × N_R` parameters, the very matrix the default avoids.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::cpu_argmax::KIN_NONE;
use crate::backend::Backend;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::model::generator::Generator;
use crate::model::source::RowSource;

/// Bytes of query embeddings per tile (32 MB: 32,768 rows at d = 256, so
/// 512 blocks of the CUDA kernel per launch).
pub const QUERY_TILE_BYTES: usize = 32 << 20;
/// Bytes of key embeddings per tile (256 MB: 262,144 rows at d = 256).
/// Keys that fit in one tile are uploaded once for the whole search.
pub const KEY_TILE_BYTES: usize = 256 << 20;

/// How Module II compares a target embedding with a reference one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KinSimilarity {
    /// The default: cosine of the two embeddings (inner product of the
    /// L2-normalised rows), so a reference cell of large norm does not
    /// become everyone's kin.
    #[default]
    Cosine,
    /// The raw inner product (the paper's); favours reference cells of
    /// large norm.
    InnerProduct,
}

/// Module II's settings (`[kin]` in a run's TOML settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KinConfig {
    pub similarity: KinSimilarity,
}

/// Kin of each query row: index of the key row with the largest
/// similarity (ties: lowest index) and that similarity.
#[derive(Clone, Debug, PartialEq)]
pub struct KinPairs {
    pub kin: Vec<u32>,
    pub score: Vec<f32>,
}

/// Embeds rows of `src` (all rows when `rows` is None, else those rows in
/// that order) with the generator's encoder in eval mode (BN running
/// statistics, no dropout), `chunk` rows per forward: returns
/// `[n, latent]` row-major. Eval mode makes a row's embedding independent
/// of the chunk it is in, so the result does not depend on `chunk`.
pub fn embed<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    src: &dyn RowSource,
    rows: Option<&[usize]>,
    chunk: usize,
) -> Result<DenseMatrix> {
    let (g, d) = (src.n_cols(), generator.cfg.latent);
    if g != generator.cfg.genes {
        return Err(Error::invalid(format!("cells have {g} genes, the encoder expects {}", generator.cfg.genes)));
    }
    if chunk == 0 {
        return Err(Error::invalid("embedding chunk size must be at least 1 row"));
    }
    let n = rows.map_or(src.n_rows(), |r| r.len());
    if n == 0 {
        return Err(Error::invalid("no cells to embed"));
    }
    if let Some(&r) = rows.and_then(|r| r.iter().find(|&&r| r >= src.n_rows())) {
        return Err(Error::invalid(format!("row {r} out of range ({} cells)", src.n_rows())));
    }
    let mut out = DenseMatrix::zeros(n, d);
    let mut x = vec![0.0f32; chunk.min(n) * g]; // [chunk, genes]
    for r0 in (0..n).step_by(chunk) {
        let r = chunk.min(n - r0);
        let xs = &mut x[..r * g];
        match rows {
            // A sequential scan lets a store drop the pages it has passed.
            None => src.gather_range(r0, r, xs)?,
            Some(idx) => src.gather_dense(&idx[r0..r0 + r], xs)?,
        }
        let xb = be.upload(xs);
        let z = generator.encode(be, &xb, r, false);
        be.download_into(z, &mut out.data[r0 * d..(r0 + r) * d]);
    }
    if let Some(i) = out.data.par_chunks(d.max(1)).position_first(|z| z.iter().any(|v| !v.is_finite())) {
        return Err(Error::invalid(format!("the embedding of cell {i} (of those embedded) is not finite (diverged training?)")));
    }
    Ok(out)
}

/// Checks one side of the search: non-empty, consistent, finite.
fn check_side(what: &str, m: &DenseMatrix) -> Result<()> {
    if m.rows == 0 {
        return Err(Error::invalid(format!("kin pairing: no {what} embeddings")));
    }
    if m.cols == 0 {
        return Err(Error::invalid(format!("kin pairing: {what} embeddings have no coordinates")));
    }
    if m.data.len() != m.rows * m.cols {
        return Err(Error::invalid(format!(
            "kin pairing: {what} matrix holds {} values, {} × {} expected",
            m.data.len(),
            m.rows,
            m.cols
        )));
    }
    if let Some(i) = m.data.par_chunks(m.cols).position_first(|r| r.iter().any(|v| !v.is_finite())) {
        return Err(Error::invalid(format!("kin pairing: {what} embedding {i} is not finite")));
    }
    Ok(())
}

/// Scales every row of `m` to unit L2 norm, in place (the norm taken in
/// f64, so finite rows whose squared norm overflows f32 are fine). Rows of
/// norm 0 are left zero: their cosine with anything is then 0, and they
/// pair by the tie rule instead of producing NaN.
pub fn normalize_rows(m: &mut DenseMatrix) {
    let d = m.cols.max(1);
    m.data.par_chunks_mut(d).for_each(|row| {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            let inv = 1.0 / norm;
            row.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
        }
    });
}

/// [`kin_pairs`] under `similarity`: for [`KinSimilarity::Cosine`] on
/// L2-normalised copies of both sides (the inputs are checked first, so
/// the errors are those of [`kin_pairs`]; the copies cost one more of each
/// matrix — normalise in place with [`normalize_rows`] and call
/// [`kin_pairs`] to avoid them). Scores are then cosines.
pub fn kin_pairs_by<B: Backend>(
    be: &B,
    query: &DenseMatrix,
    keys: &DenseMatrix,
    similarity: KinSimilarity,
) -> Result<KinPairs> {
    match similarity {
        KinSimilarity::InnerProduct => kin_pairs(be, query, keys),
        KinSimilarity::Cosine => {
            check_side("query", query)?;
            check_side("reference", keys)?;
            let (mut q, mut k) = (query.clone(), keys.clone());
            normalize_rows(&mut q);
            normalize_rows(&mut k);
            kin_pairs(be, &q, &k)
        }
    }
}

/// Exact maximum-inner-product search, tiled: never holds more than one
/// tile of query×key products (in fact none: see the module doc). For each
/// row of `query: [n_q, d]` the row of `keys: [n_k, d]` with the largest
/// inner product, ties to the lowest key index. Tiles of
/// [`QUERY_TILE_BYTES`] and [`KEY_TILE_BYTES`].
pub fn kin_pairs<B: Backend>(be: &B, query: &DenseMatrix, keys: &DenseMatrix) -> Result<KinPairs> {
    let d = query.cols.max(1);
    kin_pairs_tiled(be, query, keys, (QUERY_TILE_BYTES / (4 * d)).max(64), (KEY_TILE_BYTES / (4 * d)).max(64))
}

/// [`kin_pairs`] with explicit tile sizes in rows (at least 1 each; the
/// result does not depend on them): device memory holds `query_tile` query
/// rows and one key tile of `key_tile` rows — or all keys, uploaded once,
/// when they fit in one tile.
pub fn kin_pairs_tiled<B: Backend>(
    be: &B,
    query: &DenseMatrix,
    keys: &DenseMatrix,
    query_tile: usize,
    key_tile: usize,
) -> Result<KinPairs> {
    check_side("query", query)?;
    check_side("reference", keys)?;
    let d = query.cols;
    if keys.cols != d {
        return Err(Error::invalid(format!("kin pairing: query embeddings have {d} coordinates, reference ones {}", keys.cols)));
    }
    if keys.rows >= (KIN_NONE - 64) as usize {
        return Err(Error::invalid(format!("kin pairing: {} reference cells exceed the u32 index range", keys.rows)));
    }
    if query_tile == 0 || key_tile == 0 {
        return Err(Error::invalid("kin pairing: tile sizes must be at least 1 row"));
    }
    let (nq, nk) = (query.rows, keys.rows);
    let (qt, kt) = (query_tile.min(nq), key_tile.min(nk));
    // Keys that fit in one tile stay on the device for the whole search.
    let resident = (nk <= kt).then(|| be.upload(&keys.data));

    let mut kin = vec![0u32; nq];
    let mut score = vec![0.0f32; nq];
    let mut idx_host = vec![0.0f32; qt.min(nq)];
    for q0 in (0..nq).step_by(qt) {
        let r = qt.min(nq - q0);
        let qb = be.upload(&query.data[q0 * d..(q0 + r) * d]); // [r, d]
        let mut best = be.upload(&vec![f32::NEG_INFINITY; r]); // [r]
        let mut best_idx = be.upload(&vec![f32::from_bits(KIN_NONE); r]); // [r], u32 bits
        match &resident {
            Some(kb) => be.kin_argmax_merge(r, nk, d, 0, &qb, kb, &mut best, &mut best_idx),
            None => {
                for k0 in (0..nk).step_by(kt) {
                    let c = kt.min(nk - k0);
                    let kb = be.upload(&keys.data[k0 * d..(k0 + c) * d]); // [c, d]
                    be.kin_argmax_merge(r, c, d, k0, &qb, &kb, &mut best, &mut best_idx);
                }
            }
        }
        be.download_into(&best, &mut score[q0..q0 + r]);
        let ih = &mut idx_host[..r];
        be.download_into(&best_idx, ih);
        for (i, (k, v)) in kin[q0..q0 + r].iter_mut().zip(ih.iter()).enumerate() {
            *k = v.to_bits();
            if *k == KIN_NONE {
                // Finite inputs whose products overflow to ±∞ and cancel.
                return Err(Error::invalid(format!(
                    "kin pairing: every inner product of query embedding {} is NaN (values overflow f32)",
                    q0 + i
                )));
            }
        }
    }
    Ok(KinPairs { kin, score })
}
