//! Settings of a whole-workflow run (`acsleuth run`): one table per module.
//! In a TOML file the keys of Module I sit under `[detect]` (the same keys
//! as `acsleuth detect --config`), Module II's under `[kin]`, Module III's
//! under `[style]`, Module IV's under `[subtype]`; the top-level keys are
//! the workflow's own.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::kin::KinConfig;
use crate::model::style::StyleConfig;
use crate::model::subtype::{SubtypeConfig, SubtypeFeatures};
use crate::pipeline::{DetectConfig, ScoreMethod};

/// Settings of every module. Defaults are the authors' (README, `run`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Module I: generator, critic, scorer.
    pub detect: DetectConfig,
    /// Module II: kin pairing (cosine similarity by default).
    pub kin: KinConfig,
    /// Module III: style-transfer batch correction.
    pub style: StyleConfig,
    /// Module IV: transformer fusion + DESC.
    pub subtype: SubtypeConfig,
    /// Run Module III (off: subtype the uncorrected expression, the
    /// paper's "without batch correction" ablation).
    pub batch_correction: bool,
    /// How target cells are mapped into reference space when
    /// `batch_correction` is on.
    pub correction: Correction,
    /// Rows per chunk when embedding, pairing and correcting.
    pub chunk: usize,
}

/// The batch correction of the workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// Module III as the paper has it: the style-transfer generator's
    /// output `Dec(Enc(x) − Sᵀb)`. It is trained on normal kin pairs only,
    /// so it maps an anomaly onto normal-looking expression: on our
    /// simulations the anomalies' subtypes are lost (README, "Accuracy").
    Style,
    /// The default: subtract each batch's kin shift, gene by gene the mean
    /// `x_target − x_kin` over the batch's kin pairs where both are
    /// expressed, from the expressed (non-zero) entries (clamped at 0).
    /// Removes the batch's average effect and keeps every cell's own
    /// deviations, the anomalies' included; needs no training (Module III's
    /// generator is not trained).
    KinShift,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            detect: DetectConfig::default(),
            kin: KinConfig::default(),
            style: StyleConfig::default(),
            subtype: SubtypeConfig::default(),
            batch_correction: true,
            correction: Correction::KinShift,
            chunk: 1024,
        }
    }
}

impl RunConfig {
    /// Reads a TOML file; unknown keys are errors (a typo must not pass
    /// silently as a default).
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// One seed for every module (each derives its own streams from it).
    pub fn set_seed(&mut self, seed: u64) {
        self.detect.seed = seed;
        self.style.seed = seed;
        self.subtype.seed = seed;
    }

    /// Checks every module's settings before any work starts: each
    /// module's own `validate`, and what the modules' settings must agree
    /// on. The one validation point of a run; [`validate_for`] adds the
    /// checks that need the inputs' shapes.
    ///
    /// [`validate_for`]: RunConfig::validate_for
    pub fn validate(&self) -> Result<()> {
        self.detect.validate()?;
        self.style.validate()?;
        // Zero epochs would leave the style generator as it was initialised
        // and call the result a correction.
        if self.style.epochs == 0 {
            return Err(Error::Config("style.epochs must be at least 1".into()));
        }
        // The fusion block runs on Module I's encodings (latent_dim wide);
        // DESC on the joint coordinates has no fusion block.
        let fused = self.subtype.features == SubtypeFeatures::ModuleI || self.detect.score == ScoreMethod::Paper;
        let subtype = if fused { self.subtype.clone() } else { SubtypeConfig { layers: 0, ..self.subtype.clone() } };
        subtype.validate(self.detect.latent_dim)?;
        if self.chunk == 0 {
            return Err(Error::Config("chunk must be at least 1".into()));
        }
        Ok(())
    }

    /// [`validate`](RunConfig::validate) and the checks that need the
    /// number of reference and target cells (known before any training).
    pub fn validate_for(&self, n_reference: usize, n_target: usize) -> Result<()> {
        self.validate()?;
        if let Some(k) = self.subtype.n_subtypes
            && k > n_target
        {
            return Err(Error::Config(format!("subtype.n_subtypes: {k} subtypes asked for but the target has {n_target} cells")));
        }
        if self.detect.score == ScoreMethod::Novelty {
            self.detect.novelty.validate_for(n_reference, n_target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 9: zero epochs (style, subtype), zero critic steps and
    /// negative style loss weights were accepted; each is refused by name
    /// before any work.
    #[test]
    fn zero_epochs_and_negative_style_weights_are_refused() {
        RunConfig::default().validate().unwrap();
        let bad = |f: &dyn Fn(&mut RunConfig), want: &str| {
            let mut c = RunConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        bad(&|c| c.style.epochs = 0, "style.epochs must be at least 1");
        bad(&|c| c.style.n_critic = 0, "style.n_critic must be at least 1");
        bad(&|c| c.style.lambda_gp = -10.0, "style.lambda_gp must be a finite number ≥ 0");
        bad(&|c| c.style.lambda_rec = f32::NAN, "style.lambda_rec");
        bad(&|c| c.subtype.max_epochs = 0, "subtype.max_epochs must be at least 1");
    }

    /// Issue 16: these settings failed only at Module III or IV, after
    /// hours of training; each is now refused by `validate` (or, for the
    /// number of subtypes, by `validate_for` with the target's size).
    #[test]
    fn every_module_setting_is_checked_up_front() {
        let bad = |f: &dyn Fn(&mut RunConfig), want: &str| {
            let mut c = RunConfig::default();
            f(&mut c);
            let e = c.validate_for(500, 500).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        bad(&|c| c.subtype.dropout = 1.5, "subtype.dropout must be in [0, 1), got 1.5");
        bad(&|c| c.subtype.knn = 0, "subtype.knn must be at least 1");
        bad(&|c| c.subtype.nu = 0.0, "subtype.nu must be positive");
        bad(
            &|c| {
                c.subtype.features = SubtypeFeatures::ModuleI;
                c.subtype.heads = 3;
            },
            "subtype.heads (3) must divide the embedding width 256",
        );
        bad(&|c| c.subtype.n_subtypes = Some(100_000), "100000 subtypes asked for but the target has 500 cells");
        bad(
            &|c| {
                c.correction = Correction::Style;
                c.style.n_critic = 0;
            },
            "style.n_critic must be at least 1",
        );
        bad(&|c| c.style.dropout = 1.0, "style.dropout must be in [0, 1)");
        // The fusion block is not run on the joint coordinates: its heads
        // need not divide anything there.
        let c = RunConfig { subtype: SubtypeConfig { heads: 3, ..SubtypeConfig::default() }, ..RunConfig::default() };
        c.validate_for(500, 500).unwrap();
    }
}
