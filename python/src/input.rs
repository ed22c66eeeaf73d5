//! Python inputs → the library's [`Dataset`]. The Python side hands over a
//! dict: `format` ("csr" or "dense"), the arrays (CSR `data`, `indices`,
//! `indptr`, or a C-contiguous 2-D `data`), `shape`, `cells`, `genes`, and
//! `obs` (name → one string per cell, only the columns the call needs).
//! The arrays are read through the buffer protocol. A CSR matrix's float32
//! values and int32 column indices are borrowed in place (the dataset holds
//! a reference to each array until it is dropped): no copy of the caller's
//! matrix; other dtypes, the row pointers and dense matrices are copied.

use std::sync::Arc;

use acsleuth::data::buffer::{Owner, Values};
use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn};
use acsleuth::error::{Error, Result};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn item<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(format!("input dict lacks '{key}'")))
}

/// The memory of array `a` (its contiguous values `s`) read as `U` in
/// place, kept alive by a reference to the array.
///
/// # Safety
/// `T` and `U` must have one size and alignment, and every value in `s`
/// must mean the same read as `U`.
unsafe fn borrow<T, U: 'static>(a: &Bound<'_, PyAny>, s: &[T]) -> Values<U> {
    let owner: Owner = Arc::new(a.clone().unbind());
    // SAFETY: `s` is the array's memory, which lives as long as the array,
    // and `owner` holds a reference to it. The calling Python thread waits
    // for the work to end, so only code the caller runs in another thread
    // could write to it meanwhile (the docstrings say not to).
    unsafe { Values::borrowed(s.as_ptr() as *const U, s.len(), owner) }
}

/// Float32 values, borrowed when contiguous, else copied.
fn values(a: &Bound<'_, PyAny>) -> PyResult<Values<f32>> {
    let v: PyReadonlyArray1<f32> = a.extract()?;
    Ok(match v.as_slice() {
        // SAFETY: f32 read as f32.
        Ok(s) => unsafe { borrow(a, s) },
        Err(_) => v.as_array().to_vec().into(),
    })
}

/// Column indices (int32 or int64, as scipy gives them): contiguous int32
/// ones are borrowed (checked non-negative, so the same bits read as u32),
/// others copied; negative values are refused.
fn indices(a: &Bound<'_, PyAny>) -> PyResult<Values<u32>> {
    if let Ok(v) = a.extract::<PyReadonlyArray1<i32>>() {
        let arr = v.as_array();
        if let Some(&x) = arr.iter().find(|&&x| x < 0) {
            return Err(negative("indices", x as i64));
        }
        return Ok(match v.as_slice() {
            // SAFETY: i32 and u32 share size and alignment, and every value
            // is non-negative (checked above), so it reads as the same u32.
            Ok(s) => unsafe { borrow(a, s) },
            Err(_) => arr.iter().map(|&x| x as u32).collect::<Vec<_>>().into(),
        });
    }
    if let Ok(v) = a.extract::<PyReadonlyArray1<i64>>() {
        return v
            .as_array()
            .iter()
            .map(|&x| u32::try_from(x).map_err(|_| if x < 0 { negative("indices", x) } else { too_many(x) }))
            .collect::<PyResult<Vec<_>>>()
            .map(Values::from);
    }
    Err(crate::errors::to_py(Error::invalid("indices must be a 1-D int32 or int64 array")))
}

/// Row pointers (int32 or int64) as u64 (always a copy: one per row).
fn indptr(a: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let to_u64 = |it: &mut dyn Iterator<Item = i64>| it.map(|x| u64::try_from(x).map_err(|_| negative("indptr", x))).collect();
    if let Ok(v) = a.extract::<PyReadonlyArray1<i32>>() {
        return to_u64(&mut v.as_array().iter().map(|&x| x as i64));
    }
    if let Ok(v) = a.extract::<PyReadonlyArray1<i64>>() {
        return to_u64(&mut v.as_array().iter().copied());
    }
    Err(crate::errors::to_py(Error::invalid("indptr must be a 1-D int32 or int64 array")))
}

fn negative(what: &str, x: i64) -> PyErr {
    crate::errors::to_py(Error::invalid(format!("{what} holds a negative value ({x})")))
}

fn too_many(x: i64) -> PyErr {
    crate::errors::to_py(Error::invalid(format!("column index {x} is beyond what acsleuth can index (2^32 genes)")))
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
            let data = values(&item(d, "data")?)?;
            let indptr = indptr(&item(d, "indptr")?)?;
            let indices = indices(&item(d, "indices")?)?;
            csr(rows, cols, data, indices, indptr).map_err(crate::errors::to_py)?
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
fn csr(rows: usize, cols: usize, data: Values<f32>, indices: Values<u32>, indptr: Vec<u64>) -> Result<Matrix> {
    if indptr.len() != rows + 1 || indptr[0] != 0 || indptr[rows] as usize != data.len() || indices.len() != data.len() {
        return Err(Error::invalid(format!(
            "malformed CSR matrix: {} row pointers, {} indices and {} values for {rows} rows",
            indptr.len(),
            indices.len(),
            data.len()
        )));
    }
    for r in 0..rows {
        let (a, b) = (indptr[r] as usize, indptr[r + 1] as usize);
        if a > b || b > indices.len() {
            return Err(Error::invalid(format!("malformed CSR matrix: row pointers decrease at row {r}")));
        }
        let row = &indices[a..b];
        if row.last().is_some_and(|&j| j as usize >= cols) || row.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(format!(
                "malformed CSR matrix: row {r} has column indices out of range or not strictly increasing (call sum_duplicates() / sort_indices())"
            )));
        }
    }
    Ok(Matrix::Csr(CsrMatrix { rows, cols, indptr, indices, data }))
}
