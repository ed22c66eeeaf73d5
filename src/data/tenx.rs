//! 10x Matrix Market folders (in progress: signatures fixed).

use std::path::Path;

use crate::data::Dataset;
use crate::error::{Error, Result};

/// Whether `path` is a folder holding matrix.mtx[.gz].
pub fn is_10x_dir(path: &Path) -> bool {
    path.is_dir() && (path.join("matrix.mtx").exists() || path.join("matrix.mtx.gz").exists())
}

/// Reads matrix.mtx[.gz] (genes × cells, as 10x writes it), barcodes and
/// features/genes into a cells × genes CSR dataset.
pub fn read_10x(dir: &Path) -> Result<Dataset> {
    let _ = dir;
    Err(Error::Other("10x reading is not available yet".into()))
}
