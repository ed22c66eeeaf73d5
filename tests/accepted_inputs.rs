//! Issue #15 item 9 through the binary: inputs that were accepted without
//! a word now get a one-line typed error (before any output is written) or
//! a warning on stderr that is also kept in report.json.

use std::path::Path;
use std::process::{Command, Output};

use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};

fn acsleuth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Raw counts: `rows × genes`, sparse-ish, every row non-empty.
fn counts(rows: usize, genes: usize, seed: u64, prefix: &str) -> Dataset {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut data = Vec::with_capacity(rows * genes);
    for _ in 0..rows * genes {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = (s >> 11) as f64 / (1u64 << 53) as f64;
        data.push((u * u * u * 12.0).floor() as f32);
    }
    for r in 0..rows {
        data[r * genes + r % genes] += 1.0;
    }
    let d = DenseMatrix { rows, cols: genes, data };
    Dataset {
        x: Matrix::Csr(CsrMatrix::from_dense(&d)),
        cell_names: (0..rows).map(|i| format!("{prefix}{i}")).collect(),
        gene_names: (0..genes).map(|j| format!("G{j}")).collect(),
        obs: vec![],
    }
}

/// The same cells normalized to 10⁴ per cell, then `f(x)` of each value.
fn transformed(ds: &Dataset, f: impl Fn(f32) -> f32) -> Dataset {
    let Matrix::Csr(c) = &ds.x else { unreachable!() };
    let mut c = c.clone();
    for r in 0..c.rows {
        let (a, b) = (c.indptr[r] as usize, c.indptr[r + 1] as usize);
        let total: f32 = c.data[a..b].iter().sum();
        c.data.to_mut()[a..b].iter_mut().for_each(|v| *v = f(*v * 1e4 / total));
    }
    Dataset { x: Matrix::Csr(c), ..ds.clone() }
}

fn write(dir: &Path, name: &str, ds: &Dataset) -> String {
    let p = dir.join(name);
    acsleuth::data::h5ad::write_h5ad(&p, ds, &[]).unwrap();
    p.to_str().unwrap().to_string()
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn evaluate_refuses_duplicated_cells_and_reports_a_scored_subset() {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.tsv");
    std::fs::write(&truth, "cell\tanomaly\na\t1\nb\t0\nc\t1\nd\t0\n").unwrap();
    let (t, sc) = (truth.to_str().unwrap(), dir.path().join("scores.tsv"));
    let s = sc.to_str().unwrap();

    std::fs::write(&sc, "cell\tscore\tanomaly\na\t0.9\t1\nb\t0.1\t0\na\t0.8\t1\nd\t0.2\t0\n").unwrap();
    let o = acsleuth(&["evaluate", "--scores", s, "--truth", t]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "duplicated scored cell accepted: {}", text(&o.stdout));
    assert!(err.contains("cell 'a' appears twice (lines 2 and 4)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    std::fs::write(&sc, "cell\tscore\tanomaly\na\t0.9\t1\nb\t0.1\t0\n").unwrap();
    let o = acsleuth(&["evaluate", "--scores", s, "--truth", t, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("scores 2 of the 4 cells"), "stderr: {}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((j["n_cells"].as_u64(), j["n_truth_cells_not_scored"].as_u64()), (Some(2), Some(2)));
}

#[test]
fn zero_epochs_and_negative_lambda_gp_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(dir.path(), "r.h5ad", &counts(60, 40, 1, "r"));
    let out = dir.path().join("out");
    let o_ = out.to_str().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "lambda_gp = -10\n").unwrap();
    let run_cfg = dir.path().join("run.toml");
    std::fs::write(&run_cfg, "[detect]\nlambda_gp = -10\n").unwrap();
    for (args, want) in [
        (vec!["detect", "--epochs-prepare", "0", "--epochs-train", "0"], "prepare_epochs and train_epochs must be at least 1"),
        (vec!["run", "--epochs-train", "0"], "prepare_epochs and train_epochs must be at least 1"),
        (vec!["detect", "--config", cfg.to_str().unwrap()], "lambda_gp must be a finite number >= 0, got -10"),
        (vec!["run", "--config", run_cfg.to_str().unwrap()], "lambda_gp must be a finite number >= 0, got -10"),
        (vec!["detect", "--no-preprocess", "--n-hvg", "50"], "--n-hvg 50 selects genes, which --no-preprocess turns off"),
    ] {
        let mut a = args.clone();
        a.extend(["--reference", &r, "--target", &r, "--out", o_, "--device", "cpu"]);
        let o = acsleuth(&a);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(err.starts_with(&format!("error: invalid configuration: {want}")), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

#[test]
fn n_hvg_selects_genes_on_log_normalized_input() {
    let dir = tempfile::tempdir().unwrap();
    let raw_r = counts(200, 300, 2, "r");
    let raw_t = counts(150, 300, 3, "t");
    let log = |x: f32| x.ln_1p();
    let r = write(dir.path(), "r.h5ad", &transformed(&raw_r, log));
    let t = write(dir.path(), "t.h5ad", &transformed(&raw_t, log));
    let out = dir.path().join("out");
    let o = acsleuth(&["detect", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--device", "cpu", "--n-hvg", "50"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j = report(&out);
    assert_eq!(j["genes"]["genes_used"].as_u64(), Some(50), "{}", j["genes"]);
    assert_eq!(j["settings"]["n_hvg"].as_u64(), Some(50));

    // n_hvg from a config file, not asked for on the command line: the
    // values are used as they are, and the run says so.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "n_hvg = 100\n").unwrap();
    let out = dir.path().join("out2");
    let o = acsleuth(&["detect", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--device", "cpu", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("warning: the reference is log-normalized, so all its 300 genes") && err.contains("--n-hvg 100"), "{err}");
    let j = report(&out);
    assert_eq!(j["genes"]["genes_used"].as_u64(), Some(300));
    assert!(j["genes"]["warnings"][0].as_str().unwrap().contains("log-normalized"), "{}", j["genes"]);
}

#[test]
fn no_preprocess_on_raw_counts_warns_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(dir.path(), "r.h5ad", &counts(200, 100, 4, "r"));
    let t = write(dir.path(), "t.h5ad", &counts(150, 100, 5, "t"));
    let out = dir.path().join("out");
    let o = acsleuth(&["detect", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--device", "cpu", "--no-preprocess"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("warning: the reference holds raw counts but preprocessing is off") && err.contains("drop --no-preprocess"), "{err}");
    assert!(!text(&o.stdout).contains("warning"));
    let j = report(&out);
    assert!(j["genes"]["warnings"][0].as_str().unwrap().contains("raw counts"), "{}", j["genes"]);
}

#[test]
fn empty_target_cells_are_counted_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(dir.path(), "r.h5ad", &counts(200, 100, 6, "r"));
    let mut tgt = counts(150, 100, 7, "t");
    let Matrix::Csr(c) = &tgt.x else { unreachable!() };
    let mut d = c.to_dense();
    for row in 0..7 {
        d.data[row * 100..(row + 1) * 100].iter_mut().for_each(|v| *v = 0.0);
    }
    tgt.x = Matrix::Csr(CsrMatrix::from_dense(&d));
    let t = write(dir.path(), "t.h5ad", &tgt);
    let out = dir.path().join("out");
    let o = acsleuth(&["detect", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("warning: 7 of 150 target cells have no expression") && err.contains("filter_cells"), "{err}");
    let j = report(&out);
    assert!(j["genes"]["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().starts_with("7 of 150")), "{}", j["genes"]);
}

#[test]
fn tpm_like_input_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(dir.path(), "r.h5ad", &transformed(&counts(60, 40, 8, "r"), |x| x * 100.0 + 0.5));
    let out = dir.path().join("out");
    let o = acsleuth(&["detect", "--reference", &r, "--target", &r, "--out", out.to_str().unwrap(), "--device", "cpu"]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("CPM/TPM-like") && err.contains("sc.pp.log1p(adata)") && err.contains("raw counts"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists());
}
