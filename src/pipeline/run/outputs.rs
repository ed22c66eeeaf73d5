//! The files of `acsleuth run`: cells.tsv, target.h5ad, report.json and
//! the plots. Every file is written atomically.

use std::path::Path;

use crate::data::h5ad::write_h5ad_with;
use crate::data::{Dataset, DenseMatrix, Matrix, ObsColumn};
use crate::error::Result;
use crate::output::figures as report;
use crate::output::{io_at, write_atomic, write_json, OutputSet};

use super::{RunResult, Truth};

/// Name of subtype `k` in every output.
pub fn subtype_name(k: u32) -> String {
    format!("S{}", k + 1)
}

/// `cell  score  anomaly  subtype  batch  qvalue`, one row per target cell
/// in input order; the subtype is empty for cells called normal, the
/// q-value empty under the paper's score.
pub fn write_cells(path: &Path, res: &RunResult) -> Result<()> {
    let batch_names: Vec<&str> = res.report.batches.iter().map(|(n, _)| n.as_str()).collect();
    write_atomic(path, |w| {
        writeln!(w, "cell\tscore\tanomaly\tsubtype\tbatch\tqvalue").map_err(io_at(path))?;
        for i in 0..res.cells.len() {
            let st = res.subtypes[i].map(subtype_name).unwrap_or_default();
            let b = batch_names.get(res.batch_of[i] as usize).copied().unwrap_or("");
            let q = res.q_values.as_ref().map(|q| q[i].to_string()).unwrap_or_default();
            writeln!(w, "{}\t{}\t{}\t{st}\t{b}\t{q}", res.cells[i], res.scores[i], res.calls[i] as u8).map_err(io_at(path))?;
        }
        Ok(())
    })
}

/// The target's obs columns plus acsleuth's: `acsleuth_score`,
/// `acsleuth_anomaly`, (`acsleuth_qvalue`, `acsleuth_deviation`,
/// `acsleuth_subtype` when `full`) and `acsleuth_batch`. Columns of an
/// earlier acsleuth run on the same data are replaced, not repeated.
pub fn result_obs(target: &Dataset, res: &RunResult, full: bool) -> Vec<(String, ObsColumn)> {
    let mut obs = target.obs.clone();
    let k = res.report.subtype.k;
    obs.push(("acsleuth_score".into(), ObsColumn::Numeric(res.scores.iter().map(|&s| s as f64).collect())));
    obs.push(("acsleuth_anomaly".into(), ObsColumn::Bool(res.calls.clone())));
    if full {
        if let Some(q) = &res.q_values {
            obs.push(("acsleuth_qvalue".into(), ObsColumn::Numeric(q.clone())));
        }
        obs.push(("acsleuth_deviation".into(), ObsColumn::Numeric(res.deviation.iter().map(|&s| s as f64).collect())));
        obs.push((
            "acsleuth_subtype".into(),
            ObsColumn::Categorical {
                categories: (0..k as u32).map(subtype_name).collect(),
                codes: res.subtypes.iter().map(|s| s.map_or(-1, |v| v as i32)).collect(),
            },
        ));
    }
    obs.push((
        "acsleuth_batch".into(),
        ObsColumn::Categorical {
            categories: res.report.batches.iter().map(|(n, _)| n.clone()).collect(),
            codes: res.batch_of.iter().map(|&b| b as i32).collect(),
        },
    ));
    if !full {
        obs.retain(|(n, _)| !n.starts_with("acsleuth_") || matches!(n.as_str(), "acsleuth_score" | "acsleuth_anomaly" | "acsleuth_batch"));
    }
    // Column names must be unique: a rerun on our own output replaces ours.
    let mut seen = std::collections::HashSet::new();
    let mut obs: Vec<_> = obs.into_iter().rev().filter(|(name, _)| seen.insert(name.clone())).collect();
    obs.reverse();
    obs
}

/// The anomalies' rows of `m` spread over all target cells (NaN elsewhere),
/// so obsm arrays have one row per cell as AnnData requires.
fn spread(m: &DenseMatrix, rows: &[usize], n: usize) -> DenseMatrix {
    let mut out = DenseMatrix { rows: n, cols: m.cols, data: vec![f32::NAN; n * m.cols] };
    for (k, &r) in rows.iter().enumerate() {
        out.row_mut(r).copy_from_slice(m.row(k));
    }
    out
}

/// DIR/target.h5ad: X = the target's values over the genes the models
/// used (log-normalized), obs = the input's columns plus `acsleuth_score`,
/// `acsleuth_anomaly`, `acsleuth_qvalue` (novelty score), `acsleuth_deviation` (‖x − x̂‖), `acsleuth_subtype` (categorical, missing for cells
/// called normal) and `acsleuth_batch`; obsm `X_acsleuth` (Module I
/// encoding of the corrected expression), `X_acsleuth_fused` and
/// `acsleuth_soft_assignment` (anomalies; NaN rows for normal cells);
/// layer `corrected` when the run kept it.
pub fn write_target_h5ad(path: &Path, target: &Dataset, res: &RunResult) -> Result<()> {
    let n = res.cells.len();
    let obs = result_obs(target, res, true);
    let ds = Dataset {
        x: Matrix::Csr(res.target_values.clone()),
        cell_names: res.cells.clone(),
        gene_names: res.genes.clone(),
        obs,
    };
    let obsm = vec![
        ("X_acsleuth".to_string(), res.z.clone()),
        ("X_acsleuth_fused".to_string(), spread(&res.z_star, &res.anomalies, n)),
        ("acsleuth_soft_assignment".to_string(), spread(&res.q, &res.anomalies, n)),
    ];
    let layers: Vec<(String, Matrix)> = res.corrected.iter().map(|c| ("corrected".to_string(), Matrix::Dense(c.clone()))).collect();
    write_h5ad_with(path, &ds, &obsm, &layers)
}

/// Writes the PNG plots into the set.
pub fn write_plots(set: &mut OutputSet, res: &RunResult, truth: Option<&Truth>) -> Result<()> {
    let call_label = |c: bool| if c { "called anomalous".to_string() } else { "called normal".to_string() };
    let groups: Vec<String> = match truth {
        Some(t) => t.anomalous.iter().map(|&a| if a { "truly anomalous".into() } else { "truly normal".into() }).collect(),
        None => res.calls.iter().map(|&c| call_label(c)).collect(),
    };
    let title = match res.report.settings.detect.score {
        crate::pipeline::ScoreMethod::Novelty => "novelty score (joint corrected PCA)",
        crate::pipeline::ScoreMethod::Paper => "anomaly score p (Module I)",
    };
    let p = set.file("scores.png");
    report::plot_score_histogram_with(&p, &res.scores, &groups, title, report::call_threshold(&res.scores, &res.calls))?;

    let xy = report::project_2d(&res.z)?;
    let p = set.file("embedding_calls.png");
    report::plot_scatter(&p, &xy, &res.calls.iter().map(|&c| call_label(c)).collect::<Vec<_>>(), "encodings (PCA), by call")?;
    let p = set.file("embedding_subtypes.png");
    let sub: Vec<String> = res.subtypes.iter().map(|s| s.map_or_else(|| "normal".to_string(), subtype_name)).collect();
    report::plot_scatter(&p, &xy, &sub, "encodings (PCA), by subtype")?;
    if let Some(t) = truth {
        // A column of labels is drawn by label, a boolean one by anomaly.
        let p = set.file("embedding_truth.png");
        report::plot_scatter(&p, &xy, t.labels.as_ref().unwrap_or(&groups), &format!("encodings (PCA), by {}", t.key))?;
        let p = set.file("roc_pr.png");
        report::plot_roc_pr(&p, &res.scores, &t.anomalous, title)?;
    }
    Ok(())
}

/// Every output of a run into `set`: cells.tsv, target.h5ad, the plots
/// and report.json (the caller commits the set).
pub fn write_outputs(set: &mut OutputSet, target: &Dataset, res: &RunResult, truth: Option<&Truth>) -> Result<()> {
    write_cells(&set.file("cells.tsv"), res)?;
    write_target_h5ad(&set.file("target.h5ad"), target, res)?;
    write_plots(set, res, truth)?;
    write_json(&set.file("report.json"), &res.report)
}
