//! A fitted detector (`pipeline::detector`): fit + score is detect, the
//! checkpoint round-trips, and what it refuses it refuses with a message;
//! the command line's `--save-model` / `--model` give detect's scores.

mod common;

use acsleuth::backend::CpuBackend;
use acsleuth::data::{CsrMatrix, Dataset, Matrix};
use acsleuth::pipeline::detect::{detect_with, DetectOptions, DetectResult};
use acsleuth::pipeline::detector::Detector;
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};
use acsleuth::Error;
use common::simulate;

/// The same cells as integer counts, so that the scanpy chain runs.
fn as_counts(ds: &Dataset) -> Dataset {
    let mut c: CsrMatrix = ds.x.to_csr();
    c.data.to_mut().iter_mut().for_each(|v| *v = (*v * 3.0).round());
    Dataset { x: Matrix::Csr(c), ..ds.clone() }
}

fn cfg() -> DetectConfig {
    DetectConfig { n_hvg: 30, ..DetectConfig::default() }
}

fn assert_same(a: &DetectResult, b: &DetectResult) {
    assert_eq!(a.scores, b.scores);
    assert_eq!(a.calls, b.calls);
    assert_eq!(a.q_values, b.q_values);
    assert_eq!(a.embedding, b.embedding);
}

#[test]
fn fit_then_score_is_detect_and_survives_save_and_load() {
    let (r, t, _) = simulate(200, 120, 40, 0.2, 11);
    let be = CpuBackend::new();
    let o = DetectOptions::default();
    for (r, t) in [(r.clone(), t.clone()), (as_counts(&r), as_counts(&t))] {
        let expected = detect_with(&be, &r, &t, &cfg(), &o).unwrap();
        let det = Detector::fit(&r, &cfg()).unwrap();
        assert_same(&det.score(&be, &t, &o).unwrap(), &expected);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        det.save(&path).unwrap();
        // Issue 15 item 10: the model file gets the mode of any other
        // output (safetensors' own writer made it 0600).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.path().join("plain");
            std::fs::File::create(&plain).unwrap();
            let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&plain));
        }
        let loaded = Detector::load(&path).unwrap();
        assert_eq!(loaded.reference.genes, det.reference.genes);
        assert_eq!(loaded.settings, det.settings);
        assert_same(&loaded.score(&be, &t, &o).unwrap(), &expected);
    }
}

#[test]
fn the_checkpoint_fixes_genes_and_preparation() {
    let (r, t, _) = simulate(200, 120, 40, 0.2, 12);
    let det = Detector::fit(&as_counts(&r), &cfg()).unwrap();
    let be = CpuBackend::new();
    let other = DetectConfig { n_hvg: 20, ..cfg() };
    let e = det.score_with(&be, &as_counts(&t), &other, &DetectOptions::default()).unwrap_err().to_string();
    assert!(e.contains("fixed by the fitted reference"), "{e}");
    // Another FDR is the target's business.
    let fdr = DetectConfig { fdr: 0.3, ..cfg() };
    det.score_with(&be, &as_counts(&t), &fdr, &DetectOptions::default()).unwrap();
    let paper = DetectConfig { score: ScoreMethod::Paper, ..cfg() };
    assert!(matches!(Detector::fit(&r, &paper), Err(Error::Config(_))));
    let never = DetectConfig { preprocess: PreprocessMode::Never, ..cfg() };
    assert!(Detector::fit(&r, &never).is_ok());
}

#[test]
fn damaged_or_foreign_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");
    std::fs::write(&p, b"garbage").unwrap();
    assert!(Detector::load(&p).unwrap_err().to_string().contains("not a safetensors file"));
    let (r, _, _) = simulate(60, 30, 20, 0.2, 13);
    let det = Detector::fit(&r, &cfg()).unwrap();
    det.save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 8]).unwrap();
    assert!(matches!(Detector::load(&p), Err(Error::Corrupt { .. })));
    let missing = dir.path().join("none.safetensors");
    assert!(matches!(Detector::load(&missing), Err(Error::Io { .. })));
}

#[test]
fn cli_save_model_then_model_gives_the_same_scores() {
    use acsleuth::cli::{Cli, Command};
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (reference, target, _) = simulate(200, 120, 40, 0.2, 14);
    let (rp, tp) = (dir.join("ref.h5ad"), dir.join("tgt.h5ad"));
    acsleuth::data::h5ad::write_h5ad(&rp, &as_counts(&reference), &[]).unwrap();
    acsleuth::data::h5ad::write_h5ad(&tp, &as_counts(&target), &[]).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let run = |args: &[&str]| -> acsleuth::Result<()> {
        let cli = Cli::try_parse_from(["acsleuth", "detect"].iter().copied().chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Detect(a) => acsleuth::cli::detect::run(a),
            _ => unreachable!(),
        }
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    run(&["--reference", &s(&rp), "--target", &s(&tp), "--out", &s(&a), "--n-hvg", "30", "--save-model"]).unwrap();
    let model = a.join("model.safetensors");
    run(&["--model", &s(&model), "--target", &s(&tp), "--out", &s(&b)]).unwrap();
    assert_eq!(std::fs::read_to_string(a.join("scores.tsv")).unwrap(), std::fs::read_to_string(b.join("scores.tsv")).unwrap());
    let e = run(&["--model", &s(&model), "--reference", &s(&rp), "--target", &s(&tp), "--out", &s(&b)]).unwrap_err();
    assert!(e.to_string().contains("--reference or --model, not both"), "{e}");
    let e = run(&["--model", &s(&model), "--target", &s(&tp), "--out", &s(&b), "--n-hvg", "10"]).unwrap_err();
    assert!(e.to_string().contains("fixed by the fitted reference"), "{e}");
    let e = run(&["--target", &s(&tp), "--out", &s(&dir.join("c"))]).unwrap_err();
    assert!(e.to_string().contains("--reference PATH is required"), "{e}");
    assert!(!dir.join("c").exists(), "nothing written before the check");
}
