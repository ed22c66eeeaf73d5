//! Module I's adversarial training (ARCHITECTURE §3).
//!
//! Per minibatch of `batch_size` reference cells (shuffled each epoch with
//! a seeded permutation, the last partial batch dropped):
//!
//! 1. one generator step on `L_G = λ_rec·mean|x − x̂| − λ_adv·mean D(x̂)`
//!    (the critic's parameters receive gradients too but are zeroed before
//!    its own step), then, in the memory phase, the batch's latent codes
//!    replace the oldest rows of the memory queue;
//! 2. `n_critic` critic steps on `L_D = −mean D(x) + mean D(x̂) + λ_gp·GP`
//!    with x̂ recomputed by the generator in training mode and detached.
//!
//! Adam(lr, β = (β1, β2)) for both networks; `prepare_epochs` with the
//! memory block bypassed at the constant rate, then `train_epochs` with it
//! and the rate cosine-annealed per epoch (`CosineAnnealingLR(T_max =
//! train_epochs)`, stepped after each epoch). The optimisers keep their
//! moments across the two phases.
//!
//! Cells come from a [`RowSource`], so a memory-mapped store is streamed
//! batch by batch and never loaded whole.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend::rng::{self, Stream};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::critic::{Critic, CriticConfig, Grads};
use crate::model::generator::{Generator, GeneratorConfig, Route};
use crate::model::source::RowSource;
use crate::nn::{cosine_lr, join, params, Adam, L1Loss, Module, Param};

/// Settings of Module I's adversarial training: the generator it trains,
/// the critic's widths and the schedule. The run's `[detect]` table
/// composes it (`DetectConfig::train_config`); field names are its keys.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub generator: GeneratorConfig,
    pub seed: u64,
    pub batch_size: usize,
    pub prepare_epochs: usize,
    pub train_epochs: usize,
    pub n_critic: usize,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub lambda_rec: f32,
    pub lambda_adv: f32,
    pub lambda_gp: f32,
    pub critic_hidden: usize,
    pub critic_out: usize,
}

impl TrainConfig {
    /// Checks every value before any work starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size < 2 {
            return bad(format!("batch_size must be at least 2 (BatchNorm), got {}", self.batch_size));
        }
        let mem = self.generator.mem_size;
        if mem == 0 || !mem.is_multiple_of(self.batch_size) {
            return bad(format!("mem_size ({mem}) must be a positive multiple of batch_size ({})", self.batch_size));
        }
        if self.prepare_epochs == 0 || self.train_epochs == 0 {
            return bad(format!(
                "prepare_epochs and train_epochs must be at least 1, got {} and {}",
                self.prepare_epochs, self.train_epochs
            ));
        }
        for (name, v) in [("lambda_rec", self.lambda_rec), ("lambda_adv", self.lambda_adv), ("lambda_gp", self.lambda_gp)] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        if self.n_critic == 0 {
            return bad("n_critic must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1 and beta2 must be in [0, 1)".into());
        }
        if self.critic_hidden == 0 || self.critic_out == 0 {
            return bad("layer widths must be positive".into());
        }
        self.generator.validate()
    }
}

/// Mean losses of one epoch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f32,
    /// `mean|x − x̂|` (before the λ_rec weight).
    pub rec: f64,
    /// `−mean D(x̂)` of the generator step.
    pub adv: f64,
    /// `L_G`.
    pub g_loss: f64,
    /// `L_D` (with λ_gp·GP), mean over critic steps.
    pub d_loss: f64,
    /// GP, mean over critic steps.
    pub gp: f64,
    pub seconds: f64,
}

/// Both phases' epochs and their timing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrainLog {
    pub batches_per_epoch: usize,
    pub prepare: Vec<EpochLog>,
    pub train: Vec<EpochLog>,
    pub seconds_prepare: f64,
    pub seconds_train: f64,
}

/// Losses of one iteration (G step + critic steps).
#[derive(Clone, Copy, Debug, Default)]
pub struct IterLosses {
    pub rec: f64,
    pub adv: f64,
    pub d_loss: f64,
    pub gp: f64,
}

impl IterLosses {
    /// Adds one iteration's losses (an epoch's running sums).
    pub fn add(&mut self, l: &IterLosses) {
        self.rec += l.rec;
        self.adv += l.adv;
        self.d_loss += l.d_loss;
        self.gp += l.gp;
    }
}

impl EpochLog {
    /// The epoch's means from the sums of its `batches` iterations, with
    /// `L_G` weighted by `λ_rec`, `λ_adv`; `None` when a loss is not
    /// finite (training diverged).
    pub fn of(epoch: usize, lr: f32, sums: &IterLosses, batches: usize, lambda: (f32, f32), seconds: f64) -> Option<EpochLog> {
        let k = batches as f64;
        let (rec, adv) = (sums.rec / k, sums.adv / k);
        let e = EpochLog {
            epoch,
            lr,
            rec,
            adv,
            g_loss: lambda.0 as f64 * rec + lambda.1 as f64 * adv,
            d_loss: sums.d_loss / k,
            gp: sums.gp / k,
            seconds,
        };
        (e.g_loss.is_finite() && e.d_loss.is_finite()).then_some(e)
    }
}

/// What the adversarial iteration needs of a generator: a forward from an
/// input batch and a backward that accumulates its parameter gradients.
/// Module I's [`Generator`] and Module III's style generator both train
/// through [`AdversarialStep::iteration`].
pub trait GanGenerator<B: Backend>: Module<B> {
    /// `x̂: [batch, genes]` for the input batch `x`. With `same_input`, the
    /// caller promises that `x` and the weights are those of the last
    /// forward: the input layer may reuse its product.
    fn forward_batch<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, same_input: bool) -> &'a B::Buf;
    /// Backward of the last forward from `dy = ∂L/∂x̂` (parameter gradients
    /// accumulate; no input gradient).
    fn backward_batch(&mut self, be: &B, dy: &B::Buf);
}

/// Module I's generator in one training phase: the memory block is
/// bypassed in the prepare phase and used in the train phase, whose steps
/// also push each batch's codes into the queue.
pub struct Phase<'g, B: Backend> {
    pub generator: &'g mut Generator<B>,
    pub route: Route,
}

impl<B: Backend> Module<B> for Phase<'_, B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.generator.visit(prefix, f);
    }
}

impl<B: Backend> GanGenerator<B> for Phase<'_, B> {
    fn forward_batch<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, same_input: bool) -> &'a B::Buf {
        self.generator.forward_via(be, x, batch, true, self.route, same_input)
    }
    fn backward_batch(&mut self, be: &B, dy: &B::Buf) {
        self.generator.backward(be, dy)
    }
}

/// Loss weights of one adversarial iteration.
#[derive(Clone, Copy, Debug)]
pub struct LossWeights {
    pub rec: f32,
    pub adv: f32,
    pub gp: f32,
    pub n_critic: usize,
}

/// The work buffers of one adversarial iteration (generator step, then
/// critic steps with gradient penalty) and the stream of its GP draws,
/// shared by Module I ([`Trainer`]) and Module III (`model::style`).
pub struct AdversarialStep<B: Backend> {
    /// Keys of the gradient-penalty interpolation draws.
    gp_rng: Stream,
    l1: L1Loss<B>,
    /// `[batch, genes]` total gradient of x̂, detached fake batch.
    grad: B::Buf,
    fake: B::Buf,
    /// `[batch, critic_out]` constant output gradients ±1/(batch·out) and
    /// `−λ_adv/(batch·out)`.
    dy_pos: B::Buf,
    dy_neg: B::Buf,
    dy_adv: B::Buf,
    /// `(batch, genes, critic_out, λ_adv)` the buffers are sized for.
    shape: (usize, usize, usize, f32),
}

impl<B: Backend> AdversarialStep<B> {
    pub fn new(be: &B, gp_rng: Stream) -> Self {
        AdversarialStep {
            gp_rng,
            l1: L1Loss::new(be),
            grad: be.zeros(0),
            fake: be.zeros(0),
            dy_pos: be.zeros(0),
            dy_neg: be.zeros(0),
            dy_adv: be.zeros(0),
            shape: (0, 0, 0, 0.0),
        }
    }

    fn prepare(&mut self, be: &B, batch: usize, g: usize, out: usize, lambda_adv: f32) {
        if self.shape == (batch, g, out, lambda_adv) {
            return;
        }
        let n = (batch * out) as f32;
        self.grad = be.zeros(batch * g);
        self.fake = be.zeros(batch * g);
        self.dy_pos = be.upload(&vec![1.0 / n; batch * out]);
        self.dy_neg = be.upload(&vec![-1.0 / n; batch * out]);
        self.dy_adv = be.upload(&vec![-lambda_adv / n; batch * out]);
        self.shape = (batch, g, out, lambda_adv);
    }

    /// One iteration on the input batch `x` and its reconstruction target
    /// `target` (both `[batch, genes]`; Module I passes the same buffer
    /// twice, Module III a target cell and its kin reference cell):
    ///
    /// 1. a generator step on `L_G = λ_rec·mean|target − G(x)| − λ_adv·mean D(G(x))`
    ///    (the critic's parameter gradients, which PyTorch would compute and
    ///    then zero before the critic's step, are skipped), then
    ///    `after_g(generator)`;
    /// 2. `n_critic` critic steps on `L_D = −mean D(target) + mean D(x̂) +
    ///    λ_gp·GP` with x̂ recomputed in training mode and detached; the GP
    ///    interpolates between `target` (real) and x̂.
    #[allow(clippy::too_many_arguments)]
    pub fn iteration<G: GanGenerator<B>>(
        &mut self,
        be: &B,
        w: LossWeights,
        generator: &mut G,
        opt_g: &mut Adam,
        critic: &mut Critic<B>,
        opt_d: &mut Adam,
        x: &B::Buf,
        target: &B::Buf,
        batch: usize,
        after_g: impl FnOnce(&B, &mut G),
    ) -> IterLosses {
        let g = be.len(x) / batch.max(1);
        let out = critic.cfg.out_dim;
        self.prepare(be, batch, g, out, w.adv);
        let mean_of = |be: &B, d: &B::Buf| be.sum(d) as f64 / (batch * out) as f64;

        // Generator step.
        params::zero_grads(be, generator);
        let xhat = generator.forward_batch(be, x, batch, false);
        let rec = self.l1.forward_backward(be, xhat, target, w.rec) as f64;
        let adv = -mean_of(be, critic.forward(be, xhat, batch, true));
        // Only ∂D/∂x̂ is needed: the critic's own gradients are zeroed
        // before its step anyway, so skip its weight-gradient GEMMs.
        let dx_adv = critic.backward(be, &self.dy_adv, Grads::INPUT);
        be.add(self.l1.grad(), dx_adv, &mut self.grad);
        generator.backward_batch(be, &self.grad);
        opt_g.step(be, generator);
        after_g(be, generator);

        // Critic steps.
        let (mut d_loss, mut gp_sum) = (0.0, 0.0);
        for step in 0..w.n_critic {
            // The generator and x are unchanged between critic steps, so
            // its input layer's product is computed once.
            let xhat = generator.forward_batch(be, x, batch, step > 0);
            be.copy(xhat, 0, &mut self.fake, 0, batch * g);
            params::zero_grads(be, critic);
            let offset = self.gp_rng.take(batch);
            let (seed, n) = (self.gp_rng.seed, (batch * out) as f64);
            let (real, fake, gp) =
                critic.wgan_gp_step(be, target, &self.fake, batch, &self.dy_neg, &self.dy_pos, w.gp, seed, offset);
            let (real, fake, gp) = (real / n, fake / n, gp as f64);
            opt_d.step(be, critic);
            d_loss += -real + fake + w.gp as f64 * gp;
            gp_sum += gp;
        }
        let k = w.n_critic.max(1) as f64;
        IterLosses { rec, adv, d_loss: d_loss / k, gp: gp_sum / k }
    }
}

/// Generator, critic, their optimisers and the work buffers of a step.
pub struct Trainer<B: Backend> {
    pub generator: Generator<B>,
    pub critic: Critic<B>,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub lambda_rec: f32,
    pub lambda_adv: f32,
    pub lambda_gp: f32,
    pub n_critic: usize,
    step: AdversarialStep<B>,
}

/// Generator and critic as one module, for a single checkpoint file
/// (`generator.*`, `critic.*`).
pub struct Models<'a, B: Backend> {
    pub generator: &'a mut Generator<B>,
    pub critic: &'a mut Critic<B>,
}

impl<B: Backend> Module<B> for Models<'_, B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.generator.visit(&join(prefix, "generator"), f);
        self.critic.visit(&join(prefix, "critic"), f);
    }
}

impl<B: Backend> Trainer<B> {
    pub fn new(be: &B, cfg: &TrainConfig) -> Self {
        let root = Stream::new(cfg.seed);
        let generator = Generator::new(be, &cfg.generator, &mut root.fork(1));
        let ccfg = CriticConfig { in_dim: cfg.generator.genes, hidden: cfg.critic_hidden, out_dim: cfg.critic_out, slope: 0.2, dropout: cfg.generator.dropout };
        let critic = Critic::new(be, &ccfg, &mut root.fork(2));
        Trainer {
            generator,
            critic,
            opt_g: Adam::new(cfg.lr, cfg.beta1, cfg.beta2),
            opt_d: Adam::new(cfg.lr, cfg.beta1, cfg.beta2),
            lambda_rec: cfg.lambda_rec,
            lambda_adv: cfg.lambda_adv,
            lambda_gp: cfg.lambda_gp,
            n_critic: cfg.n_critic,
            step: AdversarialStep::new(be, root.fork(4)),
        }
    }

    /// Sets both optimisers' learning rate.
    pub fn set_lr(&mut self, lr: f32) {
        self.opt_g.lr = lr;
        self.opt_d.lr = lr;
    }

    /// One iteration on the batch `x: [batch, genes]` through `route`: a
    /// generator step, the memory update (on [`Route::Memory`]), `n_critic`
    /// critic steps.
    pub fn iteration(&mut self, be: &B, x: &B::Buf, batch: usize, route: Route) -> IterLosses {
        let w = LossWeights { rec: self.lambda_rec, adv: self.lambda_adv, gp: self.lambda_gp, n_critic: self.n_critic };
        let Trainer { generator, critic, opt_g, opt_d, step, .. } = self;
        let mut phase = Phase { generator, route };
        step.iteration(be, w, &mut phase, opt_g, critic, opt_d, x, x, batch, |be, p| {
            if p.route == Route::Memory {
                p.generator.update_memory(be, batch);
            }
        })
    }

    /// Saves generator and critic to one safetensors file.
    pub fn save(&mut self, be: &B, path: &Path, meta: Option<HashMap<String, String>>) -> Result<()> {
        let mut m = Models { generator: &mut self.generator, critic: &mut self.critic };
        params::save(be, &mut m, path, meta)
    }
}

/// A permutation of `0..n` from the counter-based RNG (Fisher–Yates with
/// 64-bit draws `(seed, 2i)`, `(seed, 2i+1)`), the same on every platform.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let w = ((rng::word(seed, 2 * i as u64) as u64) << 32) | rng::word(seed, 2 * i as u64 + 1) as u64;
        let j = (w % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Trains generator and critic on the reference cells of `src`.
pub fn train<B: Backend>(be: &B, src: &dyn RowSource, cfg: &TrainConfig) -> Result<(Trainer<B>, TrainLog)> {
    cfg.validate()?;
    let (n, g) = (src.n_rows(), src.n_cols());
    if g != cfg.generator.genes {
        return Err(Error::invalid(format!("the reference has {g} genes but the generator is built for {}", cfg.generator.genes)));
    }
    let bs = cfg.batch_size;
    if n < bs {
        return Err(Error::Config(format!(
            "the reference has {n} cells, fewer than one batch of {bs} (batch_size); lower batch_size (and mem_size, a multiple of it)"
        )));
    }
    let mut tr = Trainer::new(be, cfg);
    let batches = n / bs;
    let mut log = TrainLog { batches_per_epoch: batches, ..Default::default() };
    let shuffle = Stream::new(cfg.seed).fork(3);
    let mut host = vec![0.0f32; bs * g];
    let mut x = be.zeros(bs * g);
    let mut epoch_no = 0u64;
    for (phase, epochs) in [(false, cfg.prepare_epochs), (true, cfg.train_epochs)] {
        if epochs == 0 {
            continue;
        }
        let start = Instant::now();
        let route = if phase { Route::Memory } else { Route::Bypass };
        let pb = crate::progress::bar((epochs * batches) as u64, if phase { "train" } else { "prepare" });
        for e in 0..epochs {
            let t0 = Instant::now();
            let lr = if phase { cosine_lr(cfg.lr, e, epochs) } else { cfg.lr };
            tr.set_lr(lr);
            let order = permutation(n, shuffle.fork(epoch_no).seed);
            epoch_no += 1;
            let mut acc = IterLosses::default();
            for b in 0..batches {
                src.gather_dense(&order[b * bs..(b + 1) * bs], &mut host)?;
                be.write(&mut x, 0, &host);
                let l = tr.iteration(be, &x, bs, route);
                acc.add(&l);
                pb.inc(1);
                // An epoch of a large reference takes seconds: a request to
                // stop is honoured within one iteration.
                crate::progress::check_cancelled()?;
            }
            // A device error makes the rest of the run no-ops: stop here.
            be.check()?;
            let entry = EpochLog::of(e, lr, &acc, batches, (cfg.lambda_rec, cfg.lambda_adv), t0.elapsed().as_secs_f64()).ok_or_else(|| {
                Error::invalid(format!(
                    "training diverged in the {} phase, epoch {e} (non-finite loss); lower lr",
                    if phase { "train" } else { "prepare" }
                ))
            })?;
            if phase { log.train.push(entry) } else { log.prepare.push(entry) }
        }
        pb.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        if phase { log.seconds_train = secs } else { log.seconds_prepare = secs }
    }
    // Scoring runs through the memory block whenever it was trained
    // (`GeneratorConfig::memory`).
    Ok((tr, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_seeded_permutation() {
        let p = permutation(1000, 9);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, permutation(1000, 9));
        assert_ne!(p, permutation(1000, 10));
    }
}
