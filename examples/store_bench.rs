//! Streams a large random sparse matrix through `StoreWriter` and reports
//! the time and memory it takes, then opens, verifies and samples it.
//!
//! ```text
//! cargo run --release --example store_bench -- [N_CELLS] [N_GENES] [DENSITY] [DIR]
//! /usr/bin/time -v target/release/examples/store_bench 1000000 3000 0.08 /tmp
//! ```
//! Defaults: 1,000,000 cells × 3,000 genes at 8 % density (240 M non-zeros,
//! ~1.9 GB on disk), written under the system temp directory and removed at
//! the end. Rows are generated on the fly (geometric gaps between non-zero
//! genes, small count values), so the benchmark itself holds one row.

use std::path::PathBuf;
use std::time::Instant;

use acsleuth::data::store::{Layout, Store, StoreWriter};

/// splitmix64: fast, good enough for synthetic data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> acsleuth::Result<()> {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let a: Vec<String> = std::env::args().skip(1).collect();
    let bad = |what: &str| acsleuth::Error::Config(format!("bad {what}; usage: store_bench [N_CELLS] [N_GENES] [DENSITY] [DIR]"));
    let n_cells: usize = a.first().map_or(Ok(1_000_000), |s| s.parse()).map_err(|_| bad("N_CELLS"))?;
    let n_genes: usize = a.get(1).map_or(Ok(3000), |s| s.parse()).map_err(|_| bad("N_GENES"))?;
    let density: f64 = a.get(2).map_or(Ok(0.08), |s| s.parse()).map_err(|_| bad("DENSITY"))?;
    if !(density > 0.0 && density < 1.0) {
        return Err(bad("DENSITY (must be in (0, 1))"));
    }
    let dir = a.get(3).map_or_else(std::env::temp_dir, PathBuf::from);
    let path = dir.join(format!("store_bench_{}.acs", std::process::id()));
    let genes: Vec<String> = (0..n_genes).map(|j| format!("gene{j}")).collect();

    let t = Instant::now();
    let mut w = StoreWriter::create(&path, &genes, Layout::Csr)?;
    let mut rng = Rng(42);
    let log_q = (1.0 - density).ln();
    let (mut idx, mut val) = (Vec::new(), Vec::new()); // one row
    for i in 0..n_cells {
        idx.clear();
        val.clear();
        // Gaps between non-zero genes are geometric(density).
        let mut j = (rng.unit().ln() / log_q) as usize;
        while j < n_genes {
            idx.push(j as u32);
            val.push((1 + rng.next() % 8) as f32);
            j += 1 + (rng.unit().ln() / log_q) as usize;
        }
        w.push_cell(&format!("cell{i}"), &idx, &val)?;
    }
    let nnz = w.nnz();
    let push_s = t.elapsed().as_secs_f64();
    w.finish(&[])?;
    let write_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path.join("matrix.bin")).map_err(|e| acsleuth::Error::io(&path, e))?.len();
    println!(
        "write: {n_cells} cells × {n_genes} genes, {nnz} non-zeros ({:.2} %), matrix.bin {:.2} GB, {write_s:.2} s ({:.0} MB/s, {:.0} k cells/s)",
        100.0 * nnz as f64 / (n_cells as f64 * n_genes as f64),
        bytes as f64 / 1e9,
        bytes as f64 / 1e6 / write_s,
        n_cells as f64 / 1e3 / write_s
    );
    println!("  of which pushing rows {push_s:.2} s, finish (copy indices, header, fsync, names, rename) {:.2} s", write_s - push_s);
    if let Some(k) = vm_hwm_kib() {
        println!("peak RSS after writing (VmHWM): {:.1} MB", k as f64 / 1024.0);
    }

    let t = Instant::now();
    let s = Store::open(&path)?;
    let open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    s.verify()?;
    let verify_s = t.elapsed().as_secs_f64();
    println!(
        "open (header, section CRCs, CSR structure, names): {open_s:.3} s = {:.2} GB/s   verify (again + finite values, through the map): {verify_s:.2} s",
        bytes as f64 / 1e9 / open_s
    );

    // Minibatch gathers of 128 random rows, as training reads them.
    let batches = 2000;
    let mut out = vec![0f32; 128 * n_genes];
    let mut rows = vec![0usize; 128];
    let t = Instant::now();
    for _ in 0..batches {
        rows.iter_mut().for_each(|r| *r = (rng.next() % n_cells as u64) as usize);
        s.read_rows_dense(&rows, &mut out)?;
    }
    let gather_s = t.elapsed().as_secs_f64();
    println!("read_rows_dense: {batches} batches of 128 random rows, {:.1} µs a batch", gather_s / batches as f64 * 1e6);
    drop(s);
    std::fs::remove_dir_all(&path).map_err(|e| acsleuth::Error::io(&path, e))?;
    if let Some(k) = vm_hwm_kib() {
        println!("peak RSS at exit (VmHWM): {:.1} MB", k as f64 / 1024.0);
    }
    Ok(())
}
