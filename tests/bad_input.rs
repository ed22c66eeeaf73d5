//! The bad inputs of the foundation issue that other test files do not
//! already cover: each gets a typed, one-line error naming the problem, and
//! no output is left behind.

use acsleuth::data::store::{write_dataset, Layout};
use acsleuth::data::{preprocess, CsrMatrix, Dataset, DenseMatrix, Matrix};
use acsleuth::Error;

fn dataset(data: Vec<f32>, cells: &[&str], genes: &[&str]) -> Dataset {
    let d = DenseMatrix { rows: cells.len(), cols: genes.len(), data };
    Dataset {
        x: Matrix::Csr(CsrMatrix::from_dense(&d)),
        cell_names: cells.iter().map(|s| s.to_string()).collect(),
        gene_names: genes.iter().map(|s| s.to_string()).collect(),
        obs: vec![],
    }
}

#[test]
fn duplicated_gene_names_are_refused_by_name() {
    let ds = dataset(vec![1., 2., 3., 4.], &["c1", "c2"], &["G", "G"]);
    let err = ds.validate().unwrap_err().to_string();
    assert!(err.contains("duplicated gene name 'G'"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.acs");
    let err = write_dataset(&out, &ds, Layout::Csr).unwrap_err().to_string();
    assert!(err.contains('G') && !err.contains('\n'), "{err}");
    assert!(!out.exists());
}

#[test]
fn duplicated_cell_names_are_refused_by_name() {
    let ds = dataset(vec![1., 2., 3., 4.], &["c1", "c1"], &["A", "B"]);
    let err = ds.validate().unwrap_err().to_string();
    assert!(err.contains("duplicated cell name 'c1'"), "{err}");
}

#[test]
fn infinite_values_are_refused_naming_the_cell() {
    let ds = dataset(vec![1., f32::INFINITY, 3., 4.], &["c1", "c2"], &["A", "B"]);
    let err = preprocess::detect_value_kind(&ds).unwrap_err().to_string();
    assert!(err.contains("c1"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.acs");
    assert!(write_dataset(&out, &ds, Layout::Dense).is_err());
    assert!(!out.exists());
}

#[test]
fn negative_counts_are_refused() {
    let ds = dataset(vec![1., -2., 3., 4.], &["c1", "c2"], &["A", "B"]);
    assert!(matches!(preprocess::detect_value_kind(&ds), Err(Error::Invalid(_))));
}

#[test]
fn zero_cells_are_refused() {
    let ds = Dataset { x: Matrix::Csr(CsrMatrix::empty(2)), cell_names: vec![], gene_names: vec!["A".into(), "B".into()], obs: vec![] };
    assert!(ds.validate().unwrap_err().to_string().contains("zero cells"));
}

#[test]
fn no_shared_genes_between_reference_and_target() {
    let r = dataset(vec![1., 2., 3., 4.], &["r1", "r2"], &["A", "B"]);
    let t = dataset(vec![1., 2., 3., 4.], &["t1", "t2"], &["X", "Y"]);
    let cfg = preprocess::Preprocess::default();
    let err = preprocess::preprocess_pair(&r, &t, &cfg).unwrap_err().to_string();
    assert!(err.contains("gene"), "{err}");
}
