//! Accuracy benchmark: the default detector, its ablations and every peer,
//! side by side, on nine benchmarks, averaged over seeds (mean ± sd).
//!
//! - `pbmc`: pbmc68k_reduced, the fixed split `split_b_nk.tsv` (`.raw`
//!   values as they are), anomalies = B + NK (30.5 %);
//! - `kang`: Kang IFN-β, reference = CTRL cells that are not B or NK,
//!   target = all STIM cells, anomalies = B + NK (14.8 %); raw counts in,
//!   3000 HVGs on the reference;
//! - `oligo`: Tirosh 2016 oligodendroglioma (SMART-seq2, log1p of TPM, all
//!   genes), reference = a seeded 2/3 of the 42 non-malignant cells (28),
//!   target = the other 14 + all 142 malignant cells (91 %; four patients);
//! - `sim`: simulated counts with a batch effect and a condition shift that
//!   differs by cell type (`condition_shift` 0.5), two anomaly types (10 %);
//! - `pbmc-null`: the pbmc68k reference split in seeded halves (no anomaly);
//! - `sim-null`: `sim` without anomaly types (every call is false);
//! - `sim-dense`: `sim` with every gene of every type shifted (a stress
//!   test: the shift is larger than the differences between types);
//! - `demo`: the demo's data (three clearly apart anomaly types, 10 %, a
//!   two-batch target) — where reference outliers beside the anomalies
//!   once floored every p-value;
//! - `small`: 600 reference and 400 target cells, 30 % anomalies (the
//!   Python tests' simulation).
//!
//! ```sh
//! cargo run --release --example accuracy -- [--seeds 5] [--first-seed 0] [--only NAME[,NAME]] [--ablations | --variants I[,J]] [--with-paper]
//! ```
//!
//! Without `--ablations` the default detector (and, where the target has
//! batches, the same with them given) and the previous default run beside
//! the peers;
//! `--variants 0,2` picks rows of [`variants`] by position.
//!
//! Metrics: AUROC, AP, F1 at the true anomaly fraction (the authors' rule),
//! and for methods that call: the F1 of their own calls, the fraction of
//! cells called and the estimated anomaly fraction. `--with-paper` adds the
//! paper's Module I score (a GAN per seed: minutes per run on Kang).

#[path = "bench/data.rs"]
mod data;

use std::time::Instant;

use acsleuth::backend::CpuBackend;
use acsleuth::data::{CsrMatrix, DenseMatrix};
use acsleuth::metrics;
use acsleuth::model::novelty::{self, embed, knn, Correction, HarmonyConfig, MnnConfig, NoveltyConfig, RefitRule};
use acsleuth::model::pca::{Pca, PcaOptions};
use acsleuth::pipeline::detect::detect;
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};
use acsleuth::Result;

use data::Bench;

/// k-means (K = the number of true subtypes, 20 restarts) on the called
/// cells' corrected joint coordinates: NMI over the true anomalies called,
/// and F1 of the calls × NMI (the paper's joint score).
fn subtypes(b: &Bench, calls: &[bool], emb: &DenseMatrix, seed: u64) -> Result<Option<[f64; 2]>> {
    let Some(truth) = &b.subtype else { return Ok(None) };
    let k = {
        let mut u: Vec<&String> = truth.iter().filter(|t| !t.is_empty()).collect();
        u.sort();
        u.dedup();
        u.len()
    };
    let rows: Vec<usize> = (0..calls.len()).filter(|&i| calls[i]).collect();
    if k < 2 || rows.len() < k {
        return Ok(None);
    }
    let x = DenseMatrix { rows: rows.len(), cols: emb.cols, data: rows.iter().flat_map(|&i| emb.row(i).to_vec()).collect() };
    let km = acsleuth::model::subtype::kmeans(&x, k, 20, seed)?;
    let (mut t, mut p) = (vec![], vec![]);
    for (j, &i) in rows.iter().enumerate() {
        if b.truth[i] {
            t.push(truth[i].clone());
            p.push(km.labels[j]);
        }
    }
    if t.is_empty() {
        return Ok(None);
    }
    let nmi = metrics::nmi(&t, &p)?;
    let f1 = metrics::binary_scores(&b.truth, calls)?.f1;
    Ok(Some([nmi, f1 * nmi]))
}

/// One method's result on one run.
#[derive(Default, Clone)]
struct Run {
    /// AUROC, AP, F1 at the true fraction (absent without anomalies).
    ranking: Option<[f64; 3]>,
    /// F1 of the own calls, fraction called, estimated anomaly fraction.
    calls: Option<[f64; 3]>,
    seconds: f64,
}

fn csr(b: &acsleuth::data::Dataset) -> CsrMatrix {
    b.x.to_csr()
}

fn ranking(truth: &[bool], s: &[f64]) -> Result<Option<[f64; 3]>> {
    if !truth.iter().any(|&t| t) {
        return Ok(None);
    }
    Ok(Some([metrics::auroc(truth, s)?, metrics::average_precision(truth, s)?, metrics::f1_top_k(truth, s)?.f1]))
}

fn call_stats(truth: &[bool], calls: &[bool], fdr: f64) -> Result<[f64; 3]> {
    let n = calls.len() as f64;
    let called = calls.iter().filter(|&&c| c).count() as f64;
    let f1 = if truth.iter().any(|&t| t) { metrics::binary_scores(truth, calls)?.f1 } else { 0.0 };
    Ok([f1, called / n, called * (1.0 - fdr) / n])
}

/// The peers' PCA: the same subspace tolerance as ours (scikit-learn's
/// default for such shapes is a randomized solver, no more exact).
/// PCA(50), or fewer components when fitted on fewer than 51 cells
/// (rows − 1: the centred data's rank).
fn peer_pca(rows: usize) -> PcaOptions {
    let n_components = PcaOptions::default().n_components.min(rows.saturating_sub(1).max(1));
    PcaOptions { n_components, tol: embed::PCA_TOL, max_iter: embed::PCA_MAX_ITER, ..PcaOptions::default() }
}

/// Genes standardised on `stats_of`, clipped at 10, PCA(50) fitted on
/// `fit`: coordinates of both sets.
fn pca_space(fit: &CsrMatrix, other: &CsrMatrix, joint: bool) -> Result<(DenseMatrix, DenseMatrix)> {
    let (mean, sd) = if joint { embed::gene_stats(&[fit, other]) } else { embed::gene_stats(&[fit]) };
    let z = |m: &CsrMatrix| {
        let mut d = m.to_dense();
        for r in d.data.chunks_mut(m.cols) {
            for (j, v) in r.iter_mut().enumerate() {
                *v = ((*v as f64 - mean[j]) / sd[j]).clamp(-10.0, 10.0) as f32;
            }
        }
        d
    };
    let (zf, zo) = (z(fit), z(other));
    let mut all = zf.data.clone();
    if joint {
        all.extend_from_slice(&zo.data);
    }
    let rows = if joint { fit.rows + other.rows } else { fit.rows };
    let pca = Pca::fit(&all, rows, fit.cols, &peer_pca(rows))?;
    let k = pca.n_components();
    let f = |d: &DenseMatrix| -> Result<DenseMatrix> {
        Ok(DenseMatrix { rows: d.rows, cols: k, data: pca.transform(&d.data, d.rows)?.into_iter().map(|v| v as f32).collect() })
    };
    Ok((f(&zf)?, f(&zo)?))
}

/// The analyst's peers: (name, scores).
fn peers(b: &Bench) -> Result<Vec<(&'static str, Vec<f64>, f64)>> {
    let be = CpuBackend::new();
    let (r, t) = (csr(&b.reference), csr(&b.target));
    let mut out = vec![];
    let t0 = Instant::now();
    let pca = Pca::fit_matrix(&r.to_dense(), &peer_pca(r.rows))?;
    let td = t.to_dense();
    out.push(("PCA(50) reconstruction error (reference PCA)", pca.reconstruction_error(&td.data, td.rows)?, t0.elapsed().as_secs_f64()));
    for (name, joint) in [("reference PCA(50), mean distance to 15 nearest reference cells", false), ("joint PCA(50), mean distance to 15 nearest reference cells", true)] {
        let t0 = Instant::now();
        let (zr, zt) = pca_space(&r, &t, joint)?;
        let s = knn::knn(&be, &zt, &zr, 15, None)?.mean_dist();
        out.push((name, s, t0.elapsed().as_secs_f64()));
    }
    Ok(out)
}

/// Our variants: (name, config, which statistic is the score: 0 the
/// score, 1 distance, 2 abundance, 3 the score with the target's batches
/// given to the correction, 4 the density ratio).
fn variants() -> Vec<(&'static str, NoveltyConfig, u8)> {
    let d = NoveltyConfig::default();
    let no_mnn = NoveltyConfig { mnn: MnnConfig { enabled: false, ..d.mnn.clone() }, ..d.clone() };
    let mnn = |m: MnnConfig| NoveltyConfig { mnn: m, ..d.clone() };
    vec![
        ("acsleuth default: Harmony refitted on likely normals + MNN refinement; rank(distance) + rank(abundance) + density-ratio excess", d.clone(), 0),
        ("  with the target's batches given (run --batch-key)", d.clone(), 3),
        ("  ablation: no MNN refinement", no_mnn.clone(), 0),
        ("  ablation: no MNN refinement, with the target's batches given", no_mnn.clone(), 3),
        ("  ablation: two-term score (no density ratio)", NoveltyConfig { density_ratio: false, ..d.clone() }, 0),
        ("  ablation: two-term score, no MNN refinement, refit without p ≤ 0.2 (the previous default)", NoveltyConfig { density_ratio: false, refit_min_p: 0.2, ..no_mnn.clone() }, 0),
        ("  variant: MNN pairs only likely-normal cells", mnn(MnnConfig { pair_likely_normal: true, ..d.mnn.clone() }), 0),
        ("  ablation: MNN refinement alone (no Harmony)", NoveltyConfig { correction: Correction::Mnn, ..d.clone() }, 0),
        ("  variant: MNN k = 10", mnn(MnnConfig { k: 10, k_fraction: 0.0, ..d.mnn.clone() }), 0),
        ("  variant: MNN smoothed over 300 paired cells", mnn(MnnConfig { k_smooth: 300, ..d.mnn.clone() }), 0),
        ("  ablation: density ratio alone", d.clone(), 4),
        ("  ablation: Harmony one pass (no refit)", NoveltyConfig { refit: false, ..d.clone() }, 0),
        ("  variant: refit without cells called at q ≤ 0.1 (1 refit)", NoveltyConfig { refit_rule: RefitRule::QValue, ..d.clone() }, 0),
        ("  variant: refit without cells called at q ≤ 0.1 (3 refits)", NoveltyConfig { refit_rule: RefitRule::QValue, refit_passes: 3, ..d.clone() }, 0),
        ("  variant: refit without p ≤ 0.2 (the rule before)", NoveltyConfig { refit_min_p: 0.2, ..d.clone() }, 0),
        ("  variant: refit spares p ≤ 0.2 the penalty only (all cells in the regression)", NoveltyConfig { harmony: HarmonyConfig { regress_unfitted: true, ..d.harmony }, ..d.clone() }, 0),
        ("  variant: refit 3 times", NoveltyConfig { refit_passes: 3, ..d.clone() }, 0),
        ("  ablation: no correction (joint PCA as is)", NoveltyConfig { correction: Correction::None, ..d.clone() }, 0),
        ("  ablation: distance statistic alone (default correction)", d.clone(), 1),
        ("  ablation: abundance statistic alone (default correction)", d.clone(), 2),
        ("  variant: MNN pairs only likely-normal cells, two-term score", NoveltyConfig { density_ratio: false, ..mnn(MnnConfig { pair_likely_normal: true, ..d.mnn.clone() }) }, 0),
        ("  variant: MNN k = 5", mnn(MnnConfig { k: 5, k_fraction: 0.0, ..d.mnn.clone() }), 0),
        ("  variant: MNN k = 20 on every size (k_fraction 0, the rule before)", mnn(MnnConfig { k_fraction: 0.0, ..d.mnn.clone() }), 0),
        ("  variant: MNN k = 3", mnn(MnnConfig { k: 3, k_fraction: 0.0, ..d.mnn.clone() }), 0),
    ]
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

fn cell(runs: &[Run], f: impl Fn(&Run) -> Option<f64>) -> String {
    let v: Vec<f64> = runs.iter().filter_map(f).collect();
    if v.is_empty() {
        return "—".into();
    }
    let (m, s) = mean_sd(&v);
    if v.len() > 1 { format!("{m:.3} ± {s:.3}") } else { format!("{m:.3}") }
}

fn print_row(data: &str, method: &str, runs: &[Run]) {
    let r = |k: usize| cell(runs, |x| x.ranking.map(|v| v[k]));
    let c = |k: usize| cell(runs, |x| x.calls.map(|v| v[k]));
    let secs = runs.iter().map(|x| x.seconds).sum::<f64>() / runs.len() as f64;
    println!("| {data} | {method} | {} | {} | {} | {} | {} | {} | {secs:.1} |", r(0), r(1), r(2), c(0), c(1), c(2));
}

fn main() -> Result<()> {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seeds: u64 = opt("--seeds").map(|s| s.parse().expect("--seeds N")).unwrap_or(5);
    let first: u64 = opt("--first-seed").map(|s| s.parse().expect("--first-seed N")).unwrap_or(0);
    let only: Option<Vec<String>> = opt("--only").map(|s| s.split(',').map(String::from).collect());
    let with_paper = args.iter().any(|a| a == "--with-paper");
    let ablations = args.iter().any(|a| a == "--ablations");
    let pick: Option<Vec<usize>> = opt("--variants").map(|s| s.split(',').map(|v| v.parse().expect("--variants I[,J]")).collect());
    let fdr = DetectConfig::default().fdr;
    println!("| data | method | AUROC | AP | F1 at true fraction | F1 of own calls | fraction called | est. anomaly fraction | seconds |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for name in data::ALL {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        let vars: Vec<_> = variants()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| match &pick {
                Some(p) => p.contains(i),
                None => ablations || *i < 2 || *i == 5,
            })
            .map(|(_, v)| v)
            .collect();
        let mut ours: Vec<Vec<Run>> = vec![vec![]; vars.len()];
        let mut peer_runs: Vec<(&str, Vec<Run>)> = vec![];
        let mut paper: Vec<Vec<Run>> = vec![vec![], vec![]];
        for seed in first..first + seeds {
            let b = data::load(name, seed)?;
            let (r, t) = (csr(&b.reference), csr(&b.target));
            if seed == first || data::per_seed(name) {
                for (i, (m, s, secs)) in peers(&b)?.into_iter().enumerate() {
                    if peer_runs.len() <= i {
                        peer_runs.push((m, vec![]));
                    }
                    peer_runs[i].1.push(Run { ranking: ranking(&b.truth, &s)?, calls: None, seconds: secs });
                }
            }
            for (i, (_, cfg, stat)) in vars.iter().enumerate() {
                let t0 = Instant::now();
                if *stat == 3 && b.batches.is_none() {
                    continue;
                }
                let tb = if *stat == 3 { b.batches.as_deref() } else { None };
                let n = novelty::score_novelty(&CpuBackend::new(), &r, &t, tb, cfg, seed)?;
                let secs = t0.elapsed().as_secs_f64();
                let s: Vec<f64> = match stat {
                    0 | 3 => n.score.clone(),
                    1 => n.distance.clone(),
                    4 => n.density_ratio.clone().unwrap_or_default(),
                    _ => n.abundance.iter().map(|a| -a).collect(),
                };
                let calls = (*stat == 0 || *stat == 3).then(|| novelty::calibrate::calls(&n.score, &n.q_value, fdr, None)).transpose()?;
                if i == 0 {
                    let c = novelty::calibrate::calls(&n.score, &n.q_value, fdr, None)?;
                    if let Some([nmi, x]) = subtypes(&b, &c, &n.embedding, seed)? {
                        eprintln!("{name} seed {seed}: default calls + k-means on the corrected joint PCA: NMI {nmi:.3}, F1 × NMI {x:.3}");
                    }
                }
                let calls = calls.map(|c| call_stats(&b.truth, &c, fdr)).transpose()?;
                ours[i].push(Run { ranking: ranking(&b.truth, &s)?, calls, seconds: secs });
            }
            if with_paper {
                let t0 = Instant::now();
                let cfg = DetectConfig { seed, preprocess: PreprocessMode::Never, n_hvg: 0, score: ScoreMethod::Paper, ..DetectConfig::default() };
                let res = detect(&b.reference, &b.target, &cfg)?;
                let secs = t0.elapsed().as_secs_f64();
                let p: Vec<f64> = res.scores.iter().map(|&v| v as f64).collect();
                let dev: Vec<f64> = res.deviation.iter().flatten().map(|&v| v as f64).collect();
                let c = call_stats(&b.truth, &res.calls, fdr)?;
                paper[0].push(Run { ranking: ranking(&b.truth, &p)?, calls: Some([c[0], c[1], f64::NAN]), seconds: secs });
                paper[1].push(Run { ranking: ranking(&b.truth, &dev)?, calls: None, seconds: secs });
            }
            eprintln!("{name} seed {seed} done");
        }
        for (m, runs) in &peer_runs {
            print_row(name, &format!("peer: {m}"), runs);
        }
        for ((m, ..), runs) in vars.iter().zip(&ours) {
            if runs.is_empty() {
                continue;
            }
            print_row(name, m, runs);
        }
        if with_paper {
            print_row(name, "paper: Module I score p (p > 0.5 calls)", &paper[0]);
            print_row(name, "paper: Module I deviation ‖x − x̂‖ (diagnostic)", &paper[1]);
        }
    }
    Ok(())
}
