//! The workflow's stages as library calls, one by one: Module II's kin
//! pairing, the pass that corrects (style generator or kin shift) and
//! encodes every target cell, and Module IV on the anomalies.

use crate::backend::Backend;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::model::generator::Generator;
use crate::model::kin::{self, KinPairs, KinSimilarity};
use crate::model::source::RowSource;
use crate::model::style::{self, StyleGenerator};
use crate::model::subtype::{self, SubtypeResult};

/// Module II: the kin of each target row in `normal` — the reference cell
/// whose Module I encoding has the largest cosine similarity with its own
/// (the default; see [`kin_pairing_by`] for the raw inner product).
pub fn kin_pairing<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    reference: &dyn RowSource,
    target: &dyn RowSource,
    normal: &[usize],
    chunk: usize,
) -> Result<KinPairs> {
    kin_pairing_by(be, generator, reference, target, normal, chunk, KinSimilarity::default())
}

/// [`kin_pairing`] under the similarity given. Under cosine the
/// embeddings are normalised in place, so it costs no extra memory.
pub fn kin_pairing_by<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    reference: &dyn RowSource,
    target: &dyn RowSource,
    normal: &[usize],
    chunk: usize,
    similarity: KinSimilarity,
) -> Result<KinPairs> {
    if normal.is_empty() {
        return Err(Error::invalid("kin pairing: Module I called every target cell anomalous; no normal cell to pair"));
    }
    let mut zr = kin::embed(be, generator, reference, None, chunk)?;
    let mut zt = kin::embed(be, generator, target, Some(normal), chunk)?;
    if similarity == KinSimilarity::Cosine {
        kin::normalize_rows(&mut zr);
        kin::normalize_rows(&mut zt);
    }
    kin::kin_pairs(be, &zt, &zr)
}

/// What one pass over the target gives the later stages.
pub struct CorrectionPass {
    /// `[n_target, latent]` encodings of the corrected expression.
    pub z: DenseMatrix,
    /// `[n_anomalies, genes]` corrected expression of the anomalies.
    pub anomaly_values: DenseMatrix,
    /// `[n_target, genes]`, when asked for.
    pub corrected: Option<DenseMatrix>,
}

/// Streams the target `chunk` rows at a time through the style generator
/// (Module III), or subtracts each batch's kin shift (`shift`, see
/// [`kin_shift`]); with neither the values pass unchanged; and the
/// Module I encoder, keeping the encodings, the anomalies' corrected rows
/// (`anomalies` ascending) and, with `keep_all`, every corrected row.
#[allow(clippy::too_many_arguments)]
pub fn correct_target<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    mut style: Option<&mut StyleGenerator<B>>,
    shift: Option<&DenseMatrix>,
    target: &dyn RowSource,
    batch_of: &[u32],
    anomalies: &[usize],
    chunk: usize,
    keep_all: bool,
) -> Result<CorrectionPass> {
    let (n, g) = (target.n_rows(), target.n_cols());
    let latent = generator.cfg.latent;
    let chunk = chunk.max(1);
    let mut z = DenseMatrix::zeros(n, latent);
    let mut anomaly_values = DenseMatrix::zeros(anomalies.len(), g);
    let mut corrected = keep_all.then(|| DenseMatrix::zeros(n, g));
    let pb = crate::progress::bar(n as u64, if style.is_some() || shift.is_some() { "correcting" } else { "encoding" });
    let mut next_anomaly = 0;
    let mut r0 = 0;
    while r0 < n {
        let r = chunk.min(n - r0);
        let mut x = DenseMatrix::zeros(r, g);
        target.gather_range(r0, r, &mut x.data)?;
        let x = match (style.as_deref_mut(), shift) {
            (Some(s), _) => style::correct(be, s, &x, &batch_of[r0..r0 + r], chunk)?,
            (None, Some(d)) => apply_shift(x, d, &batch_of[r0..r0 + r]),
            (None, None) => x,
        };
        let zc = kin::embed(be, generator, &x, None, chunk)?;
        z.data[r0 * latent..(r0 + r) * latent].copy_from_slice(&zc.data);
        while next_anomaly < anomalies.len() && anomalies[next_anomaly] < r0 + r {
            let row = anomalies[next_anomaly] - r0;
            anomaly_values.row_mut(next_anomaly).copy_from_slice(x.row(row));
            next_anomaly += 1;
        }
        if let Some(c) = corrected.as_mut() {
            c.data[r0 * g..(r0 + r) * g].copy_from_slice(&x.data);
        }
        pb.inc(r as u64);
        r0 += r;
    }
    pb.finish_and_clear();
    Ok(CorrectionPass { z, anomaly_values, corrected })
}

/// Module IV on the (corrected) expression `x: [n, genes]` of the
/// anomalies: `z = Enc(x)`, `ζ = Enc(x − G(x))` with Module I's frozen
/// generator, then fusion + DESC.
pub fn subtype_anomalies<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    x: &DenseMatrix,
    cfg: &subtype::SubtypeConfig,
    chunk: usize,
) -> Result<SubtypeResult> {
    let residual = residuals(be, generator, x, chunk)?;
    let z = kin::embed(be, generator, x, None, chunk)?;
    let zeta = kin::embed(be, generator, &residual, None, chunk)?;
    subtype::subtype(be, &z, &zeta, cfg)
}

/// `r = x − G(x)`, generator in eval mode, `chunk` rows at a time.
fn residuals<B: Backend>(be: &B, generator: &mut Generator<B>, x: &DenseMatrix, chunk: usize) -> Result<DenseMatrix> {
    // Module I's deviation pass, held in memory (the anomalies are few).
    let dev = crate::model::scorer::compute_deviations(be, generator, x, chunk.max(1), usize::MAX, &std::env::temp_dir())?;
    let data = dev.cache.in_memory().ok_or_else(|| Error::Other("internal: residuals spilled to disk".into()))?.to_vec();
    Ok(DenseMatrix { rows: x.rows, cols: x.cols, data })
}

/// Each batch's kin shift `[n_batches, genes]`: for every gene, the mean
/// over the batch's kin pairs of `x_target − x_kin`, taken over the pairs
/// where both values are non-zero (zero for a gene or batch with no such
/// pair). A batch effect scales a gene's counts, which on log-normalized
/// values shifts the expressed entries; it does not create or remove
/// zeros, so zeros are neither counted nor corrected.
pub fn kin_shift(
    target: &dyn RowSource,
    reference: &dyn RowSource,
    pair_target: &[usize],
    pair_ref: &[usize],
    batch_of: &[u32],
    n_batches: usize,
) -> Result<DenseMatrix> {
    if pair_target.len() != pair_ref.len() {
        return Err(Error::invalid(format!("{} target rows for {} kin", pair_target.len(), pair_ref.len())));
    }
    let g = target.n_cols();
    if reference.n_cols() != g {
        return Err(Error::invalid(format!("target has {g} genes, reference {}", reference.n_cols())));
    }
    let mut sum = vec![0.0f64; n_batches * g];
    let mut count = vec![0u32; n_batches * g];
    let (mut xt, mut xr) = (vec![0.0f32; g], vec![0.0f32; g]);
    for (&t, &r) in pair_target.iter().zip(pair_ref) {
        let b = *batch_of.get(t).ok_or_else(|| Error::invalid(format!("kin pair row {t} has no batch")))? as usize;
        if b >= n_batches {
            return Err(Error::invalid(format!("batch index {b} of {n_batches}")));
        }
        target.gather_dense(&[t], &mut xt)?;
        reference.gather_dense(&[r], &mut xr)?;
        let (s, c) = (&mut sum[b * g..(b + 1) * g], &mut count[b * g..(b + 1) * g]);
        for j in 0..g {
            if xt[j] > 0.0 && xr[j] > 0.0 {
                s[j] += (xt[j] - xr[j]) as f64;
                c[j] += 1;
            }
        }
    }
    let data = sum.iter().zip(&count).map(|(s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 }).collect();
    Ok(DenseMatrix { rows: n_batches, cols: g, data })
}

/// `x − shift[b]` on the non-zero entries of each row (b = the row's
/// batch), clamped at 0; zeros stay zero.
fn apply_shift(mut x: DenseMatrix, shift: &DenseMatrix, batch_of: &[u32]) -> DenseMatrix {
    let g = x.cols;
    for (row, &b) in x.data.chunks_mut(g).zip(batch_of) {
        for (v, s) in row.iter_mut().zip(shift.row(b as usize)) {
            if *v > 0.0 {
                *v = (*v - s).max(0.0);
            }
        }
    }
    x
}
