//! Initialisation from the counter-based RNG (so a CUDA run initialises to
//! the same values): Xavier-normal and PyTorch's default Linear init.

use crate::backend::rng::Stream;
use crate::backend::Backend;

/// `torch.nn.init.xavier_normal_` (gain 1) on a `[fan_out, fan_in]` weight:
/// N(0, 2/(fan_in + fan_out)).
pub fn xavier_normal<B: Backend>(be: &B, w: &mut B::Buf, fan_in: usize, fan_out: usize, rng: &mut Stream) {
    let std = (2.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let n = be.len(w);
    let off = rng.take(n);
    be.fill_normal(w, rng.seed, off, 0.0, std);
}

/// PyTorch's default Linear weight init, `kaiming_uniform_(a = √5)`:
/// U(±1/√fan_in) (gain √(2/(1+5)) times √(3/fan_in)).
pub fn kaiming_uniform_default<B: Backend>(be: &B, w: &mut B::Buf, fan_in: usize, rng: &mut Stream) {
    uniform_bound(be, w, 1.0 / (fan_in.max(1) as f32).sqrt(), rng);
}

/// PyTorch's default Linear bias init: U(±1/√fan_in).
pub fn bias_default<B: Backend>(be: &B, b: &mut B::Buf, fan_in: usize, rng: &mut Stream) {
    uniform_bound(be, b, 1.0 / (fan_in.max(1) as f32).sqrt(), rng);
}

/// U(±bound).
pub fn uniform_bound<B: Backend>(be: &B, x: &mut B::Buf, bound: f32, rng: &mut Stream) {
    let n = be.len(x);
    let off = rng.take(n);
    be.fill_uniform(x, rng.seed, off, -bound, bound);
}

/// Weight init schemes of a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Xavier-normal weights (ACsleuth's choice), PyTorch-default biases.
    XavierNormal,
    /// PyTorch's default for `nn.Linear`.
    TorchDefault,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    #[test]
    fn xavier_and_default_init_statistics() {
        let be = CpuBackend::new();
        let mut rng = Stream::new(1);
        let (fin, fout) = (300, 200);
        let mut w = be.zeros(fin * fout);
        xavier_normal(&be, &mut w, fin, fout, &mut rng);
        let n = (fin * fout) as f64;
        let var = w.0.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
        let want = 2.0 / (fin + fout) as f64;
        assert!((var / want - 1.0).abs() < 0.03, "xavier variance {var} vs {want}");
        kaiming_uniform_default(&be, &mut w, fin, &mut rng);
        let bound = 1.0 / (fin as f32).sqrt();
        assert!(w.0.iter().all(|v| v.abs() <= bound));
        let var = w.0.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
        let want = (bound as f64).powi(2) / 3.0;
        assert!((var / want - 1.0).abs() < 0.03, "default-init variance {var} vs {want}");
    }
}
