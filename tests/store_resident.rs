//! Training's random minibatches from a store do not make the store
//! resident (its own test binary: it reads the process's resident set,
//! which concurrent tests would disturb).

#![cfg(target_os = "linux")]

use acsleuth::data::store::{write_dataset, Layout, Store};
use acsleuth::data::{Dataset, DenseMatrix, Matrix};
use acsleuth::model::source::RowSource;

/// File-backed resident memory of this process, kB.
fn rss_file_kb() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("RssFile:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap()
}

#[test]
fn minibatches_leave_the_store_out_of_the_resident_set() {
    let (cells, genes) = (4000, 1500);
    let data: Vec<f32> = (0..cells * genes).map(|i| if i % 7 == 0 { (i % 13) as f32 } else { 0.0 }).collect();
    let ds = Dataset {
        x: Matrix::Dense(DenseMatrix { rows: cells, cols: genes, data }),
        cell_names: (0..cells).map(|i| format!("c{i}")).collect(),
        gene_names: (0..genes).map(|j| format!("g{j}")).collect(),
        obs: vec![],
    };
    let dir = tempfile::tempdir().unwrap();
    let store_kb = (cells * genes * 4 / 1024) as i64;
    for layout in [Layout::Dense, Layout::Csr] {
        let p = dir.path().join(format!("{layout}.acs"));
        write_dataset(&p, &ds, layout).unwrap();
        let st = Store::open(&p).unwrap();
        let before = rss_file_kb();
        // Every row once, shuffled, in minibatches of 128.
        let order: Vec<usize> = (0..cells).map(|i| (i * 7919) % cells).collect();
        let mut out = vec![0.0f32; 128 * genes];
        for batch in order.chunks_exact(128) {
            st.gather_dense(batch, &mut out).unwrap();
        }
        let grown = rss_file_kb() - before;
        // Through the map this grew by about the whole store (23 MB dense).
        assert!(grown < store_kb / 8, "{layout}: resident set grew by {grown} kB reading a store of {store_kb} kB (dense size)");
    }
}
