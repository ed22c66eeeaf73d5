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
    acsleuth::backend::thread_pool::init_global(Some(2));
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
    acsleuth::backend::thread_pool::init_global(Some(2));
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

/// Best-of-N milliseconds of the input layers' products with an expression
/// batch on the left (the zero-skipping path, `cpu_sparse`), at Kang's
/// fraction of non-zeros and at 10 %: `SPARSE_BEST_OF=30 cargo bench --bench gemm`.
fn sparse_best_of(reps: usize) {
    acsleuth::backend::thread_pool::init_global(Some(2));
    let be = CpuBackend::new();
    println!("{:<28} {:>9} {:>9}   (best of {reps}, ms, 2 threads)", "shape", "3.8 %", "10 %");
    for (name, ta, m, n, k) in [
        ("x·Wᵀ 128x3000 · 3000x512", Trans::N, 128, 512, 3000),
        ("x·Wᵀ 128x3000 · 3000x256", Trans::N, 128, 256, 3000),
        ("xᵀ·dz (128x3000)ᵀ · 128x512", Trans::T, 3000, 512, 128),
        ("xᵀ·dz (128x3000)ᵀ · 128x256", Trans::T, 3000, 256, 128),
    ] {
        let g = Gemm::new(ta, Trans::N, m, n, k);
        let (ea, eb, ec) = g.extents();
        let mut b = be.zeros(eb);
        be.fill_uniform(&mut b, 2, 0, -1.0, 1.0);
        let mut c = be.zeros(ec);
        let ms: Vec<f64> = [0.038, 0.1]
            .iter()
            .map(|&density| {
                let mut u = be.zeros(ea);
                be.fill_uniform(&mut u, 1, 0, 0.0, 1.0);
                let host: Vec<f32> = be.download(&u).iter().map(|&u| if (u as f64) < density { 1.0 + u } else { 0.0 }).collect();
                let a = be.upload(&host);
                (0..reps)
                    .map(|_| {
                        let t0 = std::time::Instant::now();
                        be.gemm(&g, &a, &b, &mut c);
                        t0.elapsed().as_secs_f64() * 1e3
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        println!("{name:<28} {:>9.3} {:>9.3}", ms[0], ms[1]);
    }
}

fn main() {
    if let Some(reps) = std::env::var("SPARSE_BEST_OF").ok().and_then(|v| v.parse().ok()) {
        sparse_best_of(reps);
        return;
    }
    if let Some(reps) = std::env::var("GEMM_BEST_OF").ok().and_then(|v| v.parse().ok()) {
        best_of(reps);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
