//! Speed and memory of Module I's scoring stage at scale: reconstruction
//! deviations of N target cells and the 20-step full-batch MMD scorer,
//! streamed from a memory-mapped store (the authors' scorer needs ~44·N²
//! bytes and stops fitting in 24 GB at ~23,000 target cells).
//!
//! ```sh
//! cargo run --release --example score_bench -- N [DIR]
//! ```
//!
//! Writes log-normalized reference (2,000 cells) and target (N cells)
//! stores × 3,000 genes under DIR (default: a temporary folder; the target
//! store of 10^6 cells takes ~2.7 GB), trains the generator for one epoch
//! (training is not what is timed here), then scores the target from the
//! store. Prints the seconds of each stage and the peak resident memory
//! (VmHWM, which counts mapped file pages that were touched).

use std::path::{Path, PathBuf};
use std::time::Instant;

use acsleuth::backend::CpuBackend;
use acsleuth::data::simulate::{SetKind, SimConfig, Simulator};
use acsleuth::data::store::{Layout, Store, StoreWriter};
use acsleuth::data::RowSink;
use acsleuth::pipeline::detect::{detect_stores, DetectOptions};
use acsleuth::pipeline::DetectConfig;
use acsleuth::Result;

/// normalize_total(1e4) + log1p per cell on the way into the store.
struct LogNormSink {
    w: StoreWriter,
    buf: Vec<f32>,
}

impl RowSink for LogNormSink {
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> Result<()> {
        let total: f32 = values.iter().sum();
        let scale = if total > 0.0 { 1e4 / total } else { 0.0 };
        self.buf.clear();
        self.buf.extend(values.iter().map(|v| (v * scale).ln_1p()));
        self.w.push_row(indices, &self.buf)
    }
}

fn write_set(sim: &Simulator, kind: SetKind, path: &Path, genes: &[String]) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| acsleuth::Error::io(path, e))?;
    }
    let mut sink = LogNormSink { w: StoreWriter::create(path, genes, Layout::Csr)?, buf: vec![] };
    sim.generate(kind, &mut sink, |_| {})?;
    sink.w.finish(&[])
}

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let tmp = tempfile::tempdir().map_err(|e| acsleuth::Error::io("tmp", e))?;
    let dir: PathBuf = args.get(2).map(PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| acsleuth::Error::io(&dir, e))?;

    let t = Instant::now();
    let sim = Simulator::new(SimConfig { n_ref: 2000, n_target: n, n_genes: 3000, n_batches: 1, seed: 1, ..SimConfig::default() })?;
    let genes = sim.gene_names();
    let (rp, tp) = (dir.join(format!("ref_{n}.acs")), dir.join(format!("tgt_{n}.acs")));
    write_set(&sim, SetKind::Reference, &rp, &genes)?;
    write_set(&sim, SetKind::Target, &tp, &genes)?;
    println!("wrote the stores in {:.1} s (peak RSS so far {:.0} MB)", t.elapsed().as_secs_f64(), peak_rss_mb());

    let cfg = DetectConfig { prepare_epochs: 1, train_epochs: 0, seed: 1, ..DetectConfig::default() };
    let (r, tg) = (Store::open(&rp)?, Store::open(&tp)?);
    let opts = DetectOptions { spill_dir: Some(dir.clone()), ..DetectOptions::default() };
    let res = detect_stores(&CpuBackend::new(), &r, &tg, &cfg, &opts)?.expect("log-normalized stores stream");
    let s = &res.report.seconds;
    println!(
        "N = {n}: deviations {:.1} s, scorer ({} steps) {:.1} s, scoring total {:.1} s; δ on disk: {}; peak RSS {:.0} MB",
        s.deviations,
        cfg.scorer_steps,
        s.scorer,
        s.deviations + s.scorer,
        res.report.deviations_on_disk,
        peak_rss_mb()
    );
    Ok(())
}
