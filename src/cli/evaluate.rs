//! `acsleuth evaluate`: scores a run's output against the truth.
//!
//! The scores file is acsleuth's TSV (`cell<TAB>score<TAB>anomaly`, maybe a
//! `subtype` column); the truth file is TSV or CSV with the cell names in a
//! `cell` column (or the first column) and a 0/1 or true/false anomaly
//! column. Cells are joined by name; every scored cell must be in the truth
//! and scored once. Scoring a subset of the truth's cells is allowed (the
//! metrics then cover the subset) and said on stderr and in `--json`.

use std::collections::HashMap;
use std::path::PathBuf;


use crate::data::table::{parse_bool, Table};
use crate::error::{Error, Result};

const METRICS_HELP: &str = "\
Metrics:
  AUROC       area under the ROC curve of the scores (tied scores count 1/2; 0.5 = random)
  AP          average precision: step-wise area under the precision-recall curve (sklearn)
  F1@true     F1 when the top k cells are called, k = number of true anomalies (the authors'
              rule; cells tied with the k-th score are all called)
  F1 (calls)  F1 of the tool's own anomaly calls, with precision and recall
  NMI         normalized mutual information of predicted vs true subtypes (arithmetic
              normalisation), over the true anomalies the tool called that have both labels
              (undefined, with a note, below two such cells)
  ARI         adjusted Rand index over the same cells
  F1xNMI      F1 (calls) x NMI, the ACsleuth paper's joint detection + subtyping score";

/// Score anomaly calls and subtypes against the truth (see the metrics
/// listed in `--help`).
#[derive(clap::Args, Debug)]
#[command(after_help = METRICS_HELP)]
pub struct Args {
    /// Scores TSV as acsleuth writes it (header `cell<TAB>score<TAB>anomaly`).
    #[arg(long, value_name = "FILE")]
    pub scores: PathBuf,
    /// Truth table, TSV or CSV: cell names in a `cell` column (or the first
    /// column) and an anomaly column of 0/1 or true/false.
    #[arg(long, value_name = "FILE")]
    pub truth: PathBuf,
    /// Truth column holding the anomaly labels [default: the first of
    /// `anomaly`, `is_anomaly`, `truth`, `label`; else the second column].
    #[arg(long, value_name = "NAME")]
    pub truth_col: Option<String>,
    /// Column of the scores file with the anomaly score.
    #[arg(long, value_name = "NAME", default_value = "score")]
    pub score_col: String,
    /// Column of the scores file with the tool's 0/1 calls.
    #[arg(long, value_name = "NAME", default_value = "anomaly")]
    pub call_col: String,
    /// Column of the scores file with predicted subtypes (used when present
    /// and --truth-subtype-col is given).
    #[arg(long, value_name = "NAME", default_value = "subtype")]
    pub subtype_col: String,
    /// Truth column with the true subtype of each anomaly; enables NMI, ARI
    /// and F1xNMI.
    #[arg(long, value_name = "NAME")]
    pub truth_subtype_col: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub use crate::metrics::evaluation::Evaluation;
use crate::metrics::evaluation::Scored;

/// A label, or `None` for an empty field.
fn present(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

/// Reads both files, joins them by cell and computes the metrics.
pub fn evaluate(args: &Args) -> Result<Evaluation> {
    let scores = Table::read(&args.scores)?;
    let truth = Table::read(&args.truth)?;
    let sc_cell = scores.cell_col();
    let sc_score = scores.require(&args.score_col)?;
    let t_cell = truth.cell_col();
    let t_col = match &args.truth_col {
        Some(c) => truth.require(c)?,
        None => ["anomaly", "is_anomaly", "truth", "label"]
            .iter()
            .find_map(|c| truth.col(c))
            .or(if truth.header.len() > 1 { Some(1) } else { None })
            .ok_or_else(|| Error::Config(format!("{}: no anomaly column; give --truth-col", truth.path.display())))?,
    };
    let t_sub = args.truth_subtype_col.as_deref().map(|c| truth.require(c)).transpose()?;

    let mut truth_of: HashMap<&str, usize> = HashMap::with_capacity(truth.rows.len());
    for (i, r) in truth.rows.iter().enumerate() {
        if truth_of.insert(r[t_cell].as_str(), i).is_some() {
            return Err(Error::corrupt(&truth.path, format!("cell '{}' appears twice", r[t_cell])));
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(scores.rows.len());
    for (i, r) in scores.rows.iter().enumerate() {
        if let Some(first) = seen.insert(r[sc_cell].as_str(), i) {
            return Err(Error::corrupt(
                &scores.path,
                format!("cell '{}' appears twice (lines {} and {}); each cell must be scored once", r[sc_cell], first + 2, i + 2),
            ));
        }
    }
    let mut missing = Vec::new();
    let mut joined = Vec::with_capacity(scores.rows.len());
    for (i, r) in scores.rows.iter().enumerate() {
        match truth_of.get(r[sc_cell].as_str()) {
            Some(&t) => joined.push((i, t)),
            None => missing.push(r[sc_cell].clone()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::invalid(format!(
            "{} of {} scored cells are not in {} (e.g. {})",
            missing.len(),
            scores.rows.len(),
            truth.path.display(),
            missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        )));
    }

    let mut y = Vec::with_capacity(joined.len());
    let mut s = Vec::with_capacity(joined.len());
    for &(i, t) in &joined {
        y.push(parse_bool(&truth.rows[t][t_col], &truth.path, t + 2, &truth.header[t_col])?);
        let v = &scores.rows[i][sc_score];
        let x: f64 = v.parse().map_err(|_| {
            Error::corrupt(&scores.path, format!("line {}: score '{v}' is not a number", i + 2))
        })?;
        s.push(x);
    }
    let calls = match scores.col(&args.call_col) {
        Some(c) => Some(
            joined
                .iter()
                .map(|&(i, _)| parse_bool(&scores.rows[i][c], &scores.path, i + 2, &args.call_col))
                .collect::<Result<Vec<bool>>>()?,
        ),
        None => None,
    };
    let labels = match (t_sub, scores.col(&args.subtype_col), &calls) {
        (Some(ts), Some(ps), Some(_)) => {
            let t: Vec<Option<&str>> = joined.iter().map(|&(_, t)| present(&truth.rows[t][ts])).collect();
            let p: Vec<Option<&str>> = joined.iter().map(|&(i, _)| present(&scores.rows[i][ps])).collect();
            Some((t, p))
        }
        (Some(_), None, _) => {
            return Err(Error::Config(format!(
                "{}: no column '{}' with predicted subtypes",
                scores.path.display(),
                args.subtype_col
            )))
        }
        (Some(_), Some(_), None) => {
            return Err(Error::Config(format!(
                "{}: subtyping metrics need the calls column '{}'",
                scores.path.display(),
                args.call_col
            )))
        }
        _ => None,
    };
    let rule = format!("{}: column '{}'", truth.path.display(), truth.header[t_col]);
    let scored = Scored { truth: &y, scores: &s, calls: calls.as_deref(), subtypes: labels.as_ref().map(|(t, p)| (&t[..], &p[..])) };
    let mut e = Evaluation::compute(rule, &scored)?;
    e.n_truth_cells_not_scored = truth.rows.len() - joined.len();
    Ok(e)
}

pub fn run(args: Args) -> Result<()> {
    let e = evaluate(&args)?;
    if e.n_truth_cells_not_scored > 0 {
        eprintln!(
            "note: {} scores {} of the {} cells in {}; every metric covers the scored cells only",
            args.scores.display(),
            e.n_cells,
            e.n_cells + e.n_truth_cells_not_scored,
            args.truth.display()
        );
    }
    if args.json {
        let text = serde_json::to_string_pretty(&e).map_err(|err| Error::Other(err.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "cells {}  true anomalies {} ({:.1} %)",
        e.n_cells,
        e.n_true_anomalies,
        100.0 * e.n_true_anomalies as f64 / e.n_cells as f64
    );
    println!("AUROC        {:.4}", e.auroc);
    println!("AP           {:.4}", e.average_precision);
    let t = &e.f1_at_true_fraction;
    println!(
        "F1@true      {:.4}  (precision {:.4}, recall {:.4}, {} called)",
        t.f1, t.precision, t.recall, t.n_called
    );
    if let Some(c) = &e.own_calls {
        println!(
            "F1 (calls)   {:.4}  (precision {:.4}, recall {:.4}, {} called)",
            c.f1, c.precision, c.recall, c.n_called
        );
    }
    if let Some(st) = &e.subtyping {
        match (st.nmi, st.ari) {
            (Some(nmi), Some(ari)) => {
                println!("NMI          {nmi:.4}  (over {} called true anomalies)", st.n_cells);
                println!("ARI          {ari:.4}");
            }
            _ => println!("NMI, ARI     undefined ({})", st.note.as_deref().unwrap_or("too few cells")),
        }
        if let Some(v) = st.f1_x_nmi {
            println!("F1xNMI       {v:.4}");
        }
    }
    Ok(())
}
