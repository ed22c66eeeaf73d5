//! Known labels of the target cells (`--truth-key`) and the scores of a
//! run against them: detection (AUROC, AP, F1) and subtyping (NMI, ARI and
//! the product F1 × NMI).


use crate::data::{Dataset, ObsColumn};
use crate::error::{Error, Result};
pub use crate::metrics::evaluation::Evaluation;
use crate::metrics::evaluation::Scored;

/// The truth of every target cell.
#[derive(Clone, Debug)]
pub struct Truth {
    /// The obs column it came from.
    pub key: String,
    /// Whether each target cell is anomalous.
    pub anomalous: Vec<bool>,
    /// The label of each target cell (cell type), when the column holds
    /// labels rather than booleans: the anomalous cells' labels are their
    /// true subtypes.
    pub labels: Option<Vec<String>>,
    /// How the anomalous cells were told apart, for the report.
    pub rule: String,
}

impl Truth {
    /// Reads column `key` of the target's obs. A boolean column is the
    /// anomaly truth itself. A column of labels marks as anomalous the cells
    /// whose label is in `anomaly_labels`, or, when none are given, whose
    /// label never occurs in the reference's column of the same name (the
    /// benchmark setting: the anomalous types are absent from the
    /// reference).
    pub fn from_obs(reference: &Dataset, target: &Dataset, key: &str, anomaly_labels: &[String]) -> Result<Truth> {
        let col = target.obs_column(key).ok_or_else(|| {
            let names: Vec<&str> = target.obs.iter().map(|(n, _)| n.as_str()).collect();
            Error::invalid(format!("--truth-key {key}: the target has no such obs column (it has: {})", names.join(", ")))
        })?;
        if let ObsColumn::Bool(v) = col {
            return Ok(Truth {
                key: key.into(),
                anomalous: v.clone(),
                labels: None,
                rule: format!("obs column '{key}' (true = anomalous)"),
            });
        }
        if let ObsColumn::Numeric(_) | ObsColumn::Integer(_) = col {
            return Err(Error::invalid(format!("--truth-key {key}: a numeric column; give a boolean or a column of labels")));
        }
        let labels: Vec<String> = (0..col.len()).map(|i| col.get_str(i)).collect();
        let (anomalous, rule) = if !anomaly_labels.is_empty() {
            for l in anomaly_labels {
                if !labels.contains(l) {
                    return Err(Error::invalid(format!("--anomaly-labels: no target cell has {key} = '{l}'")));
                }
            }
            let a = labels.iter().map(|l| anomaly_labels.contains(l)).collect();
            (a, format!("obs column '{key}': anomalous = {}", anomaly_labels.join(", ")))
        } else {
            let rcol = reference.obs_column(key).ok_or_else(|| {
                Error::invalid(format!(
                    "--truth-key {key}: the reference has no such column to tell which labels are anomalous; give --anomaly-labels"
                ))
            })?;
            let seen: std::collections::HashSet<String> = (0..rcol.len()).map(|i| rcol.get_str(i)).collect();
            let a: Vec<bool> = labels.iter().map(|l| !seen.contains(l)).collect();
            let mut absent: Vec<&String> = labels.iter().filter(|l| !seen.contains(*l)).collect();
            absent.sort();
            absent.dedup();
            (a, format!("obs column '{key}': anomalous = labels absent from the reference ({})", absent.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")))
        };
        if !anomalous.iter().any(|&a| a) || anomalous.iter().all(|&a| a) {
            return Err(Error::invalid(format!("--truth-key {key}: {rule} leaves no anomalous or no normal target cell")));
        }
        Ok(Truth { key: key.into(), anomalous, labels: Some(labels), rule })
    }
}

/// Scores a run's `scores`, `calls` and `subtypes` (per target cell, `None`
/// for cells called normal) against `truth`: the one [`Evaluation`] of the
/// crate, as `acsleuth evaluate` computes it from the files.
pub fn evaluate(truth: &Truth, scores: &[f32], calls: &[bool], subtypes: &[Option<u32>]) -> Result<Evaluation> {
    let s: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
    let predicted: Vec<String> = subtypes.iter().map(|k| k.map(super::outputs::subtype_name).unwrap_or_default()).collect();
    let labels = truth.labels.as_ref().map(|l| {
        let t: Vec<Option<&str>> = l.iter().map(|s| Some(s.as_str())).collect();
        let p: Vec<Option<&str>> = predicted.iter().map(|s| (!s.is_empty()).then_some(s.as_str())).collect();
        (t, p)
    });
    let scored = Scored { truth: &truth.anomalous, scores: &s, calls: Some(calls), subtypes: labels.as_ref().map(|(t, p)| (&t[..], &p[..])) };
    Evaluation::compute(truth.rule.clone(), &scored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DenseMatrix, Matrix};

    fn ds(labels: &[&str]) -> Dataset {
        let n = labels.len();
        Dataset {
            x: Matrix::Dense(DenseMatrix::zeros(n, 1)),
            cell_names: (0..n).map(|i| format!("c{i}")).collect(),
            gene_names: vec!["g".into()],
            obs: vec![("type".into(), ObsColumn::Text(labels.iter().map(|s| s.to_string()).collect()))],
        }
    }

    #[test]
    fn labels_absent_from_the_reference_are_anomalous() {
        let r = ds(&["T", "Mono"]);
        let t = ds(&["T", "B", "NK", "Mono", "B"]);
        let tr = Truth::from_obs(&r, &t, "type", &[]).unwrap();
        assert_eq!(tr.anomalous, [false, true, true, false, true]);
        assert!(tr.rule.contains("B, NK"), "{}", tr.rule);
        let given = Truth::from_obs(&r, &t, "type", &["NK".into()]).unwrap();
        assert_eq!(given.anomalous, [false, false, true, false, false]);
        assert!(Truth::from_obs(&r, &t, "type", &["X".into()]).is_err());
        assert!(Truth::from_obs(&r, &t, "nope", &[]).is_err());
        // Every target label also in the reference: no anomaly to score.
        assert!(Truth::from_obs(&t, &r, "type", &[]).is_err());
    }

    #[test]
    fn evaluation_scores_detection_and_subtypes() {
        let r = ds(&["T"]);
        let t = ds(&["T", "T", "B", "B", "NK", "NK"]);
        let tr = Truth::from_obs(&r, &t, "type", &[]).unwrap();
        let scores = [0.1, 0.2, 0.9, 0.8, 0.7, 0.95];
        let calls = [false, false, true, true, true, true];
        let sub = [None, None, Some(0), Some(0), Some(1), Some(1)];
        let e = evaluate(&tr, &scores, &calls, &sub).unwrap();
        assert_eq!((e.auroc, e.f1()), (1.0, 1.0));
        assert!((e.nmi().unwrap() - 1.0).abs() < 1e-12 && (e.f1_x_nmi().unwrap() - 1.0).abs() < 1e-12);
        let mixed = [None, None, Some(0), Some(1), Some(0), Some(1)];
        assert!(evaluate(&tr, &scores, &calls, &mixed).unwrap().nmi().unwrap() < 1e-9);
    }
}
