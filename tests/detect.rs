//! Module I end to end: a tiny simulated reference/target pair must be
//! separated (AUROC > 0.85), the CLI writes its three outputs, and bad
//! input is refused before any work.

use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};
use acsleuth::metrics;
use acsleuth::pipeline::detect::detect;
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};

mod common;
use common::{simulate, Rng};


/// Reduced widths and epochs for speed. The scorer runs 100 steps at 1e-3
/// instead of the authors' 20 at 1e-4: from a random initialisation, 20
/// steps at 1e-4 barely move p, and the ranking stays close to the random
/// initial one (AUROC ≈ 0.6 here although ‖δ‖ alone gives ≈ 0.98; see
/// `diagnose_tiny`).
fn small_config() -> DetectConfig {
    DetectConfig {
        score: ScoreMethod::Paper,
        scorer_steps: 100,
        scorer_lr: 1e-3,
        seed: 1,
        batch_size: 32,
        prepare_epochs: 8,
        train_epochs: 4,
        hidden_dim: 64,
        latent_dim: 32,
        mem_size: 64,
        critic_hidden: 32,
        preprocess: PreprocessMode::Never,
        n_hvg: 0,
        ..DetectConfig::default()
    }
}

#[test]
fn tiny_simulation_separates_anomalies() {
    let (reference, target, truth) = simulate(300, 300, 50, 0.2, 42);
    let cfg = small_config();
    let t = std::time::Instant::now();
    let res = detect(&reference, &target, &cfg).unwrap();
    let scores: Vec<f64> = res.scores.iter().map(|&s| s as f64).collect();
    let auc = metrics::auroc(&truth, &scores).unwrap();
    eprintln!(
        "tiny detect: AUROC {auc:.3}, {} called, flipped {}, {:.1} s; scorer losses {:?}",
        res.report.n_called,
        res.report.module_i.as_ref().unwrap().orientation.flipped,
        t.elapsed().as_secs_f64(),
        res.report.module_i.as_ref().unwrap().scorer_steps.iter().map(|s| s.loss).collect::<Vec<_>>()
    );
    assert!(auc > 0.85, "AUROC {auc}");
    assert_eq!(res.cells, target.cell_names);
    assert_eq!(res.report.module_i.as_ref().unwrap().training.prepare.len(), cfg.prepare_epochs);
    assert_eq!(res.report.module_i.as_ref().unwrap().training.train.len(), cfg.train_epochs);
}

#[test]
#[ignore]
fn diagnose_tiny() {
    use acsleuth::backend::CpuBackend;
    use acsleuth::model::{scorer, train};
    let (reference, target, truth) = simulate(300, 300, 50, 0.2, 42);
    for (pe, te) in [(8, 4), (30, 10)] {
        let cfg = DetectConfig { prepare_epochs: pe, train_epochs: te, ..small_config() };
        let be = CpuBackend::new();
        let rx = reference.x.to_csr();
        let tx = target.x.to_csr();
        let (mut tr, log) = train::train(&be, &rx, &cfg).unwrap();
        let last = log.train.last().or(log.prepare.last()).unwrap();
        let mut dev = scorer::compute_deviations(&be, &mut tr.generator, &tx, 1024, 1 << 30, &std::env::temp_dir()).unwrap();
        let norms = dev.norms();
        let auc_norm = metrics::auroc(&truth, &norms).unwrap();
        for steps in [20, 100, 400] {
            for lr in [1e-4f32, 1e-3] {
                let mut sc = scorer::ScorerConfig::from_detect(&cfg, std::env::temp_dir());
                sc.steps = steps;
                sc.lr = lr;
                let (_, out) = scorer::train_scorer(&be, &mut dev, &sc).unwrap();
                let s: Vec<f64> = out.p.iter().map(|&v| v as f64).collect();
                let auc = metrics::auroc(&truth, &s).unwrap();
                let called = out.p.iter().filter(|&&v| v > 0.5).count();
                eprintln!("pe {pe} te {te} rec {:.3} d {:.3}: AUROC(‖δ‖) {auc_norm:.3}; scorer steps {steps} lr {lr}: AUROC {auc:.3} called {called} n {:.1}", last.rec, last.d_loss, out.steps.last().unwrap().n);
            }
        }
    }
}

const PBMC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc68k_reduced/10x_pbmc68k_reduced.h5ad");
const PBMC_SPLIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc68k_reduced/split_b_nk.tsv");

/// The rows `rows` of `ds` (obs columns dropped).
fn subset(ds: &Dataset, rows: &[usize]) -> Dataset {
    let x = ds.x.to_csr();
    let mut m = CsrMatrix::empty(x.cols);
    for &r in rows {
        let (i, v) = x.row(r);
        m.push_row(i, v);
    }
    Dataset {
        x: Matrix::Csr(m),
        cell_names: rows.iter().map(|&r| ds.cell_names[r].clone()).collect(),
        gene_names: ds.gene_names.clone(),
        obs: vec![],
    }
}

/// Reference, target and truth of the fixed pbmc68k B/NK split; None when
/// the shared data is absent.
fn pbmc_split() -> Option<(Dataset, Dataset, Vec<bool>)> {
    use acsleuth::data::io::{read_dataset, ReadOptions};
    if !std::path::Path::new(PBMC).exists() {
        eprintln!("skipping: {PBMC} not found");
        return None;
    }
    let ds = read_dataset(PBMC.as_ref(), &ReadOptions { use_raw: true }).unwrap();
    let pos: std::collections::HashMap<&str, usize> = ds.cell_names.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let (mut rr, mut tr, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for line in std::fs::read_to_string(PBMC_SPLIT).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let i = pos[f[0]];
        if f[1] == "reference" {
            rr.push(i);
        } else {
            tr.push(i);
            truth.push(f[2] == "1");
        }
    }
    Some((subset(&ds, &rr), subset(&ds, &tr), truth))
}

#[test]
#[ignore]
fn diagnose_pbmc() {
    let Some((reference, target, truth)) = pbmc_split() else { return };
    for (steps, lr) in [(20, 1e-4f32), (100, 1e-3), (400, 1e-4)] {
        for seed in [0u64, 1] {
            let cfg = DetectConfig { seed, scorer_steps: steps, scorer_lr: lr, preprocess: PreprocessMode::Never, score: ScoreMethod::Paper, ..DetectConfig::default() };
            let t = std::time::Instant::now();
            let res = detect(&reference, &target, &cfg).unwrap();
            let s: Vec<f64> = res.scores.iter().map(|&v| v as f64).collect();
            eprintln!(
                "pbmc defaults, scorer {steps}@{lr}, seed {seed}: AUROC {:.3} AP {:.3} called {} in {:.1} s (train {:.1} s)",
                metrics::auroc(&truth, &s).unwrap(),
                metrics::average_precision(&truth, &s).unwrap(),
                res.report.n_called,
                t.elapsed().as_secs_f64(),
                res.report.seconds.prepare + res.report.seconds.train
            );
        }
    }
}

/// The fixed pbmc68k B/NK split (`.raw` values as they are, no HVG step)
/// with the authors' full settings (50 + 20 epochs, scorer 20 steps at
/// 1e-4): about 140 iterations at 765 genes. Shorter training (25 + 10)
/// gave AUROC 0.79 with the default scorer, so the recipe is kept whole.
#[test]
fn pbmc68k_split_reaches_auroc_085() {
    let Some((reference, target, truth)) = pbmc_split() else { return };
    let cfg = DetectConfig { preprocess: PreprocessMode::Never, score: ScoreMethod::Paper, ..DetectConfig::default() };
    let t = std::time::Instant::now();
    let res = detect(&reference, &target, &cfg).unwrap();
    let s: Vec<f64> = res.scores.iter().map(|&v| v as f64).collect();
    let auc = metrics::auroc(&truth, &s).unwrap();
    eprintln!("pbmc68k: AUROC {auc:.3}, {} called, {:.1} s", res.report.n_called, t.elapsed().as_secs_f64());
    assert!(auc >= 0.85, "AUROC {auc}");
}

#[test]
fn cli_writes_scores_report_and_model_and_refuses_bad_input() {
    use acsleuth::cli::{detect as cli_detect, Cli, Command};
    use clap::Parser;
    let dir = std::env::temp_dir().join(format!("acsleuth-detect-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (reference, target, _) = simulate(96, 64, 20, 0.2, 7);
    let (rp, tp) = (dir.join("ref.h5ad"), dir.join("tgt.h5ad"));
    acsleuth::data::h5ad::write_h5ad(&rp, &reference, &[]).unwrap();
    acsleuth::data::h5ad::write_h5ad(&tp, &target, &[]).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "score = \"paper\"\nbatch_size = 32\nmem_size = 64\nhidden_dim = 32\nlatent_dim = 16\ncritic_hidden = 16\nscorer_steps = 5\n").unwrap();
    let out = dir.join("out");
    let args = |extra: &[&str]| {
        let mut v = vec!["acsleuth", "detect", "--reference", rp.to_str().unwrap(), "--target", tp.to_str().unwrap()];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).unwrap()
    };
    let run = |cli: Cli| match cli.command {
        Command::Detect(a) => cli_detect::run(a),
        _ => unreachable!(),
    };
    let o = out.to_str().unwrap();
    let c = cfg.to_str().unwrap();
    run(args(&["--out", o, "--config", c, "--epochs-prepare", "2", "--epochs-train", "1", "--no-preprocess", "--seed", "3"])).unwrap();
    let scores = std::fs::read_to_string(out.join("scores.tsv")).unwrap();
    assert!(scores.starts_with("cell\tscore\tanomaly\nt0\t"));
    assert_eq!(scores.lines().count(), 65);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["settings"]["seed"], 3);
    assert_eq!(report["module_i"]["training"]["prepare"].as_array().unwrap().len(), 2);
    assert!(report["module_i"]["orientation"]["rule"].as_str().unwrap().contains("larger mean reconstruction deviation"));
    assert!(out.join("model.safetensors").exists());

    // Refused before any work: bad settings, missing input, unknown kernel.
    let bad = dir.join("bad");
    let e = run(args(&["--out", bad.to_str().unwrap(), "--config", c, "--anomaly-ratio", "1.5"])).unwrap_err();
    assert!(e.to_string().contains("anomaly_ratio"), "{e}");
    assert!(!bad.exists());
    let e = run(Cli::try_parse_from(["acsleuth", "detect", "--reference", "/nonexistent.h5ad", "--target", tp.to_str().unwrap(), "--out", o]).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("nonexistent"), "{e}");
    assert!(Cli::try_parse_from(["acsleuth", "detect", "--reference", "a", "--target", "b", "--out", "c", "--kernel", "cubic"]).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

/// Seconds per training iteration (one G step + 2 critic steps with GP) at
/// the authors' shapes: batch 128, 3000 genes, in the prepare and memory
/// phases; median and best of `ITERATIONS` (default 30) after `WARMUP`
/// (default 3) warm-up iterations, as scripts/bench_torch_iteration.py
/// prints them. The input has a fraction `DENSITY` (default 0.1) of
/// non-zeros, U(1, 3); `THREADS` (default 2) threads, this one among them
/// as in the command line (`backend::cpu_pool`); `ONLY=prepare` or
/// `ONLY=memory` times one phase.
/// Run with `cargo test --release --test detect iteration_time -- --ignored --nocapture`.
#[test]
#[ignore]
fn iteration_time() {
    use acsleuth::backend::{Backend, CpuBackend};
    use acsleuth::model::train::Trainer;
    let env = |k: &str, d: f64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (steps, density, warmup) = (env("ITERATIONS", 30.0) as usize, env("DENSITY", 0.1), env("WARMUP", 3.0) as usize);
    // As the command line runs: this thread is worker 0 of the pool.
    acsleuth::backend::cpu_pool::adopt_current_thread(env("THREADS", 2.0) as usize).unwrap();
    let be = CpuBackend::new();
    let (g, b) = (3000, 128);
    let cfg = DetectConfig::default();
    let mut tr = Trainer::new(&be, &cfg, g);
    let mut r = Rng(5);
    let host: Vec<f32> = (0..b * g).map(|_| if r.next() < density { (1.0 + 2.0 * r.next()) as f32 } else { 0.0 }).collect();
    let x = be.upload(&host);
    let only = std::env::var("ONLY").ok();
    for phase in [false, true] {
        if only.as_deref().is_some_and(|o| (o == "memory") != phase) {
            continue;
        }
        tr.generator.use_memory = phase;
        for _ in 0..warmup {
            tr.iteration(&be, &x, b);
        }
        let mut times: Vec<f64> = (0..steps)
            .map(|_| {
                let t = std::time::Instant::now();
                tr.iteration(&be, &x, b);
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

/// Two stores of log-normalized values over the same genes are streamed
/// from their memory maps (report says so) and score like the in-memory run.
#[test]
fn two_log_normalized_stores_are_streamed() {
    use acsleuth::data::store::{write_dataset, Layout, Store};
    use acsleuth::pipeline::detect::{detect_stores, detect_with, DetectOptions};
    let dir = tempfile::tempdir().unwrap();
    let (reference, target, _) = simulate(96, 64, 20, 0.2, 11);
    let (rp, tp) = (dir.path().join("ref.acs"), dir.path().join("tgt.acs"));
    write_dataset(&rp, &reference, Layout::Csr).unwrap();
    write_dataset(&tp, &target, Layout::Dense).unwrap();
    let cfg = tiny_config();
    let be = acsleuth::backend::CpuBackend::new();
    let opts = DetectOptions::default();
    let (r, t) = (Store::open(&rp).unwrap(), Store::open(&tp).unwrap());
    let streamed = detect_stores(&be, &r, &t, &cfg, &opts).unwrap().expect("streamed");
    assert!(streamed.report.genes.mode.contains("streamed"));
    let loaded = detect_with(&be, &reference, &target, &cfg, &opts).unwrap();
    assert_eq!(streamed.cells, loaded.cells);
    for (a, b) in streamed.scores.iter().zip(&loaded.scores) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // Raw counts are not streamed (they need preprocessing first).
    let counts = Dataset { x: Matrix::Csr(CsrMatrix::from_dense(&DenseMatrix { rows: 2, cols: 20, data: vec![1.0; 40] })), cell_names: vec!["a".into(), "b".into()], ..reference.clone() };
    let cp = dir.path().join("counts.acs");
    write_dataset(&cp, &counts, Layout::Csr).unwrap();
    assert!(detect_stores(&be, &Store::open(&cp).unwrap(), &t, &cfg, &opts).unwrap().is_none());
}

/// The default detector streams two log-normalized stores too, and gives
/// the in-memory run's scores and calls bit for bit (the gene statistics
/// and projections read the same values in the same order).
#[test]
fn the_novelty_score_streams_stores_and_matches_the_loaded_run() {
    use acsleuth::data::store::{write_dataset, Layout, Store};
    use acsleuth::pipeline::detect::{detect_stores, detect_with, DetectOptions};
    let dir = tempfile::tempdir().unwrap();
    let (reference, target, _) = simulate(120, 80, 30, 0.2, 5);
    let (rp, tp) = (dir.path().join("ref.acs"), dir.path().join("tgt.acs"));
    write_dataset(&rp, &reference, Layout::Csr).unwrap();
    write_dataset(&tp, &target, Layout::Dense).unwrap();
    let cfg = DetectConfig::default();
    let be = acsleuth::backend::CpuBackend::new();
    let opts = DetectOptions::default();
    let (r, t) = (Store::open(&rp).unwrap(), Store::open(&tp).unwrap());
    let streamed = detect_stores(&be, &r, &t, &cfg, &opts).unwrap().expect("streamed");
    assert!(streamed.report.genes.mode.contains("streamed"));
    let loaded = detect_with(&be, &reference, &target, &cfg, &opts).unwrap();
    assert_eq!(streamed.scores, loaded.scores);
    assert_eq!(streamed.calls, loaded.calls);
    assert_eq!(streamed.q_values, loaded.q_values);
}

/// Module I end to end through the CUDA backend's host code and kernels
/// under the CPU emulation gives the CPU backend's scores (reductions are
/// summed in another order, so within a tolerance, not bit for bit).
#[test]
fn emulated_cuda_backend_matches_cpu() {
    use acsleuth::pipeline::detect::{detect_with, DetectOptions};
    let (reference, target, _) = simulate(96, 64, 20, 0.2, 13);
    let cfg = tiny_config();
    let opts = DetectOptions::default();
    let cpu = detect_with(&acsleuth::backend::CpuBackend::new(), &reference, &target, &cfg, &opts).unwrap();
    let emu = detect_with(&acsleuth::backend::cuda::emu::emu_backend(), &reference, &target, &cfg, &opts).unwrap();
    let max_diff = cpu.scores.iter().zip(&emu.scores).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("emulated CUDA vs CPU: max |Δscore| = {max_diff:e}");
    assert!(max_diff < 1e-3, "max |Δscore| = {max_diff}");
    assert_eq!(cpu.calls, emu.calls);
}

/// Tiny widths and a few epochs: for tests of plumbing, not of accuracy.
fn tiny_config() -> DetectConfig {
    DetectConfig {
        score: ScoreMethod::Paper,
        batch_size: 32,
        mem_size: 64,
        hidden_dim: 32,
        latent_dim: 16,
        critic_hidden: 16,
        scorer_steps: 5,
        prepare_epochs: 2,
        train_epochs: 1,
        ..DetectConfig::default()
    }
}

/// Issue #13: the default detector on the pbmc68k split ranks better than
/// the analyst's baselines (README: 0.967 AUROC), its own FDR calls are
/// about as good as calls at the true fraction, and the emulated CUDA
/// backend gives the same scores (Pearson ≥ 0.999).
#[test]
fn default_detect_on_pbmc_split_is_accurate_calibrated_and_device_stable() {
    let Some((reference, target, truth)) = pbmc_split() else { return };
    let cfg = DetectConfig { preprocess: PreprocessMode::Never, n_hvg: 0, ..DetectConfig::default() };
    let res = detect(&reference, &target, &cfg).unwrap();
    assert_eq!(res.report.score, ScoreMethod::Novelty);
    let s: Vec<f64> = res.scores.iter().map(|&v| v as f64).collect();
    let auc = metrics::auroc(&truth, &s).unwrap();
    let f1_true = metrics::f1_top_k(&truth, &s).unwrap().f1;
    let f1_calls = metrics::binary_scores(&truth, &res.calls).unwrap().f1;
    eprintln!("pbmc68k default: AUROC {auc:.3}, F1 at the true fraction {f1_true:.3}, F1 of the calls {f1_calls:.3}");
    assert!(auc > 0.97, "AUROC {auc}");
    assert!(f1_calls > f1_true - 0.05, "calls F1 {f1_calls} vs {f1_true}");
    let q = res.q_values.as_ref().unwrap();
    assert!(res.calls.iter().zip(q).all(|(&c, &q)| c == (q <= cfg.fdr)));
    let est = res.report.estimated_anomaly_fraction.unwrap();
    assert!((est - 126.0 / 413.0).abs() < 0.3 * 126.0 / 413.0, "estimated fraction {est}");

    let be = acsleuth::backend::cuda::emu::emu_backend();
    let e = acsleuth::pipeline::detect::detect_with(&be, &reference, &target, &cfg, &Default::default()).unwrap();
    let (a, b): (Vec<f64>, Vec<f64>) = (s, e.scores.iter().map(|&v| v as f64).collect());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    let r = cov / (va * vb).sqrt();
    eprintln!("CPU vs emulated CUDA scores: Pearson {r:.6}");
    assert!(r >= 0.999, "Pearson {r}");
}

/// `detect` at the defaults: FDR calls with p- and q-values in scores.tsv,
/// the estimate in report.json, no GAN files.
#[test]
fn cli_detect_default_writes_q_values_and_no_model() {
    use acsleuth::cli::{detect as cli_detect, Cli, Command};
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (reference, target, _) = simulate(200, 120, 40, 0.2, 5);
    let (rp, tp) = (dir.join("ref.h5ad"), dir.join("tgt.h5ad"));
    acsleuth::data::h5ad::write_h5ad(&rp, &reference, &[]).unwrap();
    acsleuth::data::h5ad::write_h5ad(&tp, &target, &[]).unwrap();
    let out = dir.join("out");
    let cli = Cli::try_parse_from(["acsleuth", "detect", "--reference", rp.to_str().unwrap(), "--target", tp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-preprocess"]).unwrap();
    match cli.command {
        Command::Detect(a) => cli_detect::run(a).unwrap(),
        _ => unreachable!(),
    }
    let scores = std::fs::read_to_string(out.join("scores.tsv")).unwrap();
    assert!(scores.starts_with("cell\tscore\tanomaly\tpvalue\tqvalue\nt0\t"), "{}", &scores[..80]);
    assert_eq!(scores.lines().count(), 121);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["score"], "novelty");
    assert!(report["estimated_anomaly_fraction"].as_f64().is_some());
    assert!(report["call_rule"].as_str().unwrap().contains("Benjamini"));
    assert!(!out.join("model.safetensors").exists() && !out.join("deviations.tsv").exists());
    // Bad FDR: refused before any work.
    assert!(Cli::try_parse_from(["acsleuth", "detect", "--reference", "a", "--target", "b", "--out", "c", "--fdr", "x"]).is_err());
}
