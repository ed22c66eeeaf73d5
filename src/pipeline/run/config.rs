//! Settings of a whole-workflow run (`acsleuth run`): one table per module.
//! In a TOML file the keys of Module I sit under `[detect]` (the same keys
//! as `acsleuth detect --config`), Module II's under `[kin]`, Module III's
//! under `[style]`, Module IV's under `[subtype]`; the top-level keys are
//! the workflow's own.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::kin::KinConfig;
use crate::model::style::StyleConfig;
use crate::model::subtype::SubtypeConfig;
use crate::pipeline::DetectConfig;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

    /// Checks every module's settings before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.detect.validate()?;
        let s = &self.style;
        if s.batch_size < 2 {
            return Err(Error::Config(format!("style.batch_size must be at least 2, got {}", s.batch_size)));
        }
        if !(s.lr > 0.0 && s.lr.is_finite()) {
            return Err(Error::Config(format!("style.lr must be positive, got {}", s.lr)));
        }
        // Zero epochs would leave the style generator as it was initialised
        // and call the result a correction; zero critic steps would train
        // it against an untrained critic.
        if s.epochs == 0 || s.n_critic == 0 {
            return Err(Error::Config(format!("style.epochs and style.n_critic must be at least 1, got {} and {}", s.epochs, s.n_critic)));
        }
        for (name, v) in [("lambda_rec", s.lambda_rec), ("lambda_adv", s.lambda_adv), ("lambda_gp", s.lambda_gp)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!("style.{name} must be a finite number ≥ 0, got {v}")));
            }
        }
        let t = &self.subtype;
        if t.n_subtypes == Some(0) {
            return Err(Error::Config("subtype.n_subtypes must be at least 1 (or absent for auto)".into()));
        }
        if t.batch_size == 0 || t.restarts == 0 || t.max_epochs == 0 {
            return Err(Error::Config(format!(
                "subtype.batch_size, subtype.restarts and subtype.max_epochs must be at least 1, got {}, {} and {}",
                t.batch_size, t.restarts, t.max_epochs
            )));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(Error::Config(format!("subtype.lr must be positive, got {}", t.lr)));
        }
        if self.chunk == 0 {
            return Err(Error::Config("chunk must be at least 1".into()));
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
        bad(&|c| c.style.epochs = 0, "style.epochs and style.n_critic must be at least 1");
        bad(&|c| c.style.n_critic = 0, "style.epochs and style.n_critic must be at least 1");
        bad(&|c| c.style.lambda_gp = -10.0, "style.lambda_gp must be a finite number ≥ 0");
        bad(&|c| c.style.lambda_rec = f32::NAN, "style.lambda_rec");
        bad(&|c| c.subtype.max_epochs = 0, "subtype.max_epochs must be at least 1");
    }
}
