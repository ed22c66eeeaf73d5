//! `acsleuth demo`, the README's main job, end to end through the binary
//! (a smaller dataset than the default, for speed).

use std::process::Command;

#[test]
fn demo_runs_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = Command::new(env!("CARGO_BIN_EXE_acsleuth"))
        .args(["demo", "--cells", "400", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{}", stdout, String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("AUROC") && stdout.contains("NMI"), "{stdout}");
    for f in ["cells.tsv", "target.h5ad", "report.json", "scores.png", "embedding_subtypes.png", "roc_pr.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(out.join("reference.acs").join("matrix.bin").is_file());
    assert!(out.join("target.acs").join("matrix.bin").is_file());
    // One row per target cell (400) plus the header.
    let n = std::fs::read_to_string(out.join("cells.tsv")).unwrap().lines().count();
    assert_eq!(n, 401);
}

#[test]
fn demo_refuses_too_few_cells() {
    let o = Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(["demo", "--cells", "10", "--out", "/nonexistent/x"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error:") && err.contains("--cells") && err.lines().count() == 1, "{err}");
}
