//! Issue #15 items 6 and 8 through the binary: one rule for cell names
//! with one-prefix error messages; results on stdout, diagnostics on
//! stderr, and summaries that say what each number is.

use std::path::Path;
use std::process::{Command, Output};

use acsleuth::data::simulate::{simulate_dataset, SetKind, SimConfig, Simulator};
use acsleuth::data::store::{write_dataset, Layout, StoreWriter};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/h5ad");

fn acsleuth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cell_names_with_tab_or_newline_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (file, shown) in [("tab_cell_name.h5ad", "\"c\\t1\""), ("newline_cell_name.h5ad", "\"c\\n1\"")] {
        let f = format!("{FIX}/{file}");
        let acs = dir.path().join("x.acs");
        for args in [
            vec!["convert", f.as_str(), acs.to_str().unwrap()],
            vec!["detect", "--reference", &f, "--target", &f, "--out", out, "--device", "cpu"],
            vec!["run", "--reference", &f, "--target", &f, "--out", out, "--device", "cpu"],
            vec!["correct", "--reference", &f, "--target", &f, "--out", out, "--device", "cpu"],
        ] {
            let o = acsleuth(&args);
            let err = text(&o.stderr);
            assert!(!o.status.success(), "{args:?} accepted {file}");
            assert!(err.contains(&format!("cell name {shown} contains a tab or line break")), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(!Path::new(out).exists() && !acs.exists());
        }
    }
}

#[test]
fn error_messages_do_not_repeat_their_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::create(&dir.path().join("s.acs"), &["g".to_string()], Layout::Csr).unwrap();
    let e = w.push_cell("a\tb", &[0], &[1.0]).unwrap_err().to_string();
    assert_eq!(e.matches("invalid input").count(), 1, "{e}");
    assert!(e.contains("row 0: cell name"), "{e}");
}

/// Results (summaries, file lists) go to stdout, notes to stderr; `run`'s
/// F1 figures say which is which; `simulate` says what it wrote.
#[test]
fn summaries_go_to_stdout_and_name_each_figure() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let o = acsleuth(&["simulate", "--out", sim.to_str().unwrap(), "--n-ref", "200", "--n-target", "200", "--n-genes", "300", "--seed", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let so = text(&o.stdout);
    assert!(so.contains("simulated 200 reference and 200 target cells") && so.contains("truth.tsv"), "stdout: {so}");
    assert!(text(&o.stderr).is_empty(), "stderr: {}", text(&o.stderr));

    let s = Simulator::new(SimConfig { n_ref: 200, n_target: 200, n_genes: 300, n_anomaly_types: 2, anomaly_ratio: 0.15, seed: 4, ..SimConfig::default() }).unwrap();
    let (r, t) = (dir.path().join("r.acs"), dir.path().join("t.acs"));
    write_dataset(&r, &simulate_dataset(&s, SetKind::Reference).unwrap(), Layout::Csr).unwrap();
    write_dataset(&t, &simulate_dataset(&s, SetKind::Target).unwrap(), Layout::Csr).unwrap();
    let out = dir.path().join("run");
    let o = acsleuth(&[
        "run", "--reference", r.to_str().unwrap(), "--target", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu", "--n-hvg", "200",
        "--epochs-prepare", "2", "--epochs-train", "1", "--truth-key", "cell_type", "--n-subtypes", "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let so = text(&o.stdout);
    assert!(so.contains("target cells called anomalous") && so.contains("report.json"), "stdout: {so}");
    assert!(so.contains("F1 of the calls") && so.contains("F1 at the true anomaly fraction (0.150: the top 30 cells)"), "stdout: {so}");
    assert!(!text(&o.stderr).contains("called anomalous"), "stderr: {}", text(&o.stderr));

    let out = dir.path().join("det");
    let o = acsleuth(&["detect", "--reference", r.to_str().unwrap(), "--target", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu", "--n-hvg", "200"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("target cells called anomalous"), "stdout: {}", text(&o.stdout));
    assert!(!text(&o.stderr).contains("called anomalous"), "stderr: {}", text(&o.stderr));
}

/// Regression: with its stdout closed (`acsleuth simulate … | head -1`)
/// the command panicked on its summary ("failed printing to stdout: Broken
/// pipe"); it now ends quietly, as `cat` does, its outputs complete.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_acsleuth"))
        .args(["simulate", "--out", out.to_str().unwrap(), "--n-ref", "300", "--n-target", "300", "--n-genes", "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the summary is printed (simulating
    // comes first).
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = text(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", o.status);
    assert!(out.join("truth.tsv").exists() && out.join("target.acs").exists());
}

/// Issue #15 item 10: where stderr is not a terminal (a log file, a batch
/// job) the hidden bars give way to a periodic one-line status — stage,
/// % and ETA — so a long run is not silent for minutes.
#[test]
fn long_work_prints_status_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Simulator::new(SimConfig { n_ref: 300, n_target: 200, n_genes: 300, seed: 5, ..SimConfig::default() }).unwrap();
    let (r, t) = (dir.path().join("r.acs"), dir.path().join("t.acs"));
    write_dataset(&r, &simulate_dataset(&s, SetKind::Reference).unwrap(), Layout::Csr).unwrap();
    write_dataset(&t, &simulate_dataset(&s, SetKind::Target).unwrap(), Layout::Csr).unwrap();
    let out = dir.path().join("run");
    let args = [
        "run", "--reference", r.to_str().unwrap(), "--target", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu", "--n-hvg", "200",
        "--epochs-prepare", "3", "--epochs-train", "3", "--n-subtypes", "2",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(args).env("ACSLEUTH_STATUS_SECONDS", "0.02").output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let status: Vec<&str> = err.lines().filter(|l| l.starts_with('[') && l.contains("s] ")).collect();
    assert!(status.iter().any(|l| l.contains("train: ") && l.contains(" % (")), "no training status in: {err}");
    // Quiet means quiet.
    let out = dir.path().join("quiet");
    let mut quiet = args.map(String::from);
    quiet[6] = out.to_str().unwrap().into();
    let o = Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(&quiet).env("ACSLEUTH_STATUS_SECONDS", "0.02").env("ACSLEUTH_QUIET", "1").output().unwrap();
    assert!(o.status.success());
    assert!(!text(&o.stderr).lines().any(|l| l.contains("s] ")), "{}", text(&o.stderr));
}
