//! The gene- and cell-level parameters drawn once per simulation: base
//! means, DE and batch factors, normalised expression profiles per
//! (type, batch), and the truth labels of every cell.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{ChiSquared, Distribution, Gamma, LogNormal};

use super::config::{DeParams, SimConfig};
use crate::data::ObsColumn;
use crate::error::{Error, Result};

/// Which of the two simulated sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetKind {
    Reference,
    Target,
}

impl SetKind {
    /// The cell-name prefix (`ref_000001`, `tgt_000001`).
    pub fn prefix(self) -> &'static str {
        match self {
            SetKind::Reference => "ref",
            SetKind::Target => "tgt",
        }
    }
}

/// Independent random streams: each part of the model draws from its own
/// generator, so changing one size (say the number of anomaly types) leaves
/// the other parts of the simulation unchanged.
#[derive(Clone, Copy)]
#[repr(u64)]
pub(super) enum Stream {
    GeneMeans = 1,
    NormalDe = 2,
    AnomalyDe = 3,
    Batch = 4,
    Bcv = 5,
    RefLabels = 6,
    TargetLabels = 7,
    RefCells = 8,
    TargetCells = 9,
    NormalCondition = 10,
    AnomalyCondition = 11,
}

/// SplitMix64's finaliser: a bijective 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of `(seed, stream, index)`: portable (Xoshiro256++ is
/// specified bit for bit) and independent of threads and chunk scheduling.
pub(super) fn stream_rng(seed: u64, stream: Stream, index: u64) -> Xoshiro256PlusPlus {
    let h = mix(mix(mix(seed) ^ stream as u64) ^ index);
    Xoshiro256PlusPlus::seed_from_u64(h)
}

/// Truth labels of one set: per cell an index into the simulator's types
/// (normal types first, then anomaly types) and a batch index.
#[derive(Clone, Debug, PartialEq)]
pub struct CellLabels {
    pub kind: SetKind,
    /// `[n_cells]`: 0..n_types are normal types, n_types.. anomaly types.
    pub cell_type: Vec<u16>,
    /// `[n_cells]`: batch index.
    pub batch: Vec<u16>,
    /// Digits in cell names (at least 6, more for larger sets so names sort).
    name_width: usize,
}

impl CellLabels {
    pub fn len(&self) -> usize {
        self.cell_type.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cell_type.is_empty()
    }
    /// The name of cell `i` (0-based): `ref_000001`, `tgt_000001`, ...
    pub fn cell_name(&self, i: usize) -> String {
        format!("{}_{:0w$}", self.kind.prefix(), i + 1, w = self.name_width)
    }
    pub fn cell_names(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.cell_name(i)).collect()
    }
}

/// A configured simulation: all gene-level parameters drawn, cells labelled.
/// Counts are produced by [`Simulator::generate`] (streamed) or
/// [`super::simulate_dataset`] (in memory).
#[derive(Clone, Debug)]
pub struct Simulator {
    pub(super) config: SimConfig,
    /// `[n_genes]` base means (outliers included).
    pub(super) base_means: Vec<f64>,
    /// `[n_genes]` whether the gene is an outlier.
    pub(super) outliers: Vec<bool>,
    /// `[n_types + n_anomaly_types][n_genes]` DE factors (1 = not DE).
    pub(super) de_factors: Vec<Vec<f64>>,
    /// `[n_batches][n_genes]` batch factors.
    pub(super) batch_factors: Vec<Vec<f64>>,
    /// `[n_genes]` gene-wise BCV scatter sqrt(df / χ²_df).
    pub(super) bcv_scatter: Vec<f64>,
    /// Library sizes ~ LogNormal(lib_loc, lib_scale).
    pub(super) lib_sizes: LogNormal<f64>,
    /// `[(type · n_batches + batch) · n_genes + gene]` expression profile:
    /// the expected fraction of a cell's counts, each row summing to 1.
    pub(super) profiles: Vec<f64>,
    /// `[n_types + n_anomaly_types][n_genes]` condition factors of the
    /// target; empty when `condition_shift` is 0.
    pub(super) condition_factors: Vec<Vec<f64>>,
    /// The target's profiles (laid out as `profiles`) with the condition
    /// factors applied; `None` when the condition shift is off, and the
    /// target then draws from `profiles` as the reference does.
    pub(super) target_profiles: Option<Vec<f64>>,
    pub(super) reference: CellLabels,
    pub(super) target: CellLabels,
}

impl Simulator {
    /// Validates `config` and draws the gene-level parameters and the labels.
    /// Costs O(n_genes · (types + batches) + cells); counts are not drawn here.
    pub fn new(config: SimConfig) -> Result<Self> {
        config.validate()?;
        let g = config.n_genes;
        let n_all = config.n_types + config.n_anomaly_types;

        let (base_means, outliers) = draw_base_means(&config)?;
        let mut de_factors = Vec::with_capacity(n_all);
        for t in 0..config.n_types {
            let mut rng = stream_rng(config.seed, Stream::NormalDe, t as u64);
            de_factors.push(draw_de(&mut rng, &config.de, g)?);
        }
        for a in 0..config.n_anomaly_types {
            let mut rng = stream_rng(config.seed, Stream::AnomalyDe, a as u64);
            de_factors.push(draw_de(&mut rng, &config.anomaly_de, g)?);
        }
        let batch_dist = LogNormal::new(0.0, config.batch_scale).map_err(dist_err)?;
        let batch_factors: Vec<Vec<f64>> = (0..config.n_batches)
            .map(|b| {
                let mut rng = stream_rng(config.seed, Stream::Batch, b as u64);
                (0..g).map(|_| batch_dist.sample(&mut rng)).collect()
            })
            .collect();
        let chi = ChiSquared::new(config.bcv_df).map_err(dist_err)?;
        let mut rng = stream_rng(config.seed, Stream::Bcv, 0);
        let bcv_scatter: Vec<f64> = (0..g)
            .map(|_| {
                let c: f64 = chi.sample(&mut rng);
                (config.bcv_df / c.max(f64::MIN_POSITIVE)).sqrt()
            })
            .collect();

        let lib_sizes = LogNormal::new(config.lib_loc, config.lib_scale).map_err(dist_err)?;
        let profiles = build_profiles(&config, &base_means, &de_factors, &batch_factors, None)?;
        // Skipped entirely when off: no draw, so every other part of the
        // simulation (and its bytes) is what it was without the option.
        let (condition_factors, target_profiles) = if config.condition_shift > 0.0 {
            let f = draw_condition(&config)?;
            let p = build_profiles(&config, &base_means, &de_factors, &batch_factors, Some(&f))?;
            (f, Some(p))
        } else {
            (Vec::new(), None)
        };

        let reference = draw_labels(&config, SetKind::Reference);
        let target = draw_labels(&config, SetKind::Target);
        Ok(Simulator {
            config,
            base_means,
            outliers,
            de_factors,
            batch_factors,
            bcv_scatter,
            lib_sizes,
            profiles,
            condition_factors,
            target_profiles,
            reference,
            target,
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }
    pub fn n_genes(&self) -> usize {
        self.config.n_genes
    }
    /// The truth labels of one set.
    pub fn labels(&self, kind: SetKind) -> &CellLabels {
        match kind {
            SetKind::Reference => &self.reference,
            SetKind::Target => &self.target,
        }
    }
    /// Gene names `gene0001`, ... (at least 4 digits, more for more genes).
    pub fn gene_names(&self) -> Vec<String> {
        let w = digits(self.config.n_genes).max(4);
        (1..=self.config.n_genes).map(|i| format!("gene{i:0w$}")).collect()
    }
    /// All type names: `type1..typeK` then `anomaly1..anomalyA`.
    pub fn type_names(&self) -> Vec<String> {
        let normal = (1..=self.config.n_types).map(|i| format!("type{i}"));
        normal.chain((1..=self.config.n_anomaly_types).map(|i| format!("anomaly{i}"))).collect()
    }
    /// Batch names `batch0`, `batch1`, ...
    pub fn batch_names(&self) -> Vec<String> {
        (0..self.config.n_batches).map(|b| format!("batch{b}")).collect()
    }
    /// Whether type index `t` is an anomaly type.
    pub fn is_anomaly_type(&self, t: usize) -> bool {
        t >= self.config.n_types
    }
    /// The gene base means (`[n_genes]`).
    pub fn base_means(&self) -> &[f64] {
        &self.base_means
    }
    /// Which genes are outliers (`[n_genes]`).
    pub fn outlier_genes(&self) -> &[bool] {
        &self.outliers
    }
    /// DE factors of type `t` (`[n_genes]`, 1 where the gene is not DE).
    pub fn de_factors(&self, t: usize) -> &[f64] {
        &self.de_factors[t]
    }
    /// Batch factors of batch `b` (`[n_genes]`).
    pub fn batch_factors(&self, b: usize) -> &[f64] {
        &self.batch_factors[b]
    }
    /// The expected fraction of a cell's counts per gene for type `t` in
    /// batch `b` (`[n_genes]`, sums to 1): a reference cell's expected count
    /// of gene j is its library size times `profile(t, b)[j]` (before
    /// dropout). Without the condition shift, a target cell's too; see
    /// [`Simulator::set_profile`].
    pub fn profile(&self, t: usize, b: usize) -> &[f64] {
        let (g, nb) = (self.config.n_genes, self.config.n_batches);
        &self.profiles[(t * nb + b) * g..(t * nb + b + 1) * g]
    }
    /// [`Simulator::profile`] as the cells of set `kind` draw from it: the
    /// target's carries the condition factors when `condition_shift` > 0.
    pub fn set_profile(&self, kind: SetKind, t: usize, b: usize) -> &[f64] {
        match (kind, &self.target_profiles) {
            (SetKind::Target, Some(p)) => {
                let (g, nb) = (self.config.n_genes, self.config.n_batches);
                &p[(t * nb + b) * g..(t * nb + b + 1) * g]
            }
            _ => self.profile(t, b),
        }
    }
    /// The target's condition factors of type `t` (`[n_genes]`); `None`
    /// when `condition_shift` is 0.
    pub fn condition_factors(&self, t: usize) -> Option<&[f64]> {
        self.condition_factors.get(t).map(Vec::as_slice)
    }

    /// The truth as obs columns: `cell_type`, `is_anomaly`, `anomaly_type`,
    /// `batch`. Categories are the same for both sets (all types, all
    /// batches) so the two files agree on codes.
    pub fn obs_columns(&self, kind: SetKind) -> Vec<(String, ObsColumn)> {
        let labels = self.labels(kind);
        let k = self.config.n_types as i32;
        let type_codes: Vec<i32> = labels.cell_type.iter().map(|&t| t as i32).collect();
        let is_anomaly: Vec<bool> = type_codes.iter().map(|&t| t >= k).collect();
        let anomaly_codes: Vec<i32> = type_codes.iter().map(|&t| if t >= k { t - k + 1 } else { 0 }).collect();
        let mut anomaly_categories = vec!["normal".to_string()];
        anomaly_categories.extend(self.type_names().into_iter().skip(self.config.n_types));
        vec![
            (
                "cell_type".into(),
                ObsColumn::Categorical { categories: self.type_names(), codes: type_codes },
            ),
            ("is_anomaly".into(), ObsColumn::Bool(is_anomaly)),
            (
                "anomaly_type".into(),
                ObsColumn::Categorical { categories: anomaly_categories, codes: anomaly_codes },
            ),
            (
                "batch".into(),
                ObsColumn::Categorical {
                    categories: self.batch_names(),
                    codes: labels.batch.iter().map(|&b| b as i32).collect(),
                },
            ),
        ]
    }
}

fn digits(n: usize) -> usize {
    n.max(1).to_string().len()
}

fn dist_err(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("bad distribution parameter: {e}"))
}

/// Base means ~ Gamma(shape, rate); outliers replaced by
/// median · LogNormal(loc, scale), as splatter does.
fn draw_base_means(c: &SimConfig) -> Result<(Vec<f64>, Vec<bool>)> {
    let mut rng = stream_rng(c.seed, Stream::GeneMeans, 0);
    let gamma = Gamma::new(c.mean_shape, 1.0 / c.mean_rate).map_err(dist_err)?;
    let outlier_dist = LogNormal::new(c.outlier_loc, c.outlier_scale).map_err(dist_err)?;
    let mut means: Vec<f64> = (0..c.n_genes).map(|_| gamma.sample(&mut rng)).collect();
    // A Gamma draw with a small shape can underflow to 0; a gene with a zero
    // mean would never be expressed, so floor it at a tiny positive value.
    means.iter_mut().for_each(|m| *m = m.max(1e-12));
    let outliers: Vec<bool> = (0..c.n_genes).map(|_| rng.random::<f64>() < c.outlier_prob).collect();
    if outliers.iter().any(|&o| o) {
        let mut sorted = means.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) };
        for (m, &o) in means.iter_mut().zip(&outliers) {
            let f: f64 = outlier_dist.sample(&mut rng);
            if o {
                *m = median * f;
            }
        }
    }
    Ok((means, outliers))
}

/// `[types][genes]` profiles `m_j f_tj β_bj (c_tj)`, normalised per
/// (type, batch); `condition` adds the target's factors `c_tj`.
fn build_profiles(
    config: &SimConfig,
    base_means: &[f64],
    de_factors: &[Vec<f64>],
    batch_factors: &[Vec<f64>],
    condition: Option<&[Vec<f64>]>,
) -> Result<Vec<f64>> {
    let (g, nb, n_all) = (config.n_genes, config.n_batches, de_factors.len());
    let mut profiles = vec![0.0f64; n_all * nb * g];
    for t in 0..n_all {
        for b in 0..nb {
            let row = &mut profiles[(t * nb + b) * g..(t * nb + b + 1) * g];
            for (j, p) in row.iter_mut().enumerate() {
                *p = base_means[j] * de_factors[t][j] * batch_factors[b][j];
                if let Some(c) = condition {
                    *p *= c[t][j];
                }
            }
            let total: f64 = row.iter().sum();
            if !(total > 0.0 && total.is_finite()) {
                let what = if condition.is_some() { "mean/DE/batch/condition" } else { "mean/DE/batch" };
                return Err(Error::Config(format!(
                    "the gene means of type {t} in batch {b} sum to {total}; choose less extreme {what} parameters"
                )));
            }
            row.iter_mut().for_each(|p| *p /= total);
        }
    }
    Ok(profiles)
}

/// The target's condition factors `c_tj ~ LogNormal(0, condition_shift)`,
/// one vector per type (normal types, then anomaly types), each from its
/// own stream so that the number of types of one family leaves the other's
/// factors unchanged.
fn draw_condition(c: &SimConfig) -> Result<Vec<Vec<f64>>> {
    let dist = LogNormal::new(0.0, c.condition_shift).map_err(dist_err)?;
    let draw = |stream: Stream, i: usize| -> Vec<f64> {
        let mut rng = stream_rng(c.seed, stream, i as u64);
        if c.condition_genes >= 1.0 {
            return (0..c.n_genes).map(|_| dist.sample(&mut rng)).collect();
        }
        // Two draws per gene whatever the outcome (see draw_de).
        (0..c.n_genes)
            .map(|_| {
                let moved = rng.random::<f64>() < c.condition_genes;
                let f: f64 = dist.sample(&mut rng);
                if moved { f } else { 1.0 }
            })
            .collect()
    };
    let normal = (0..c.n_types).map(|t| draw(Stream::NormalCondition, t));
    Ok(normal.chain((0..c.n_anomaly_types).map(|a| draw(Stream::AnomalyCondition, a))).collect())
}

/// DE factors of one type: 1 for most genes, LogNormal(loc, scale) (or its
/// inverse) for a `prob` fraction.
fn draw_de(rng: &mut Xoshiro256PlusPlus, de: &DeParams, n_genes: usize) -> Result<Vec<f64>> {
    let dist = LogNormal::new(de.loc, de.scale).map_err(dist_err)?;
    Ok((0..n_genes)
        .map(|_| {
            // Three draws per gene whatever the outcome, so gene j's factor
            // does not depend on the fate of genes before it.
            let is_de = rng.random::<f64>() < de.prob;
            let down = rng.random::<f64>() < de.down_prob;
            let f: f64 = dist.sample(rng);
            match (is_de, down) {
                (false, _) => 1.0,
                (true, false) => f,
                (true, true) => 1.0 / f,
            }
        })
        .collect())
}

/// Evenly split `n` cells over labels `0..k` (`i % k`), then shuffle.
fn balanced(n: usize, k: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<u16> {
    let mut v: Vec<u16> = (0..n).map(|i| (i % k) as u16).collect();
    v.shuffle(rng);
    v
}

/// Types and batches of every cell of one set. Types are balanced (normal
/// types evenly; in the target exactly `n_anomalies` cells split evenly over
/// the anomaly types), batches balanced over the set's batch list, both in
/// random order, independently of each other.
fn draw_labels(c: &SimConfig, kind: SetKind) -> CellLabels {
    let (n, stream, batches) = match kind {
        SetKind::Reference => (c.n_ref, Stream::RefLabels, c.ref_batches.clone()),
        SetKind::Target => (c.n_target, Stream::TargetLabels, c.target_batch_list()),
    };
    let mut rng = stream_rng(c.seed, stream, 0);
    let n_anom = if kind == SetKind::Target { c.n_anomalies() } else { 0 };
    let mut cell_type: Vec<u16> = (0..n - n_anom).map(|i| (i % c.n_types) as u16).collect();
    cell_type.extend((0..n_anom).map(|i| (c.n_types + i % c.n_anomaly_types) as u16));
    cell_type.shuffle(&mut rng);
    let batch = balanced(n, batches.len(), &mut rng).into_iter().map(|i| batches[i as usize] as u16).collect();
    CellLabels { kind, cell_type, batch, name_width: digits(n).max(6) }
}
