//! Module IV — fine-grained subtyping of the called anomalies
//! (ARCHITECTURE §2): a transformer fusion block over each cell's two tokens
//! `[z, ζ]` (Module I's encoder on the corrected expression and on its
//! residual) gives `z*`; DESC clusters `z*` into subtypes, training the
//! fusion weights and the centroids together.
//!
//! - [`fusion`]: the fusion block (`z*` = the z token's output).
//! - [`desc`]: Student-t soft assignment, target refresh, KL training.
//! - [`kmeans`](mod@kmeans): k-means++ with restarts (DESC's initial centroids; public
//!   for the ablation on raw expression).
//! - [`graph`]: kNN graph + Louvain, and [`select_k`]: the number of
//!   subtypes when not given (the best silhouette up to Louvain's count).

pub mod desc;
pub mod fusion;
pub mod graph;
pub mod kmeans;
pub mod select_k;

use serde::{Deserialize, Serialize};

use crate::backend::rng::Stream;
use crate::backend::Backend;
use crate::data::matrix::DenseMatrix;
use crate::nn::params::Adam;
use crate::{Error, Result};

pub use desc::{hard_labels, target_distribution, DescModel, SubtypeEpoch};
pub use fusion::Fusion;
pub use graph::infer_k;
pub use kmeans::{kmeans, KMeans};

/// How the number of subtypes is inferred.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KRule {
    /// The k-means partition with the best mean silhouette, K from 2 up
    /// to the Louvain communities ([`select_k`]; default): the top level
    /// of the populations.
    #[default]
    Silhouette,
    /// The Louvain communities themselves, their means as the initial
    /// centroids (DESC's rule; finds communities inside populations).
    Louvain,
}

/// What Module IV clusters.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SubtypeFeatures {
    /// The anomalies' coordinates in the novelty score's corrected joint
    /// PCA (DESC without the fusion block): the space in which they were
    /// found to differ from the reference, and where a shift shared with
    /// the normal cells is already removed (default; needs the novelty
    /// score, else Module I's features are used).
    #[default]
    Joint,
    /// The paper's: the fusion block over Module I's encodings `[z, ζ]`.
    ModuleI,
}

/// Settings of Module IV; the defaults are the paper's, but for `features`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SubtypeConfig {
    /// What is clustered (see [`SubtypeFeatures`]).
    pub features: SubtypeFeatures,
    /// Number of subtypes; `None`: inferred by `k_rule`.
    pub n_subtypes: Option<usize>,
    /// How K is inferred when `n_subtypes` is not given.
    pub k_rule: KRule,
    /// Encoder layers of the fusion block (0: `z* = z`).
    pub layers: usize,
    pub heads: usize,
    /// Hidden width of each layer's feed-forward block.
    pub ffn: usize,
    pub dropout: f32,
    pub lr: f32,
    /// AdamW (decoupled) weight decay.
    pub weight_decay: f32,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Stop when fewer than this fraction of hard assignments change
    /// between two target refreshes.
    pub tol: f64,
    /// k-means++ restarts for the initial centroids.
    pub restarts: usize,
    /// Degrees of freedom of the Student-t kernel.
    pub nu: f32,
    /// Neighbours per cell of the kNN graph (K inferred only).
    pub knn: usize,
    /// Louvain resolution (K inferred only).
    pub resolution: f64,
    pub seed: u64,
}

impl Default for SubtypeConfig {
    fn default() -> Self {
        SubtypeConfig {
            features: SubtypeFeatures::Joint,
            n_subtypes: None,
            k_rule: KRule::Silhouette,
            layers: 3,
            heads: 4,
            ffn: 512,
            dropout: 0.1,
            lr: 1e-4,
            weight_decay: 1e-4,
            batch_size: 64,
            max_epochs: 100,
            tol: 0.001,
            restarts: 20,
            nu: 1.0,
            knn: 15,
            resolution: 1.0,
            seed: 0,
        }
    }
}

/// Subtypes of `n` cells.
#[derive(Clone, Debug)]
pub struct SubtypeResult {
    /// Hard subtype of each cell (`argmax` of `q`), `0..k`.
    pub labels: Vec<u32>,
    /// Soft assignments `[n, k]` (rows sum to 1).
    pub q: DenseMatrix,
    /// Fused embeddings `[n, d]`.
    pub z_star: DenseMatrix,
    pub k: usize,
    /// Whether `k` came from community detection.
    pub k_inferred: bool,
    /// Training epochs run.
    pub epochs: usize,
    pub log: Vec<SubtypeEpoch>,
}

impl SubtypeConfig {
    /// Checks every value that needs no data, before any work starts (the
    /// run's `RunConfig::validate` calls
    /// it); `width` is the width of the embeddings that will be clustered
    /// (the fusion block's heads must divide it). Messages name the
    /// `[subtype]` keys.
    pub fn validate(&self, width: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("subtype.{m}")));
        if self.n_subtypes == Some(0) {
            return bad("n_subtypes must be at least 1 (or absent for auto)".into());
        }
        if self.layers > 0 && (self.heads == 0 || !width.is_multiple_of(self.heads)) {
            return bad(format!("heads ({}) must divide the embedding width {width}", self.heads));
        }
        if self.layers > 0 && self.ffn == 0 {
            return bad("ffn must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight_decay must be a finite number ≥ 0, got {}", self.weight_decay));
        }
        if self.batch_size == 0 || self.restarts == 0 || self.max_epochs == 0 {
            return bad(format!(
                "batch_size, subtype.restarts and subtype.max_epochs must be at least 1, got {}, {} and {}",
                self.batch_size, self.restarts, self.max_epochs
            ));
        }
        if !(self.nu.is_finite() && self.nu > 0.0) {
            return bad(format!("nu must be positive, got {}", self.nu));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(format!("tol must be a finite number ≥ 0, got {}", self.tol));
        }
        if self.n_subtypes.is_none() && self.knn == 0 {
            return bad("knn must be at least 1 (the graph that infers K)".into());
        }
        if !(self.resolution.is_finite() && self.resolution > 0.0) {
            return bad(format!("resolution must be positive, got {}", self.resolution));
        }
        Ok(())
    }
}

/// The settings, then the data: `z` and `ζ` of the same shape, at least as
/// many cells as subtypes asked for.
fn validate(z: &DenseMatrix, zeta: &DenseMatrix, cfg: &SubtypeConfig) -> Result<()> {
    kmeans::check_points(z, "subtyping (z)")?;
    kmeans::check_points(zeta, "subtyping (ζ)")?;
    if (z.rows, z.cols) != (zeta.rows, zeta.cols) {
        return Err(Error::invalid(format!(
            "subtyping: z is {}×{} but ζ is {}×{} (both must be cells × embedding)",
            z.rows, z.cols, zeta.rows, zeta.cols
        )));
    }
    cfg.validate(z.cols)?;
    match cfg.n_subtypes {
        Some(k) if k > z.rows => Err(Error::invalid(format!("subtyping: {k} subtypes asked for but only {} cells", z.rows))),
        _ => Ok(()),
    }
}

/// Subtype `n` cells from `z, zeta: [n, d]` (Module I's encoder on the
/// corrected expression and on its residual): fusion → initial centroids
/// (k-means++ with `restarts` on `z*`; with K inferred, the partition
/// [`select_k`] chooses, or under `k_rule = louvain` the means of the
/// Louvain communities, as DESC does) → DESC training until fewer than
/// `tol` of the hard assignments change between target refreshes, or
/// `max_epochs`. With one subtype (given, or inferred) every cell is
/// subtype 0 and nothing is trained.
pub fn subtype<B: Backend>(be: &B, z: &DenseMatrix, zeta: &DenseMatrix, cfg: &SubtypeConfig) -> Result<SubtypeResult> {
    validate(z, zeta, cfg)?;
    let (n, d) = (z.rows, z.cols);
    let mut rng = Stream::new(cfg.seed);
    let mut fusion = Fusion::new(be, d, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout, &mut rng);
    let z_star = fusion.embed(be, z, zeta, cfg.batch_size);
    if z_star.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::Other("subtyping: the fusion block produced non-finite embeddings".into()));
    }

    let (k, k_inferred, init_labels, centroids) = match cfg.n_subtypes {
        Some(k) if k > 1 => {
            let km = kmeans(&z_star, k, cfg.restarts, cfg.seed)?;
            (k, false, km.labels, km.centroids)
        }
        Some(k) => (k, false, vec![0; n], DenseMatrix::zeros(k, d)),
        None => {
            let (k, labels) = infer_k(&z_star, cfg.knn, cfg.resolution, cfg.seed)?;
            if cfg.k_rule == KRule::Louvain || k == 1 {
                let c = community_means(&z_star, &labels, k);
                (k, true, labels, c)
            } else {
                // Fewer restarts per K than for a given K: up to 11 Ks.
                let (km, _) = select_k::best_k(&z_star, k, cfg.restarts.min(5), cfg.seed)?;
                (km.centroids.rows, true, km.labels, km.centroids)
            }
        }
    };
    if k == 1 {
        return Ok(SubtypeResult {
            labels: vec![0; n],
            q: DenseMatrix { rows: n, cols: 1, data: vec![1.0; n] },
            z_star,
            k,
            k_inferred,
            epochs: 0,
            log: Vec::new(),
        });
    }

    let mut model = DescModel::new(be, fusion, &centroids, cfg.nu);
    let mut opt = Adam::new(cfg.lr, 0.9, 0.999).weight_decay(cfg.weight_decay, true);
    let mut order_rng = kmeans::Uniforms::new(rng.fork(0x5eed).seed);
    let mut prev = init_labels;
    let mut log = Vec::new();
    let mut epochs = 0;
    let (mut q, mut zs) = (model.soft_assign(be, &z_star), z_star);
    for epoch in 0..cfg.max_epochs {
        // Target refresh over all cells, and the stopping rule.
        let labels = hard_labels(&q);
        let changed = labels.iter().zip(&prev).filter(|(a, b)| a != b).count() as f64 / n as f64;
        prev = labels;
        if epoch > 0 && changed < cfg.tol {
            break;
        }
        let p = target_distribution(&q);
        let kl = model.train_epoch(be, &mut opt, z, zeta, &p, cfg.batch_size, &mut order_rng);
        if !kl.is_finite() {
            return Err(Error::Other(format!("subtyping: the DESC loss diverged at epoch {epoch}")));
        }
        log.push(SubtypeEpoch { epoch, kl, changed });
        epochs += 1;
        zs = model.fusion.embed(be, z, zeta, cfg.batch_size);
        q = model.soft_assign(be, &zs);
    }
    Ok(SubtypeResult { labels: hard_labels(&q), q, z_star: zs, k, k_inferred, epochs, log })
}

/// Mean of each community's rows: `[k, d]`.
fn community_means(x: &DenseMatrix, labels: &[u32], k: usize) -> DenseMatrix {
    let d = x.cols;
    let mut sums = vec![0.0f64; k * d];
    let mut counts = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        counts[l as usize] += 1;
        for (s, &v) in sums[l as usize * d..(l as usize + 1) * d].iter_mut().zip(x.row(i)) {
            *s += v as f64;
        }
    }
    let data = sums.iter().enumerate().map(|(i, s)| (s / counts[i / d].max(1) as f64) as f32).collect();
    DenseMatrix { rows: k, cols: d, data }
}
