//! Issue #15 item 1: every kind of .h5ad acsleuth writes works in scanpy
//! as it is (pca, neighbors, umap, rank_genes_groups, write + read back),
//! and h5ad → h5ad `convert` keeps what the input held.
//!
//! The scanpy checks need Python with scanpy (`ACSLEUTH_PYTHON`, else
//! /work/pyenv/bin/python, else `python3`); where none has scanpy they are
//! skipped with a note, as the tests that need the shared data are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use acsleuth::data::h5ad::{read_extras, read_h5ad, H5adOptions};
use acsleuth::data::simulate::{simulate_dataset, SetKind, SimConfig, Simulator};
use acsleuth::data::store::{write_dataset, Layout};
use acsleuth::data::{Dataset, ObsColumn};

const FULL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/h5ad/full.h5ad");
const PBMC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc68k_reduced/10x_pbmc68k_reduced.h5ad");

fn acsleuth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(args).output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// A Python interpreter that imports scanpy, or None (with a note).
fn python() -> Option<PathBuf> {
    let mut cands: Vec<PathBuf> = std::env::var_os("ACSLEUTH_PYTHON").map(PathBuf::from).into_iter().collect();
    cands.extend([PathBuf::from("/work/pyenv/bin/python"), PathBuf::from("python3")]);
    for p in cands {
        let ok = Command::new(&p).args(["-c", "import scanpy"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    eprintln!("skipping: no Python with scanpy (set ACSLEUTH_PYTHON)");
    None
}

/// Runs scripts/check_scanpy.py on `files`; its report (one line a file),
/// or None where scanpy is missing.
fn scanpy_check(files: &[PathBuf]) -> Option<String> {
    let py = python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_scanpy.py");
    let o = Command::new(py).arg(script).args(files).env("NUMBA_CACHE_DIR", std::env::temp_dir()).output().unwrap();
    assert!(o.status.success(), "scanpy failed:\n{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn sim(n: usize, genes: usize, seed: u64) -> (Dataset, Dataset) {
    let s = Simulator::new(SimConfig {
        n_ref: n,
        n_target: n,
        n_genes: genes,
        n_anomaly_types: 2,
        anomaly_ratio: 0.15,
        seed,
        ..SimConfig::default()
    })
    .unwrap();
    (simulate_dataset(&s, SetKind::Reference).unwrap(), simulate_dataset(&s, SetKind::Target).unwrap())
}

/// The dtypes of X's `indptr` and `indices` as stored.
fn index_dtypes(p: &Path, group: &str) -> (String, String) {
    let f = hdf5_pure::File::open(p).unwrap();
    let d = |n: &str| format!("{:?}", f.dataset(&format!("{group}/{n}")).unwrap().dtype().unwrap());
    (d("indptr"), d("indices"))
}

#[test]
fn h5ad_csr_index_arrays_are_int32() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = sim(60, 80, 1);
    let store = dir.path().join("r.acs");
    write_dataset(&store, &r, Layout::Csr).unwrap();
    let out = dir.path().join("r.h5ad");
    ok(&acsleuth(&["convert", store.to_str().unwrap(), out.to_str().unwrap(), "--layout", "csr"]));
    assert_eq!(index_dtypes(&out, "X"), ("I32".into(), "I32".into()));
}

#[test]
fn h5ad_convert_keeps_var_obsm_layers_raw_and_integer_columns() {
    let full = Path::new(FULL);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("full.h5ad");
    let o = acsleuth(&["convert", FULL, out.to_str().unwrap()]);
    ok(&o);
    let (want, dropped_in) = read_extras(full).unwrap();
    let (got, dropped_out) = read_extras(&out).unwrap();
    assert_eq!(got.var, want.var);
    assert_eq!(want.var.len(), 3);
    let names = |v: &[(String, acsleuth::data::DenseMatrix)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got.obsm), ["X_pca", "X_umap"]);
    assert_eq!(got.obsm[0].1.data, want.obsm[0].1.data);
    assert_eq!(got.layers.iter().map(|(n, m)| (n.clone(), m.to_dense())).collect::<Vec<_>>(), want.layers.iter().map(|(n, m)| (n.clone(), m.to_dense())).collect::<Vec<_>>());
    let (gr, wr) = (got.raw.unwrap(), want.raw.unwrap());
    assert_eq!((gr.x.to_dense(), gr.gene_names, gr.var), (wr.x.to_dense(), wr.gene_names, wr.var));
    // What cannot be carried is named on stderr, and only that is missing.
    assert_eq!(dropped_in, ["uns/group_colors", "uns/note", "varm/PCs", "obsp/distances"]);
    assert!(dropped_out.is_empty(), "{dropped_out:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not carried over") && err.contains("uns/note, varm/PCs, obsp/distances"), "{err}");
    // Integer obs columns stay integer.
    let a = read_h5ad(full, &H5adOptions::default()).unwrap();
    let b = read_h5ad(&out, &H5adOptions::default()).unwrap();
    assert!(matches!(a.obs_column("n_genes"), Some(ObsColumn::Integer(_))));
    assert_eq!(a.obs, b.obs);
    // And through a store.
    let (acs, back) = (dir.path().join("full.acs"), dir.path().join("back.h5ad"));
    ok(&acsleuth(&["convert", FULL, acs.to_str().unwrap()]));
    ok(&acsleuth(&["convert", acs.to_str().unwrap(), back.to_str().unwrap()]));
    assert_eq!(read_h5ad(&back, &H5adOptions::default()).unwrap().obs, a.obs);
}

#[test]
fn h5ad_convert_gzip_is_smaller_and_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = sim(300, 400, 2);
    let store = dir.path().join("r.acs");
    write_dataset(&store, &r, Layout::Csr).unwrap();
    let (plain, gz) = (dir.path().join("plain.h5ad"), dir.path().join("gz.h5ad"));
    ok(&acsleuth(&["convert", store.to_str().unwrap(), plain.to_str().unwrap()]));
    ok(&acsleuth(&["convert", store.to_str().unwrap(), gz.to_str().unwrap(), "--compression", "gzip"]));
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&gz) * 2 < size(&plain), "gzip {} vs plain {}", size(&gz), size(&plain));
    let (a, b) = (read_h5ad(&plain, &H5adOptions::default()).unwrap(), read_h5ad(&gz, &H5adOptions::default()).unwrap());
    assert_eq!(a.x.to_csr(), b.x.to_csr());
}

/// Every kind of .h5ad we write, through scanpy: convert from a store
/// (CSR and dense, gzip), h5ad → h5ad, and `run`'s target.h5ad.
#[test]
fn scanpy_uses_every_h5ad_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = sim(300, 400, 3);
    let (rs, ts) = (dir.path().join("r.acs"), dir.path().join("t.acs"));
    write_dataset(&rs, &r, Layout::Csr).unwrap();
    write_dataset(&ts, &t, Layout::Csr).unwrap();
    let mut files = Vec::new();
    for (name, extra) in [("csr.h5ad", vec!["--layout", "csr"]), ("dense.h5ad", vec!["--layout", "dense"]), ("gz.h5ad", vec!["--compression", "gzip"])] {
        let p = dir.path().join(name);
        let mut args = vec!["convert", ts.to_str().unwrap(), p.to_str().unwrap()];
        args.extend(extra);
        ok(&acsleuth(&args));
        files.push(p);
    }
    let p = dir.path().join("full.h5ad");
    ok(&acsleuth(&["convert", FULL, p.to_str().unwrap()]));
    files.push(p);
    if Path::new(PBMC).exists() {
        let p = dir.path().join("pbmc.h5ad");
        ok(&acsleuth(&["convert", PBMC, p.to_str().unwrap()]));
        files.push(p);
    }
    let out = dir.path().join("run");
    let (rs, ts, o) = (rs.to_str().unwrap(), ts.to_str().unwrap(), out.to_str().unwrap());
    ok(&acsleuth(&[
        "run", "--reference", rs, "--target", ts, "--out", o, "--epochs-prepare", "2", "--epochs-train", "1", "--n-hvg", "300",
        "--seed", "1", "--device", "cpu", "--anomaly-ratio", "0.15", "--n-subtypes", "3",
    ]));
    files.push(out.join("target.h5ad"));
    if let Some(report) = scanpy_check(&files) {
        // run's subtypes were the groups of rank_genes_groups.
        assert!(report.lines().any(|l| l.contains("target.h5ad") && l.ends_with("grouped by acsleuth_subtype")), "{report}");
    }
}
