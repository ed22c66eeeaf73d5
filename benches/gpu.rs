//! GPU benchmark, ready for a machine with a CUDA device (none exists where
//! acsleuth is developed; without one it says so and exits 0):
//!
//! - one generator training step (forward + L1 + backward + Adam, batch 128,
//!   3000 genes; Module I's generator without its memory block, as
//!   benches/train_step.rs) on `CudaBackend`;
//! - the tiled pairwise MMD kernel (`mmd_pairwise`, RBF) at N = 10^4 and
//!   3·10^4 cells × 256 features;
//! - kin pairing (`kin_argmax`) at 10^5 query × 10^4 key rows × 256.
//!
//! Each prints achieved GFLOP/s beside the device's peak, taken from
//! `ACSLEUTH_GPU_PEAK_TFLOPS` (FP32, default 67: H100 SXM).
//!
//! Run: `cargo bench --bench gpu`

use std::time::Instant;

use acsleuth::backend::cuda::backend::KernelBackend;
use acsleuth::backend::cuda::device::{device_count, CudaDevice};
use acsleuth::backend::cuda::ops::{self, MmdPtrs};
use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::cuda::CudaBackend;
use acsleuth::backend::Backend;
use acsleuth::data::DenseMatrix;
use acsleuth::model::kin::kin_pairs;
use acsleuth::model::generator::{Generator, GeneratorConfig};
use acsleuth::pipeline::DetectConfig;
use acsleuth::nn::params::zero_grads;
use acsleuth::nn::{Adam, L1Loss};

const BATCH: usize = 128;
const GENES: usize = 3000;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// GEMM FLOPs of one training step of the generator: forward, then the
/// weight and input gradients (no input gradient for the first layer).
fn step_flops() -> f64 {
    let layers = [(GENES, 512), (512, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 256), (256, 512), (512, GENES)];
    let f: f64 = layers.iter().map(|&(i, o)| 2.0 * (BATCH * i * o) as f64).sum();
    let first = 2.0 * (BATCH * GENES * 512) as f64;
    3.0 * f - first
}

fn train_step(dev: CudaDevice, peak_tflops: f64) {
    let be = KernelBackend::new(dev, "cuda");
    let cfg = GeneratorConfig { memory: false, ..DetectConfig::default().generator_config(GENES) };
    let mut net = Generator::new(&be, &cfg, &mut Stream::new(0));
    let mut opt = Adam::new(1e-4, 0.5, 0.999);
    let mut l1 = L1Loss::new(&be);
    let mut u = vec![0.0; BATCH * GENES];
    rng::fill_uniform(11, 0, 0.0, 1.0, &mut u);
    let host: Vec<f32> = u.iter().map(|&v| if v < 0.8 { 0.0 } else { (1.0 + 20.0 * (v - 0.8)).ln() }).collect();
    let x = be.upload(&host);
    let mut times = vec![];
    for i in 0..53 {
        let t = Instant::now();
        zero_grads(&be, &mut net);
        let y = net.forward(&be, &x, BATCH, true);
        let _ = l1.forward_backward(&be, y, &x, 30.0); // reads the loss back: a sync
        net.backward(&be, l1.grad());
        opt.step(&be, &mut net);
        let _ = be.sum(l1.grad()); // sync before stopping the clock
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let gf = step_flops() / med / 1e9;
    println!(
        "train step (batch {BATCH}, {GENES} genes): median {:.3} ms, best {:.3} ms, {gf:.0} GFLOP/s = {:.1} % of {peak_tflops} TFLOP/s",
        med * 1e3,
        times[0] * 1e3,
        100.0 * gf / (peak_tflops * 1e3)
    );
}

fn mmd(dev: &CudaDevice, peak_tflops: f64) {
    // Pairwise RBF: per pair 2·G FLOP for the dot product (+ a few for exp).
    for n in [10_000usize, 30_000] {
        let g = 256;
        let mut d = vec![0.0f32; n * g];
        rng::fill_uniform(3, 0, -1.0, 1.0, &mut d);
        let ab: Vec<f64> = (0..n).map(|i| (i % 7) as f64 / 7.0).collect();
        let (delta, a, b) = (dev.upload(&d).unwrap(), dev.upload(&ab).unwrap(), dev.upload(&ab).unwrap());
        let (s, uu, vv) = (dev.zeros::<f64>(n).unwrap(), dev.zeros::<f64>(n).unwrap(), dev.zeros::<f64>(n).unwrap());
        let p = MmdPtrs { delta: dev.ptr(&delta), a: dev.ptr(&a), b: dev.ptr(&b), s: dev.ptr(&s), u: dev.ptr(&uu), v: dev.ptr(&vv) };
        let coefs = [-0.5 / 4.0];
        unsafe { ops::mmd_pairwise(dev, n, g, &coefs, &p) }.unwrap();
        dev.synchronize().unwrap();
        let t = Instant::now();
        let reps = 5;
        for _ in 0..reps {
            unsafe { ops::mmd_pairwise(dev, n, g, &coefs, &p) }.unwrap();
        }
        dev.synchronize().unwrap();
        let secs = t.elapsed().as_secs_f64() / reps as f64;
        let gf = 2.0 * (n as f64).powi(2) * g as f64 / secs / 1e9;
        println!(
            "mmd_pairwise RBF (N = {n}, G = {g}): {:.2} ms, {gf:.0} GFLOP/s = {:.1} % of {peak_tflops} TFLOP/s",
            secs * 1e3,
            100.0 * gf / (peak_tflops * 1e3)
        );
    }
}

/// Kin pairing (`kin_argmax`, kernels/argmax.cu) at 10⁵ query × 10⁴ key
/// rows × 256 features, uploads included.
fn kin(peak_tflops: f64) {
    let be = CudaBackend::open(0).expect("a CUDA device is present but cannot be opened");
    let mut s = 5u64;
    let mut random = |rows: usize, cols: usize| {
        let mut v = vec![0.0; rows * cols];
        rng::fill_uniform(s, 0, -1.0, 1.0, &mut v);
        s += 1;
        DenseMatrix { rows, cols, data: v }
    };
    let (q, k) = (random(100_000, 256), random(10_000, 256));
    let _ = kin_pairs(&be, &q, &k).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let got = kin_pairs(&be, &q, &k).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(got.kin.len(), q.rows);
        let gf = 2.0 * 1e5 * 1e4 * 256.0 / secs / 1e9;
        println!("kin pairing 1e5 x 1e4 x 256: {:.3} s, {gf:.0} GFLOP/s = {:.1} % of {peak_tflops} TFLOP/s", secs, 100.0 * gf / (peak_tflops * 1e3));
    }
}

fn main() {
    match device_count() {
        Ok(n) if n > 0 => {}
        Ok(_) => return println!("no CUDA device found: GPU benchmark skipped"),
        Err(e) => return println!("no CUDA device ({e}): GPU benchmark skipped"),
    }
    let tf = env_f64("ACSLEUTH_GPU_PEAK_TFLOPS", 67.0);
    let dev = CudaDevice::new(0).expect("a CUDA device is present but cannot be opened");
    println!("device: {}", dev.name());
    mmd(&dev, tf);
    train_step(dev, tf);
    kin(tf);
}
