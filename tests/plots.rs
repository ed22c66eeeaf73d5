//! Issue #15 item 11 through the binary: every plot of a run with a
//! boolean truth column. (Colours, the PR steps and the call threshold are
//! unit-tested in `src/output/figures`.)

use std::process::Command;

use acsleuth::data::simulate::{simulate_dataset, SetKind, SimConfig, Simulator};
use acsleuth::data::ObsColumn;

#[test]
fn embedding_truth_is_drawn_for_a_boolean_truth_column() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::new(SimConfig { n_ref: 200, n_target: 200, n_genes: 300, n_anomaly_types: 2, anomaly_ratio: 0.15, seed: 4, ..SimConfig::default() }).unwrap();
    let reference = simulate_dataset(&sim, SetKind::Reference).unwrap();
    let mut target = simulate_dataset(&sim, SetKind::Target).unwrap();
    let label = |ds: &acsleuth::data::Dataset, i: usize| ds.obs_column("cell_type").unwrap().get_str(i);
    let seen: std::collections::HashSet<String> = (0..reference.cell_names.len()).map(|i| label(&reference, i)).collect();
    let truth: Vec<bool> = (0..target.cell_names.len()).map(|i| !seen.contains(&label(&target, i))).collect();
    assert!(truth.iter().any(|&a| a) && !truth.iter().all(|&a| a));
    target.obs.push(("anomalous".into(), ObsColumn::Bool(truth)));
    let (r, t) = (dir.path().join("r.h5ad"), dir.path().join("t.h5ad"));
    acsleuth::data::h5ad::write_h5ad(&r, &reference, &[]).unwrap();
    acsleuth::data::h5ad::write_h5ad(&t, &target, &[]).unwrap();
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_acsleuth"))
        .args(["run", "--reference", r.to_str().unwrap(), "--target", t.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--device", "cpu", "--n-hvg", "200", "--epochs-prepare", "2", "--epochs-train", "1", "--n-subtypes", "2", "--truth-key", "anomalous"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["scores.png", "embedding_calls.png", "embedding_subtypes.png", "embedding_truth.png", "roc_pr.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
}
