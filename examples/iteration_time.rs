//! Seconds per training iteration of Module I (one generator step + 2
//! critic steps with gradient penalty) at the authors' shapes: batch 128,
//! 3000 genes, in the prepare and memory phases; median and best of
//! `ITERATIONS` (default 30) after `WARMUP` (default 3) warm-up iterations,
//! as scripts/bench_torch_iteration.py prints them. The input has a
//! fraction `DENSITY` (default 0.1) of non-zeros, U(1, 3); `THREADS`
//! (default 2) threads, this one among them as in the command line
//! (`backend::thread_pool`); `ONLY=prepare` or `ONLY=memory` times one phase.
//!
//! `cargo run --release --example iteration_time`

use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::model::generator::Route;
use acsleuth::model::train::Trainer;
use acsleuth::pipeline::DetectConfig;

#[path = "../tests/common/mod.rs"]
mod common;
use common::Rng;

fn main() {
    let env = |k: &str, d: f64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (steps, density, warmup) = (env("ITERATIONS", 30.0) as usize, env("DENSITY", 0.1), env("WARMUP", 3.0) as usize);
    // As the command line runs: this thread is worker 0 of the pool.
    acsleuth::backend::thread_pool::adopt_current_thread(env("THREADS", 2.0) as usize).unwrap();
    let be = CpuBackend::new();
    let (g, b) = (3000, 128);
    let cfg = DetectConfig::default();
    let mut tr = Trainer::new(&be, &cfg.train_config(g));
    let mut r = Rng(5);
    let host: Vec<f32> = (0..b * g).map(|_| if r.next() < density { (1.0 + 2.0 * r.next()) as f32 } else { 0.0 }).collect();
    let x = be.upload(&host);
    let only = std::env::var("ONLY").ok();
    for phase in [false, true] {
        if only.as_deref().is_some_and(|o| (o == "memory") != phase) {
            continue;
        }
        let route = if phase { Route::Memory } else { Route::Bypass };
        for _ in 0..warmup {
            tr.iteration(&be, &x, b, route);
        }
        let mut times: Vec<f64> = (0..steps)
            .map(|_| {
                let t = std::time::Instant::now();
                tr.iteration(&be, &x, b, route);
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        eprintln!(
            "acsleuth {} phase: median {:.3} s, best {:.3} s per iteration over {steps} ({} threads, density {density})",
            if phase { "memory" } else { "prepare" },
            times[steps / 2],
            times[0],
            rayon::current_num_threads()
        );
    }
}
