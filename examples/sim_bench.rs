//! Times the simulator alone: streams the target set into a sink that only
//! counts rows and non-zeros (no storage, no I/O).
//!
//! `cargo run --release --example sim_bench -- [N_CELLS] [N_GENES]`
//! (defaults 1,000,000 × 3,000). Threads: RAYON_NUM_THREADS.

use std::time::Instant;

use acsleuth::data::simulate::{SetKind, SimConfig, Simulator};
use acsleuth::data::RowSink;

#[derive(Default)]
struct Counter {
    rows: u64,
    nnz: u64,
    total: f64,
}

impl RowSink for Counter {
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> acsleuth::Result<()> {
        self.rows += 1;
        self.nnz += indices.len() as u64;
        self.total += values.iter().map(|&v| v as f64).sum::<f64>();
        Ok(())
    }
}

fn main() -> acsleuth::Result<()> {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize, default: usize| -> usize {
        args.get(i).and_then(|s| s.replace('_', "").parse().ok()).unwrap_or(default)
    };
    let config = SimConfig { n_target: parse(0, 1_000_000), n_genes: parse(1, 3000), ..SimConfig::default() };
    let (n, g) = (config.n_target, config.n_genes);

    let t0 = Instant::now();
    let sim = Simulator::new(config)?;
    let setup = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let mut sink = Counter::default();
    sim.generate(SetKind::Target, &mut sink, |_| {})?;
    let secs = t1.elapsed().as_secs_f64();

    println!(
        "{n} cells x {g} genes, {} threads: setup {setup:.2} s, counts {secs:.2} s \
         ({:.0} cells/s, {:.1} ns per cell-gene); nnz {} ({:.1} % dense), mean library {:.0}",
        rayon::current_num_threads(),
        n as f64 / secs,
        secs * 1e9 / (n as f64 * g as f64),
        sink.nnz,
        100.0 * sink.nnz as f64 / (n as f64 * g as f64),
        sink.total / sink.rows as f64,
    );
    Ok(())
}
