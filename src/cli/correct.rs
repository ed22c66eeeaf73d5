//! `acsleuth correct`: Modules I–III — detect, pair the normal target
//! cells with their reference kin, learn the batches' styles — then map
//! every target cell into reference space and write the corrected values.

use crate::backend::Backend;
use crate::data::{Dataset, Matrix};
use crate::error::{Error, Result};
use crate::output::write_json;
use crate::pipeline::run::{run_workflow, Batches, RunConfig, RunOptions, RunResult};

use super::common::Job;
use super::run::Common;

/// Remove batch effects: map every target cell into the reference's space
/// with the style-transfer generator (Modules I–III of the workflow).
///
/// Writes DIR/corrected.h5ad (X = corrected log-normalized values over the
/// genes used; obs = the target's plus acsleuth_score, acsleuth_anomaly,
/// acsleuth_batch), DIR/report.json and DIR/checkpoints/ (shared with
/// `acsleuth run` on the same DIR: a later `run` resumes from them).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

/// Modules I–III with the corrected values kept.
struct Correct<'a> {
    a: &'a Args,
    cfg: RunConfig,
    spill: std::path::PathBuf,
    reference: &'a Dataset,
    target: &'a Dataset,
}

impl Job for Correct<'_> {
    type Output = RunResult;
    fn run<B: Backend>(&self, be: &B) -> Result<RunResult> {
        let c = &self.a.common;
        let batches = Batches::from_obs(self.target, c.batch_key.as_deref())?;
        let opts = RunOptions {
            checkpoint_dir: Some(c.io.out.join("checkpoints")),
            spill_dir: Some(self.spill.clone()),
            keep_corrected: true,
            skip_subtyping: true,
        };
        run_workflow(be, self.reference, self.target, &batches, &self.cfg, &opts)
    }
}

/// The settings (`run`'s, with the batch correction on), checked before
/// any device, folder or input is touched.
fn settings(a: &Args) -> Result<RunConfig> {
    let mut cfg = a.common.settings()?;
    cfg.batch_correction = true;
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(a: Args) -> Result<()> {
    a.common.io.reference()?;
    let cfg = settings(&a)?;
    let (dev, mut set) = a.common.io.setup()?;
    let (reference, target) = a.common.io.read()?;
    let spill = set.stage().to_path_buf();
    let res = a.common.io.dispatch(dev, &Correct { a: &a, cfg, spill, reference: &reference, target: &target })?;
    let corrected = res.corrected.clone().ok_or_else(|| Error::Other("internal: no corrected values kept".into()))?;
    let obs = crate::pipeline::run::outputs::result_obs(&target, &res, false);
    let ds = Dataset { x: Matrix::Dense(corrected), cell_names: res.cells.clone(), gene_names: res.genes.clone(), obs };
    crate::data::h5ad::write_h5ad(&set.file("corrected.h5ad"), &ds, &[("X_acsleuth".to_string(), res.z.clone())])?;
    write_json(&set.file("report.json"), &res.report)?;
    let files = set.commit()?;
    println!(
        "{} target cells mapped into reference space ({} batches); {} called anomalous",
        res.cells.len(),
        res.report.batches.len(),
        res.report.n_called
    );
    for f in &files {
        println!("  {}", f.display());
    }
    Ok(())
}
