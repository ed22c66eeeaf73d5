//! The default detector as a pipeline step: the novelty score
//! ([`crate::model::novelty`]) of prepared inputs made into a
//! [`DetectResult`] — scores, FDR calls, q-values, the report.

use std::time::Instant;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::novelty::{self, NoveltyScores};
use crate::pipeline::detect::{DetectReport, DetectResult, Timings};
use crate::pipeline::inputs::Inputs;
use crate::pipeline::{DetectConfig, ScoreMethod};

/// The novelty score of prepared inputs, and its calls (see
/// [`crate::model::novelty`]): no GAN is trained.
pub fn detect_novelty<B: Backend>(be: &B, inputs: &Inputs, cfg: &DetectConfig) -> Result<DetectResult> {
    cfg.validate()?;
    let (reference, target, cells) = (inputs.reference, inputs.target, inputs.cells.clone());
    if cells.len() != target.n_rows() {
        return Err(Error::invalid(format!("{} cell names for {} target cells", cells.len(), target.n_rows())));
    }
    let t0 = Instant::now();
    let nov = novelty::score_novelty(be, reference, target, inputs.target_batches.as_deref(), &cfg.novelty, cfg.seed)?;
    let secs = t0.elapsed().as_secs_f64();
    let report = DetectReport {
        seconds: Timings { novelty: secs, total: secs, ..Timings::default() },
        ..DetectReport::begin(cfg, be.name(), inputs, ScoreMethod::Novelty)
    };
    let mut res = DetectResult { cells, scores: vec![], calls: vec![], p_values: None, q_values: None, embedding: None, deviation: None, report };
    apply_novelty(&mut res, nov, cfg)?;
    Ok(res)
}

/// Makes the novelty score the result's score and its calls the calls
/// (the workflow trains Module I for its later modules, then ranks and
/// calls with this).
pub fn apply_novelty(res: &mut DetectResult, nov: NoveltyScores, cfg: &DetectConfig) -> Result<()> {
    let calls = novelty::calibrate::calls(&nov.score, &nov.q_value, cfg.fdr, cfg.anomaly_ratio)?;
    let n_called = calls.iter().filter(|&&c| c).count();
    let n = calls.len().max(1) as f64;
    let r = &mut res.report;
    r.score = ScoreMethod::Novelty;
    r.call_rule = match cfg.anomaly_ratio {
        Some(x) => format!("top {x} fraction of cells by the novelty score (anomaly_ratio; ties by input order)"),
        None => format!("Benjamini–Hochberg q-value ≤ {} (conformal p-values against the reference's leave-one-out scores)", cfg.fdr),
    };
    r.n_called = n_called;
    r.estimated_anomaly_fraction = cfg.anomaly_ratio.is_none().then(|| n_called as f64 * (1.0 - cfg.fdr) / n);
    r.novelty = Some(nov.report);
    res.scores = nov.score.iter().map(|&v| v as f32).collect();
    res.calls = calls;
    res.p_values = Some(nov.p_value);
    res.q_values = Some(nov.q_value);
    res.embedding = Some(nov.embedding);
    Ok(())
}

/// Share of called cells above which [`batch_note`] speaks.
pub const MANY_CALLED: f64 = 0.25;

/// A note for the user when many cells were called and the target was
/// treated as one batch: differently shifted batches under one label
/// leave normal cells unlike the reference, and they are called (README,
/// "Detection"). `None` when there is nothing to say.
pub fn batch_note(n_called: usize, n_target: usize, batches_given: bool) -> Option<String> {
    let frac = n_called as f64 / n_target.max(1) as f64;
    (!batches_given && frac > MANY_CALLED).then(|| {
        format!(
            "note: {:.0} % of the target was called; if the target holds several batches (samples, donors, technologies), give --batch-key: under one label their different shifts read as novelty",
            100.0 * frac
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_note_speaks_only_without_batches_and_when_many_are_called() {
        assert!(batch_note(30, 100, false).unwrap().contains("--batch-key"));
        assert!(batch_note(30, 100, true).is_none());
        assert!(batch_note(10, 100, false).is_none());
        assert!(batch_note(0, 0, false).is_none());
    }
}
