//! GEMM throughput at the model's shapes with 2 threads, comparing the
//! `gemm` crate's internal threading with the backend's row split (one
//! single-threaded `gemm` per block of rows). Criterion reports
//! "elements/s" = FLOP/s (2·m·n·k per product).
//!
//! Run: `cargo bench --bench gemm` (RAYON_NUM_THREADS is forced to 2 here;
//! the machine's peak for 2 cores is ~189 GFLOP/s, see notes/crates.md).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

use acsleuth::backend::cpu::GemmThreading;
use acsleuth::backend::{Backend, CpuBackend, Gemm, Trans};

fn shapes() -> Vec<(&'static str, Trans, Trans, usize, usize, usize)> {
    vec![
        ("128x3000.3000x512", Trans::N, Trans::N, 128, 512, 3000),
        ("128x512.(3000x512)T", Trans::N, Trans::T, 128, 3000, 512),
        ("(128x3000)T.128x512", Trans::T, Trans::N, 3000, 512, 128),
        ("128x256.256x256", Trans::N, Trans::N, 128, 256, 256),
    ]
}

fn bench(c: &mut Criterion) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    let mut group = c.benchmark_group("gemm");
    group.sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    for (name, ta, tb, m, n, k) in shapes() {
        let g = Gemm::new(ta, tb, m, n, k);
        let (ea, eb, ec) = g.extents();
        let probe = CpuBackend::new();
        let mut a = probe.zeros(ea);
        let mut b = probe.zeros(eb);
        probe.fill_uniform(&mut a, 1, 0, -1.0, 1.0);
        probe.fill_uniform(&mut b, 2, 0, -1.0, 1.0);
        let mut cbuf = probe.zeros(ec);
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for t in [GemmThreading::Internal, GemmThreading::RowSplit, GemmThreading::ColSplit, GemmThreading::Auto] {
            let be = CpuBackend::with_gemm_threading(t);
            group.bench_with_input(BenchmarkId::new(format!("{t:?}"), name), &g, |bch, g| {
                bch.iter(|| be.gemm(g, &a, &b, &mut cbuf))
            });
        }
    }
    group.finish();
}

/// Best-of-N GFLOP/s with the strategies interleaved (robust on a shared,
/// loaded machine, where criterion's means swing by 2×):
/// `GEMM_BEST_OF=30 cargo bench --bench gemm`.
fn best_of(reps: usize) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    let modes = [GemmThreading::Internal, GemmThreading::RowSplit, GemmThreading::ColSplit, GemmThreading::Auto];
    println!("{:<22} {:>9} {:>9} {:>9} {:>9}   (best of {reps}, GFLOP/s, 2 threads)", "shape", "Internal", "RowSplit", "ColSplit", "Auto");
    for (name, ta, tb, m, n, k) in shapes() {
        let g = Gemm::new(ta, tb, m, n, k);
        let (ea, eb, ec) = g.extents();
        let probe = CpuBackend::new();
        let mut a = probe.zeros(ea);
        let mut b = probe.zeros(eb);
        probe.fill_uniform(&mut a, 1, 0, -1.0, 1.0);
        probe.fill_uniform(&mut b, 2, 0, -1.0, 1.0);
        let mut c = probe.zeros(ec);
        let mut best = [f64::INFINITY; 4];
        for _ in 0..reps {
            for (i, &t) in modes.iter().enumerate() {
                let be = CpuBackend::with_gemm_threading(t);
                let t0 = std::time::Instant::now();
                be.gemm(&g, &a, &b, &mut c);
                best[i] = best[i].min(t0.elapsed().as_secs_f64());
            }
        }
        let gf = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
        println!("{name:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1}", gf(best[0]), gf(best[1]), gf(best[2]), gf(best[3]));
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(reps) = std::env::var("GEMM_BEST_OF").ok().and_then(|v| v.parse().ok()) {
        best_of(reps);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
