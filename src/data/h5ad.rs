//! AnnData `.h5ad` reading and writing (in progress: signatures fixed).

use std::path::Path;

use crate::data::{Dataset, DenseMatrix};
use crate::error::{Error, Result};

/// What to read from an .h5ad file.
#[derive(Clone, Debug, Default)]
pub struct H5adOptions {
    /// Read `.raw/X` (and `.raw/var` names) instead of `X`.
    pub use_raw: bool,
}

/// Whether `path` starts with the HDF5 signature.
pub fn is_h5ad(path: &Path) -> bool {
    let _ = path;
    false
}

/// Reads X (dense, CSR or CSC), obs_names, var_names and the obs columns.
pub fn read_h5ad(path: &Path, opts: &H5adOptions) -> Result<Dataset> {
    let _ = (path, opts);
    Err(Error::Other("h5ad reading is not available yet".into()))
}

/// Writes a dataset (X, obs, var names) plus `obsm` matrices as an .h5ad
/// file that scanpy opens as it is; atomic (temporary file, then rename).
pub fn write_h5ad(path: &Path, ds: &Dataset, obsm: &[(String, DenseMatrix)]) -> Result<()> {
    let _ = (path, ds, obsm);
    Err(Error::Other("h5ad writing is not available yet".into()))
}
