//! Module I end to end: a tiny simulated reference/target pair must be
//! separated (AUROC > 0.85), the CLI writes its three outputs, and bad
//! input is refused before any work.

use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};
use acsleuth::metrics;
use acsleuth::pipeline::detect::detect;
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};

mod common;
use common::{pbmc_split, simulate, small_config};


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

/// The reference written as a CSR store and the target as a dense one
/// under `dir`, opened (both layouts are streamed).
fn as_stores(dir: &std::path::Path, reference: &Dataset, target: &Dataset) -> (acsleuth::data::store::Store, acsleuth::data::store::Store) {
    use acsleuth::data::store::{write_dataset, Layout, Store};
    let (rp, tp) = (dir.join("ref.acs"), dir.join("tgt.acs"));
    write_dataset(&rp, reference, Layout::Csr).unwrap();
    write_dataset(&tp, target, Layout::Dense).unwrap();
    (Store::open(&rp).unwrap(), Store::open(&tp).unwrap())
}

/// Two stores of log-normalized values over the same genes are streamed
/// from their memory maps (report says so) and score like the in-memory run.
#[test]
fn two_log_normalized_stores_are_streamed() {
    use acsleuth::data::store::{write_dataset, Layout, Store};
    use acsleuth::pipeline::detect::{detect_inputs, detect_with, DetectOptions, Inputs};
    let dir = tempfile::tempdir().unwrap();
    let (reference, target, _) = simulate(96, 64, 20, 0.2, 11);
    let (r, t) = as_stores(dir.path(), &reference, &target);
    let cfg = tiny_config();
    let be = acsleuth::backend::CpuBackend::new();
    let opts = DetectOptions::default();
    let inputs = Inputs::stores(&r, &t, None, &cfg).unwrap().expect("streamed");
    let streamed = detect_inputs(&be, &inputs, &cfg, &opts).unwrap();
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
    assert!(Inputs::stores(&Store::open(&cp).unwrap(), &t, None, &cfg).unwrap().is_none());
}

/// The default detector streams two log-normalized stores too, and gives
/// the in-memory run's scores and calls bit for bit (the gene statistics
/// and projections read the same values in the same order).
#[test]
fn the_novelty_score_streams_stores_and_matches_the_loaded_run() {
    use acsleuth::pipeline::detect::{detect_inputs, detect_with, DetectOptions, Inputs};
    let dir = tempfile::tempdir().unwrap();
    let (reference, target, _) = simulate(120, 80, 30, 0.2, 5);
    let (r, t) = as_stores(dir.path(), &reference, &target);
    let cfg = DetectConfig::default();
    let be = acsleuth::backend::CpuBackend::new();
    let opts = DetectOptions::default();
    let inputs = Inputs::stores(&r, &t, None, &cfg).unwrap().expect("streamed");
    let streamed = detect_inputs(&be, &inputs, &cfg, &opts).unwrap();
    assert!(streamed.report.genes.mode.contains("streamed"));
    let loaded = detect_with(&be, &reference, &target, &cfg, &opts).unwrap();
    assert_eq!(streamed.scores, loaded.scores);
    assert_eq!(streamed.calls, loaded.calls);
    assert_eq!(streamed.q_values, loaded.q_values);
    // The owned form (the CLI's and the Python package's, which frees the
    // inputs once prepared) gives the same result.
    let owned = acsleuth::pipeline::detect::detect_owned(&be, reference, target, &cfg, &opts).unwrap();
    assert_eq!((owned.scores, owned.calls, owned.q_values), (loaded.scores, loaded.calls, loaded.q_values));
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
