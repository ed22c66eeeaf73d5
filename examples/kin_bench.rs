//! Kin pairing throughput on the CPU backend: `kin_pairs` over random
//! embeddings, and for comparison the plain GEMM of the same products in
//! the same blocks (what the search would cost with a free argmax).
//!
//! ```text
//! cargo run --release --example kin_bench -- [kin|gemm] [N_QUERY] [N_KEY] [DIM] [REPEATS]
//! ```
//! Defaults: `kin 100000 10000 256 3`. Prints wall seconds and GFLOP/s
//! (2·N_QUERY·N_KEY·DIM per search).

use std::time::Instant;

use acsleuth::backend::cpu_argmax::{KEY_BLOCK, QUERY_BLOCK};
use acsleuth::backend::cpu::GemmThreading;
use acsleuth::backend::{Backend, CpuBackend, CpuBuf, Gemm, Trans};
use acsleuth::data::DenseMatrix;
use acsleuth::model::kin::kin_pairs;
use rayon::prelude::*;

fn random(rows: usize, cols: usize, seed: u64) -> DenseMatrix {
    let mut s = seed;
    let data = (0..rows * cols)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    DenseMatrix { rows, cols, data }
}

fn main() {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("kin", String::as_str).to_string();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (nq, nk, d, reps) = (num(1, 100_000), num(2, 10_000), num(3, 256), num(4, 3));
    let (q, k) = (random(nq, d, 1), random(nk, d, 2));
    let be = CpuBackend::new();
    let flop = 2.0 * nq as f64 * nk as f64 * d as f64;
    let kb = CpuBuf(k.data.clone()); // [nk, d], for the bare GEMM
    for _ in 0..reps {
        let t = Instant::now();
        match mode.as_str() {
            "gemm" => {
                // Same blocks as the twin, products discarded.
                q.data.par_chunks(QUERY_BLOCK * d).for_each_init(
                    || CpuBackend::with_gemm_threading(GemmThreading::Single),
                    |single, qc| {
                        let nr = qc.len() / d;
                        let qb = single.upload(qc);
                        let mut s = single.zeros(nr * KEY_BLOCK);
                        for k0 in (0..nk).step_by(KEY_BLOCK) {
                            let c = KEY_BLOCK.min(nk - k0);
                            let g = Gemm { b_off: k0 * d, ..Gemm::new(Trans::N, Trans::T, nr, c, d) };
                            single.gemm(&g, &qb, &kb, &mut s);
                        }
                    },
                );
            }
            _ => {
                let p = kin_pairs(&be, &q, &k).expect("kin_pairs");
                assert_eq!(p.kin.len(), nq);
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!("{mode} {nq} x {nk} x {d} ({} threads): {s:.2} s, {:.1} GFLOP/s", rayon::current_num_threads(), flop / s / 1e9);
    }
}
