//! Format detection and one entry point to read any supported input.

use std::path::Path;

use crate::data::{h5ad, store, tenx, Dataset};
use crate::error::{Error, Result};

/// The input formats acsleuth reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// acsleuth's memory-mapped store.
    Store,
    /// AnnData .h5ad.
    H5ad,
    /// A 10x Matrix Market folder.
    TenX,
}

/// Options for [`read_dataset`].
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// For .h5ad: read `.raw` instead of `X`.
    pub use_raw: bool,
}

/// Finds the format of `path` from its content (not its extension).
pub fn detect(path: &Path) -> Result<Format> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    if store::is_store(path) {
        Ok(Format::Store)
    } else if tenx::is_10x_dir(path) {
        Ok(Format::TenX)
    } else if h5ad::is_h5ad(path) {
        Ok(Format::H5ad)
    } else {
        Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            hint: "expected an .h5ad file, a 10x folder with matrix.mtx[.gz], or an acsleuth store".into(),
        })
    }
}

/// Reads any supported input into memory and validates it (shapes, unique
/// names, at least one cell and gene).
pub fn read_dataset(path: &Path, opts: &ReadOptions) -> Result<Dataset> {
    let ds = match detect(path)? {
        Format::Store => {
            if opts.use_raw {
                return Err(Error::Config("--raw applies to .h5ad input only".into()));
            }
            store::Store::open(path)?.to_dataset()?
        }
        Format::TenX => {
            if opts.use_raw {
                return Err(Error::Config("--raw applies to .h5ad input only".into()));
            }
            tenx::read_10x(path)?
        }
        Format::H5ad => h5ad::read_h5ad(path, &h5ad::H5adOptions { use_raw: opts.use_raw })?,
    };
    ds.validate().map_err(|e| match e {
        Error::Invalid(m) => Error::corrupt(path, m),
        e => e,
    })?;
    Ok(ds)
}
