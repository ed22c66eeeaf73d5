//! `acsleuth convert` through the built binary.

use std::path::Path;
use std::process::{Command, Output};

use acsleuth::data::store::{write_dataset, Layout, Store};
use acsleuth::data::{Dataset, DenseMatrix, Matrix, ObsColumn};

fn acsleuth(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth")).arg("convert").args(args).output().expect("run acsleuth")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sample() -> Dataset {
    let mut d = DenseMatrix::zeros(6, 4);
    for (k, v) in d.data.iter_mut().enumerate() {
        if k % 3 == 0 {
            *v = k as f32 * 0.5;
        }
    }
    Dataset {
        x: Matrix::Dense(d),
        cell_names: (0..6).map(|i| format!("c{i}")).collect(),
        gene_names: ["A", "B", "C", "D"].map(String::from).to_vec(),
        obs: vec![(
            "group".into(),
            ObsColumn::Categorical { categories: vec!["x".into(), "y".into()], codes: vec![0, 1, -1, 0, 1, 1] },
        )],
    }
}

#[test]
fn missing_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.acs");
    let o = acsleuth(&[&dir.path().join("missing.h5ad"), &out]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error:") && err.contains("missing.h5ad"), "{err}");
    assert!(!out.exists());
}

#[test]
fn tenx_folder_to_store() {
    let dir = tempfile::tempdir().unwrap();
    let tx = dir.path().join("tenx");
    std::fs::create_dir(&tx).unwrap();
    std::fs::write(tx.join("matrix.mtx"), "%%MatrixMarket matrix coordinate integer general\n3 2 3\n1 1 4\n3 1 1\n2 2 9\n").unwrap();
    std::fs::write(tx.join("barcodes.tsv"), "AC-1\nGT-1\n").unwrap();
    std::fs::write(tx.join("features.tsv"), "E1\tG1\tGene Expression\nE2\tG2\tGene Expression\nE3\tG3\tGene Expression\n").unwrap();
    let out = dir.path().join("s.acs");
    let o = acsleuth(&[&tx, &out]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let line = text(&o.stdout);
    assert!(line.contains("2 cells × 3 genes, 3 non-zeros (50.0 %), dense layout, from 10x"), "{line}");
    let s = Store::open(&out).unwrap();
    s.verify().unwrap();
    assert_eq!(s.to_dataset().unwrap().x.to_dense().data, vec![4.0, 0.0, 1.0, 0.0, 9.0, 0.0]);
    assert_eq!(s.cell_names(), ["AC-1", "GT-1"]);
}

#[test]
fn store_to_store_layouts_and_force() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.acs");
    let ds = sample();
    write_dataset(&src, &ds, Layout::Dense).unwrap();
    let out = dir.path().join("b.acs");

    // auto: 8 of 24 values non-zero (one is 0.0 at k=0) → csr.
    let o = acsleuth(&[&src, &out]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("csr layout"), "{}", text(&o.stdout));
    let got = Store::open(&out).unwrap().to_dataset().unwrap();
    assert_eq!(got.x.to_dense(), ds.x.to_dense());
    assert_eq!(got.obs, ds.obs);

    // An existing output needs --force.
    let o = acsleuth(&[&src, &out, Path::new("--layout"), Path::new("dense")]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("already exists (pass --force"), "{}", text(&o.stderr));
    assert_eq!(Store::open(&out).unwrap().layout(), Layout::Csr, "untouched");

    let o = acsleuth(&[&src, &out, Path::new("--layout"), Path::new("dense"), Path::new("--force")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = Store::open(&out).unwrap();
    assert_eq!(s.layout(), Layout::Dense);
    assert_eq!(s.to_dataset().unwrap(), ds);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "no temporaries left: {left:?}");

    // --force never removes a directory that is not a store.
    let plain = dir.path().join("precious");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("keep.txt"), "x").unwrap();
    let o = acsleuth(&[&src, &plain, Path::new("--force")]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("not an acsleuth store"), "{}", text(&o.stderr));
    assert!(plain.join("keep.txt").exists());

    // --raw is for .h5ad input only.
    let o = acsleuth(&[&src, &dir.path().join("r.acs"), Path::new("--raw")]);
    assert!(!o.status.success() && text(&o.stderr).contains("--raw"), "{}", text(&o.stderr));
}

/// store → .h5ad → store keeps values, names and obs. Runs once the .h5ad
/// writer and reader are in (until then the conversion reports that h5ad
/// is not available, and this test checks that nothing was left behind).
#[test]
fn store_to_h5ad_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.acs");
    let ds = sample();
    write_dataset(&src, &ds, Layout::Csr).unwrap();
    let h5 = dir.path().join("a.h5ad");
    let o = acsleuth(&[&src, &h5]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let back = dir.path().join("back.acs");
    let o = acsleuth(&[&h5, &back]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let got = Store::open(&back).unwrap().to_dataset().unwrap();
    assert_eq!(got.x.to_dense(), ds.x.to_dense());
    assert_eq!((got.cell_names, got.gene_names), (ds.cell_names, ds.gene_names));
    assert_eq!(got.obs, ds.obs);
}

/// The acceptance check: the Kang data to the store and back to
/// .h5ad gives identical values, names and obs.
#[test]
fn kang_to_store_and_back_is_identical() {
    let kang = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kang_ifnb_pbmc/kang_ifnb_counts.h5ad");
    if !kang.exists() {
        eprintln!("skipped: {} not found", kang.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, back) = (dir.path().join("kang.acs"), dir.path().join("kang.h5ad"));
    for (a, b) in [(&kang, &store), (&store, &back)] {
        let o = acsleuth(&[a, b]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let opts = acsleuth::data::io::ReadOptions::default();
    let orig = acsleuth::data::io::read_dataset(&kang, &opts).unwrap();
    let got = acsleuth::data::io::read_dataset(&back, &opts).unwrap();
    assert_eq!(got.x.to_csr(), orig.x.to_csr());
    assert_eq!((got.cell_names, got.gene_names), (orig.cell_names, orig.gene_names));
    assert_eq!(got.obs, orig.obs);
}
