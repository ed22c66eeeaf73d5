//! The production Module I training step at a small size, one body for
//! every backend: the CUDA backend's tests run it on the emulated device
//! and on a GPU and compare with the CPU backend.

use acsleuth::backend::Backend;
use acsleuth::model::generator::{GeneratorConfig, Route};
use acsleuth::model::train::Trainer;
use acsleuth::pipeline::DetectConfig;

/// Three iterations of Module I's `Trainer` (generator step, then two
/// critic steps with the gradient penalty: BN, LeakyReLU, dropout, residual
/// blocks, spectral norm, the double backward, Adam), the first without the
/// memory block and two through it, on `x: [batch, genes]` from seed 7.
/// Returns each iteration's losses (reconstruction, adversarial, critic,
/// GP) and the generator's eval-mode output afterwards.
pub fn module_i_steps<B: Backend>(be: &B, x: &[f32], batch: usize, genes: usize) -> (Vec<f64>, Vec<f32>) {
    let cfg = DetectConfig {
        seed: 7,
        batch_size: batch,
        mem_size: 2 * batch,
        hidden_dim: 32,
        latent_dim: 16,
        critic_hidden: 16,
        lr: 1e-3,
        ..DetectConfig::default()
    };
    let mut tr = Trainer::new(be, &cfg.train_config(genes));
    let xb = be.upload(x);
    let mut losses = Vec::new();
    for route in [Route::Bypass, Route::Memory, Route::Memory] {
        let l = tr.iteration(be, &xb, batch, route);
        losses.extend([l.rec, l.adv, l.d_loss, l.gp]);
    }
    let out = be.download(tr.generator.forward(be, &xb, batch, false));
    (losses, out)
}

/// A tiny generator on `genes` genes (tests/generator.rs, tests/style.rs).
/// The memory block's hard shrinkage is switched off (λ = 0): at w = λ the
/// shrunk weight jumps from 0 to λ, so a finite difference that crosses the
/// threshold measures the jump, not the gradient. The fused attention
/// kernel's own test covers λ > 0 away from the threshold, and
/// `model::memory`'s test runs the block with λ = 0.01. A moderate
/// temperature keeps the attention smooth; the step h = 5e-4 is small
/// enough for the curvature of BatchNorm over 8 rows (at h = 2e-3 the
/// truncation error alone is a few per cent).
pub fn tiny_generator(genes: usize) -> GeneratorConfig {
    GeneratorConfig {
        genes,
        hidden: 10,
        latent: 6,
        n_resblocks: 1,
        slope: 0.2,
        dropout: 0.0,
        mem_size: 8,
        mem_temperature: 1.0,
        mem_shrink: 0.0,
        memory: false,
    }
}
