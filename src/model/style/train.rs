//! Training the style generator on kin pairs, and correcting every target
//! cell with it.
//!
//! Per minibatch of `batch_size` kin pairs (shuffled each epoch with a
//! seeded permutation, the last partial batch dropped): one generator step
//! on `L = λ_rec·mean|x_kin − x̂| − λ_adv·mean D(x̂)` with `x̂ = G(x_target)`,
//! then `n_critic` critic steps with gradient penalty whose real cells are
//! the kin reference cells — Module I's iteration
//! ([`AdversarialStep::iteration`]) with the kin cell as the
//! reconstruction target. Adam(lr, β) for both networks at a constant rate.
//!
//! Cells are gathered from [`RowSource`]s batch by batch, so memory-mapped
//! stores are streamed, never loaded whole.

use std::time::Instant;

use serde::Serialize;

use super::{StyleConfig, StyleGenerator};
use crate::backend::rng::Stream;
use crate::backend::{ensure, Backend};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::model::critic::{Critic, CriticConfig};
use crate::model::generator::Generator;
use crate::model::source::RowSource;
use crate::model::train::{permutation, AdversarialStep, EpochLog, IterLosses, LossWeights};
use crate::nn::Adam;

/// Module III's training record: the mean losses of every epoch (`rec` is
/// `mean|x_kin − x̂|` before its weight, `adv` is `−mean D(x̂)`, `g_loss`
/// the weighted sum, `d_loss` and `gp` means over critic steps) and the
/// time taken.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StyleLog {
    /// Kin pairs trained on.
    pub pairs: usize,
    pub batch_size: usize,
    pub batches_per_epoch: usize,
    pub epochs: Vec<EpochLog>,
    pub seconds: f64,
}

/// Checks that `batch_of` gives every one of `rows` target rows a batch
/// below `n_batches`.
fn check_batches(batch_of: &[u32], rows: usize, n_batches: usize) -> Result<()> {
    if n_batches == 0 {
        return Err(Error::invalid("n_batches must be at least 1"));
    }
    if batch_of.len() != rows {
        return Err(Error::invalid(format!(
            "batch_of has {} entries but the target has {rows} cells",
            batch_of.len()
        )));
    }
    if let Some((i, &b)) = batch_of.iter().enumerate().find(|(_, b)| **b as usize >= n_batches) {
        return Err(Error::invalid(format!("target cell {i} has batch index {b}, but n_batches is {n_batches}")));
    }
    Ok(())
}

/// Trains the style generator on kin pairs: pair `i` maps target row
/// `pair_target[i]` to reference row `pair_ref[i]`. `batch_of[t]` is the
/// batch (`0..n_batches`) of target row `t`, for every target row.
///
/// With `module_i`, the style generator takes its shape, and with
/// `cfg.init_from_module_i` its encoder and decoder tensors (weights and
/// BatchNorm statistics; `S` starts at 0). Without it, the shape comes from
/// `cfg` and `init_from_module_i` must be false.
///
/// Errors: a bad configuration, gene counts that differ, a pair or batch
/// index out of range, pair lists of different lengths, fewer than 2 pairs,
/// a diverged loss.
#[allow(clippy::too_many_arguments)]
pub fn train_style<B: Backend>(
    be: &B,
    module_i: Option<&mut Generator<B>>,
    reference: &dyn RowSource,
    target: &dyn RowSource,
    pair_target: &[usize],
    pair_ref: &[usize],
    batch_of: &[u32],
    n_batches: usize,
    cfg: &StyleConfig,
) -> Result<(StyleGenerator<B>, StyleLog)> {
    cfg.validate()?;
    let g = reference.n_cols();
    if target.n_cols() != g {
        return Err(Error::invalid(format!(
            "the target has {} genes but the reference has {g}; align the target to the reference's genes first",
            target.n_cols()
        )));
    }
    check_batches(batch_of, target.n_rows(), n_batches)?;
    if pair_target.len() != pair_ref.len() {
        return Err(Error::invalid(format!(
            "{} target cells but {} kin reference cells in the pair lists",
            pair_target.len(),
            pair_ref.len()
        )));
    }
    for (what, list, n) in [("target", pair_target, target.n_rows()), ("reference", pair_ref, reference.n_rows())] {
        if let Some((i, &r)) = list.iter().enumerate().find(|(_, r)| **r >= n) {
            return Err(Error::invalid(format!("kin pair {i}: {what} cell {r} out of range ({n} {what} cells)")));
        }
    }
    let n_pairs = pair_target.len();
    if n_pairs < 2 {
        return Err(Error::invalid(format!(
            "style transfer needs at least 2 kin pairs (BatchNorm over a minibatch), got {n_pairs}"
        )));
    }

    let root = Stream::new(cfg.seed);
    let mut generator = match module_i {
        Some(m) => {
            if m.cfg.genes != g {
                return Err(Error::invalid(format!(
                    "Module I's generator was trained on {} genes, the data have {g}",
                    m.cfg.genes
                )));
            }
            let mut s = StyleGenerator::new(be, &m.cfg, n_batches, &mut root.fork(1));
            if cfg.init_from_module_i {
                s.copy_from(be, m)?;
            }
            s
        }
        None if cfg.init_from_module_i => {
            return Err(Error::Config(
                "init_from_module_i is set but no Module I generator was given; pass one or set it to false".into(),
            ));
        }
        None => StyleGenerator::new(be, &cfg.generator_config(g), n_batches, &mut root.fork(1)),
    };
    let ccfg = CriticConfig { in_dim: g, hidden: cfg.critic_hidden, out_dim: cfg.critic_out, slope: 0.2, dropout: cfg.dropout };
    let mut critic = Critic::new(be, &ccfg, &mut root.fork(2));
    let mut opt_g = Adam::new(cfg.lr, cfg.beta1, cfg.beta2);
    let mut opt_d = Adam::new(cfg.lr, cfg.beta1, cfg.beta2);
    let mut step = AdversarialStep::new(be, root.fork(4));
    let w = LossWeights { rec: cfg.lambda_rec, adv: cfg.lambda_adv, gp: cfg.lambda_gp, n_critic: cfg.n_critic };
    let shuffle = root.fork(3);

    let bs = cfg.batch_size.min(n_pairs);
    let batches = n_pairs / bs;
    let mut log = StyleLog { pairs: n_pairs, batch_size: bs, batches_per_epoch: batches, ..Default::default() };
    let (mut host_x, mut host_y) = (vec![0.0f32; bs * g], vec![0.0f32; bs * g]); // [bs, genes]
    let (mut x, mut y) = (be.zeros(bs * g), be.zeros(bs * g));
    let (mut rows_t, mut rows_r, mut rows_b) = (vec![0usize; bs], vec![0usize; bs], vec![0u32; bs]);
    let start = Instant::now();
    let pb = crate::progress::bar((cfg.epochs * batches) as u64, "style");
    for e in 0..cfg.epochs {
        let t0 = Instant::now();
        let order = permutation(n_pairs, shuffle.fork(e as u64).seed);
        let mut acc = IterLosses::default();
        for chunk in order.chunks_exact(bs) {
            for (k, &p) in chunk.iter().enumerate() {
                rows_t[k] = pair_target[p];
                rows_r[k] = pair_ref[p];
                rows_b[k] = batch_of[pair_target[p]];
            }
            target.gather_dense(&rows_t, &mut host_x)?;
            reference.gather_dense(&rows_r, &mut host_y)?;
            be.write(&mut x, 0, &host_x);
            be.write(&mut y, 0, &host_y);
            generator.set_batches(be, &rows_b)?;
            let l = step.iteration(be, w, &mut generator, &mut opt_g, &mut critic, &mut opt_d, &x, &y, bs, |_, _| {});
            acc.add(&l);
            pb.inc(1);
        }
        let entry = EpochLog::of(e, cfg.lr, &acc, batches, (cfg.lambda_rec, cfg.lambda_adv), t0.elapsed().as_secs_f64())
            .ok_or_else(|| Error::invalid(format!("style transfer training diverged at epoch {e} (non-finite loss); lower lr")))?;
        log.epochs.push(entry);
    }
    pb.finish_and_clear();
    log.seconds = start.elapsed().as_secs_f64();
    Ok((generator, log))
}

/// Maps every target row into the reference space in eval mode (BatchNorm
/// running statistics, no dropout): returns `[n_target, genes]`. Rows are
/// read and run in chunks of `chunk` rows, so only the output is held whole.
/// Deterministic: the same model and rows give the same values.
pub fn correct<B: Backend>(
    be: &B,
    model: &mut StyleGenerator<B>,
    target: &dyn RowSource,
    batch_of: &[u32],
    chunk: usize,
) -> Result<DenseMatrix> {
    if chunk == 0 {
        return Err(Error::invalid("the correction chunk must hold at least 1 row"));
    }
    let (n, g) = (target.n_rows(), model.cfg.genes);
    if target.n_cols() != g {
        return Err(Error::invalid(format!(
            "the target has {} genes but the style generator was trained on {g}",
            target.n_cols()
        )));
    }
    check_batches(batch_of, n, model.n_batches)?;
    let mut out = DenseMatrix::zeros(n, g);
    let mut host = vec![0.0f32; chunk.min(n) * g]; // [rows, genes]
    let mut x = be.zeros(0);
    let pb = crate::progress::bar(n as u64, "correct");
    for start in (0..n).step_by(chunk) {
        let rows = chunk.min(n - start);
        let host = &mut host[..rows * g];
        target.gather_range(start, rows, host)?;
        ensure(be, &mut x, rows * g);
        be.write(&mut x, 0, host);
        model.set_batches(be, &batch_of[start..start + rows])?;
        let xhat = model.forward(be, &x, rows, false);
        be.download_into(xhat, &mut out.data[start * g..(start + rows) * g]);
        pb.inc(rows as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}
