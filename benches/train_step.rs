//! One generator training step of ACsleuth's Module I without the memory
//! block (the production `Generator`, ARCHITECTURE §3): forward + L1 loss (weight 30) + backward + Adam, batch
//! 128, 3000 genes, 2 threads. Compare with scripts/bench_torch_step.py run
//! right after it. Also the whole training iteration (generator step + 2
//! critic steps with gradient penalty) in both phases, the PyTorch twin of
//! which is scripts/bench_torch_iteration.py.
//!
//! The input is synthetic log-normalized expression with ~80 % zeros (the
//! dense first-layer GEMM does not exploit them).
//!
//! Run: `cargo bench --bench train_step`

use criterion::{criterion_group, Criterion};

use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::model::generator::{Generator, GeneratorConfig, Route};
use acsleuth::model::train::Trainer;
use acsleuth::pipeline::DetectConfig;
use acsleuth::nn::params::zero_grads;
use acsleuth::nn::{Adam, L1Loss};

pub const BATCH: usize = 128;
pub const GENES: usize = 3000;

/// Module I's generator at the defaults, without its memory block (the
/// prepare phase).
fn generator(be: &CpuBackend) -> Generator<CpuBackend> {
    let cfg = GeneratorConfig { memory: false, ..DetectConfig::default().generator_config(GENES) };
    Generator::new(be, &cfg, &mut Stream::new(0))
}

/// Synthetic log1p-normalized counts, ~80 % zeros.
fn input(be: &CpuBackend) -> <CpuBackend as Backend>::Buf {
    let n = BATCH * GENES;
    let mut u = vec![0.0; n];
    rng::fill_uniform(11, 0, 0.0, 1.0, &mut u);
    let x: Vec<f32> = u.iter().map(|&v| if v < 0.8 { 0.0 } else { (1.0 + 20.0 * (v - 0.8)).ln() }).collect();
    be.upload(&x)
}

fn bench(c: &mut Criterion) {
    acsleuth::backend::thread_pool::init_global(Some(2));
    let be = CpuBackend::new();
    let mut net = generator(&be);
    let mut opt = Adam::new(1e-4, 0.5, 0.999);
    let mut l1 = L1Loss::new(&be);
    let x = input(&be);
    let mut step = || {
        zero_grads(&be, &mut net);
        let y = net.forward(&be, &x, BATCH, true);
        let loss = l1.forward_backward(&be, y, &x, 30.0);
        net.backward(&be, l1.grad());
        opt.step(&be, &mut net);
        loss
    };
    let mut g = c.benchmark_group("train_step");
    g.sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    g.bench_function("generator_b128_g3000", |b| b.iter(&mut step));
    // The whole Module I iteration (generator step + 2 critic steps with
    // GP) in both phases, on the same input; compare with
    // scripts/bench_torch_iteration.py.
    let mut tr = Trainer::new(&be, &DetectConfig::default().train_config(GENES));
    for (name, route) in [("iteration_prepare_b128_g3000", Route::Bypass), ("iteration_memory_b128_g3000", Route::Memory)] {
        g.bench_function(name, |b| b.iter(|| tr.iteration(&be, &x, BATCH, route)));
    }
    g.finish();
}

/// Plain timing of `steps` steps after 3 warm-up steps: prints the median and
/// the best (`STEP_TIMES=30 cargo bench --bench train_step`), the same
/// statistics scripts/bench_torch_step.py prints.
fn plain(steps: usize) {
    acsleuth::backend::thread_pool::init_global(Some(2));
    let be = CpuBackend::new();
    let mut net = generator(&be);
    let mut opt = Adam::new(1e-4, 0.5, 0.999);
    let mut l1 = L1Loss::new(&be);
    let x = input(&be);
    let mut times = Vec::new();
    let mut loss = 0.0;
    for i in 0..steps + 3 {
        let t0 = std::time::Instant::now();
        zero_grads(&be, &mut net);
        let ta = t0.elapsed().as_secs_f64() * 1e3;
        let y = net.forward(&be, &x, BATCH, true);
        let tb = t0.elapsed().as_secs_f64() * 1e3;
        loss = l1.forward_backward(&be, y, &x, 30.0);
        net.backward(&be, l1.grad());
        let tc = t0.elapsed().as_secs_f64() * 1e3;
        opt.step(&be, &mut net);
        let td = t0.elapsed().as_secs_f64() * 1e3;
        if std::env::var("PHASES").is_ok() { eprintln!("zero {ta:.1} fwd {:.1} bwd {:.1} adam {:.1}", tb - ta, tc - tb, td - tc); }
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "rust train step (batch {BATCH}, genes {GENES}, 2 threads): median {:.1} ms, best {:.1} ms over {steps} steps (last loss {loss:.4})",
        times[times.len() / 2],
        times[0]
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("STEP_TIMES").ok().and_then(|v| v.parse().ok()) {
        plain(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
