//! Why the scorer is trained longer in the tests than the authors train it:
//! AUROC of the reconstruction deviations ‖δ‖ alone beside AUROC of the
//! trained scorer p, over scorer schedules (steps × learning rate).
//!
//! ```text
//! cargo run --release --example scorer_diagnose -- tiny   # 300 + 300 simulated cells, 50 genes
//! cargo run --release --example scorer_diagnose -- pbmc   # the pbmc68k B/NK split of ../shared/data
//! ```
//! Prints one line per setting; no assertion (tests/detect.rs holds the
//! checked numbers).

use acsleuth::backend::CpuBackend;
use acsleuth::metrics;
use acsleuth::model::{scorer, train};
use acsleuth::pipeline::detect::detect;
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{pbmc_split, simulate, small_config};

fn diagnose_tiny() {
    let (reference, target, truth) = simulate(300, 300, 50, 0.2, 42);
    for (pe, te) in [(8, 4), (30, 10)] {
        let cfg = DetectConfig { prepare_epochs: pe, train_epochs: te, ..small_config() };
        let be = CpuBackend::new();
        let rx = reference.x.to_csr();
        let tx = target.x.to_csr();
        let (mut tr, log) = train::train(&be, &rx, &cfg.train_config(rx.cols)).unwrap();
        let last = log.train.last().or(log.prepare.last()).unwrap();
        let mut dev = scorer::compute_deviations(&be, &mut tr.generator, &tx, 1024, 1 << 30, &std::env::temp_dir()).unwrap();
        let norms = dev.norms();
        let auc_norm = metrics::auroc(&truth, &norms).unwrap();
        for steps in [20, 100, 400] {
            for lr in [1e-4f32, 1e-3] {
                let mut sc = cfg.scorer_config(std::env::temp_dir());
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

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("tiny") | None => diagnose_tiny(),
        Some("pbmc") => diagnose_pbmc(),
        Some(other) => eprintln!("unknown case {other}: tiny or pbmc"),
    }
}
