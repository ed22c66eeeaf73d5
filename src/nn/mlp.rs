//! A sequential stack of dense layers and residual blocks, named as the
//! equivalent `nn.Sequential` would be. It is the shape of ACsleuth's
//! encoder, decoder and scorer, and what the training-step benchmark runs.

use crate::backend::rng::Stream;
use crate::backend::{Act, Backend};

use super::dense::{Dense, DenseConfig};
use super::init::Init;
use super::params::{Module, Param};
use super::resblock::ResBlock;
use super::join;

#[allow(clippy::large_enum_variant)]
pub enum Stage<B: Backend> {
    Dense(Dense<B>),
    Res(ResBlock<B>),
}

/// Layers applied in order.
pub struct Sequential<B: Backend> {
    pub stages: Vec<Stage<B>>,
    /// `nn.Sequential` index of each stage (a dense stage spans several).
    indices: Vec<usize>,
    /// Next free `nn.Sequential` index (for naming).
    next_index: usize,
}

impl<B: Backend> Default for Sequential<B> {
    fn default() -> Self {
        Sequential { stages: Vec::new(), indices: Vec::new(), next_index: 0 }
    }
}

impl<B: Backend> Sequential<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a dense layer; it takes the `nn.Sequential` indices a PyTorch
    /// `Linear, [BatchNorm1d], [act], [Dropout]` run would.
    pub fn dense(mut self, be: &B, fan_in: usize, fan_out: usize, cfg: DenseConfig, rng: &mut Stream) -> Self {
        let i = self.next_index;
        let bn = if cfg.batch_norm { (i + 1).to_string() } else { String::new() };
        let mut d = Dense::new(be, fan_in, fan_out, cfg, rng).named(&i.to_string(), &bn);
        if self.stages.is_empty() {
            d.need_input_grad = false;
        }
        self.indices.push(i);
        self.next_index += 1 + cfg.batch_norm as usize + (cfg.act != Act::Identity) as usize + (cfg.dropout > 0.0) as usize;
        self.stages.push(Stage::Dense(d));
        self
    }

    pub fn res(mut self, block: ResBlock<B>) -> Self {
        self.indices.push(self.next_index);
        self.next_index += 1;
        self.stages.push(Stage::Res(block));
        self
    }

    /// Whether a first dense layer computes its input gradient (false by
    /// default: a network input needs none; the critic's gradient penalty
    /// needs it). A residual block always returns its input gradient.
    pub fn set_input_grad(&mut self, on: bool) {
        if let Some(Stage::Dense(d)) = self.stages.first_mut() {
            d.need_input_grad = on;
        }
    }

    /// Promise that the next forward has the same input and the same
    /// first-layer weights as the last one: a first dense layer then reuses
    /// its product (see [`Dense::reuse_product_once`]).
    pub fn reuse_first_product_once(&mut self) {
        if let Some(Stage::Dense(d)) = self.stages.first_mut() {
            d.reuse_product_once();
        }
    }

    pub fn forward<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool) -> &'a B::Buf {
        let mut cur = x;
        for s in self.stages.iter_mut() {
            cur = match s {
                Stage::Dense(d) => d.forward(be, cur, batch, train),
                Stage::Res(r) => r.forward(be, cur, batch, train),
            };
        }
        cur
    }

    /// Backward from `dy`; returns the input gradient (empty when the first
    /// layer skips it).
    pub fn backward<'a>(&'a mut self, be: &B, dy: &'a B::Buf) -> &'a B::Buf {
        let mut cur = dy;
        for s in self.stages.iter_mut().rev() {
            cur = match s {
                Stage::Dense(d) => d.backward(be, cur),
                Stage::Res(r) => r.backward(be, cur),
            };
        }
        cur
    }
}

impl<B: Backend> Module<B> for Sequential<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        for (s, &idx) in self.stages.iter_mut().zip(&self.indices) {
            match s {
                // A dense stage carries its own names ("4", "5").
                Stage::Dense(d) => d.visit(prefix, f),
                Stage::Res(r) => r.visit(&join(prefix, &idx.to_string()), f),
            }
        }
    }
}

/// The generator of ACsleuth's Module I without the memory block
/// (ARCHITECTURE §3): encoder `Linear(G,512)→BN→LReLU→Dropout→Linear(512,256)→BN→
/// LReLU→Dropout→2×ResBlock(256)`, decoder `2×ResBlock(256)→Linear(256,512)→
/// BN→LReLU→Dropout→Linear(512,G)→ReLU`. Used by the training-step benchmark.
pub struct AutoEncoder<B: Backend> {
    pub encoder: Sequential<B>,
    pub decoder: Sequential<B>,
}

impl<B: Backend> AutoEncoder<B> {
    pub fn new(be: &B, genes: usize, dropout: f32, rng: &mut Stream) -> Self {
        let lr = Act::LeakyRelu(0.2);
        let block = DenseConfig::linear().init(Init::XavierNormal).bn().act(lr).dropout(dropout);
        let res = |rng: &mut Stream| ResBlock::new(be, 256, 0.2, dropout, Init::XavierNormal, rng);
        let encoder = Sequential::new()
            .dense(be, genes, 512, block, rng)
            .dense(be, 512, 256, block, rng)
            .res(res(rng))
            .res(res(rng));
        let mut decoder = Sequential::new()
            .res(res(rng))
            .res(res(rng))
            .dense(be, 256, 512, block, rng)
            .dense(be, 512, genes, DenseConfig::linear().init(Init::XavierNormal).act(Act::Relu), rng);
        decoder.set_input_grad(true);
        AutoEncoder { encoder, decoder }
    }

    /// `x̂ = Dec(Enc(x))`, `x: [batch, genes]`.
    pub fn forward<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool) -> &'a B::Buf {
        let z = self.encoder.forward(be, x, batch, train);
        self.decoder.forward(be, z, batch, train)
    }

    pub fn backward(&mut self, be: &B, dy: &B::Buf) {
        let dz = self.decoder.backward(be, dy);
        self.encoder.backward(be, dz);
    }
}

impl<B: Backend> Module<B> for AutoEncoder<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.encoder.visit(&join(prefix, "encoder"), f);
        self.decoder.visit(&join(prefix, "decoder"), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    /// State-dict names follow `nn.Sequential` indexing.
    #[test]
    fn autoencoder_names() {
        let be = CpuBackend::new();
        let mut ae = AutoEncoder::new(&be, 20, 0.1, &mut Stream::new(1));
        let mut names = Vec::new();
        ae.visit("", &mut |n, p| names.push((n.to_string(), p.shape.clone())));
        let has = |n: &str| names.iter().any(|(m, _)| m == n);
        for n in [
            "encoder.0.weight",
            "encoder.1.running_mean",
            "encoder.1.num_batches_tracked",
            "encoder.4.weight",
            "encoder.5.running_var",
            "encoder.8.fc.0.weight",
            "encoder.8.fc.1.weight",
            "encoder.8.fc.4.bias",
            "encoder.9.fc.4.weight",
            "decoder.0.fc.0.weight",
            "decoder.1.fc.4.weight",
            "decoder.2.weight",
            "decoder.3.running_mean",
            "decoder.6.weight",
            "decoder.6.bias",
        ] {
            assert!(has(n), "missing {n}: {names:?}");
        }
        let w0 = names.iter().find(|(n, _)| n == "encoder.0.weight").unwrap();
        assert_eq!(w0.1, vec![512, 20]);
    }
}
