//! Module III: style-transfer batch correction (ARCHITECTURE §2).
//!
//! A generator with Module I's encoder and decoder (no memory block) and a
//! style matrix `S: [n_batches, latent]`:
//!
//! ```text
//! z = Enc(x_i)            [batch, latent]
//! ẑ = z − B·S             B: [batch, n_batches] one-hot rows (b_i), so row i is z_i − S[b_i]
//! x̂ = Dec(ẑ)              [batch, genes]
//! ```
//!
//! The subtraction is one GEMM with the one-hot matrix (and its gradient
//! `∂L/∂S = −Bᵀ·∂L/∂ẑ` another), so it runs on every backend with the
//! existing operations and costs nothing next to the layers.
//!
//! It is trained on kin pairs (a target normal cell → its kin reference
//! cell's expression) by the same adversarial iteration as Module I
//! ([`crate::model::train::AdversarialStep`]), then maps every target
//! cell into the reference space ([`correct`]). See [`train_style`].

mod train;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::backend::rng::Stream;
use crate::backend::{ensure, Backend, Gemm, Trans};
use crate::error::{Error, Result};
use crate::model::generator::{build_decoder, build_encoder, Generator, GeneratorConfig};
use crate::model::train::GanGenerator;
use crate::nn::mlp::Sequential;
use crate::nn::{join, Module, Param};

pub use train::{correct, train_style, StyleLog};

/// Settings of Module III. Field names are TOML keys; missing keys take the
/// defaults (the authors' released defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StyleConfig {
    /// Passes over the kin pairs.
    pub epochs: usize,
    /// Pairs per minibatch (shuffled each epoch; the last partial batch is
    /// dropped; with fewer pairs than this, one batch of all pairs).
    pub batch_size: usize,
    /// Critic steps per generator step.
    pub n_critic: usize,
    /// Adam learning rate of generator and critic (constant).
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// Weight of the L1 loss between x̂ and the kin reference cell.
    pub lambda_rec: f32,
    /// Weight of the adversarial loss.
    pub lambda_adv: f32,
    /// Weight of the gradient penalty.
    pub lambda_gp: f32,
    /// Seed of every random draw (initialisation, shuffling, dropout, GP).
    pub seed: u64,
    /// Start from Module I's encoder and decoder (weights and BatchNorm
    /// statistics); the style matrix starts at 0 either way.
    pub init_from_module_i: bool,
    /// Generator shape when no Module I generator is given (with one, its
    /// shape is used): first encoder width.
    pub hidden_dim: usize,
    /// Latent width (columns of S).
    pub latent_dim: usize,
    /// Residual blocks in the encoder and in the decoder.
    pub n_resblocks: usize,
    /// Dropout probability in generator and critic (with a Module I
    /// generator, the generator keeps its own).
    pub dropout: f32,
    /// Width of the critic's hidden layer.
    pub critic_hidden: usize,
    /// Width of the critic's output.
    pub critic_out: usize,
}

impl Default for StyleConfig {
    fn default() -> Self {
        StyleConfig {
            epochs: 50,
            batch_size: 128,
            n_critic: 3,
            lr: 1e-4,
            beta1: 0.5,
            beta2: 0.999,
            lambda_rec: 30.0,
            lambda_adv: 1.0,
            lambda_gp: 10.0,
            seed: 0,
            init_from_module_i: true,
            hidden_dim: 512,
            latent_dim: 256,
            n_resblocks: 2,
            dropout: 0.1,
            critic_hidden: 256,
            critic_out: 16,
        }
    }
}

impl StyleConfig {
    /// Checks every value before any work starts (the run's
    /// `RunConfig::validate` calls it);
    /// messages name the `[style]` keys.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("style.{m}")));
        if self.batch_size < 2 {
            return bad(format!("batch_size must be at least 2 (BatchNorm), got {}", self.batch_size));
        }
        // Zero critic steps would train the generator against an untrained
        // critic. (Zero epochs is the initialised generator, which the run
        // refuses as a correction but a caller may want.)
        if self.n_critic == 0 {
            return bad("n_critic must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} must be in [0, 1), got {b}"));
            }
        }
        for (name, l) in [("lambda_rec", self.lambda_rec), ("lambda_adv", self.lambda_adv), ("lambda_gp", self.lambda_gp)] {
            if !(l.is_finite() && l >= 0.0) {
                return bad(format!("{name} must be a finite number ≥ 0, got {l}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        for (name, d) in [
            ("hidden_dim", self.hidden_dim),
            ("latent_dim", self.latent_dim),
            ("critic_hidden", self.critic_hidden),
            ("critic_out", self.critic_out),
        ] {
            if d == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The generator shape used without a Module I generator.
    pub fn generator_config(&self, genes: usize) -> GeneratorConfig {
        GeneratorConfig::without_memory(genes, self.hidden_dim, self.latent_dim, self.n_resblocks, self.dropout)
    }
}

/// The style generator `x̂ = Dec(Enc(x) − B·S)`.
///
/// Like every layer of `crate::nn`: call [`StyleGenerator::set_batches`]
/// with the batch index of each row, then `forward → backward`.
pub struct StyleGenerator<B: Backend> {
    /// Shape (the memory fields are unused).
    pub cfg: GeneratorConfig,
    pub n_batches: usize,
    pub encoder: Sequential<B>,
    pub decoder: Sequential<B>,
    /// `S: [n_batches, latent]`, one style vector per batch (starts at 0).
    pub style: Param<B>,
    /// `[rows, n_batches]` one-hot batch rows of the current minibatch.
    onehot: B::Buf,
    /// Rows the one-hot matrix was set for.
    rows: usize,
    /// `[rows, latent]` ẑ = z − B·S, the decoder's input.
    zhat: B::Buf,
}

impl<B: Backend> StyleGenerator<B> {
    /// A freshly initialised generator (Xavier-normal weights as Module I,
    /// `S = 0`) for `n_batches ≥ 1` batches.
    pub fn new(be: &B, cfg: &GeneratorConfig, n_batches: usize, rng: &mut Stream) -> Self {
        let encoder = build_encoder(be, cfg, rng);
        let decoder = build_decoder(be, cfg, rng);
        StyleGenerator {
            cfg: cfg.clone(),
            n_batches,
            encoder,
            decoder,
            style: Param::new(be, &[n_batches, cfg.latent]),
            onehot: be.zeros(0),
            rows: 0,
            zhat: be.zeros(0),
        }
    }

    /// Copies Module I's encoder and decoder tensors (weights, biases,
    /// BatchNorm running statistics) into this generator. The shapes must
    /// match (same genes, widths and number of residual blocks).
    pub fn copy_from(&mut self, be: &B, g: &mut Generator<B>) -> Result<()> {
        let mut src: HashMap<String, Vec<f32>> = HashMap::new();
        {
            let mut take = |prefix: &str, seq: &mut Sequential<B>| {
                seq.visit(prefix, &mut |n, p| {
                    src.insert(n.to_string(), be.download(&p.value));
                })
            };
            take("encoder", &mut g.encoder);
            take("decoder", &mut g.decoder);
        }
        let mut missing: Option<String> = None;
        let mut put = |prefix: &str, seq: &mut Sequential<B>| {
            seq.visit(prefix, &mut |n, p| match src.get(n) {
                Some(v) if v.len() == p.numel() => be.write(&mut p.value, 0, v),
                _ => {
                    missing.get_or_insert_with(|| n.to_string());
                }
            })
        };
        put("encoder", &mut self.encoder);
        put("decoder", &mut self.decoder);
        if let Some(n) = missing.or_else(|| (src.len() != self.tensor_count()).then(|| "(extra tensors)".to_string())) {
            return Err(Error::invalid(format!(
                "Module I's generator (genes {}, hidden {}, latent {}, {} residual blocks) does not match the style generator \
                 (genes {}, hidden {}, latent {}, {} residual blocks): tensor {n}",
                g.cfg.genes, g.cfg.hidden, g.cfg.latent, g.cfg.n_resblocks, self.cfg.genes, self.cfg.hidden, self.cfg.latent,
                self.cfg.n_resblocks
            )));
        }
        Ok(())
    }

    /// Number of encoder and decoder tensors.
    fn tensor_count(&mut self) -> usize {
        let mut n = 0;
        self.encoder.visit("", &mut |_, _| n += 1);
        self.decoder.visit("", &mut |_, _| n += 1);
        n
    }

    /// Sets the batch index of each row of the next forward (`batches.len()`
    /// rows, every index below `n_batches`).
    pub fn set_batches(&mut self, be: &B, batches: &[u32]) -> Result<()> {
        let nb = self.n_batches;
        if let Some((i, &b)) = batches.iter().enumerate().find(|(_, b)| **b as usize >= nb) {
            return Err(Error::invalid(format!("row {i} has batch index {b}, but there are {nb} batches")));
        }
        let mut host = vec![0.0f32; batches.len() * nb]; // [rows, n_batches]
        for (row, &b) in host.chunks_mut(nb.max(1)).zip(batches) {
            row[b as usize] = 1.0;
        }
        ensure(be, &mut self.onehot, host.len());
        be.write(&mut self.onehot, 0, &host);
        self.rows = batches.len();
        Ok(())
    }

    /// `x̂: [batch, genes]` for `x: [batch, genes]` whose rows' batches were
    /// given to [`StyleGenerator::set_batches`].
    pub fn forward<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool) -> &'a B::Buf {
        self.forward_with(be, x, batch, train, false)
    }

    /// [`StyleGenerator::forward`]; with `same_input` the encoder's input
    /// layer reuses the product of the last forward (same `x`, same
    /// weights: the caller's promise).
    pub fn forward_with<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool, same_input: bool) -> &'a B::Buf {
        assert_eq!(self.rows, batch, "set_batches was called for {} rows, forward got {batch}", self.rows);
        let d = self.cfg.latent;
        let StyleGenerator { encoder, decoder, style, onehot, zhat, n_batches, .. } = self;
        let z = encoder.forward_with(be, x, batch, train, same_input);
        ensure(be, zhat, batch * d);
        be.copy(z, 0, zhat, 0, batch * d);
        // ẑ = z − B·S: [batch, n_batches]·[n_batches, latent].
        be.gemm(&Gemm::new(Trans::N, Trans::N, batch, d, *n_batches).alpha(-1.0).beta(1.0), onehot, &style.value, zhat);
        decoder.forward(be, zhat, batch, train)
    }

    /// Backward of the last forward from `dy = ∂L/∂x̂`; accumulates every
    /// parameter gradient, `∂L/∂S += −Bᵀ·∂L/∂ẑ` included.
    pub fn backward(&mut self, be: &B, dy: &B::Buf) {
        let (batch, d) = (self.rows, self.cfg.latent);
        let StyleGenerator { encoder, decoder, style, onehot, n_batches, .. } = self;
        let dzhat = decoder.backward(be, dy);
        // [n_batches, batch]·[batch, latent], accumulated.
        be.gemm(&Gemm::new(Trans::T, Trans::N, *n_batches, d, batch).alpha(-1.0).beta(1.0), onehot, dzhat, &mut style.grad);
        encoder.backward(be, dzhat);
    }

    /// The style matrix `S` on the host, `[n_batches, latent]` row-major.
    pub fn style_matrix(&self, be: &B) -> Vec<f32> {
        be.download(&self.style.value)
    }
}

impl<B: Backend> GanGenerator<B> for StyleGenerator<B> {
    fn forward_batch<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, same_input: bool) -> &'a B::Buf {
        self.forward_with(be, x, batch, true, same_input)
    }
    fn backward_batch(&mut self, be: &B, dy: &B::Buf) {
        self.backward(be, dy)
    }
}

/// Names as the PyTorch module would: `encoder.*`, `decoder.*`, `style`.
impl<B: Backend> Module<B> for StyleGenerator<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.encoder.visit(&join(prefix, "encoder"), f);
        self.decoder.visit(&join(prefix, "decoder"), f);
        f(&join(prefix, "style"), &mut self.style);
    }
}
