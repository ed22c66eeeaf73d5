//! The scorer's chunked full-batch passes: [`Runner`] streams δ and the
//! per-step caches (`h1`, `h2`, `dz1`) through [`ScorerMlp`] in row chunks,
//! six passes per step (see the parent module for the memory plan).

use super::mlp::{self, bn_correct, BnStats, ColStats, Masks, Work};
use super::{chunks, DeviationSet, RowCache, ScorerMlp};
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::norm::BnParams;

/// Streams chunks of δ and of the per-step caches through the MLP.
///
/// One step is six passes over row chunks; each cache is written once per
/// step and read where a later pass needs it, so no layer is recomputed
/// more often than its gradient requires:
/// - F1: δ → `h1 = δ W1ᵀ` (cache), BN1 statistics;
/// - F2: `h1` → layer 1 → `h2` (cache), BN2 statistics;
/// - F3: `h2` → layer 2 → scores;
/// - B1: `h2` → layer 2 → back to `dz2`: last-layer and BN2 gradient sums;
/// - B2: `h1`, `h2` → corrected `dz2` → layer-2 and BN1 gradient sums, and
///   the eval-form `dz1` (cache);
/// - B3: `dz1`, `h1` → corrected `dz1`, with δ → first-layer gradients.
pub(super) struct Runner<'a, B: Backend> {
    be: &'a B,
    pub(super) dev: &'a mut DeviationSet,
    /// `[N, h1]` first products, `[N, h2]` second products, `[N, h1]`
    /// eval-form first-layer input gradients.
    pub(super) h1: RowCache,
    h2: RowCache,
    dz1: RowCache,
    chunk: usize,
    works: Vec<Work<B>>,
    s1: BnStats<B>,
    s2: BnStats<B>,
    /// Host staging `[chunk, G]`, `[chunk, h1]` (two) and `[chunk, h2]`.
    hd: Vec<f32>,
    hh1: Vec<f32>,
    hdz1: Vec<f32>,
    hh2: Vec<f32>,
}

/// Rows `r0..r0 + r` of `cache` into `dst`: straight from the cache when
/// it is held in memory, else read through `staging` (`[≥ r, cols]`).
fn upload_rows<B: Backend>(be: &B, cache: &mut RowCache, r0: usize, r: usize, staging: &mut [f32], dst: &mut B::Buf) -> Result<()> {
    if let Some(rows) = cache.rows_in_memory(r0, r) {
        be.write(dst, 0, rows);
        return Ok(());
    }
    let rows = &mut staging[..r * cache.cols()];
    cache.read_rows(r0, rows)?;
    be.write(dst, 0, rows);
    Ok(())
}

impl<'a, B: Backend> Runner<'a, B> {
    /// The per-step caches share `budget` bytes of memory, in the order
    /// `h1`, `h2`, `dz1`; what does not fit goes to `spill_dir`.
    pub(super) fn new(be: &'a B, dev: &'a mut DeviationSet, h1: usize, h2: usize, chunk: usize, budget: usize, spill_dir: &std::path::Path) -> Result<Self> {
        let (n, g) = (dev.n_cells(), dev.genes());
        let mut left = budget;
        let mut cache = |cols: usize| -> Result<RowCache> {
            let c = RowCache::new(n, cols, left, spill_dir)?;
            if !c.on_disk() {
                left -= n * cols * 4;
            }
            Ok(c)
        };
        let (c1, c2, cd) = (cache(h1)?, cache(h2)?, cache(h1)?);
        Ok(Runner {
            be,
            dev,
            h1: c1,
            h2: c2,
            dz1: cd,
            chunk,
            works: Vec::new(),
            s1: BnStats::new(be, h1),
            s2: BnStats::new(be, h2),
            hd: vec![0.0; chunk * g],
            hh1: vec![0.0; chunk * h1],
            hdz1: vec![0.0; chunk * h1],
            hh2: vec![0.0; chunk * h2],
        })
    }

    fn work_index(&mut self, mlp: &ScorerMlp<B>, r: usize) -> usize {
        if let Some(i) = self.works.iter().position(|w| w.rows == r) {
            return i;
        }
        self.works.push(Work::new(self.be, r, mlp.genes, mlp.h1, mlp.h2));
        self.works.len() - 1
    }

    /// F1: `h1 = δ W1ᵀ` into the cache; statistics of `h1 + b1`.
    fn first_products(&mut self, mlp: &mut ScorerMlp<B>) -> Result<ColStats> {
        let (n, h1) = (self.dev.n_cells(), mlp.h1);
        let b1 = self.be.download(&mlp.b1.value);
        let mut st = ColStats::new(h1);
        for (r0, r) in chunks(n, self.chunk) {
            let wi = self.work_index(mlp, r);
            upload_rows(self.be, &mut self.dev.cache, r0, r, &mut self.hd, &mut self.works[wi].delta)?;
            let w = &mut self.works[wi];
            mlp.first_product(self.be, w);
            self.be.download_into(&w.h1, &mut self.hh1[..r * h1]);
            st.add(&self.hh1[..r * h1], &b1);
            self.h1.write_rows(r0, &self.hh1[..r * h1])?;
        }
        Ok(st)
    }

    /// Loads the cached `h1` of a chunk into `hh1` and its work buffers.
    fn load_h1(&mut self, mlp: &ScorerMlp<B>, r0: usize, r: usize) -> Result<usize> {
        let h1 = mlp.h1;
        let wi = self.work_index(mlp, r);
        self.h1.read_rows(r0, &mut self.hh1[..r * h1])?;
        self.be.write(&mut self.works[wi].h1, 0, &self.hh1[..r * h1]);
        Ok(wi)
    }

    /// Loads the cached `h2` of a chunk into `hh2` and its work buffers.
    fn load_h2(&mut self, mlp: &ScorerMlp<B>, r0: usize, r: usize) -> Result<usize> {
        let h2 = mlp.h2;
        let wi = self.work_index(mlp, r);
        self.h2.read_rows(r0, &mut self.hh2[..r * h2])?;
        self.be.write(&mut self.works[wi].h2, 0, &self.hh2[..r * h2]);
        Ok(wi)
    }

    /// F1–F3: full-batch statistics, then the scores.
    pub(super) fn forward(&mut self, mlp: &mut ScorerMlp<B>, mask_base: Option<(u64, u64, u64)>, update_running: bool) -> Result<Vec<f32>> {
        let (n, h2) = (self.dev.n_cells(), mlp.h2);
        let st1 = self.first_products(mlp)?;
        self.s1.set(self.be, &st1);
        let b2 = self.be.download(&mlp.b2.value);
        let mut st2 = ColStats::new(h2);
        for (r0, r) in chunks(n, self.chunk) {
            let masks = Masks::at(mask_base, mlp.dropout, r0, mlp.h1, h2);
            let wi = self.load_h1(mlp, r0, r)?;
            mlp.layer1(self.be, &mut self.works[wi], &mut self.s1, &masks);
            self.be.download_into(&self.works[wi].h2, &mut self.hh2[..r * h2]);
            st2.add(&self.hh2[..r * h2], &b2);
            self.h2.write_rows(r0, &self.hh2[..r * h2])?;
        }
        self.s2.set(self.be, &st2);
        if update_running {
            update_running_stats(self.be, &mut mlp.bn1, &st1);
            update_running_stats(self.be, &mut mlp.bn2, &st2);
        }
        let mut p = vec![0.0f32; n];
        for (r0, r) in chunks(n, self.chunk) {
            let masks = Masks::at(mask_base, mlp.dropout, r0, mlp.h1, h2);
            let wi = self.load_h2(mlp, r0, r)?;
            mlp.layer2(self.be, &mut self.works[wi], &mut self.s2, &masks);
            self.be.download_into(&self.works[wi].p, &mut p[r0..r0 + r]);
        }
        Ok(p)
    }

    /// B1–B3 from `dp = ∂L/∂p` (see [`mlp`]), right after [`Runner::forward`]
    /// of the same step (whose caches they read); accumulates every gradient.
    pub(super) fn backward(&mut self, mlp: &mut ScorerMlp<B>, dp: &[f32], mask_base: Option<(u64, u64, u64)>) -> Result<()> {
        let be = self.be;
        let (n, h1, h2) = (self.dev.n_cells(), mlp.h1, mlp.h2);
        let b1 = be.download(&mlp.b1.value);
        let b2 = be.download(&mlp.b2.value);
        let gamma1 = be.download(&mlp.bn1.gamma.value);
        let gamma2 = be.download(&mlp.bn2.gamma.value);
        // B1: last layer's gradients and BN2's sums Σg, Σg·x̂.
        for (r0, r) in chunks(n, self.chunk) {
            let masks = Masks::at(mask_base, mlp.dropout, r0, h1, h2);
            let wi = self.load_h2(mlp, r0, r)?;
            let w = &mut self.works[wi];
            mlp.layer2(be, w, &mut self.s2, &masks);
            be.write(&mut w.dp, 0, &dp[r0..r0 + r]);
            mlp.back_to_dz2(be, w, &self.s2, &masks, true);
        }
        let (sg2, sgx2) = (be.download(&mlp.bn2.beta.grad), be.download(&mlp.bn2.gamma.grad));
        // B2: corrected dz2 → layer-2 gradients, BN1's sums, eval-form dz1.
        for (r0, r) in chunks(n, self.chunk) {
            let masks = Masks::at(mask_base, mlp.dropout, r0, h1, h2);
            let wi = self.load_h1(mlp, r0, r)?;
            mlp.layer1_act(be, &mut self.works[wi], &mut self.s1, &masks);
            self.load_h2(mlp, r0, r)?;
            let w = &mut self.works[wi];
            mlp.layer2(be, w, &mut self.s2, &masks);
            be.write(&mut w.dp, 0, &dp[r0..r0 + r]);
            mlp.back_to_dz2(be, w, &self.s2, &masks, false);
            let mut dz2 = be.download(&w.dz2);
            bn_correct(&mut dz2, &self.hh2[..r * h2], &b2, &self.s2.host_mean, &self.s2.host_invstd, &gamma2, &sg2, &sgx2, n);
            be.write(&mut w.dz2, 0, &dz2);
            mlp.back_to_dz1(be, w, &self.s1, &masks, true);
            be.download_into(&w.dz1, &mut self.hdz1[..r * h1]);
            self.dz1.write_rows(r0, &self.hdz1[..r * h1])?;
        }
        let (sg1, sgx1) = (be.download(&mlp.bn1.beta.grad), be.download(&mlp.bn1.gamma.grad));
        // B3: corrected dz1 → first layer.
        for (r0, r) in chunks(n, self.chunk) {
            let wi = self.work_index(mlp, r);
            self.h1.read_rows(r0, &mut self.hh1[..r * h1])?;
            self.dz1.read_rows(r0, &mut self.hdz1[..r * h1])?;
            let dz1 = &mut self.hdz1[..r * h1];
            bn_correct(dz1, &self.hh1[..r * h1], &b1, &self.s1.host_mean, &self.s1.host_invstd, &gamma1, &sg1, &sgx1, n);
            let w = &mut self.works[wi];
            be.write(&mut w.dz1, 0, dz1);
            upload_rows(be, &mut self.dev.cache, r0, r, &mut self.hd, &mut w.delta)?;
            mlp.first_grads(be, w);
        }
        Ok(())
    }
}

/// PyTorch's running-statistics update from one full-batch forward
/// (momentum 0.1, unbiased variance), counted in `num_batches_tracked`.
fn update_running_stats<B: Backend>(be: &B, bn: &mut BnParams<B>, st: &ColStats) {
    bn.count_batch(be);
    let m = mlp::BN_MOMENTUM as f64;
    let rm: Vec<f32> = be.download(&bn.running_mean.value).iter().zip(&st.mean).map(|(&r, &x)| ((1.0 - m) * r as f64 + m * x) as f32).collect();
    let rv: Vec<f32> =
        be.download(&bn.running_var.value).iter().zip(st.var_unbiased()).map(|(&r, x)| ((1.0 - m) * r as f64 + m * x) as f32).collect();
    be.write(&mut bn.running_mean.value, 0, &rm);
    be.write(&mut bn.running_var.value, 0, &rv);
}
