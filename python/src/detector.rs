//! `Detector`: a reference fitted once (the library's
//! [`acsleuth::pipeline::detector::Detector`]), saved as safetensors, and
//! used to score many targets.

use std::path::PathBuf;
use std::sync::Arc;

use acsleuth::backend::Backend;
use acsleuth::cli::common::Job;
use acsleuth::data::Dataset;
use acsleuth::error::Result;
use acsleuth::pipeline::detect::{DetectOptions, DetectResult};
use acsleuth::pipeline::detector::Detector;
use acsleuth::pipeline::DetectConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::compute::{self, Machine};
use crate::{errors, input, output, settings};

/// A fitted reference (novelty score).
#[pyclass(name = "FittedReference", module = "acsleuth._acsleuth", frozen)]
pub struct PyDetector {
    inner: Arc<Detector>,
}

struct Fit {
    reference: Dataset,
    cfg: DetectConfig,
}

impl Job for Fit {
    type Output = Detector;
    fn run<B: Backend>(&self, _be: &B) -> Result<Detector> {
        Detector::fit(&self.reference, &self.cfg)
    }
}

struct Score {
    det: Arc<Detector>,
    target: Dataset,
    cfg: DetectConfig,
    opts: DetectOptions,
}

impl Job for Score {
    type Output = DetectResult;
    fn run<B: Backend>(&self, be: &B) -> Result<DetectResult> {
        self.det.score_with(be, &self.target, &self.cfg, &self.opts)
    }
}

#[pymethods]
impl PyDetector {
    /// Prepares the reference (gene filter, HVGs, log-normalization) under
    /// the settings (JSON).
    #[staticmethod]
    #[pyo3(signature = (reference, settings_json, threads=None))]
    fn fit(py: Python<'_>, reference: &Bound<'_, PyDict>, settings_json: &str, threads: Option<usize>) -> PyResult<Self> {
        let cfg: DetectConfig = settings(settings_json)?;
        let job = Fit { reference: input::dataset(reference)?, cfg };
        let inner = compute::run(py, &Machine { device: "cpu".into(), threads }, job)?;
        Ok(PyDetector { inner: Arc::new(inner) })
    }

    /// Scores a target as `detect` would with this reference; the settings
    /// (JSON) may change the target's part (fdr, anomaly_ratio, seed, novelty).
    #[pyo3(signature = (target, settings_json, batch_key=None, device="auto".to_string(), threads=None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        target: &Bound<'py, PyDict>,
        settings_json: &str,
        batch_key: Option<String>,
        device: String,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cfg: DetectConfig = settings(settings_json)?;
        let job = Score { det: Arc::clone(&self.inner), target: input::dataset(target)?, cfg, opts: DetectOptions { batch_key, ..DetectOptions::default() } };
        let res = compute::run(py, &Machine { device, threads }, job)?;
        output::detect(py, res)
    }

    /// Writes the safetensors checkpoint.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).map_err(errors::to_py)
    }

    /// Reads a checkpoint written by `save` (or `acsleuth detect --save-model`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| Detector::load(&path)).map_err(errors::to_py)?;
        Ok(PyDetector { inner: Arc::new(inner) })
    }

    /// The settings (JSON).
    #[getter]
    fn settings_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.settings).map_err(|e| errors::to_py(acsleuth::Error::Other(e.to_string())))
    }

    /// The genes every target is aligned to.
    #[getter]
    fn genes(&self) -> Vec<String> {
        self.inner.reference.genes.clone()
    }

    /// Cells of the prepared reference.
    #[getter]
    fn n_reference(&self) -> usize {
        self.inner.reference.matrix.rows
    }
}
