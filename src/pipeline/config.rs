//! Settings of a detection run: defaults are the authors' released
//! defaults (README, `detect`); every field can be set from a TOML file whose keys
//! are these field names, and the CLI flags override the file.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::generator::GeneratorConfig;
use crate::model::mmd::Counts;
use crate::model::scorer::ScorerConfig;
use crate::model::train::TrainConfig;

pub use crate::model::scorer::Kernel;

/// Which score ranks the target cells and makes the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoreMethod {
    /// Novelty in a joint PCA of reference and target, corrected by
    /// Harmony and the MNN refinement: distance to the nearest reference
    /// cells, scarcity of reference cells nearby and the target/reference
    /// density ratio; conformal p-values against the reference; calls at
    /// `fdr` (default; needs no GAN).
    #[default]
    Novelty,
    /// The paper's Module I: GAN deviations scored by the γ_c MMD scorer
    /// (p > 0.5 calls).
    Paper,
}

/// Whether raw counts are normalized, log-transformed and reduced to HVGs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreprocessMode {
    /// Preprocess when the reference holds raw counts, else use values as they are.
    Auto,
    /// Always run normalize_total + log1p + HVG selection.
    Always,
    /// Use the values as they are.
    Never,
}

/// Module I settings. Field names are the TOML keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Seed of every random draw (initialisation, shuffling, dropout, GP).
    pub seed: u64,
    /// Minibatch size (the last partial batch of an epoch is dropped).
    pub batch_size: usize,
    /// Epochs without the memory block (x̂ = Dec(Enc(x))).
    pub prepare_epochs: usize,
    /// Epochs with the memory block; the learning rate is cosine-annealed over them.
    pub train_epochs: usize,
    /// Critic steps per generator step.
    pub n_critic: usize,
    /// Adam learning rate of generator and critic.
    pub lr: f32,
    /// Adam β1.
    pub beta1: f32,
    /// Adam β2.
    pub beta2: f32,
    /// Width of the first encoder layer.
    pub hidden_dim: usize,
    /// Width of the latent space (encoder output).
    pub latent_dim: usize,
    /// Residual blocks in the encoder and in the decoder.
    pub n_resblocks: usize,
    /// Dropout probability in generator and critic.
    pub dropout: f32,
    /// Rows of the memory queue (a multiple of batch_size).
    pub mem_size: usize,
    /// Temperature of the memory attention softmax.
    pub mem_temperature: f32,
    /// Hard-shrinkage threshold of the memory attention.
    pub mem_shrink: f32,
    /// Weight of the L1 reconstruction loss.
    pub lambda_rec: f32,
    /// Weight of the adversarial loss.
    pub lambda_adv: f32,
    /// Weight of the gradient penalty.
    pub lambda_gp: f32,
    /// Width of the critic's hidden layer.
    pub critic_hidden: usize,
    /// Width of the critic's output.
    pub critic_out: usize,
    /// Full-batch training steps of the scorer MLP.
    pub scorer_steps: usize,
    /// Adam learning rate of the scorer.
    pub scorer_lr: f32,
    /// MMD kernel.
    pub kernel: Kernel,
    /// Expected anomaly fraction: fixes m and n and calls the top fraction.
    /// When absent, m and n are soft counts and cells with p > 0.5 are called.
    pub anomaly_ratio: Option<f64>,
    /// Preprocessing of raw counts.
    pub preprocess: PreprocessMode,
    /// Highly variable genes chosen on the reference (0 = all genes).
    pub n_hvg: usize,
    /// HVG method on raw counts: `seurat` (scanpy's default, dispersion of
    /// the log-normalized values — the space every score works in — and
    /// the authors' pipeline's choice) or `seurat_v3` (variance of
    /// standardized counts). Log-normalized input always uses `seurat`.
    pub hvg_flavor: crate::data::preprocess::HvgFlavor,
    /// The score that ranks and calls (`novelty`, or the paper's `paper`).
    pub score: ScoreMethod,
    /// False discovery rate of the default calls (Benjamini–Hochberg on
    /// the novelty score's conformal p-values).
    pub fdr: f64,
    /// Settings of the novelty score (`[novelty]` table).
    pub novelty: crate::model::novelty::NoveltyConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            seed: 0,
            batch_size: 128,
            prepare_epochs: 50,
            train_epochs: 20,
            n_critic: 2,
            lr: 1e-4,
            beta1: 0.5,
            beta2: 0.999,
            hidden_dim: 512,
            latent_dim: 256,
            n_resblocks: 2,
            dropout: 0.1,
            mem_size: 512,
            mem_temperature: 0.05,
            mem_shrink: 0.01,
            lambda_rec: 30.0,
            lambda_adv: 1.0,
            lambda_gp: 10.0,
            critic_hidden: 256,
            critic_out: 16,
            scorer_steps: 20,
            scorer_lr: 1e-4,
            kernel: Kernel::Linear,
            anomaly_ratio: None,
            preprocess: PreprocessMode::Auto,
            n_hvg: 3000,
            hvg_flavor: crate::data::preprocess::HvgFlavor::Seurat,
            score: ScoreMethod::Novelty,
            fdr: 0.1,
            novelty: crate::model::novelty::NoveltyConfig::default(),
        }
    }
}

impl DetectConfig {
    /// Reads a TOML file; unknown keys are an error naming the key.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))
    }

    /// Checks every value before any work starts: each model's own
    /// `validate` on the settings this table gives it, then the calls'.
    pub fn validate(&self) -> Result<()> {
        self.train_config(1).validate()?;
        self.scorer_config(std::env::temp_dir()).validate()?;
        if !(self.fdr > 0.0 && self.fdr < 1.0) {
            return Err(Error::Config(format!("fdr must be in (0, 1), got {}", self.fdr)));
        }
        self.novelty.validate()
    }

    /// The generator these settings train on `genes` genes.
    pub fn generator_config(&self, genes: usize) -> GeneratorConfig {
        GeneratorConfig {
            mem_size: self.mem_size,
            mem_temperature: self.mem_temperature,
            mem_shrink: self.mem_shrink,
            memory: self.train_epochs > 0,
            ..GeneratorConfig::without_memory(genes, self.hidden_dim, self.latent_dim, self.n_resblocks, self.dropout)
        }
    }

    /// Module I's adversarial training on `genes` genes.
    pub fn train_config(&self, genes: usize) -> TrainConfig {
        TrainConfig {
            generator: self.generator_config(genes),
            seed: self.seed,
            batch_size: self.batch_size,
            prepare_epochs: self.prepare_epochs,
            train_epochs: self.train_epochs,
            n_critic: self.n_critic,
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            lambda_rec: self.lambda_rec,
            lambda_adv: self.lambda_adv,
            lambda_gp: self.lambda_gp,
            critic_hidden: self.critic_hidden,
            critic_out: self.critic_out,
        }
    }

    /// The paper's MMD scorer; its caches spill to `spill_dir`.
    pub fn scorer_config(&self, spill_dir: std::path::PathBuf) -> ScorerConfig {
        ScorerConfig {
            h1: self.hidden_dim,
            h2: self.latent_dim,
            slope: 0.2,
            dropout: self.dropout,
            steps: self.scorer_steps,
            lr: self.scorer_lr,
            beta1: self.beta1,
            beta2: self.beta2,
            kernel: self.kernel,
            counts: self.anomaly_ratio.map_or(Counts::Soft, Counts::Ratio),
            seed: self.seed,
            chunk_rows: 0,
            mem_budget: 1 << 30,
            spill_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_authors_and_valid() {
        let c = DetectConfig::default();
        c.validate().unwrap();
        assert_eq!((c.batch_size, c.prepare_epochs, c.train_epochs, c.n_critic), (128, 50, 20, 2));
        assert_eq!((c.mem_size, c.mem_temperature, c.mem_shrink), (512, 0.05, 0.01));
    }

    #[test]
    fn toml_overrides_and_rejects_unknown_keys() {
        let c: DetectConfig = toml::from_str("seed = 7\nkernel = \"rbf\"\nanomaly_ratio = 0.2").unwrap();
        assert_eq!((c.seed, c.kernel, c.anomaly_ratio), (7, Kernel::Rbf, Some(0.2)));
        assert_eq!(c.batch_size, 128);
        assert!(toml::from_str::<DetectConfig>("sed = 7").is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let c = DetectConfig { mem_size: 500, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("multiple"));
        let c = DetectConfig { anomaly_ratio: Some(1.5), ..Default::default() };
        assert!(c.validate().is_err());
        for fdr in [0.0, 1.0, f64::NAN] {
            let e = DetectConfig { fdr, ..Default::default() }.validate().unwrap_err().to_string();
            assert!(e.contains("fdr must be in (0, 1)"), "{e}");
        }
        let mut c = DetectConfig::default();
        c.novelty.k_distance = 0;
        assert!(c.validate().is_err());
    }

    /// Issue 15 item 9: `--epochs-prepare 0 --epochs-train 0` and
    /// `lambda_gp = -10` were accepted.
    #[test]
    fn zero_epochs_and_negative_loss_weights_are_refused() {
        for (p, t) in [(0, 20), (50, 0), (0, 0)] {
            let e = DetectConfig { prepare_epochs: p, train_epochs: t, ..Default::default() }.validate().unwrap_err().to_string();
            assert!(e.contains("prepare_epochs and train_epochs must be at least 1"), "{e}");
        }
        let e = DetectConfig { lambda_gp: -10.0, ..Default::default() }.validate().unwrap_err().to_string();
        assert_eq!(e, "invalid configuration: lambda_gp must be a finite number >= 0, got -10");
        for v in [-1.0, f32::NAN, f32::INFINITY] {
            assert!(DetectConfig { lambda_rec: v, ..Default::default() }.validate().is_err());
            assert!(DetectConfig { lambda_adv: v, ..Default::default() }.validate().is_err());
        }
        let c = DetectConfig { mem_shrink: -0.01, ..Default::default() };
        assert!(c.validate().is_err());
    }
}
