//! Module I's scorer (ARCHITECTURE §3): reconstruction deviations of the target
//! cells, the MLP f_p trained on the γ_c MMD objective, orientation and
//! calls.
//!
//! Memory plan (10^6 cells × 3000 genes must stay within a few GB):
//! - δ = x − G(x) is computed once, in eval mode, in batches, and kept in a
//!   [`RowCache`]: in memory when it fits the budget (default 1 GiB), else
//!   in a temporary file read back in row chunks (12 GB at 10^6 × 3000).
//!   Recomputing δ instead would cost a generator forward over every cell
//!   in each of the several passes per step; reading a file the page cache
//!   mostly holds is far cheaper.
//! - One scorer step is six passes over row chunks (see [`mlp`] for why BN
//!   needs them, the private `Runner` for the passes). Each pass writes
//!   what later passes would otherwise recompute, cached the same way: the
//!   first-layer product `h1 = δ W1ᵀ` (the only O(N·G·h1) forward work),
//!   the second product `h2` and the first layer's eval-form input
//!   gradient `dz1` (2 + 1 + 2 GB at 10^6 cells; the three share one
//!   in-memory budget and spill the rest). So the big products run once
//!   forward and once backward per step and the smaller layers at most
//!   three times. Dropout masks are hashed per element, which costs as
//!   much as the small products, so each chunk's masks are hashed once per
//!   pass ([`mlp::MaskFactors`]).
//! - The linear-kernel MMD needs only `A = Σ a_i δ_i`, `B = Σ b_i δ_i`, the
//!   norms and two dot products per cell: two more streamed passes over δ
//!   ([`linear_streamed`]). The RBF kernel's pairwise form needs all of δ
//!   at once, so it requires δ to fit the in-memory budget.
//!
//! Everything else is O(N) (scores, gradients, norms).

pub mod cache;
pub mod mlp;
mod runner;

use std::path::PathBuf;

use rayon::prelude::*;

use crate::backend::rng::Stream;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::generator::Generator;
use crate::model::mmd::{self, Counts, MmdValue, Orientation};
use crate::model::source::RowSource;
use crate::nn::{cosine_lr, params, Adam};

pub use cache::RowCache;
pub use mlp::ScorerMlp;
use runner::Runner;

/// Kernel of the MMD scorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// k(δi, δj) = δi·δj: exact O(N·G) form (the authors' choice).
    Linear,
    /// Gaussian kernel, bandwidth by the median heuristic: tiled O(N²) form.
    Rbf,
}

/// Settings of the scorer.
#[derive(Clone, Debug)]
pub struct ScorerConfig {
    pub h1: usize,
    pub h2: usize,
    pub slope: f32,
    pub dropout: f32,
    /// Full-batch Adam steps.
    pub steps: usize,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub kernel: Kernel,
    pub counts: Counts,
    pub seed: u64,
    /// Rows per chunk (0: about 32 MB of deviations per chunk).
    pub chunk_rows: usize,
    /// Largest δ held in memory, bytes; the per-step caches share another
    /// budget of this size.
    pub mem_budget: usize,
    /// Where caches over the budget go (a temporary, unlinked file).
    pub spill_dir: PathBuf,
}

impl ScorerConfig {
    /// Checks what a detection run's settings can get wrong; messages name
    /// the `[detect]` keys.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::Config(format!("scorer_lr must be positive, got {}", self.lr)));
        }
        if self.h1 == 0 || self.h2 == 0 {
            return Err(Error::Config("layer widths must be positive".into()));
        }
        if let Counts::Ratio(r) = self.counts
            && !(r > 0.0 && r < 1.0)
        {
            return Err(Error::Config(format!("anomaly_ratio must be in (0, 1), got {r}")));
        }
        Ok(())
    }
}

/// Deviations δ of every target cell, in input order.
pub struct DeviationSet {
    pub cache: RowCache,
    /// ‖δ_i‖², f64.
    pub sq_norms: Vec<f64>,
}

impl DeviationSet {
    pub fn n_cells(&self) -> usize {
        self.cache.rows()
    }
    pub fn genes(&self) -> usize {
        self.cache.cols()
    }
    pub fn norms(&self) -> Vec<f64> {
        self.sq_norms.iter().map(|s| s.sqrt()).collect()
    }
}

/// `δ = x − G(x)` for every row of `src`, generator in eval mode (BN
/// running statistics, no dropout), `batch` rows at a time.
pub fn compute_deviations<B: Backend>(
    be: &B,
    generator: &mut Generator<B>,
    src: &dyn RowSource,
    batch: usize,
    mem_budget: usize,
    spill_dir: &std::path::Path,
) -> Result<DeviationSet> {
    let (n, g) = (src.n_rows(), src.n_cols());
    if g != generator.cfg.genes {
        return Err(Error::invalid(format!("target has {g} genes, the generator {}", generator.cfg.genes)));
    }
    let mut cache = RowCache::new(n, g, mem_budget, spill_dir)?;
    let mut sq = vec![0.0f64; n];
    let batch = batch.max(1);
    let mut x = vec![0.0f32; batch * g];
    let mut xh = vec![0.0f32; batch * g];
    let mut r0 = 0;
    while r0 < n {
        let r = batch.min(n - r0);
        let (xs, xhs) = (&mut x[..r * g], &mut xh[..r * g]);
        src.gather_range(r0, r, xs)?;
        let xb = be.upload(xs);
        be.download_into(generator.forward(be, &xb, r, false), xhs);
        xs.par_iter_mut().zip(xhs.par_iter()).for_each(|(a, &b)| *a -= b);
        for (i, row) in xs.chunks_exact(g).enumerate() {
            sq[r0 + i] = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        }
        cache.write_rows(r0, xs)?;
        r0 += r;
    }
    // Before the finiteness check: after a device error the pass read zeros.
    be.check()?;
    if let Some(i) = sq.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("the reconstruction of target cell {i} is not finite (diverged training?)")));
    }
    Ok(DeviationSet { cache, sq_norms: sq })
}

/// One scorer step, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepLog {
    pub loss: f64,
    pub lr: f32,
    /// Group sizes used (normal, anomalous).
    pub m: f64,
    pub n: f64,
    pub clamped: bool,
}

/// What scoring produced.
#[derive(Clone, Debug)]
pub struct ScoreOutcome {
    /// Oriented anomaly scores p_i, input order.
    pub p: Vec<f32>,
    /// Reconstruction deviation ‖δ_i‖ of every cell, input order.
    pub deviation: Vec<f32>,
    pub orientation: Orientation,
    pub steps: Vec<StepLog>,
    /// RBF bandwidth (median heuristic), when that kernel was used.
    pub bandwidth: Option<f64>,
    pub deviations_on_disk: bool,
    pub activations_on_disk: bool,
    pub chunk_rows: usize,
}

fn chunks(n: usize, c: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(c.max(1)).map(move |r0| (r0, c.min(n - r0)))
}

/// The exact linear-kernel MMD loss and ∂L/∂p with δ streamed from its
/// cache in row chunks: pass 1 gathers `A = Σ a_i δ_i`, `B = Σ b_i δ_i`,
/// pass 2 the dot products `u_i = δ_i·A − a_i‖δ_i‖²`, `v_i = δ_i·B −
/// b_i‖δ_i‖²` (the same algebra as [`mmd::linear_exact`], which needs δ in
/// one slice). f64 accumulation, fixed order: independent of threads.
pub fn linear_streamed(dev: &mut DeviationSet, p: &[f32], counts: Counts, chunk: usize) -> Result<MmdValue> {
    let (n, g) = (dev.n_cells(), dev.genes());
    let ab = mmd::eval_ab(p, n)?;
    let grp = mmd::groups(p, counts)?;
    let mut buf = vec![0.0f32; chunk.min(n).max(1) * g];
    let mut sum_ab = vec![0.0f64; 2 * g]; // [A | B]
    const BLOCK: usize = 64;
    for (r0, r) in chunks(n, chunk) {
        let rows = &mut buf[..r * g];
        dev.cache.read_rows(r0, rows)?;
        let parts: Vec<Vec<f64>> = rows
            .par_chunks(BLOCK * g)
            .zip(ab[r0..r0 + r].par_chunks(BLOCK))
            .map(|(blk, abk)| {
                let mut acc = vec![0.0f64; 2 * g];
                let (aa, bb) = acc.split_at_mut(g);
                for (row, x) in blk.chunks_exact(g).zip(abk) {
                    for ((&d, ea), eb) in row.iter().zip(aa.iter_mut()).zip(bb.iter_mut()) {
                        *ea += x.a * d as f64;
                        *eb += x.b * d as f64;
                    }
                }
                acc
            })
            .collect();
        for part in parts {
            sum_ab.iter_mut().zip(&part).for_each(|(t, &x)| *t += x);
        }
    }
    let (sa, sb) = sum_ab.split_at(g);
    let mut u = vec![0.0f64; n];
    let mut v = vec![0.0f64; n];
    for (r0, r) in chunks(n, chunk) {
        let rows = &mut buf[..r * g];
        dev.cache.read_rows(r0, rows)?;
        rows.par_chunks(g)
            .zip(u[r0..r0 + r].par_iter_mut().zip(v[r0..r0 + r].par_iter_mut()))
            .enumerate()
            .for_each(|(i, (row, (ui, vi)))| {
                let (mut da, mut db) = (0.0f64, 0.0f64);
                for ((&d, &ea), &eb) in row.iter().zip(sa).zip(sb) {
                    da += d as f64 * ea;
                    db += d as f64 * eb;
                }
                let x = &ab[r0 + i];
                let s = dev.sq_norms[r0 + i];
                *ui = da - x.a * s;
                *vi = db - x.b * s;
            });
    }
    Ok(mmd::finish(&ab, &u, &v, &grp))
}

/// The RBF kernel's MMD loss and ∂L/∂p on the backend: the O(N²·G) row
/// sums by [`Backend::mmd_pairwise_sums`] (a kernel on a GPU; on the CPU
/// the code of [`mmd::pairwise`], so CPU scores are unchanged), the O(N)
/// finish on the host.
pub fn pairwise_on<B: Backend>(be: &B, delta: &[f32], genes: usize, p: &[f32], counts: Counts, rbf_coefs: &[f64]) -> Result<MmdValue> {
    let n = p.len();
    let ab = mmd::eval_ab(p, n)?;
    let grp = mmd::groups(p, counts)?;
    let a: Vec<f64> = ab.iter().map(|x| x.a).collect();
    let b: Vec<f64> = ab.iter().map(|x| x.b).collect();
    let (mut u, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
    be.mmd_pairwise_sums(delta, genes, &a, &b, rbf_coefs, &mut u, &mut v);
    // A failed device reads zeros: report its error, not their loss.
    be.check()?;
    Ok(mmd::finish(&ab, &u, &v, &grp))
}

/// Rows per chunk: about 32 MB of the widest row type, at least 64.
pub fn auto_chunk(n: usize, genes: usize, h1: usize) -> usize {
    ((8 << 20) / genes.max(h1).max(1)).max(64).min(n.max(1))
}

/// Trains the scorer on the deviations, then scores, orients and returns
/// the scores (see the module docs for the memory plan).
///
/// The final scores come from one more full-batch forward after the last
/// step, with the batch statistics and without dropout (deterministic).
pub fn train_scorer<B: Backend>(be: &B, dev: &mut DeviationSet, cfg: &ScorerConfig) -> Result<(ScorerMlp<B>, ScoreOutcome)> {
    let (n, g) = (dev.n_cells(), dev.genes());
    if n < 2 * mmd::MIN_GROUP as usize {
        return Err(Error::invalid(format!("scoring needs at least {} target cells, got {n}", 2 * mmd::MIN_GROUP as usize)));
    }
    let mut rng = Stream::new(cfg.seed).fork(0x5C04E);
    let mut mlp = ScorerMlp::new(be, g, cfg.h1, cfg.h2, cfg.slope, cfg.dropout, &mut rng);
    let mut adam = Adam::new(cfg.lr, cfg.beta1, cfg.beta2);
    let chunk = if cfg.chunk_rows == 0 { auto_chunk(n, g, cfg.h1) } else { cfg.chunk_rows.min(n) };
    // The RBF kernel: bandwidth once, from the (fixed) deviations.
    let rbf = match cfg.kernel {
        Kernel::Linear => None,
        Kernel::Rbf => {
            let Some(all) = dev.cache.in_memory() else {
                return Err(Error::Config(format!(
                    "the RBF kernel needs all {n} × {g} deviations in memory ({:.1} GB, over the {:.1} GB budget); use the linear kernel",
                    (n * g * 4) as f64 / 1e9,
                    cfg.mem_budget as f64 / 1e9
                )));
            };
            let d = mmd::Deviations::new(all, n, g)?;
            let h = mmd::median_bandwidth(d, 2000, cfg.seed)?;
            Some((h, mmd::rbf_coefs(&mmd::Kernel::Rbf { bandwidths: vec![h] })?))
        }
    };
    let mut run = Runner::new(be, dev, cfg.h1, cfg.h2, chunk, cfg.mem_budget, &cfg.spill_dir)?;
    let mut steps = Vec::with_capacity(cfg.steps);
    let pb = crate::progress::bar(cfg.steps as u64, "scorer");
    for step in 0..cfg.steps {
        let lr = cosine_lr(cfg.lr, step, cfg.steps);
        let mask_base = (cfg.dropout > 0.0).then(|| (rng.seed, rng.take(n * cfg.h1), rng.take(n * cfg.h2)));
        let p = run.forward(&mut mlp, mask_base, true)?;
        // The scores of a failed device are zeros: report the device error,
        // not what the MMD makes of them.
        be.check()?;
        let val = match &rbf {
            None => linear_streamed(run.dev, &p, cfg.counts, chunk)?,
            Some((_, coefs)) => {
                let all = run.dev.cache.in_memory().expect("checked above");
                pairwise_on(be, all, g, &p, cfg.counts, coefs)?
            }
        };
        if !val.loss.is_finite() {
            return Err(Error::invalid(format!("the scorer's MMD loss is not finite at step {step}")));
        }
        let dp: Vec<f32> = val.grad.iter().map(|&x| x as f32).collect();
        params::zero_grads(be, &mut mlp);
        run.backward(&mut mlp, &dp, mask_base)?;
        adam.lr = lr;
        adam.step(be, &mut mlp);
        be.check()?;
        steps.push(StepLog { loss: val.loss, lr, m: val.m, n: val.n, clamped: val.clamped });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut p = run.forward(&mut mlp, None, false)?;
    be.check()?;
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("the score of target cell {i} is not finite")));
    }
    let norms = run.dev.norms();
    let orientation = mmd::orient(&mut p, &norms)?;
    let outcome = ScoreOutcome {
        p,
        deviation: norms.iter().map(|&x| x as f32).collect(),
        orientation,
        steps,
        bandwidth: rbf.map(|(h, _)| h),
        deviations_on_disk: run.dev.cache.on_disk(),
        activations_on_disk: run.h1.on_disk(),
        chunk_rows: chunk,
    };
    Ok((mlp, outcome))
}

/// Calls from oriented scores: the top `ratio` fraction when an anomaly
/// ratio is given (ties broken by input order), else `p > 0.5`.
pub fn calls(p: &[f32], ratio: Option<f64>) -> Result<Vec<bool>> {
    match ratio {
        None => Ok(p.iter().map(|&x| x > 0.5).collect()),
        Some(r) => {
            let scores: Vec<f64> = p.iter().map(|&x| x as f64).collect();
            let k = crate::metrics::k_for_fraction(r, p.len())?;
            crate::metrics::top_k_calls(&scores, k)
        }
    }
}

#[cfg(test)]
mod tests;
