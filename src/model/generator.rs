//! Module I's generator (ARCHITECTURE §3): encoder → memory block → decoder.
//!
//! ```text
//! encoder: Linear(G,h)→BN→LReLU(0.2)→Dropout → Linear(h,d)→BN→LReLU→Dropout → n × ResBlock(d)
//! memory:  z̃ = renorm(shrink(softmax(z Qᵀ/τ))) Q        (bypassed in the prepare phase)
//! decoder: n × ResBlock(d) → Linear(d,h)→BN→LReLU→Dropout → Linear(h,G)→ReLU
//! ```
//!
//! with h = `hidden_dim` (512), d = `latent_dim` (256), n = `n_resblocks`
//! (2). Xavier-normal weights, PyTorch-default biases. Tensors are named as
//! the equivalent PyTorch module (`encoder.0.weight`, `memory.mem`, …).

use crate::backend::rng::Stream;
use crate::backend::{Act, Backend};
use crate::nn::init::Init;
use crate::nn::mlp::{Sequential, Stage};
use crate::nn::{join, DenseConfig, Module, Param, ResBlock};
use crate::{Error, Result};

use super::memory::MemoryBlock;

/// Shape and hyper-parameters of a [`Generator`].
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    pub genes: usize,
    pub hidden: usize,
    pub latent: usize,
    pub n_resblocks: usize,
    /// LeakyReLU negative slope.
    pub slope: f32,
    pub dropout: f32,
    pub mem_size: usize,
    pub mem_temperature: f32,
    pub mem_shrink: f32,
    /// The trained model routes its codes through the memory block (Module
    /// I trained a memory phase, `train_epochs > 0`): the route of
    /// [`Generator::forward`]. Training passes its phase's route explicitly
    /// ([`Generator::forward_via`]).
    pub memory: bool,
}

/// Where the latent codes go between encoder and decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `x̂ = Dec(Enc(x))` (the prepare phase).
    Bypass,
    /// `x̂ = Dec(Mem(Enc(x)))` (the train phase).
    Memory,
}

impl GeneratorConfig {
    /// A generator of this shape whose memory block is never used (Module
    /// III's; its settings at Module I's defaults); the LeakyReLU slope is
    /// the authors' 0.2.
    pub fn without_memory(genes: usize, hidden: usize, latent: usize, n_resblocks: usize, dropout: f32) -> Self {
        GeneratorConfig { genes, hidden, latent, n_resblocks, slope: 0.2, dropout, mem_size: 512, mem_temperature: 0.05, mem_shrink: 0.01, memory: false }
    }

    /// Checks the shape and the memory block's settings; messages name
    /// the `[detect]` keys they come from.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.genes == 0 || self.hidden == 0 || self.latent == 0 {
            return bad("layer widths must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.mem_size == 0 {
            return bad("mem_size must be at least 1".into());
        }
        if !(self.mem_temperature > 0.0 && self.mem_temperature.is_finite()) {
            return bad(format!("mem_temperature must be positive, got {}", self.mem_temperature));
        }
        if !(self.mem_shrink >= 0.0 && self.mem_shrink.is_finite()) {
            return bad(format!("mem_shrink must be a finite number >= 0, got {}", self.mem_shrink));
        }
        Ok(())
    }

    /// The route of the trained model.
    pub fn route(&self) -> Route {
        if self.memory { Route::Memory } else { Route::Bypass }
    }
}

/// The encoder `Linear(G,h)→BN→LReLU→Dropout → Linear(h,d)→BN→LReLU→Dropout
/// → n × ResBlock(d)`, drawing its initial weights from `rng`. Shared with
/// Module III's style generator, which has the same encoder.
pub fn build_encoder<B: Backend>(be: &B, cfg: &GeneratorConfig, rng: &mut Stream) -> Sequential<B> {
    let (g, h, d) = (cfg.genes, cfg.hidden, cfg.latent);
    let block = DenseConfig::linear().init(Init::XavierNormal).bn().act(Act::LeakyRelu(cfg.slope)).dropout(cfg.dropout);
    // The input layer sees log-normalized expression, mostly zeros.
    let mut encoder = Sequential::new().dense(be, g, h, block.sparse_input(), rng).dense(be, h, d, block, rng);
    for _ in 0..cfg.n_resblocks {
        encoder = encoder.res(ResBlock::new(be, d, cfg.slope, cfg.dropout, Init::XavierNormal, rng));
    }
    encoder
}

/// The decoder `n × ResBlock(d) → Linear(d,h)→BN→LReLU→Dropout →
/// Linear(h,G)→ReLU`, with its input gradient on (the encoder sits before
/// it). Shared with Module III's style generator.
pub fn build_decoder<B: Backend>(be: &B, cfg: &GeneratorConfig, rng: &mut Stream) -> Sequential<B> {
    let (g, h, d) = (cfg.genes, cfg.hidden, cfg.latent);
    let block = DenseConfig::linear().init(Init::XavierNormal).bn().act(Act::LeakyRelu(cfg.slope)).dropout(cfg.dropout);
    let mut decoder = Sequential::new();
    for _ in 0..cfg.n_resblocks {
        decoder = decoder.res(ResBlock::new(be, d, cfg.slope, cfg.dropout, Init::XavierNormal, rng));
    }
    let mut decoder = decoder
        .dense(be, d, h, block, rng)
        .dense(be, h, g, DenseConfig::linear().init(Init::XavierNormal).act(Act::Relu), rng);
    decoder.set_input_grad(true);
    decoder
}

/// Output of the last stage of `seq` (the encoder's latent codes).
pub fn last_output<B: Backend>(seq: &Sequential<B>) -> &B::Buf {
    match seq.stages.last() {
        Some(Stage::Dense(d)) => d.output(),
        Some(Stage::Res(r)) => r.output(),
        None => unreachable!("the encoder has at least two layers"),
    }
}

pub struct Generator<B: Backend> {
    pub cfg: GeneratorConfig,
    pub encoder: Sequential<B>,
    pub memory: MemoryBlock<B>,
    pub decoder: Sequential<B>,
    /// The route of the last forward (its backward follows it).
    last_route: Route,
}

impl<B: Backend> Generator<B> {
    pub fn new(be: &B, cfg: &GeneratorConfig, rng: &mut Stream) -> Self {
        let encoder = build_encoder(be, cfg, rng);
        let memory = MemoryBlock::new(be, cfg.mem_size, cfg.latent, cfg.mem_temperature, cfg.mem_shrink, rng);
        let decoder = build_decoder(be, cfg, rng);
        Generator { cfg: cfg.clone(), encoder, memory, decoder, last_route: Route::Bypass }
    }

    /// `x̂` for `x: [batch, genes]` through the trained model's route
    /// ([`GeneratorConfig::memory`]); returns `[batch, genes]`.
    pub fn forward<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool) -> &'a B::Buf {
        let route = self.cfg.route();
        self.forward_via(be, x, batch, train, route, false)
    }

    /// `x̂` through `route`. With `same_input`, the caller promises that `x`
    /// and the weights are those of the last forward (the critic steps of
    /// an adversarial iteration rerun the unchanged generator on its batch):
    /// the input layer reuses its product (see [`Sequential::forward_with`]).
    pub fn forward_via<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool, route: Route, same_input: bool) -> &'a B::Buf {
        let z = self.encoder.forward_with(be, x, batch, train, same_input);
        self.last_route = route;
        let zt = match route {
            Route::Memory => self.memory.forward(be, z, batch),
            Route::Bypass => z,
        };
        self.decoder.forward(be, zt, batch, train)
    }

    /// Encoder output `z: [batch, latent]` of the last forward.
    pub fn latent(&self) -> &B::Buf {
        last_output(&self.encoder)
    }

    /// Only the encoder: `z: [batch, latent]` (Module II embeds with it).
    pub fn encode<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool) -> &'a B::Buf {
        self.encoder.forward(be, x, batch, train)
    }

    /// Backward of the last forward from `dy = ∂L/∂x̂`; accumulates every
    /// parameter gradient (the input gradient is not computed).
    pub fn backward(&mut self, be: &B, dy: &B::Buf) {
        let dzt = self.decoder.backward(be, dy);
        let dz = match self.last_route {
            Route::Memory => self.memory.backward(be, dzt),
            Route::Bypass => dzt,
        };
        self.encoder.backward(be, dz);
    }

    /// FIFO update of the memory queue with the last forward's latent codes.
    pub fn update_memory(&mut self, be: &B, batch: usize) {
        let Generator { encoder, memory, .. } = self;
        memory.push(be, last_output(encoder), batch);
    }
}

impl<B: Backend> Module<B> for Generator<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.encoder.visit(&join(prefix, "encoder"), f);
        self.memory.visit(&join(prefix, "memory"), f);
        self.decoder.visit(&join(prefix, "decoder"), f);
    }
}
