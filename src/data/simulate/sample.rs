//! Drawing the counts: a negative-binomial sampler and the chunked,
//! parallel, order-preserving stream of cells into a [`RowSink`].

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Gamma, Poisson};

use super::model::{stream_rng, SetKind, Simulator, Stream};
use crate::data::RowSink;
use crate::error::Result;

/// Cells per chunk. Each chunk draws from its own generator, seeded from
/// (seed, set, chunk index), so the output does not depend on the number of
/// threads. Part of the reproducibility contract: changing it changes the
/// counts a seed gives.
pub const CHUNK_CELLS: usize = 256;

/// Below this mean the negative binomial is drawn by inversion (cheap: one
/// uniform, one `exp`/`ln_1p`, about μ steps); above it as Poisson(Gamma).
const INVERSION_MAX_MEAN: f64 = 16.0;

/// One count ~ NB(mean μ, size r), i.e. Poisson(Gamma(shape r, scale μ/r)).
///
/// For small μ the exact inversion of the NB distribution function is used:
/// P(0) = (1 + μ/r)^(−r), P(k+1) = P(k) · q · (k + r)/(k + 1) with
/// q = μ/(μ + r). It is the same distribution as Poisson of Gamma, several
/// times faster for the mostly-zero counts of scRNA-seq, and stable for the
/// tiny shapes (r ≪ 1) that splatter's BCV gives lowly expressed genes.
#[inline]
pub fn sample_nb<R: Rng + ?Sized>(rng: &mut R, mu: f64, r: f64) -> u32 {
    sample_nb_lazy(rng, mu, || r)
}

/// [`sample_nb`] with the size computed only when needed. A Poisson mixture
/// is zero at least as often as the Poisson of its mean (Jensen:
/// E[e^(−λ)] ≥ e^(−μ)), and e^(−μ) ≥ 1 − μ + μ²/2 − μ³/6, so a uniform below
/// that cubic is a zero by inversion whatever r is: the costly part (r, a
/// log, an exp) is skipped for most lowly expressed genes, and the result is
/// identical to computing r first.
#[inline]
fn sample_nb_lazy<R: Rng + ?Sized>(rng: &mut R, mu: f64, size: impl FnOnce() -> f64) -> u32 {
    if !mu.is_finite() || mu <= 0.0 {
        return 0;
    }
    if mu < INVERSION_MAX_MEAN {
        let u: f64 = rng.random();
        if u < 1.0 - mu * (1.0 - mu * (0.5 - mu * (1.0 / 6.0))) {
            return 0;
        }
        let r = size();
        if r.is_nan() || r <= 0.0 {
            return 0;
        }
        let mut p = (-r * (mu / r).ln_1p()).exp();
        let mut cdf = p;
        let q = mu / (mu + r);
        let mut k = 0u32;
        while u >= cdf {
            p *= q * (k as f64 + r) / (k as f64 + 1.0);
            k += 1;
            cdf += p;
            // Past the mode the terms only shrink; once they no longer move
            // the sum, u lies in the rounding gap below 1: stop here.
            if p <= cdf * 1e-17 && k as f64 > mu {
                break;
            }
        }
        k
    } else {
        let r = size();
        let lambda = match Gamma::new(r, mu / r) {
            Ok(g) => g.sample(rng),
            Err(_) => mu,
        };
        match Poisson::new(lambda) {
            Ok(p) => {
                let k: f64 = p.sample(rng);
                k.min(u32::MAX as f64) as u32
            }
            Err(_) => 0,
        }
    }
}

/// The counts of one chunk of cells, rows concatenated.
pub(super) struct ChunkRows {
    /// `[cells in chunk]` non-zeros per cell.
    lens: Vec<u32>,
    /// `[nnz]` gene indices, increasing within a cell.
    indices: Vec<u32>,
    /// `[nnz]` counts.
    values: Vec<f32>,
}

impl Simulator {
    /// Draws chunk `c` of a set: library sizes, then every gene's count.
    pub(super) fn chunk(&self, kind: SetKind, c: usize) -> ChunkRows {
        let cfg = &self.config;
        let labels = self.labels(kind);
        let start = c * CHUNK_CELLS;
        let end = (start + CHUNK_CELLS).min(labels.len());
        let stream = match kind {
            SetKind::Reference => Stream::RefCells,
            SetKind::Target => Stream::TargetCells,
        };
        let mut rng = stream_rng(cfg.seed, stream, c as u64);
        let lib = self.lib_sizes;
        let mut out = ChunkRows {
            lens: Vec::with_capacity(end - start),
            indices: Vec::new(),
            values: Vec::new(),
        };
        for i in start..end {
            let size: f64 = lib.sample(&mut rng);
            let profile = self.set_profile(kind, labels.cell_type[i] as usize, labels.batch[i] as usize);
            let before = out.indices.len();
            for (j, (&p, &scatter)) in profile.iter().zip(&self.bcv_scatter).enumerate() {
                let mu = size * p;
                // splatter: bcv = (bcv.common + 1/sqrt(μ)) · sqrt(df/χ²), r = 1/bcv².
                let count = sample_nb_lazy(&mut rng, mu, || {
                    let bcv = (cfg.bcv_common + 1.0 / mu.sqrt()) * scatter;
                    1.0 / (bcv * bcv)
                });
                if count == 0 {
                    continue;
                }
                if let Some(d) = &cfg.dropout {
                    let drop_p = 1.0 / (1.0 + (-d.shape * (mu.ln() - d.mid)).exp());
                    if rng.random::<f64>() < drop_p {
                        continue;
                    }
                }
                out.indices.push(j as u32);
                out.values.push(count as f32);
            }
            out.lens.push((out.indices.len() - before) as u32);
        }
        out
    }

    /// Streams every cell of one set, in order, into `sink`; `progress` is
    /// called with the number of cells just written. Chunks of
    /// [`CHUNK_CELLS`] cells are drawn in parallel (rayon) a group at a time
    /// while the previous group is being written, so memory stays at a few
    /// groups of chunks whatever the set's size, and the bytes written do
    /// not depend on the number of threads.
    pub fn generate<S, P>(&self, kind: SetKind, sink: &mut S, mut progress: P) -> Result<()>
    where
        S: RowSink + Send + ?Sized,
        P: FnMut(usize) + Send,
    {
        use rayon::prelude::*;
        let n_chunks = self.labels(kind).len().div_ceil(CHUNK_CELLS);
        let group = (rayon::current_num_threads() * 4).max(2);
        let mut pending: Vec<ChunkRows> = Vec::new();
        let mut next = 0;
        loop {
            let range = next..(next + group).min(n_chunks);
            next = range.end;
            let to_write = std::mem::take(&mut pending);
            let (written, drawn) = rayon::join(
                || write_chunks(&to_write, sink, &mut progress),
                || range.into_par_iter().map(|c| self.chunk(kind, c)).collect::<Vec<_>>(),
            );
            written?;
            if drawn.is_empty() {
                return Ok(());
            }
            pending = drawn;
        }
    }
}

fn write_chunks<S, P>(chunks: &[ChunkRows], sink: &mut S, progress: &mut P) -> Result<()>
where
    S: RowSink + ?Sized,
    P: FnMut(usize),
{
    for ch in chunks {
        let mut a = 0usize;
        for &len in &ch.lens {
            let b = a + len as usize;
            sink.push_row(&ch.indices[a..b], &ch.values[a..b])?;
            a = b;
        }
        progress(ch.lens.len());
    }
    Ok(())
}
