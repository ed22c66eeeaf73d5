//! The fixed pbmc68k B/NK split of the shared data (tests/detect.rs and
//! examples/scorer_diagnose.rs): reference, target and truth, or None when
//! the shared data is absent.

use acsleuth::data::{CsrMatrix, Dataset, Matrix};

pub const PBMC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc68k_reduced/10x_pbmc68k_reduced.h5ad");
pub const PBMC_SPLIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc68k_reduced/split_b_nk.tsv");

/// The rows `rows` of `ds` (obs columns dropped).
pub fn subset(ds: &Dataset, rows: &[usize]) -> Dataset {
    let x = ds.x.to_csr();
    let mut m = CsrMatrix::empty(x.cols);
    for &r in rows {
        let (i, v) = x.row(r);
        m.push_row(i, v);
    }
    Dataset {
        x: Matrix::Csr(m),
        cell_names: rows.iter().map(|&r| ds.cell_names[r].clone()).collect(),
        gene_names: ds.gene_names.clone(),
        obs: vec![],
    }
}

/// Reference, target and truth of the fixed pbmc68k B/NK split; None when
/// the shared data is absent.
pub fn pbmc_split() -> Option<(Dataset, Dataset, Vec<bool>)> {
    use acsleuth::data::io::{read_dataset, ReadOptions};
    if !std::path::Path::new(PBMC).exists() {
        eprintln!("skipping: {PBMC} not found");
        return None;
    }
    let ds = read_dataset(PBMC.as_ref(), &ReadOptions { use_raw: true }).unwrap();
    let pos: std::collections::HashMap<&str, usize> = ds.cell_names.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let (mut rr, mut tr, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for line in std::fs::read_to_string(PBMC_SPLIT).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let i = pos[f[0]];
        if f[1] == "reference" {
            rr.push(i);
        } else {
            tr.push(i);
            truth.push(f[2] == "1");
        }
    }
    Some((subset(&ds, &rr), subset(&ds, &tr), truth))
}

