//! Helpers shared by the test binaries (`mod common;`): the devices a test
//! body runs on ([`test_device!`], `ACSLEUTH_REQUIRE_GPU`), two deterministic
//! generators ([`Rng`], splitmix64 in f64; [`Lcg`], the 64-bit LCG the
//! kernel tests draw their inputs from), the tolerance checks ([`close`],
//! [`close64`], [`rel_err`]) and small log-expression-like reference/target
//! sets with known anomalies ([`simulate`]), Module I's training step on any
//! backend ([`module_i_steps`]), and the pbmc68k B/NK split of
//! the shared data ([`pbmc_split`]).
#![allow(dead_code, unused_imports)]

mod check;
mod devices;
mod lcg;
mod module_i;
mod pbmc;

pub use check::{close, close64, rel_err};
pub use devices::{cuda_backend, cuda_device, gpu_required};
pub use lcg::{lcg, Lcg};
pub use module_i::{module_i_steps, tiny_generator};
pub use pbmc::{pbmc_split, subset};

use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};

/// Deterministic uniform in [0, 1) (splitmix64).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Log-expression-like cells: 3 normal types (each a mean profile over
/// `genes`), anomalies with a shifted block of genes. Values ≥ 0 with
/// dropout zeros, as log-normalized data.
pub fn simulate(n_ref: usize, n_tgt: usize, genes: usize, frac: f64, seed: u64) -> (Dataset, Dataset, Vec<bool>) {
    let mut r = Rng(seed);
    let types: Vec<Vec<f64>> = (0..3).map(|_| (0..genes).map(|_| 0.5 + 2.0 * r.next()).collect()).collect();
    let mut anomaly = types[0].clone();
    anomaly.iter_mut().take(genes / 5).for_each(|v| *v += 1.5);
    let cell = |prof: &[f64], r: &mut Rng| -> Vec<f32> {
        prof.iter()
            .map(|&m| {
                let v = m + 0.35 * r.normal();
                if r.next() < 0.2 || v <= 0.0 { 0.0 } else { v as f32 }
            })
            .collect()
    };
    let mut rd = Vec::new();
    for i in 0..n_ref {
        rd.extend(cell(&types[i % 3], &mut r));
    }
    let mut td = Vec::new();
    let mut truth = Vec::new();
    for i in 0..n_tgt {
        let is_anom = r.next() < frac;
        truth.push(is_anom);
        td.extend(if is_anom { cell(&anomaly, &mut r) } else { cell(&types[i % 3], &mut r) });
    }
    let genes_names: Vec<String> = (0..genes).map(|g| format!("G{g}")).collect();
    let ds = |data: Vec<f32>, n: usize, prefix: &str| Dataset {
        x: Matrix::Csr(CsrMatrix::from_dense(&DenseMatrix { rows: n, cols: genes, data })),
        cell_names: (0..n).map(|i| format!("{prefix}{i}")).collect(),
        gene_names: genes_names.clone(),
        obs: vec![],
    };
    (ds(rd, n_ref, "r"), ds(td, n_tgt, "t"), truth)
}

/// Reduced widths and epochs for speed. The scorer runs 100 steps at 1e-3
/// instead of the authors' 20 at 1e-4: from a random initialisation, 20
/// steps at 1e-4 barely move p, and the ranking stays close to the random
/// initial one (AUROC ≈ 0.6 here although ‖δ‖ alone gives ≈ 0.98; see
/// `cargo run --release --example scorer_diagnose -- tiny`).
pub fn small_config() -> DetectConfig {
    DetectConfig {
        score: ScoreMethod::Paper,
        scorer_steps: 100,
        scorer_lr: 1e-3,
        seed: 1,
        batch_size: 32,
        prepare_epochs: 8,
        train_epochs: 4,
        hidden_dim: 64,
        latent_dim: 32,
        mem_size: 64,
        critic_hidden: 32,
        preprocess: PreprocessMode::Never,
        n_hvg: 0,
        ..DetectConfig::default()
    }
}
