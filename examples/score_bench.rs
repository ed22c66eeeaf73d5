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
//! `REF_CELLS=300000` makes the reference that large instead, to see the
//! memory of training over a big store (`SCORER_STEPS=0` skips the scorer).
//!
//! `NOVELTY=1` runs the default detector (the novelty score, nothing to
//! train) on the same stores instead of Module I.
//!
//! ```sh
//! cargo run --release --example score_bench -- --scorer-only N [STEPS]
//! ```
//!
//! times only the scorer (default configuration, `STEPS` steps, default 5)
//! on synthetic deviations of N cells × 3,000 genes held in memory (no
//! stores, no generator), and prints the seconds per step and, apart, the
//! seconds of the step's MMD (the part `Backend::mmd_pairwise_sums` moves
//! to a GPU for the RBF kernel). `KERNEL=rbf` scores with the RBF kernel.

use std::path::{Path, PathBuf};
use std::time::Instant;

use acsleuth::backend::CpuBackend;
use acsleuth::data::simulate::{SetKind, SimConfig, Simulator};
use acsleuth::data::store::{Layout, Store, StoreWriter};
use acsleuth::data::RowSink;
use acsleuth::pipeline::detect::{detect_inputs, DetectOptions, Inputs};
use acsleuth::pipeline::{DetectConfig, ScoreMethod};
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
        // Reuse a complete store of the same size from an earlier run.
        if let Ok(st) = Store::open(path)
            && st.n_cells() == sim.labels(kind).len()
        {
            return Ok(());
        }
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

/// The scorer alone on synthetic deviations: Gaussian noise with a 10 %
/// group whose first 300 genes are shifted, so the MMD has something to find.
fn scorer_only(n: usize, steps: usize) -> Result<()> {
    use acsleuth::backend::rng::fill_normal;
    use acsleuth::model::scorer::{train_scorer, DeviationSet, RowCache};
    let g = 3000;
    let tmp = tempfile::tempdir().map_err(|e| acsleuth::Error::io("tmp", e))?;
    let mut cache = RowCache::new(n, g, usize::MAX, tmp.path())?;
    let mut sq = vec![0.0f64; n];
    let mut row = vec![0.0f32; g];
    for (i, s) in sq.iter_mut().enumerate() {
        fill_normal(3, (i * g) as u64, 0.0, 0.3, &mut row);
        if i % 10 == 0 {
            row[..300].iter_mut().for_each(|v| *v += 0.5);
        }
        *s = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        cache.write_rows(i, &row)?;
    }
    let mut dev = DeviationSet { cache, sq_norms: sq };
    let rbf = std::env::var("KERNEL").is_ok_and(|k| k == "rbf");
    let kernel = if rbf { acsleuth::pipeline::Kernel::Rbf } else { acsleuth::pipeline::Kernel::Linear };
    let cfg = DetectConfig { scorer_steps: steps, seed: 1, kernel, ..DetectConfig::default() };
    let scfg = cfg.scorer_config(tmp.path().to_path_buf());
    let t = Instant::now();
    let (_, out) = train_scorer(&CpuBackend::new(), &mut dev, &scfg)?;
    let secs = t.elapsed().as_secs_f64();
    let loss = out.steps.last().map_or(f64::NAN, |s| s.loss);
    println!(
        "scorer only, N = {n}: {steps} steps + final forward in {secs:.2} s = {:.3} s/step; last loss {loss:.6e}; chunk {} rows",
        secs / steps as f64,
        out.chunk_rows
    );
    // The MMD alone, on the final scores, as one step computes it.
    let t = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        match out.bandwidth {
            None => acsleuth::model::scorer::linear_streamed(&mut dev, &out.p, scfg.counts, out.chunk_rows)?,
            Some(h) => {
                let all = dev.cache.in_memory().expect("held in memory");
                let coefs = [-0.5 / (h * h)];
                acsleuth::model::scorer::pairwise_on(&CpuBackend::new(), all, g, &out.p, scfg.counts, &coefs)?
            }
        };
    }
    println!("  of which the MMD ({}): {:.3} s/step", if rbf { "RBF, pairwise" } else { "linear, streamed" }, t.elapsed().as_secs_f64() / reps as f64);
    Ok(())
}

fn main() -> Result<()> {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--scorer-only") {
        let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
        return scorer_only(n, steps);
    }
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let tmp = tempfile::tempdir().map_err(|e| acsleuth::Error::io("tmp", e))?;
    let dir: PathBuf = args.get(2).map(PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| acsleuth::Error::io(&dir, e))?;

    let t = Instant::now();
    // REF_CELLS sizes the reference: the one epoch of training reads it in
    // random minibatches (peak RSS then shows what training keeps mapped).
    let n_ref = std::env::var("REF_CELLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let sim = Simulator::new(SimConfig { n_ref, n_target: n, n_genes: 3000, n_batches: 1, seed: 1, ..SimConfig::default() })?;
    let genes = sim.gene_names();
    let (rp, tp) = (dir.join(format!("ref_{n_ref}_{n}.acs")), dir.join(format!("tgt_{n}.acs")));
    write_set(&sim, SetKind::Reference, &rp, &genes)?;
    write_set(&sim, SetKind::Target, &tp, &genes)?;
    println!("wrote the stores in {:.1} s (peak RSS so far {:.0} MB)", t.elapsed().as_secs_f64(), peak_rss_mb());

    if std::env::var("NOVELTY").is_ok_and(|v| v == "1") {
        // The default detector instead of Module I: nothing to train.
        let cfg = DetectConfig { seed: 1, ..DetectConfig::default() };
        let (r, tg) = (Store::open(&rp)?, Store::open(&tp)?);
        let t = Instant::now();
        let inputs = Inputs::stores(&r, &tg, None, &cfg)?.expect("log-normalized stores stream");
        let res = detect_inputs(&CpuBackend::new(), &inputs, &cfg, &DetectOptions::default())?;
        let n_called = res.calls.iter().filter(|&&c| c).count();
        println!(
            "N = {n}: novelty detector {:.1} s ({n_called} called; {}); peak RSS {:.0} MB",
            t.elapsed().as_secs_f64(),
            serde_json::to_string(&res.report.novelty).unwrap_or_default(),
            peak_rss_mb()
        );
        return Ok(());
    }
    // SCORER_STEPS=0 times the deviations and one scoring pass only.
    let scorer_steps = std::env::var("SCORER_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let cfg = DetectConfig { prepare_epochs: 1, train_epochs: 1, seed: 1, scorer_steps, score: ScoreMethod::Paper, ..DetectConfig::default() };
    let (r, tg) = (Store::open(&rp)?, Store::open(&tp)?);
    let opts = DetectOptions { spill_dir: Some(dir.clone()), ..DetectOptions::default() };
    let inputs = Inputs::stores(&r, &tg, None, &cfg)?.expect("log-normalized stores stream");
    let res = detect_inputs(&CpuBackend::new(), &inputs, &cfg, &opts)?;
    let s = &res.report.seconds;
    println!(
        "N = {n}: training {:.1} s, deviations {:.1} s, scorer ({} steps) {:.1} s, scoring total {:.1} s; δ on disk: {}; peak RSS {:.0} MB",
        s.prepare + s.train,
        s.deviations,
        cfg.scorer_steps,
        s.scorer,
        s.deviations + s.scorer,
        res.report.module_i.as_ref().is_some_and(|m| m.deviations_on_disk),
        peak_rss_mb()
    );
    Ok(())
}
