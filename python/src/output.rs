//! Results → dicts of numpy arrays (one row per target cell in input order
//! unless said) and the report as a JSON string.

use acsleuth::data::DenseMatrix;
use acsleuth::error::Error;
use acsleuth::pipeline::detect::DetectResult;
use acsleuth::pipeline::run::RunResult;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn matrix<'py>(py: Python<'py>, m: DenseMatrix) -> PyResult<Bound<'py, PyAny>> {
    let (r, c) = (m.rows, m.cols);
    Ok(PyArray1::from_vec(py, m.data).reshape([r, c])?.into_any())
}

fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| crate::errors::to_py(Error::Other(format!("report: {e}"))))
}

pub fn detect(py: Python<'_>, res: DetectResult) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("report", json(&res.report)?)?;
    d.set_item("score", PyArray1::from_vec(py, res.scores))?;
    d.set_item("anomaly", PyArray1::from_vec(py, res.calls))?;
    d.set_item("pvalue", res.p_values.map(|v| PyArray1::from_vec(py, v)))?;
    d.set_item("qvalue", res.q_values.map(|v| PyArray1::from_vec(py, v)))?;
    d.set_item("deviation", res.deviation.map(|v| PyArray1::from_vec(py, v)))?;
    d.set_item("embedding", res.embedding.map(|m| matrix(py, m)).transpose()?)?;
    Ok(d)
}

pub fn run(py: Python<'_>, res: RunResult) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("report", json(&res.report)?)?;
    d.set_item("genes", res.genes)?;
    d.set_item("score", PyArray1::from_vec(py, res.scores))?;
    d.set_item("anomaly", PyArray1::from_vec(py, res.calls))?;
    d.set_item("qvalue", res.q_values.map(|v| PyArray1::from_vec(py, v)))?;
    d.set_item("deviation", PyArray1::from_vec(py, res.deviation))?;
    d.set_item("batch", PyArray1::from_vec(py, res.batch_of))?;
    d.set_item("batch_names", res.report.batches.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>())?;
    let sub: Vec<i32> = res.subtypes.iter().map(|s| s.map_or(-1, |v| v as i32)).collect();
    d.set_item("subtype", PyArray1::from_vec(py, sub))?;
    d.set_item("n_subtypes", res.report.subtype.k)?;
    d.set_item("anomalies", PyArray1::from_vec(py, res.anomalies.iter().map(|&i| i as u64).collect::<Vec<_>>()))?;
    d.set_item("soft_assignment", matrix(py, res.q)?)?;
    d.set_item("z", matrix(py, res.z)?)?;
    d.set_item("z_star", matrix(py, res.z_star)?)?;
    d.set_item("corrected", res.corrected.map(|m| matrix(py, m)).transpose()?)?;
    Ok(d)
}
