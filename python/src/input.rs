//! Python inputs → the library's [`Dataset`]. The Python side hands over a
//! dict: `format` ("csr" or "dense"), the arrays (CSR `data`, `indices`,
//! `indptr`, or a C-contiguous 2-D `data`), `shape`, `cells`, `genes`, and
//! `obs` (name → one string per cell, only the columns the call needs).
//! The arrays are read through the buffer protocol (no Python-side copy);
//! they are copied once into the library's owned matrix.

use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn};
use acsleuth::error::{Error, Result};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn item<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(format!("input dict lacks '{key}'")))
}

/// An index array (int32 or int64, as scipy gives them) as u64.
fn index_array(a: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u64>> {
    if let Ok(v) = a.extract::<PyReadonlyArray1<i32>>() {
        return to_u64(v.as_slice()?.iter().map(|&x| x as i64), what);
    }
    if let Ok(v) = a.extract::<PyReadonlyArray1<i64>>() {
        return to_u64(v.as_slice()?.iter().copied(), what);
    }
    Err(crate::errors::to_py(Error::invalid(format!("{what} must be a 1-D int32 or int64 array"))))
}

fn to_u64(it: impl Iterator<Item = i64>, what: &str) -> PyResult<Vec<u64>> {
    it.map(|x| u64::try_from(x).map_err(|_| crate::errors::to_py(Error::invalid(format!("{what} holds a negative value ({x})")))))
        .collect()
}

/// Reads one input dict (see the module doc) into a dataset.
pub fn dataset(d: &Bound<'_, PyDict>) -> PyResult<Dataset> {
    let format: String = item(d, "format")?.extract()?;
    let cells: Vec<String> = item(d, "cells")?.extract()?;
    let genes: Vec<String> = item(d, "genes")?.extract()?;
    let (rows, cols): (usize, usize) = item(d, "shape")?.extract()?;
    let x = match format.as_str() {
        "dense" => {
            let a: PyReadonlyArray2<f32> = item(d, "data")?.extract()?;
            let data = a.as_slice().map_err(|_| crate::errors::to_py(Error::invalid("a dense matrix must be C-contiguous")))?.to_vec();
            Matrix::Dense(DenseMatrix { rows, cols, data })
        }
        "csr" => {
            let data: PyReadonlyArray1<f32> = item(d, "data")?.extract()?;
            let indptr = index_array(&item(d, "indptr")?, "indptr")?;
            let indices = index_array(&item(d, "indices")?, "indices")?;
            csr(rows, cols, data.as_slice()?, indices, indptr).map_err(crate::errors::to_py)?
        }
        f => return Err(crate::errors::to_py(Error::invalid(format!("unknown matrix format '{f}'")))),
    };
    let mut obs = Vec::new();
    if let Some(o) = d.get_item("obs")? {
        for (k, v) in o.cast::<PyDict>()?.iter() {
            obs.push((k.extract::<String>()?, ObsColumn::Text(v.extract::<Vec<String>>()?)));
        }
    }
    let ds = Dataset { x, cell_names: cells, gene_names: genes, obs };
    ds.validate().map_err(crate::errors::to_py)?;
    Ok(ds)
}

/// Checks the CSR structure (the library's matrices assume it) and builds it.
fn csr(rows: usize, cols: usize, data: &[f32], indices: Vec<u64>, indptr: Vec<u64>) -> Result<Matrix> {
    if indptr.len() != rows + 1 || indptr[0] != 0 || indptr[rows] as usize != data.len() || indices.len() != data.len() {
        return Err(Error::invalid(format!(
            "malformed CSR matrix: {} row pointers, {} indices and {} values for {rows} rows",
            indptr.len(),
            indices.len(),
            data.len()
        )));
    }
    let mut idx = Vec::with_capacity(indices.len());
    for r in 0..rows {
        let (a, b) = (indptr[r] as usize, indptr[r + 1] as usize);
        if a > b || b > indices.len() {
            return Err(Error::invalid(format!("malformed CSR matrix: row pointers decrease at row {r}")));
        }
        let mut prev: Option<u64> = None;
        for &j in &indices[a..b] {
            if j as usize >= cols || prev.is_some_and(|p| p >= j) {
                return Err(Error::invalid(format!(
                    "malformed CSR matrix: row {r} has column indices out of range or not strictly increasing (call sum_duplicates() / sort_indices())"
                )));
            }
            prev = Some(j);
            idx.push(j as u32);
        }
    }
    Ok(Matrix::Csr(CsrMatrix { rows, cols, indptr, indices: idx, data: data.to_vec() }))
}
