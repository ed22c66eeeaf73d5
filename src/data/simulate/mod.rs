//! A splatter-style simulator of scRNA-seq counts with known anomalies:
//! a **reference** set of normal cell types and a **target** set holding the
//! same normal types plus anomaly types the reference never shows, spread
//! over batches with batch effects.
//!
//! # Model
//!
//! Following splatter (Zappia et al., Genome Biology 2017), for genes
//! j = 1..G, cell types t (normal 1..K, anomalous K+1..K+A), batches b and
//! cells c:
//!
//! - base mean `m_j ~ Gamma(shape = mean_shape, rate = mean_rate)`
//!   (defaults 0.6, 0.3); with probability `outlier_prob` (0.05) a gene is an
//!   outlier and `m_j = median(m) · LogNormal(outlier_loc, outlier_scale)`
//!   (4, 0.5);
//! - DE factor `f_tj`: with probability `de.prob` (0.1) gene j is DE in type
//!   t and `f_tj ~ LogNormal(de.loc, de.scale)` (0.5, 0.4), inverted with
//!   probability `de.down_prob` (0.5); otherwise 1. Anomaly types draw theirs
//!   from `anomaly_de` (same defaults) — they are new types, as far from the
//!   normal types as the normal types are from each other;
//! - batch factor `β_bj ~ LogNormal(0, batch_scale)` (0.2) for every batch
//!   and gene, the reference's batch included (the reference is batch 0 by
//!   default; the target spans all batches by default);
//! - optional condition shift of the target (off by default): factor
//!   `c_tj ~ LogNormal(0, condition_shift)` per type (anomaly types
//!   included) and gene, a different vector for each type, so that a
//!   condition such as a stimulation moves some types more than others;
//!   the reference has `c_tj = 1`;
//! - profile `π_tbj = m_j f_tj β_bj c_tj / Σ_j' m_j' f_tj' β_bj' c_tj'`
//!   (sums to 1);
//! - library size `L_c ~ LogNormal(lib_loc, lib_scale)` (8.0, 0.3: mean
//!   `exp(lib_loc + lib_scale²/2)` ≈ 3,130 counts);
//! - cell mean `μ_cj = L_c π_{t(c) b(c) j}`;
//! - biological variation as splatter's BCV:
//!   `bcv_cj = (bcv_common + 1/√μ_cj) · √(bcv_df / χ²_j)`, `χ²_j ~ χ²(bcv_df)`
//!   once per gene (defaults 0.1, 60); the true mean is
//!   `λ_cj ~ Gamma(shape 1/bcv², scale μ_cj bcv²)` and the count
//!   `y_cj ~ Poisson(λ_cj)`, i.e. negative binomial with mean μ_cj and size
//!   1/bcv² (drawn by exact inversion of the NB for small means, see
//!   [`sample_nb`]);
//! - optional dropout: `y_cj` is set to 0 with probability
//!   `1 / (1 + exp(−dropout.shape · (ln μ_cj − dropout.mid)))`.
//!
//! Since the profiles sum to one and dropout is off by default, a cell's
//! expected total count is its library size.
//!
//! # Truth and names
//!
//! Normal types are split evenly over each set; the target holds exactly
//! `round(anomaly_ratio · n_target)` anomalous cells split evenly over the
//! anomaly types (none when the ratio or the number of anomaly types is 0); batches are split evenly over each set's batch list; cell
//! order is random. Obs columns: `cell_type` (`type1..`, `anomaly1..`),
//! `is_anomaly`, `anomaly_type` (`normal`, `anomaly1..`), `batch`
//! (`batch0..`). Cells are `ref_000001`, `tgt_000001`; genes `gene0001`.
//!
//! # Reproducibility and scale
//!
//! Every part of the model draws from its own Xoshiro256++ stream keyed by
//! (seed, part, index); cells are drawn in chunks of [`CHUNK_CELLS`], each
//! from its own stream, in parallel, and written in order. The same seed
//! gives the same counts whatever the number of threads, and a set of any
//! size streams through a [`RowSink`](crate::data::RowSink) with memory
//! bounded by a few chunks per thread.

mod config;
mod model;
mod sample;

pub use config::{DeParams, Dropout, SimConfig};
pub use model::{CellLabels, SetKind, Simulator};
pub use sample::{sample_nb, CHUNK_CELLS};

use crate::data::{CsrMatrix, Dataset, Matrix};
use crate::error::Result;

/// One simulated set in memory (counts as CSR, truth as obs columns). For
/// sets too large for memory stream them with [`Simulator::generate`].
pub fn simulate_dataset(sim: &Simulator, kind: SetKind) -> Result<Dataset> {
    let mut x = CsrMatrix::empty(sim.n_genes());
    sim.generate(kind, &mut x, |_| {})?;
    Ok(Dataset {
        x: Matrix::Csr(x),
        cell_names: sim.labels(kind).cell_names(),
        gene_names: sim.gene_names(),
        obs: sim.obs_columns(kind),
    })
}
