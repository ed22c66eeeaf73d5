//! `acsleuth run` and `acsleuth correct` end to end through the binary on a
//! small simulated two-batch dataset: outputs, resume from checkpoints,
//! and one-line errors for bad flags.

use std::path::Path;
use std::process::{Command, Output};

use acsleuth::data::h5ad::{read_h5ad, H5adOptions};
use acsleuth::data::simulate::{simulate_dataset, DeParams, SetKind, SimConfig, Simulator};
use acsleuth::data::store::{write_dataset, Layout};
use acsleuth::data::ObsColumn;

fn acsleuth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(args).output().unwrap()
}

/// Simulated reference (batch 0) and two-batch target with two anomaly
/// types, as stores under `dir`.
fn data(dir: &Path) -> (String, String) {
    let sim = Simulator::new(SimConfig {
        n_ref: 400,
        n_target: 400,
        n_genes: 600,
        n_anomaly_types: 2,
        anomaly_ratio: 0.15,
        n_batches: 2,
        ref_batches: vec![0],
        target_batches: Some(vec![0, 1]),
        anomaly_de: DeParams { prob: 0.2, loc: 2.5, ..DeParams::default() },
        seed: 3,
        ..SimConfig::default()
    })
    .unwrap();
    let r = dir.join("ref.acs");
    let t = dir.join("tgt.acs");
    write_dataset(&r, &simulate_dataset(&sim, SetKind::Reference).unwrap(), Layout::Csr).unwrap();
    write_dataset(&t, &simulate_dataset(&sim, SetKind::Target).unwrap(), Layout::Csr).unwrap();
    (r.to_string_lossy().into_owned(), t.to_string_lossy().into_owned())
}

const QUICK: [&str; 12] =
    ["--epochs-prepare", "3", "--epochs-train", "2", "--epochs-style", "2", "--n-hvg", "300", "--seed", "1", "--device", "cpu"];

fn run_args<'a>(r: &'a str, t: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut v = vec!["run", "--reference", r, "--target", t, "--out", out, "--batch-key", "batch", "--truth-key", "cell_type"];
    v.extend(QUICK);
    // The schedule and sets are small: the top 15 % are called, so that
    // every module has work (the FDR calls are tested in tests/detect.rs).
    v.extend(["--n-subtypes", "2", "--correction", "style", "--anomaly-ratio", "0.15"]);
    v
}

#[test]
fn run_writes_every_output_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path());
    let out = dir.path().join("out");
    let o = acsleuth(&run_args(&r, &t, out.to_str().unwrap()));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("AUROC") && stdout.contains("NMI"), "{stdout}");
    for f in ["cells.tsv", "target.h5ad", "report.json", "scores.png", "embedding_calls.png", "embedding_subtypes.png", "roc_pr.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for f in ["module1.json", "module1.safetensors", "module2.json", "module3.json", "module3.safetensors", "module4.json"] {
        assert!(out.join("checkpoints").join(f).is_file(), "checkpoint {f} missing");
    }

    // cells.tsv: one row per target cell; subtypes only for anomalies.
    let cells = std::fs::read_to_string(out.join("cells.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = cells.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(cells.lines().next().unwrap(), "cell\tscore\tanomaly\tsubtype\tbatch\tqvalue");
    assert_eq!(rows.len(), 400);
    for row in &rows {
        assert_eq!(row.len(), 6);
        assert!((0.0..=1.0).contains(&row[5].parse::<f64>().unwrap()), "{row:?}");
        assert_eq!(row[2] == "1", !row[3].is_empty(), "{row:?}");
        assert!(row[4] == "batch1" || row[4] == "batch2" || row[4].starts_with("batch"), "{row:?}");
    }

    // target.h5ad reads back with the new columns and embeddings.
    let ds = read_h5ad(&out.join("target.h5ad"), &H5adOptions::default()).unwrap();
    assert_eq!(ds.n_cells(), 400);
    assert!(ds.obs_column("cell_type").is_some());
    match ds.obs_column("acsleuth_anomaly") {
        Some(ObsColumn::Bool(v)) => assert_eq!(v.iter().filter(|&&a| a).count(), rows.iter().filter(|r| r[2] == "1").count()),
        other => panic!("acsleuth_anomaly: {other:?}"),
    }
    assert!(matches!(ds.obs_column("acsleuth_subtype"), Some(ObsColumn::Categorical { .. })));
    assert!(matches!(ds.obs_column("acsleuth_qvalue"), Some(ObsColumn::Numeric(_))));

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["resumed"].as_array().unwrap().len(), 0);
    // The schedule is far too short to be accurate: only the plumbing is checked here.
    let auroc = report["evaluation"]["auroc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auroc), "{}", report["evaluation"]);

    // The same command again resumes every module from its checkpoint and
    // gives the same results.
    let o = acsleuth(&run_args(&r, &t, out.to_str().unwrap()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = std::fs::read_to_string(out.join("cells.tsv")).unwrap();
    assert_eq!(cells, again);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["resumed"].as_array().unwrap().len(), 4, "{}", report["resumed"]);

    // A changed subtyping setting reruns only Module IV.
    let mut args = run_args(&r, &t, out.to_str().unwrap());
    let k = args.iter().position(|a| *a == "--n-subtypes").unwrap();
    args[k + 1] = "3";
    let o = acsleuth(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let resumed: Vec<&str> = report["resumed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(resumed, ["module I", "module II", "module III"]);
    assert_eq!(report["subtype"]["k"], 3);
}

#[test]
fn correct_writes_corrected_values() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path());
    let out = dir.path().join("corr");
    let mut args = vec!["correct", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--batch-key", "batch"];
    args.extend(QUICK);
    args.extend(["--kin-similarity", "inner-product"]);
    let o = acsleuth(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ds = read_h5ad(&out.join("corrected.h5ad"), &H5adOptions::default()).unwrap();
    assert_eq!((ds.n_cells(), ds.n_genes()), (400, 300));
    let x = ds.x.to_dense();
    assert!(x.data.iter().all(|v| v.is_finite() && *v >= 0.0));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["kin"]["similarity"], "inner-product", "{}", report["kin"]);
}

#[test]
fn bad_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path());
    let out = dir.path().join("bad");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--batch-key", "donor"], "--batch-key donor"),
        (vec!["--truth-key", "nope"], "--truth-key nope"),
        (vec!["--n-subtypes", "0"], "--n-subtypes"),
        (vec!["--n-subtypes", "many"], "--n-subtypes"),
        (vec!["--anomaly-labels", "x"], "--anomaly-labels"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run", "--reference", &r, "--target", &t, "--out", o, "--device", "cpu"];
        args.extend(extra.iter().copied());
        let res = acsleuth(&args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{args:?} succeeded");
        assert!(err.starts_with("error:") && err.contains(want) && err.lines().count() == 1, "{args:?}: {err}");
        assert!(!out.join("cells.tsv").exists());
    }
}

/// Issue 16: bad settings of Modules III and IV failed only after Modules I
/// and II had trained and written checkpoints. Each now fails at once (no
/// training: the default 50 + 20 epochs would take minutes here) and
/// leaves no file or folder behind.
#[test]
fn bad_module_settings_fail_before_any_work_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path());
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let cfg = dir.path().join("settings.toml");
    let cases: [(&str, &[&str], &str); 6] = [
        ("[subtype]\ndropout = 1.5\n", &[], "subtype.dropout must be in [0, 1)"),
        ("[subtype]\nknn = 0\n", &[], "subtype.knn must be at least 1"),
        ("[subtype]\nfeatures = \"module-i\"\nheads = 3\n", &[], "subtype.heads (3) must divide"),
        ("[subtype]\nnu = 0\n", &[], "subtype.nu must be positive"),
        ("", &["--n-subtypes", "100000"], "100000 subtypes asked for but the target has 400 cells"),
        ("[style]\nn_critic = 0\n", &["--correction", "style"], "style.n_critic must be at least 1"),
    ];
    let listing = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    for (toml, flags, want) in cases {
        std::fs::write(&cfg, toml).unwrap();
        let before = listing(dir.path());
        let mut args = vec!["run", "--reference", &r, "--target", &t, "--out", o, "--device", "cpu", "--config", cfg.to_str().unwrap()];
        args.extend(flags);
        let t0 = std::time::Instant::now();
        let res = acsleuth(&args);
        let secs = t0.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{toml}{flags:?} succeeded");
        assert!(err.contains(want) && err.lines().count() == 1, "{toml}{flags:?}: {err}");
        assert!(secs < 10.0, "{toml}{flags:?} took {secs:.1} s: it trained before failing");
        assert_eq!(listing(dir.path()), before, "{toml}{flags:?} left files behind");
    }
}

/// Issue 16: more subtypes asked for than anomalies were called failed at
/// Module IV, after the detection had run; the run now completes with its
/// calls and says why there are no subtypes.
#[test]
fn more_subtypes_than_anomalies_keep_the_run_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path());
    let out = dir.path().join("out");
    let mut args = vec!["run", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap()];
    args.extend(QUICK);
    args.extend(["--anomaly-ratio", "0.15", "--n-subtypes", "100", "--no-batch-correction"]);
    let o = acsleuth(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["n_called"], 60);
    let note = report["subtype"]["note"].as_str().unwrap();
    assert_eq!(note, "100 subtypes asked for but 60 anomalies called: not subtyped");
}

/// The kin shift is the mean of `x_target − x_kin` over each batch's pairs.
#[test]
fn kin_shift_is_the_mean_pair_difference_per_batch() {
    use acsleuth::data::DenseMatrix;
    use acsleuth::pipeline::run::kin_shift;
    let reference = DenseMatrix { rows: 2, cols: 2, data: vec![1.0, 1.0, 3.0, 0.0] };
    let target = DenseMatrix { rows: 3, cols: 2, data: vec![2.0, 1.0, 4.0, 3.0, 9.0, 9.0] };
    // Rows 0 and 1 (batch 0) pair with reference rows 0 and 1; row 2 (batch
    // 1) has no pair. Gene 1 of pair (1, 1) has a zero: not counted.
    let s = kin_shift(&target, &reference, &[0, 1], &[0, 1], &[0, 0, 1], 2).unwrap();
    assert_eq!(s.data, vec![1.0, 0.0, 0.0, 0.0]);
    assert!(kin_shift(&target, &reference, &[0], &[0, 1], &[0, 0, 1], 2).is_err());
    assert!(kin_shift(&target, &reference, &[0], &[0], &[5, 0, 1], 2).is_err());
}

#[test]
fn kin_shift_correction_runs_without_module_iii() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path());
    let out = dir.path().join("shift");
    let mut args = run_args(&r, &t, out.to_str().unwrap());
    let k = args.iter().position(|a| *a == "kin-shift" || *a == "style").unwrap();
    args[k] = "kin-shift";
    let o = acsleuth(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("checkpoints/module2.json").is_file());
    assert!(!out.join("checkpoints/module3.json").exists());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["settings"]["correction"], "kin-shift");
    // Module II: cosine by default, and how many reference cells are kin.
    assert_eq!(report["settings"]["kin"]["similarity"], "cosine");
    let kin = &report["kin"];
    assert_eq!(kin["similarity"], "cosine");
    let (pairs, distinct) = (kin["n_pairs"].as_u64().unwrap(), kin["n_distinct_kin"].as_u64().unwrap());
    assert!(distinct >= 1 && distinct <= pairs, "{kin}");
    let mean = kin["mean_similarity"].as_f64().unwrap();
    assert!((-1.0..=1.0 + 1e-6).contains(&mean), "{kin}");
}
