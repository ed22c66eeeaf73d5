//! The memory-mapped on-disk store (in progress: signatures fixed, bodies
//! being written).

use std::path::Path;

use crate::data::{Dataset, ObsColumn, RowSink};
use crate::error::{Error, Result};

/// How the values are laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major f32, `n_cells × n_genes`.
    Dense,
    /// CSR: f32 data, u32 indices, u64 indptr.
    Csr,
}

/// Streams cells into a new store; nothing appears at the final path until
/// [`StoreWriter::finish`] succeeds (temporary location, then rename).
pub struct StoreWriter {
    _private: (),
}

impl StoreWriter {
    pub fn create(path: &Path, gene_names: &[String], layout: Layout) -> Result<Self> {
        let _ = (path, gene_names, layout);
        Err(Error::Other("store writing is not available yet".into()))
    }
    /// Appends one cell given as sorted (gene index, value) pairs.
    pub fn push_cell(&mut self, name: &str, indices: &[u32], values: &[f32]) -> Result<()> {
        let _ = (name, indices, values);
        Err(Error::Other("store writing is not available yet".into()))
    }
    /// Writes the obs columns (one value per cell pushed), the checksum and
    /// the names, then moves the store into place.
    pub fn finish(self, obs: &[(String, ObsColumn)]) -> Result<()> {
        let _ = obs;
        Err(Error::Other("store writing is not available yet".into()))
    }
}

impl RowSink for StoreWriter {
    /// Names the cell `cell{i}`.
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> Result<()> {
        self.push_cell("", indices, values)
    }
}

/// An opened store: header checked, values memory-mapped.
pub struct Store {
    _private: (),
}

impl Store {
    /// Opens and checks the header, sizes and names (cheap); see [`Store::verify`].
    pub fn open(path: &Path) -> Result<Self> {
        let _ = path;
        Err(Error::Other("stores are not available yet".into()))
    }
    /// Reads every value and checks the data checksum.
    pub fn verify(&self) -> Result<()> {
        Ok(())
    }
    pub fn n_cells(&self) -> usize {
        0
    }
    pub fn n_genes(&self) -> usize {
        0
    }
    pub fn layout(&self) -> Layout {
        Layout::Dense
    }
    pub fn gene_names(&self) -> &[String] {
        &[]
    }
    pub fn cell_names(&self) -> &[String] {
        &[]
    }
    pub fn obs(&self) -> &[(String, ObsColumn)] {
        &[]
    }
    /// Gathers the given rows as dense f32 into `out` (`rows.len() × n_genes`),
    /// reading nothing else.
    pub fn read_rows_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        let _ = (rows, out);
        Err(Error::Other("stores are not available yet".into()))
    }
    /// Row `i` as sorted (gene index, value) pairs, zeros skipped.
    pub fn row_sparse(&self, i: usize, indices: &mut Vec<u32>, values: &mut Vec<f32>) {
        let _ = (i, indices, values);
    }
    /// The whole store in memory.
    pub fn to_dataset(&self) -> Result<Dataset> {
        Err(Error::Other("stores are not available yet".into()))
    }
}

/// Writes an in-memory dataset as a store (atomically).
pub fn write_dataset(path: &Path, ds: &Dataset, layout: Layout) -> Result<()> {
    let _ = (path, ds, layout);
    Err(Error::Other("store writing is not available yet".into()))
}

/// Whether `path` looks like a store (checks the magic only).
pub fn is_store(path: &Path) -> bool {
    let _ = path;
    false
}
