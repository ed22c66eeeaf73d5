//! `acsleuth._acsleuth`: the Rust engine for the Python package. The Python
//! layer (`acsleuth/_api.py`) turns AnnData, numpy and scipy inputs into
//! plain dicts of arrays (see [`input`]), and the results back into AnnData
//! annotations; this module only calls the library's pipeline entry points
//! (`detect_owned`, `run_workflow`) on the device the caller names.

mod compute;
mod detector;
mod errors;
mod input;
mod output;

use acsleuth::backend::Backend;
use acsleuth::cli::common::Job;
use acsleuth::data::Dataset;
use acsleuth::error::{Error, Result};
use acsleuth::pipeline::detect::{detect_owned, DetectOptions, DetectResult};
use acsleuth::pipeline::run::{run_workflow, Batches, RunConfig, RunOptions, RunResult};
use acsleuth::pipeline::DetectConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use compute::Machine;

/// Settings as JSON (the keys of `report.json`'s `settings`); unknown keys
/// are errors, as in a `--config` file.
fn settings<T: serde::de::DeserializeOwned>(json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| errors::to_py(Error::Config(format!("settings: {e}"))))
}

struct Detect {
    /// Taken by the run, which frees the copies once they are prepared.
    inputs: std::sync::Mutex<Option<(Dataset, Dataset)>>,
    cfg: DetectConfig,
    opts: DetectOptions,
}

impl Job for Detect {
    type Output = DetectResult;
    fn run<B: Backend>(&self, be: &B) -> Result<DetectResult> {
        let taken = self.inputs.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (reference, target) = taken.ok_or_else(|| Error::Other("internal: detection inputs used twice".into()))?;
        detect_owned(be, reference, target, &self.cfg, &self.opts)
    }
}

/// Detection (as `acsleuth detect`): scores, calls, p/q-values, the
/// corrected joint embedding (novelty score) or deviations (paper score),
/// and the report as JSON.
#[pyfunction]
#[pyo3(signature = (reference, target, settings_json, batch_key=None, device="auto".to_string(), threads=None))]
fn detect<'py>(
    py: Python<'py>,
    reference: &Bound<'py, PyDict>,
    target: &Bound<'py, PyDict>,
    settings_json: &str,
    batch_key: Option<String>,
    device: String,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg: DetectConfig = settings(settings_json)?;
    cfg.validate().map_err(errors::to_py)?;
    let job = Detect {
        inputs: std::sync::Mutex::new(Some((input::dataset(reference)?, input::dataset(target)?))),
        cfg,
        opts: DetectOptions { batch_key, ..DetectOptions::default() },
    };
    let res = compute::run(py, &Machine { device, threads }, job)?;
    output::detect(py, res)
}

struct Run {
    reference: Dataset,
    target: Dataset,
    batches: Batches,
    cfg: RunConfig,
    opts: RunOptions,
}

impl Job for Run {
    type Output = RunResult;
    fn run<B: Backend>(&self, be: &B) -> Result<RunResult> {
        run_workflow(be, &self.reference, &self.target, &self.batches, &self.cfg, &self.opts)
    }
}

/// The whole workflow (as `acsleuth run`, without its files): detection,
/// kin pairing, batch correction, subtypes.
#[pyfunction]
#[pyo3(signature = (reference, target, settings_json, batch_key=None, keep_corrected=false, device="auto".to_string(), threads=None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    reference: &Bound<'py, PyDict>,
    target: &Bound<'py, PyDict>,
    settings_json: &str,
    batch_key: Option<String>,
    keep_corrected: bool,
    device: String,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg: RunConfig = settings(settings_json)?;
    cfg.validate().map_err(errors::to_py)?;
    let target = input::dataset(target)?;
    let batches = Batches::from_obs(&target, batch_key.as_deref()).map_err(errors::to_py)?;
    let job = Run {
        reference: input::dataset(reference)?,
        target,
        batches,
        cfg,
        opts: RunOptions { keep_corrected, ..RunOptions::default() },
    };
    let res = compute::run(py, &Machine { device, threads }, job)?;
    output::run(py, res)
}

/// The default settings of `detect` and `run` as JSON.
#[pyfunction]
fn default_settings(workflow: bool) -> PyResult<String> {
    let s = if workflow { serde_json::to_string(&RunConfig::default()) } else { serde_json::to_string(&DetectConfig::default()) };
    s.map_err(|e| errors::to_py(Error::Other(e.to_string())))
}

/// The engine's current stage: (name, position, length; 0 = unknown), or
/// None before the first stage of a call.
#[pyfunction]
fn progress_state() -> Option<(String, u64, u64)> {
    acsleuth::progress::current()
}

#[pymodule]
fn _acsleuth(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Progress shows as tqdm bars (acsleuth/_progress.py), not the
    // engine's terminal bars; set here, not through ACSLEUTH_QUIET, so the
    // caller's environment (and its child processes) is left as it was.
    acsleuth::progress::set_quiet(true);
    m.add_function(wrap_pyfunction!(detect, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(default_settings, m)?)?;
    m.add_function(wrap_pyfunction!(progress_state, m)?)?;
    m.add_class::<detector::PyDetector>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
