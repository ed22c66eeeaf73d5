//! Layers against PyTorch: fixtures written by scripts/make_torch_fixtures.py
//! (inputs, parameters with PyTorch's state-dict names, outputs, gradients).
//! Each layer runs with `loss = Σ y ⊙ dy`, so its output gradient is `dy`.

use std::collections::HashMap;
use std::path::PathBuf;

use acsleuth::backend::rng::Stream;
use acsleuth::backend::{Act, CpuBackend, CpuBuf};
use acsleuth::nn::act::Activation;
use acsleuth::nn::init::Init;
use acsleuth::nn::mlp::Sequential;
use acsleuth::nn::params::{self, zero_grads};
use acsleuth::nn::{
    cosine_lr, Adam, BatchNorm1d, Dense, DenseConfig, L1Loss, LayerNorm, Module, MultiheadAttention, ResBlock,
    TransformerEncoderLayer,
};

struct Fixture {
    t: HashMap<String, Vec<f32>>,
    name: String,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/torch").join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
        let t = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                let data = v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                (k, data)
            })
            .collect();
        Fixture { t, name: name.to_string() }
    }
    fn get(&self, k: &str) -> &Vec<f32> {
        self.t.get(k).unwrap_or_else(|| panic!("{}: fixture lacks {k}", self.name))
    }
    fn buf(&self, k: &str) -> CpuBuf {
        CpuBuf(self.get(k).clone())
    }
    /// Load every tensor of `m` from the fixture (all must be present).
    fn set_params<M: Module<CpuBackend>>(&self, m: &mut M, prefix: &str) {
        m.visit("", &mut |n, p| {
            let v = self.get(&format!("{prefix}{n}"));
            assert_eq!(v.len(), p.numel(), "{}: {n} size", self.name);
            p.value.0.copy_from_slice(v);
        });
    }
    /// Compare `got` with tensor `k` within `atol + rtol·|want|`.
    fn check(&self, k: &str, got: &[f32], atol: f32, rtol: f32) {
        let want = self.get(k);
        assert_eq!(got.len(), want.len(), "{}: {k} length", self.name);
        let mut worst = 0.0f32;
        for (g, w) in got.iter().zip(want) {
            let excess = (g - w).abs() - (atol + rtol * w.abs());
            worst = worst.max(excess);
            assert!(excess <= 0.0, "{}: {k}: got {g}, torch {w}", self.name);
        }
    }
    /// Compare every trainable gradient of `m` with `grad.<name>`.
    fn check_grads<M: Module<CpuBackend>>(&self, m: &mut M, atol: f32, rtol: f32) {
        let mut grads = Vec::new();
        m.visit("", &mut |n, p| {
            if p.trainable {
                grads.push((n.to_string(), p.grad.0.clone()));
            }
        });
        for (n, g) in grads {
            self.check(&format!("grad.{n}"), &g, atol, rtol);
        }
    }
    /// Compare every tensor of `m` (after the step) with `out.<name>`.
    fn check_state<M: Module<CpuBackend>>(&self, m: &mut M, atol: f32, rtol: f32) {
        let mut vals = Vec::new();
        m.visit("", &mut |n, p| vals.push((n.to_string(), p.value.0.clone())));
        for (n, v) in vals {
            self.check(&format!("out.{n}"), &v, atol, rtol);
        }
    }
}

const A: f32 = 1e-5;
const R: f32 = 1e-4;

fn be() -> CpuBackend {
    CpuBackend::new()
}

#[test]
fn linear() {
    let f = Fixture::load("linear");
    let be = be();
    let mut l = Dense::new(&be, 5, 4, DenseConfig::linear(), &mut Stream::new(1));
    f.set_params(&mut l, "");
    let y = l.forward(&be, &f.buf("in.x"), 6, true).0.clone();
    f.check("out.y", &y, A, R);
    let dx = l.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, A, R);
    f.check_grads(&mut l, A, R);
}

#[test]
fn batchnorm_train_and_eval() {
    for (case, train) in [("bn_train", true), ("bn_eval", false)] {
        let f = Fixture::load(case);
        let be = be();
        let mut bn = BatchNorm1d::new(&be, 5);
        f.set_params(&mut bn, "");
        let y = bn.forward(&be, &f.buf("in.x"), 8, train).0.clone();
        f.check("out.y", &y, A, R);
        let dx = bn.backward(&be, &f.buf("in.dy")).0.clone();
        f.check("grad.x", &dx, 1e-4, 1e-3);
        f.check_grads(&mut bn, 1e-4, R);
        f.check_state(&mut bn, A, R);
    }
}

#[test]
fn layer_norm() {
    let f = Fixture::load("layernorm");
    let be = be();
    let mut ln = LayerNorm::new(&be, 7);
    f.set_params(&mut ln, "");
    let y = ln.forward(&be, &f.buf("in.x"), 6, true).0.clone();
    f.check("out.y", &y, A, R);
    let dx = ln.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, 1e-4, 1e-3);
    f.check_grads(&mut ln, 1e-4, R);
}

#[test]
fn activations() {
    let be = be();
    for (case, mut a) in [("leaky_relu", Activation::leaky_relu(&be, 0.2)), ("sigmoid", Activation::sigmoid(&be))] {
        let f = Fixture::load(case);
        let y = a.forward(&be, &f.buf("in.x"), true).0.clone();
        f.check("out.y", &y, A, R);
        let dx = a.backward(&be, &f.buf("in.dy")).0.clone();
        f.check("grad.x", &dx, A, R);
    }
}

#[test]
fn spectral_norm_linear() {
    let f = Fixture::load("sn_linear");
    let be = be();
    let mut l = Dense::new(&be, 6, 5, DenseConfig::linear().sn(), &mut Stream::new(1));
    f.set_params(&mut l, "");
    let y = l.forward(&be, &f.buf("in.x"), 7, true).0.clone();
    f.check("out.y", &y, A, R);
    // u, v after the power iteration.
    f.check_state(&mut l, A, R);
    let dx = l.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, A, R);
    f.check_grads(&mut l, A, R);
    // Eval: no iteration, the updated u, v.
    let ye = l.forward(&be, &f.buf("in.x_eval"), 3, false).0.clone();
    f.check("out.y_eval", &ye, A, R);
    f.check_state(&mut l, A, R);
}

#[test]
fn resblock() {
    let f = Fixture::load("resblock");
    let be = be();
    let mut r = ResBlock::new(&be, 6, 0.2, 0.0, Init::XavierNormal, &mut Stream::new(1));
    f.set_params(&mut r, "");
    let y = r.forward(&be, &f.buf("in.x"), 8, true).0.clone();
    f.check("out.y", &y, A, R);
    f.check_state(&mut r, A, R);
    let dx = r.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, 1e-4, 1e-3);
    f.check_grads(&mut r, 1e-4, 1e-3);
}

#[test]
fn sn_resblock() {
    let f = Fixture::load("sn_resblock");
    let be = be();
    let mut r = ResBlock::new_sn(&be, 6, 0.2, 0.0, Init::XavierNormal, &mut Stream::new(1));
    f.set_params(&mut r, "");
    let y = r.forward(&be, &f.buf("in.x"), 8, true).0.clone();
    f.check("out.y", &y, A, R);
    f.check_state(&mut r, A, R);
    let dx = r.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, 1e-4, 1e-3);
    f.check_grads(&mut r, 1e-4, 1e-3);
}

#[test]
fn multihead_attention() {
    let f = Fixture::load("mha");
    let be = be();
    let mut m = MultiheadAttention::new(&be, 16, 4, 0.0, 0.0, &mut Stream::new(1));
    f.set_params(&mut m, "");
    let y = m.forward(&be, &f.buf("in.x"), 3, 2, true).0.clone();
    f.check("out.y", &y, A, R);
    let dx = m.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, 1e-4, 1e-3);
    f.check_grads(&mut m, 1e-4, 1e-3);
}

#[test]
fn transformer_encoder_layer() {
    let f = Fixture::load("encoder_layer");
    let be = be();
    let mut m = TransformerEncoderLayer::new(&be, 16, 4, 24, 0.0, &mut Stream::new(1));
    f.set_params(&mut m, "");
    let y = m.forward(&be, &f.buf("in.x"), 3, 2, true).0.clone();
    f.check("out.y", &y, 1e-4, 1e-4);
    let dx = m.backward(&be, &f.buf("in.dy")).0.clone();
    f.check("grad.x", &dx, 1e-4, 1e-3);
    f.check_grads(&mut m, 1e-4, 1e-3);
}

#[test]
fn l1_loss() {
    let f = Fixture::load("l1");
    let be = be();
    let mut l = L1Loss::new(&be);
    let loss = l.forward_backward(&be, &f.buf("in.pred"), &f.buf("in.target"), 30.0);
    f.check("out.loss", &[30.0 * loss], A, R);
    f.check("grad.pred", &l.grad().0, A, R);
}

/// Ten Adam steps (β = (0.5, 0.999), coupled weight decay 1e-3, cosine
/// annealing over 10 steps) of Linear→BN→LReLU→Linear with an L1 loss, from
/// PyTorch's initial weights: the losses and the final state must agree.
#[test]
fn mlp_ten_adam_steps() {
    let f = Fixture::load("mlp_adam");
    let be = be();
    let rng = &mut Stream::new(1);
    let blk = DenseConfig::linear().bn().act(Act::LeakyRelu(0.2));
    let mut net = Sequential::new().dense(&be, 10, 8, blk, rng).dense(&be, 8, 3, DenseConfig::linear(), rng);
    f.set_params(&mut net, "");
    let mut opt = Adam::new(1e-2, 0.5, 0.999).weight_decay(1e-3, false);
    let mut l1 = L1Loss::new(&be);
    let (x, target) = (f.buf("in.x"), f.buf("in.target"));
    let mut losses = Vec::new();
    for step in 0..10 {
        zero_grads(&be, &mut net);
        let y = net.forward(&be, &x, 16, true);
        losses.push(l1.forward_backward(&be, y, &target, 1.0));
        net.backward(&be, l1.grad());
        opt.step(&be, &mut net);
        opt.lr = cosine_lr(1e-2, step + 1, 10);
    }
    f.check("out.losses", &losses, 1e-5, 1e-4);
    f.check_state(&mut net, 1e-4, 1e-3);
}

/// A checkpoint round trip keeps every tensor and its PyTorch name.
#[test]
fn checkpoint_roundtrip() {
    let be = be();
    let rng = &mut Stream::new(3);
    let blk = DenseConfig::linear().bn().act(Act::LeakyRelu(0.2));
    let mut a = Sequential::new().dense(&be, 10, 8, blk, rng).dense(&be, 8, 3, DenseConfig::linear(), rng);
    let mut b = Sequential::new().dense(&be, 10, 8, blk, &mut Stream::new(4)).dense(&be, 8, 3, DenseConfig::linear(), rng);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    params::save(&be, &mut a, &path, None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert_eq!(
        names,
        ["0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var", "1.weight", "3.bias", "3.weight"]
    );
    assert_eq!(st.tensor("0.weight").unwrap().shape(), &[8, 10]);
    params::load(&be, &mut b, &path).unwrap();
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    a.visit("", &mut |_, p| va.push(p.value.0.clone()));
    b.visit("", &mut |_, p| vb.push(p.value.0.clone()));
    assert_eq!(va, vb);
    // A model of another shape is refused with a clear error.
    let mut c = Sequential::new().dense(&be, 10, 9, blk, rng);
    let err = params::load(&be, &mut c, &path).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
}
