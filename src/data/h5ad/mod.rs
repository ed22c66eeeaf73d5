//! AnnData `.h5ad` reading and writing over the pure-Rust `hdf5-pure` crate
//! (no system HDF5 library, nothing to install).
//!
//! Reading understands the three on-disk layouts found in the wild:
//! - anndata ≥ 0.8: every element carries `encoding-type` /
//!   `encoding-version` attributes (`csr_matrix`, `categorical`, ...);
//! - anndata 0.7: dataframe groups with `_index`, categoricals as integer
//!   codes whose categories live in `obs/__categories/<column>`;
//! - anndata ≤ 0.6: `obs`/`var` as one compound dataset, sparse matrices
//!   marked by `h5sparse_format`, categories in `uns/<column>_categories`,
//!   `.raw` stored as `raw.X` / `raw.var`.
//!
//! Writing produces the current (0.8+) layout, which every anndata release
//! since 2022 reads.

use std::path::Path;

use crate::data::{Dataset, DenseMatrix, Matrix, ObsColumn};
use crate::error::{Error, Result};

mod frame;
mod legacy;
mod extras;
mod read;
mod write;

/// What to read from an .h5ad file.
#[derive(Clone, Debug, Default)]
pub struct H5adOptions {
    /// Read `.raw/X` (and `.raw/var` names) instead of `X`.
    pub use_raw: bool,
}

/// Whether `path` starts with the HDF5 signature.
pub fn is_h5ad(path: &Path) -> bool {
    path.is_file() && hdf5_pure::is_hdf5(path).unwrap_or(false)
}

/// Reads X (dense, CSR or CSC), obs_names, var_names and the obs columns.
///
/// X values of any float or integer type become f32; CSC becomes CSR; rows
/// with unsorted column indices are sorted (duplicates summed, as scipy's
/// `sum_duplicates` does). obs columns whose encoding has no [`ObsColumn`]
/// kind (multi-dimensional arrays, nested dataframes) are skipped.
///
/// [`ObsColumn`]: crate::data::ObsColumn
pub fn read_h5ad(path: &Path, opts: &H5adOptions) -> Result<Dataset> {
    let file = open(path)?;
    read::Reader::new(path, &file).read(opts.use_raw)
}

/// What an .h5ad file holds beyond the dataset itself (for `inspect`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct H5adLayout {
    /// Whether a `.raw` matrix exists (`raw/X` or the old `raw.X`).
    pub has_raw: bool,
    /// The shape of `.raw/X`, when present and readable.
    pub raw_shape: Option<(usize, usize)>,
    /// How X is stored: "dense", "csr_matrix" or "csc_matrix".
    pub x_encoding: String,
    /// Names of the `obsm` entries.
    pub obsm: Vec<String>,
    /// Names of the `layers` entries.
    pub layers: Vec<String>,
}

/// Describes the layout of an .h5ad file without reading its matrices.
pub fn describe_h5ad(path: &Path) -> Result<H5adLayout> {
    let file = open(path)?;
    read::Reader::new(path, &file).describe()
}

/// Writes a dataset (X, obs, var names) plus `obsm` matrices as an .h5ad
/// file that scanpy opens as it is; atomic (temporary file, then rename).
pub fn write_h5ad(path: &Path, ds: &Dataset, obsm: &[(String, DenseMatrix)]) -> Result<()> {
    let extras = H5adExtras { obsm: obsm.to_vec(), ..H5adExtras::default() };
    write::write(path, ds, &extras, &WriteOptions::default())
}

/// What an .h5ad file holds beside X, obs and the names, as far as
/// acsleuth carries it from one file to another.
#[derive(Clone, Debug, Default)]
pub struct H5adExtras {
    /// var columns (one value per gene).
    pub var: Vec<(String, ObsColumn)>,
    pub obsm: Vec<(String, DenseMatrix)>,
    pub layers: Vec<(String, Matrix)>,
    pub raw: Option<RawPart>,
}

/// anndata's `.raw`: a matrix over its own genes.
#[derive(Clone, Debug)]
pub struct RawPart {
    pub x: Matrix,
    pub gene_names: Vec<String>,
    pub var: Vec<(String, ObsColumn)>,
}

/// How an .h5ad file is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Deflate (gzip) level 1–9 for the matrices, as anndata's
    /// `compression="gzip"` (level 4); `None` writes them uncompressed.
    pub gzip: Option<u32>,
}

/// Writes `ds` with `extras` (var columns, obsm, layers, .raw).
pub fn write_h5ad_full(path: &Path, ds: &Dataset, extras: &H5adExtras, opts: &WriteOptions) -> Result<()> {
    write::write(path, ds, extras, opts)
}

/// Reads what [`H5adExtras`] holds from an .h5ad file (the current X
/// layout), and names every element it cannot carry (uns, varm, obsp,
/// varp entries, obsm/layers that are not 2-D matrices): the caller says
/// they were dropped.
pub fn read_extras(path: &Path) -> Result<(H5adExtras, Vec<String>)> {
    let file = open(path)?;
    read::Reader::new(path, &file).read_extras()
}

/// [`write_h5ad`] plus `layers`: extra [cells × genes] matrices (dense or
/// CSR, e.g. a batch-corrected expression) stored under `layers/<name>`.
/// Every obsm entry must have one row per cell and every layer the shape of
/// X; names must be unique and usable as HDF5 names. Categorical obs codes
/// of −1 are written as they are, which anndata reads as NaN (missing).
pub fn write_h5ad_with(
    path: &Path,
    ds: &Dataset,
    obsm: &[(String, DenseMatrix)],
    layers: &[(String, Matrix)],
) -> Result<()> {
    let extras = H5adExtras { obsm: obsm.to_vec(), layers: layers.to_vec(), ..H5adExtras::default() };
    write::write(path, ds, &extras, &WriteOptions::default())
}

/// Reads one matrix element of an .h5ad file by its path inside the file
/// (e.g. `"layers/corrected"`, `"obsm/X_pca"`, `"X"`): a 2-D dense array,
/// or a CSR/CSC group (returned as CSR); `None` when the file has no such
/// element.
pub fn read_h5ad_matrix(path: &Path, element: &str) -> Result<Option<Matrix>> {
    let file = open(path)?;
    read::Reader::new(path, &file).read_matrix(element)
}

/// Opens an HDF5 file, telling "not HDF5 at all" apart from "damaged HDF5".
fn open(path: &Path) -> Result<hdf5_pure::File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            hint: "a folder, not an .h5ad file".into(),
        });
    }
    match hdf5_pure::is_hdf5(path) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                hint: "not an HDF5 file, so not an .h5ad".into(),
            });
        }
        Err(e) => return Err(Error::io(path, e)),
    }
    hdf5_pure::File::open(path)
        .map_err(|e| Error::corrupt(path, format!("cannot open as HDF5: {e}")))
}
