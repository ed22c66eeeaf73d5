//! A sequential stack of dense layers and residual blocks, named as the
//! equivalent `nn.Sequential` would be. It is the shape of ACsleuth's
//! encoder and decoder (`model::generator`).

use crate::backend::rng::Stream;
use crate::backend::{Act, Backend};

use super::dense::{Dense, DenseConfig};
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

    pub fn forward<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool) -> &'a B::Buf {
        self.forward_with(be, x, batch, train, false)
    }

    /// Forward; with `same_input`, the caller promises that `x` and the
    /// first layer's weights are those of the last forward, and a first
    /// dense layer reuses its product ([`Dense::forward_kept_product`]).
    pub fn forward_with<'a>(&'a mut self, be: &B, x: &'a B::Buf, batch: usize, train: bool, same_input: bool) -> &'a B::Buf {
        let mut cur = x;
        for (i, s) in self.stages.iter_mut().enumerate() {
            cur = match s {
                Stage::Dense(d) => {
                    if i == 0 && same_input {
                        d.forward_kept_product(be, batch, train)
                    } else {
                        d.forward(be, cur, batch, train)
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    /// State-dict names follow `nn.Sequential` indexing: a dense stage with
    /// BN and dropout spans four indices, a residual block one.
    #[test]
    fn sequential_names() {
        let be = CpuBackend::new();
        let rng = &mut Stream::new(1);
        let block = DenseConfig::linear().bn().act(Act::LeakyRelu(0.2)).dropout(0.1);
        let res = |rng: &mut Stream| ResBlock::new(&be, 8, 0.2, 0.1, crate::nn::init::Init::XavierNormal, rng);
        let mut enc = Sequential::new().dense(&be, 20, 16, block, rng).dense(&be, 16, 8, block, rng).res(res(rng)).res(res(rng));
        let mut dec = Sequential::new().res(res(rng)).res(res(rng)).dense(&be, 8, 16, block, rng).dense(&be, 16, 20, DenseConfig::linear().act(Act::Relu), rng);
        let mut names = Vec::new();
        enc.visit("encoder", &mut |n, p| names.push((n.to_string(), p.shape.clone())));
        dec.visit("decoder", &mut |n, p| names.push((n.to_string(), p.shape.clone())));
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
        assert_eq!(w0.1, vec![16, 20]);
    }
}
