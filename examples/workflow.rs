//! The whole workflow measured (issue #6, items 2 and 7): subtyping
//! quality (F1 × NMI) beside the paper's ablations, and batch mixing
//! before and after Module III's correction.
//!
//! cargo run --release --example workflow -- [--seeds 3] [--first-seed 0] [--only sim|kang] [--ratio-calls]
//!
//! Data:
//! - sim: 2,000 reference cells (batch 0) and 2,000 target cells (batches 0
//!   and 1), 3,000 genes, 5 normal types, 3 anomaly types (10 %; DE on 15 %
//!   of genes, LogNormal(2.0, 0.4) factors), redrawn per seed;
//! - kang: reference = CTRL cells that are not B or NK, target = all STIM
//!   cells (CTRL vs STIM is the batch), anomalies and their subtypes = B, NK.
//!
//! Every variant uses the defaults (novelty score, 50 + 20 epochs for
//! Module I's networks, 50 style epochs, 3000 HVGs) and the default calls
//! (BH q ≤ 0.1), or with `--ratio-calls` the authors' call rule (the top
//! true-fraction of cells is called: `detect.anomaly_ratio` = the true
//! fraction, so F1 is the F1 at the true fraction); K = the true number of
//! subtypes:
//! - acsleuth: Modules I–IV, with Module III's style correction (the
//!   paper's) and with the kin-shift correction, Module IV on Module I's
//!   features (the paper's); and the default: Module IV (DESC) on the
//!   anomalies' corrected joint PCA coordinates;
//! - no correction: Modules I and IV (Module III switched off);
//! - k-means on expression: Module I's calls, then k-means++ (20 restarts)
//!   on the anomalies' log-normalized expression.
//!
//! NMI is over the cells that are anomalous and were called so.
//! Mixing is measured on 50 principal components (fitted on the
//! uncorrected reference + target) of up to 3,000 cells of each set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use acsleuth::backend::CpuBackend;
use acsleuth::data::io::{read_dataset, ReadOptions};
use acsleuth::data::simulate::{simulate_dataset, DeParams, SetKind, SimConfig, Simulator};
use acsleuth::data::{Dataset, DenseMatrix};
use acsleuth::error::{Error, Result};
use acsleuth::metrics;
use acsleuth::model::pca::{Pca, PcaOptions};
use acsleuth::model::subtype::{kmeans, SubtypeConfig, SubtypeFeatures};
use acsleuth::pipeline::run::{evaluate, run_workflow, Batches, Correction, RunConfig, RunOptions, RunResult, Truth};

struct Bench {
    name: &'static str,
    reference: Dataset,
    target: Dataset,
    batch_key: Option<&'static str>,
    type_key: &'static str,
    k: usize,
}

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn sim(seed: u64) -> Result<Bench> {
    let s = Simulator::new(SimConfig {
        n_anomaly_types: 3,
        n_batches: 2,
        ref_batches: vec![0],
        target_batches: Some(vec![0, 1]),
        anomaly_de: DeParams { prob: 0.15, loc: 2.0, ..DeParams::default() },
        seed,
        ..SimConfig::default()
    })?;
    Ok(Bench {
        name: "sim",
        reference: simulate_dataset(&s, SetKind::Reference)?,
        target: simulate_dataset(&s, SetKind::Target)?,
        batch_key: Some("batch"),
        type_key: "cell_type",
        k: 3,
    })
}

fn kang() -> Result<Bench> {
    let ds = read_dataset(&shared_data().join("kang_ifnb_pbmc/kang_ifnb_counts.h5ad"), &ReadOptions::default())?;
    let col = |n: &str| ds.obs_column(n).cloned().ok_or_else(|| Error::invalid(format!("no obs column '{n}'")));
    let (stim, ct) = (col("stim")?, col("celltype_silver")?);
    let anomalous = |i: usize| matches!(ct.get_str(i).as_str(), "B" | "NK");
    let r: Vec<usize> = (0..ds.n_cells()).filter(|&i| stim.get_str(i) == "CTRL" && !anomalous(i)).collect();
    let t: Vec<usize> = (0..ds.n_cells()).filter(|&i| stim.get_str(i) == "STIM").collect();
    Ok(Bench { name: "kang", reference: ds.subset_rows(&r), target: ds.subset_rows(&t), batch_key: None, type_key: "celltype_silver", k: 2 })
}

/// Labels as indices (for the mixing metrics).
fn codes(labels: &[String]) -> Vec<u32> {
    let mut u = labels.to_vec();
    u.sort();
    u.dedup();
    labels.iter().map(|l| u.binary_search(l).unwrap_or(0) as u32).collect()
}

/// Every `step`-th row, at most `max` rows.
fn sample(n: usize, max: usize) -> Vec<usize> {
    let step = n.div_ceil(max).max(1);
    (0..n).step_by(step).collect()
}

/// (batch silhouette, kNN batch mixing, kNN cell-type accuracy) of the
/// reference rows `r` stacked on the target rows `t`.
fn mixing(r: &DenseMatrix, t: &DenseMatrix, batch: &[String], types: &[String], pca: &Pca) -> Result<[f64; 3]> {
    let mut x = r.data.clone();
    x.extend_from_slice(&t.data);
    let rows = r.rows + t.rows;
    let pcs = pca.transform(&x, rows)?;
    let k = pca.n_components();
    let m = DenseMatrix { rows, cols: k, data: pcs.iter().map(|&v| v as f32).collect() };
    let (b, c) = (codes(batch), codes(types));
    Ok([metrics::silhouette(&m, &b)?, metrics::knn_mixing(&m, &b, 30)?, metrics::knn_label_accuracy(&m, &c, 30)?])
}

fn rows_of(x: &DenseMatrix, rows: &[usize]) -> DenseMatrix {
    let mut m = DenseMatrix::zeros(rows.len(), x.cols);
    for (k, &i) in rows.iter().enumerate() {
        m.row_mut(k).copy_from_slice(x.row(i));
    }
    m
}

fn mean_sd(v: &[f64]) -> String {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    format!("{m:.3} ± {sd:.3}")
}

/// Per variant: F1, NMI, F1 × NMI.
type VariantRows = Vec<(&'static str, [f64; 3])>;

/// One seed of one dataset: rows of (variant, [F1, NMI, F1×NMI]) and the
/// mixing [before, after style correction, after kin-shift correction].
fn one(b: &Bench, seed: u64, dir: &Path, ratio_calls: bool) -> Result<(VariantRows, [[f64; 3]; 3])> {
    let truth = Truth::from_obs(&b.reference, &b.target, b.type_key, &[])?;
    let frac = truth.anomalous.iter().filter(|&&a| a).count() as f64 / truth.anomalous.len() as f64;
    let mut cfg = RunConfig::default();
    cfg.set_seed(seed);
    cfg.detect.anomaly_ratio = ratio_calls.then_some(frac);
    cfg.subtype.n_subtypes = Some(b.k);
    let batches = Batches::from_obs(&b.target, b.batch_key)?;
    let be = CpuBackend::new();
    let opts = RunOptions { checkpoint_dir: Some(dir.to_path_buf()), spill_dir: Some(dir.to_path_buf()), keep_corrected: true, skip_subtyping: false };
    let score = |r: &RunResult, sub: &[Option<u32>]| -> Result<[f64; 3]> {
        let e = evaluate(&truth, &r.scores, &r.calls, sub)?;
        Ok([e.f1(), e.nmi().unwrap_or(0.0), e.f1_x_nmi().unwrap_or(0.0)])
    };
    let mut out = vec![];
    let mut runs = vec![];
    let module_i = SubtypeConfig { features: SubtypeFeatures::ModuleI, ..cfg.subtype.clone() };
    for (name, correction, sub) in [
        ("acsleuth I–IV, style correction (paper), Module IV on Module I features (paper)", Correction::Style, module_i.clone()),
        ("acsleuth I–IV, kin-shift correction, Module IV on Module I features (paper)", Correction::KinShift, module_i),
        ("acsleuth default: Module IV on the corrected joint PCA", Correction::KinShift, cfg.subtype.clone()),
    ] {
        let t = Instant::now();
        let r = run_workflow(&be, &b.reference, &b.target, &batches, &RunConfig { correction, subtype: sub, ..cfg.clone() }, &opts)?;
        eprintln!("  {} seed {seed} {name}: {:.0} s ({:?})", b.name, t.elapsed().as_secs_f64(), r.report.seconds);
        out.push((name, score(&r, &r.subtypes)?));
        runs.push(r);
    }
    let full = &runs[0];

    // k-means on the anomalies' (uncorrected, log-normalized) expression.
    let x = full.target_values.to_dense();
    let xa = rows_of(&x, &full.anomalies);
    let km = kmeans(&xa, b.k.min(xa.rows.max(1)), 20, seed)?;
    let mut sub = vec![None; full.cells.len()];
    for (&row, &l) in full.anomalies.iter().zip(&km.labels) {
        sub[row] = Some(l);
    }
    out.push(("detector + k-means on expression", score(full, &sub)?));

    let plain_cfg = RunConfig { batch_correction: false, ..cfg.clone() };
    let plain = run_workflow(&be, &b.reference, &b.target, &batches, &plain_cfg, &RunOptions { keep_corrected: false, ..opts })?;
    out.push(("no batch correction (I + IV)", score(&plain, &plain.subtypes)?));

    // Mixing: reference vs target batches, before and after correction.
    let prep = acsleuth::pipeline::detect::prepare(&b.reference, &b.target, &cfg.detect)?;
    let rx = prep.reference.to_dense();
    let (rs, ts) = (sample(rx.rows, 3000), sample(x.rows, 3000));
    let r = rows_of(&rx, &rs);
    let tb = rows_of(&x, &ts);
    let mut stacked = r.data.clone();
    stacked.extend_from_slice(&tb.data);
    let pca = Pca::fit(&stacked, r.rows + tb.rows, rx.cols, &PcaOptions::default())?;
    let tname = |i: usize| format!("target {}", full.report.batches[full.batch_of[i] as usize].0);
    let batch: Vec<String> = rs.iter().map(|_| "reference".to_string()).chain(ts.iter().map(|&i| tname(i))).collect();
    let rt = b.reference.obs_column(b.type_key).expect("types");
    let tt = b.target.obs_column(b.type_key).expect("types");
    let types: Vec<String> = rs.iter().map(|&i| rt.get_str(i)).chain(ts.iter().map(|&i| tt.get_str(i))).collect();
    let before = mixing(&r, &tb, &batch, &types, &pca)?;
    let after_style = mixing(&r, &rows_of(runs[0].corrected.as_ref().expect("kept"), &ts), &batch, &types, &pca)?;
    let after_shift = mixing(&r, &rows_of(runs[1].corrected.as_ref().expect("kept"), &ts), &batch, &types, &pca)?;
    Ok((out, [before, after_style, after_shift]))
}

fn main() -> Result<()> {
    // As the command line does: this thread works as worker 0 of the pool.
    acsleuth::backend::thread_pool::init_global(None);
    let args: Vec<String> = std::env::args().collect();
    let arg = |f: &str| args.iter().position(|a| a == f).and_then(|i| args.get(i + 1)).cloned();
    let seeds: u64 = arg("--seeds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let first: u64 = arg("--first-seed").and_then(|v| v.parse().ok()).unwrap_or(0);
    let only = arg("--only");
    let ratio_calls = args.iter().any(|a| a == "--ratio-calls");
    let tmp = tempfile_dir()?;
    for name in ["sim", "kang"] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut rows: Vec<(&'static str, Vec<[f64; 3]>)> = vec![];
        let mut mix: Vec<[[f64; 3]; 3]> = vec![];
        for seed in first..first + seeds {
            let b = if name == "sim" { sim(seed)? } else { kang()? };
            let dir = tmp.join(format!("{name}-{seed}"));
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let (out, m) = one(&b, seed, &dir, ratio_calls)?;
            for (v, s) in out {
                match rows.iter_mut().find(|(n, _)| *n == v) {
                    Some((_, r)) => r.push(s),
                    None => rows.push((v, vec![s])),
                }
            }
            mix.push(m);
        }
        println!("\n{name} ({seeds} seeds): F1 | NMI | F1×NMI");
        for (v, r) in &rows {
            let col = |j: usize| mean_sd(&r.iter().map(|s| s[j]).collect::<Vec<_>>());
            println!("| {v} | {} | {} | {} |", col(0), col(1), col(2));
        }
        println!("{name}: batch mixing | before correction | style correction | kin-shift correction");
        for (j, what) in ["batch silhouette (0 = mixed)", "kNN batch mixing (inverse Simpson, k = 30)", "kNN cell-type accuracy (k = 30)"].iter().enumerate() {
            let col = |c: usize| mean_sd(&mix.iter().map(|m| m[c][j]).collect::<Vec<_>>());
            println!("| {what} | {} | {} | {} |", col(0), col(1), col(2));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("acsleuth-workflow-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    Ok(d)
}
