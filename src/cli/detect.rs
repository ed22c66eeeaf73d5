//! `acsleuth detect`: Module I from the command line. Settings come from
//! the defaults (the authors'), then `--config FILE.toml`, then the flags;
//! everything is checked before any work starts.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::data::io::{self, ReadOptions};
use crate::data::store::Store;
use crate::error::Result;
use crate::pipeline::detect::{detect_stores, detect_with, DetectOptions, DetectResult};
use crate::pipeline::output::{write_deviations, write_json, write_scores};
use crate::pipeline::{DetectConfig, Kernel};

use super::common::{IoArgs, Job, ScheduleArgs};

/// Find anomalous cells in a target set given a reference set of normal
/// cells (Module I: GAN with memory bank + MMD scorer).
///
/// Writes DIR/scores.tsv (`cell<TAB>score<TAB>anomaly`, target order),
/// DIR/deviations.tsv (`cell<TAB>deviation`: ‖x − x̂‖, a ranking that is
/// often sharper than the MMD score), DIR/report.json (settings, genes,
/// timings, losses, call rule, orientation) and DIR/model.safetensors.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub io: IoArgs,
    /// TOML file of detection settings (keys as in report.json's `settings`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Expected anomaly fraction: fixes the group sizes and calls the top fraction.
    #[arg(long, value_name = "R")]
    pub anomaly_ratio: Option<f64>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Kernel of the MMD scorer [default: linear].
    #[arg(long, value_enum)]
    pub kernel: Option<Kernel>,
}

/// Defaults ← config file ← flags.
pub fn settings(a: &Args) -> Result<DetectConfig> {
    let mut c = match &a.config {
        Some(p) => DetectConfig::from_toml_file(p)?,
        None => DetectConfig::default(),
    };
    if let Some(r) = a.anomaly_ratio {
        c.anomaly_ratio = Some(r);
    }
    if let Some(s) = a.schedule.seed {
        c.seed = s;
    }
    a.schedule.apply(&mut c);
    if let Some(k) = a.kernel {
        c.kernel = k;
    }
    c.validate()?;
    Ok(c)
}

/// Reads (or streams) the inputs and runs Module I.
struct Detect<'a> {
    a: &'a Args,
    formats: (io::Format, io::Format),
    cfg: DetectConfig,
    opts: DetectOptions,
}

impl Job for Detect<'_> {
    type Output = DetectResult;
    fn run<B: Backend>(&self, be: &B) -> Result<DetectResult> {
        let io = &self.a.io;
        // Two stores of log-normalized values over the same genes are streamed
        // from their memory maps; everything else is loaded (and preprocessed).
        if let (io::Format::Store, io::Format::Store) = self.formats
            && !io.raw
        {
            let (r, t) = (Store::open(&io.reference)?, Store::open(&io.target)?);
            if let Some(res) = detect_stores(be, &r, &t, &self.cfg, &self.opts)? {
                return Ok(res);
            }
        }
        let opts = ReadOptions { use_raw: io.raw };
        let reference = io::read_dataset(&io.reference, &opts)?;
        let target = io::read_dataset(&io.target, &opts)?;
        detect_with(be, &reference, &target, &self.cfg, &self.opts)
    }
}

pub fn run(a: Args) -> Result<()> {
    let cfg = settings(&a)?;
    let formats = (io::detect(&a.io.reference)?, io::detect(&a.io.target)?);
    let dev = a.io.setup()?;
    let out = a.io.out.clone();
    let opts = DetectOptions { model_path: Some(out.join("model.safetensors")), spill_dir: Some(out.clone()), mem_budget: None };
    let res = a.io.dispatch(dev, &Detect { a: &a, formats, cfg, opts })?;
    write_scores(&out.join("scores.tsv"), &res.cells, &res.scores, &res.calls)?;
    write_deviations(&out.join("deviations.tsv"), &res.cells, &res.deviation)?;
    write_json(&out.join("report.json"), &res.report)?;
    eprintln!(
        "{} of {} target cells called anomalous ({}); results in {}",
        res.report.n_called,
        res.cells.len(),
        res.report.call_rule,
        out.display()
    );
    Ok(())
}
