//! The production Module I training step at a small size, one body for
//! every backend: the CUDA backend's tests run it on the emulated device
//! and on a GPU and compare with the CPU backend.

use acsleuth::backend::Backend;
use acsleuth::model::generator::Route;
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
    let mut tr = Trainer::new(be, &cfg, genes);
    let xb = be.upload(x);
    let mut losses = Vec::new();
    for route in [Route::Bypass, Route::Memory, Route::Memory] {
        let l = tr.iteration(be, &xb, batch, route);
        losses.extend([l.rec, l.adv, l.d_loss, l.gp]);
    }
    let out = be.download(tr.generator.forward(be, &xb, batch, false));
    (losses, out)
}
