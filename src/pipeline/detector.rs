//! A fitted detector: a reference prepared once, saved, and used to score
//! many targets (`acsleuth detect --model`, Python's `Detector`).
//!
//! The novelty score is non-parametric — each target is embedded jointly
//! with the reference (PCA, Harmony) and scored by its neighbours there —
//! so what a fit keeps is the reference as detection prepares it (genes
//! kept, highly variable genes, log-normalized values; see
//! [`prepare_reference`]) and the settings. Scoring a target is then
//! exactly [`detect_with`](crate::pipeline::detect::detect_with) on the
//! same reference: the same scores and calls for the same settings and
//! seed. The checkpoint fixes the genes: each target is aligned to them by
//! name (genes it lacks are zeros and counted in the report's `genes`;
//! fewer than half of them shared is an error).
//!
//! The file is safetensors: tensors `reference.indptr` (U64),
//! `reference.indices` (U32), `reference.data` (F32) of the prepared
//! reference (CSR, cells × genes), and text metadata `format`
//! ("acsleuth detector"), `version`, `settings` (TOML, the keys of
//! `report.json`'s settings), `genes`, `value_kind` and `chain` (JSON).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::backend::Backend;
use crate::data::{CsrMatrix, Dataset};
use crate::error::{Error, Result};
use crate::output::{io_at, write_atomic};
use crate::pipeline::detect::{detect_inputs, prepare_reference, prepare_target, DetectOptions, DetectResult, Inputs, PreparedReference};
use crate::pipeline::{DetectConfig, ScoreMethod};

/// The `format` metadata of a detector checkpoint.
pub const FORMAT: &str = "acsleuth detector";
const VERSION: &str = "1";

/// A reference prepared for the novelty score, with its settings.
#[derive(Clone, Debug)]
pub struct Detector {
    pub settings: DetectConfig,
    pub reference: PreparedReference,
}

impl Detector {
    /// Prepares `reference` under `settings` (the novelty score only: the
    /// paper's score trains its scorer on each target).
    pub fn fit(reference: &Dataset, settings: &DetectConfig) -> Result<Self> {
        settings.validate()?;
        if settings.score != ScoreMethod::Novelty {
            return Err(Error::Config(
                "a fitted detector holds the novelty score's reference; score = \"paper\" trains on each target (use detect)".into(),
            ));
        }
        Ok(Detector { settings: settings.clone(), reference: prepare_reference(reference, settings)? })
    }

    /// Scores `target` as `detect` would with the fitted reference.
    pub fn score<B: Backend>(&self, be: &B, target: &Dataset, opts: &DetectOptions) -> Result<DetectResult> {
        self.score_with(be, target, &self.settings, opts)
    }

    /// As [`score`](Self::score) with other settings for the target's part
    /// (`fdr`, `anomaly_ratio`, `seed`, `[novelty]`); the settings that
    /// shaped the reference (`preprocess`, `n_hvg`, `hvg_flavor`, `score`)
    /// must be the checkpoint's.
    pub fn score_with<B: Backend>(&self, be: &B, target: &Dataset, settings: &DetectConfig, opts: &DetectOptions) -> Result<DetectResult> {
        let s = &self.settings;
        if (settings.preprocess, settings.n_hvg, settings.hvg_flavor, settings.score) != (s.preprocess, s.n_hvg, s.hvg_flavor, s.score) {
            return Err(Error::Config(format!(
                "preprocess, n_hvg, hvg_flavor and score are fixed by the fitted reference ({:?}, {}, {:?}, {:?})",
                s.preprocess, s.n_hvg, s.hvg_flavor, s.score
            )));
        }
        settings.validate()?;
        let t0 = Instant::now();
        crate::progress::stage("preprocess");
        let prep = prepare_target(self.reference.clone(), target, settings)?;
        crate::progress::check_cancelled()?;
        let inputs = Inputs::prepared(&prep, target, opts.batch_key.as_deref(), settings, t0.elapsed().as_secs_f64())?;
        detect_inputs(be, &inputs, settings, opts)
    }

    /// Writes the checkpoint (atomically: a temporary file, then renamed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let m = &self.reference.matrix;
        let indptr: Vec<u8> = m.indptr.iter().flat_map(|x| x.to_le_bytes()).collect();
        let indices: Vec<u8> = m.indices.iter().flat_map(|x| x.to_le_bytes()).collect();
        let data: Vec<u8> = m.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        use safetensors::{tensor::TensorView, Dtype};
        let tensors = [
            ("reference.indptr", Dtype::U64, vec![m.indptr.len()], &indptr),
            ("reference.indices", Dtype::U32, vec![m.indices.len()], &indices),
            ("reference.data", Dtype::F32, vec![m.data.len()], &data),
        ];
        let views = tensors
            .iter()
            .map(|(n, t, s, d)| TensorView::new(*t, s.clone(), d.as_slice()).map(|v| (n.to_string(), v)).map_err(|e| Error::Other(format!("tensor {n}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("settings", toml::to_string(&self.settings).map_err(|e| Error::Other(format!("settings: {e}")))?),
            ("genes", json(&self.reference.genes)?),
            ("value_kind", json(&self.reference.kind)?),
            ("chain", json(&self.reference.chain)?),
            ("shape", json(&[m.rows, m.cols])?),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Through the output layer's atomic writer (a temporary removed on
        // a stop, the umask's mode; safetensors' own writer makes 0600).
        let bytes = crate::nn::params::serialize(views, Some(meta)).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        write_atomic(path, |w| w.write_all(&bytes).map_err(io_at(path)))
    }

    /// Reads a checkpoint written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |m: String| Error::corrupt(path, m);
        let (_, header) = safetensors::SafeTensors::read_metadata(&buf).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).ok_or_else(|| bad(format!("not an acsleuth detector checkpoint (no '{k}' metadata)")));
        match get("format")?.as_str() {
            FORMAT => {}
            "acsleuth module I" => {
                return Err(bad("a Module I checkpoint (--score paper): scoring new targets with it is not supported; give --reference".into()));
            }
            f => return Err(bad(format!("not an acsleuth detector checkpoint (format '{f}')"))),
        }
        if get("version")? != VERSION {
            return Err(bad(format!("detector checkpoint version {} (this acsleuth reads {VERSION})", get("version")?)));
        }
        let settings: DetectConfig = toml::from_str(get("settings")?).map_err(|e| bad(format!("settings: {}", e.message())))?;
        let genes: Vec<String> = serde_json::from_str(get("genes")?).map_err(|e| bad(format!("genes: {e}")))?;
        let kind = serde_json::from_str(get("value_kind")?).map_err(|e| bad(format!("value_kind: {e}")))?;
        let chain = serde_json::from_str(get("chain")?).map_err(|e| bad(format!("chain: {e}")))?;
        let [rows, cols]: [usize; 2] = serde_json::from_str(get("shape")?).map_err(|e| bad(format!("shape: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&buf).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let raw = |n: &str, dt: safetensors::Dtype| -> Result<Vec<u8>> {
            let t = st.tensor(n).map_err(|_| bad(format!("tensor {n} missing")))?;
            if t.dtype() != dt {
                return Err(bad(format!("tensor {n}: dtype {:?}, expected {dt:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let indptr: Vec<u64> = raw("reference.indptr", safetensors::Dtype::U64)?.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
        let indices: Vec<u32> = raw("reference.indices", safetensors::Dtype::U32)?.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default())).collect();
        let data: Vec<f32> = raw("reference.data", safetensors::Dtype::F32)?.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default())).collect();
        let ok = indptr.len() == rows + 1
            && genes.len() == cols
            && indices.len() == data.len()
            && indptr.first() == Some(&0)
            && indptr.last().is_some_and(|&l| l as usize == data.len())
            && indptr.windows(2).all(|w| w[0] <= w[1])
            && indices.iter().all(|&j| (j as usize) < cols);
        if !ok || rows == 0 {
            return Err(bad("the reference matrix is inconsistent (truncated or damaged file)".into()));
        }
        let matrix = CsrMatrix { rows, cols, indptr, indices: indices.into(), data: data.into() };
        settings.validate().map_err(|e| bad(e.to_string()))?;
        Ok(Detector { settings, reference: PreparedReference { matrix, genes, kind, chain } })
    }
}

/// JSON text of a metadata value.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Other(format!("metadata: {e}")))
}
