//! `acsleuth run`: the whole workflow from the command line. Settings come
//! from the defaults (the authors'), then `--config FILE.toml` (tables
//! `[detect]`, `[style]`, `[subtype]`), then the flags; everything is
//! checked before any work starts.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::pipeline::run::{outputs, run_workflow, Batches, RunConfig, RunOptions, RunResult, Truth};

use super::common::{IoArgs, Job, ScheduleArgs};

/// Find anomalous cells and sort them into subtypes: detection (the
/// novelty score in a joint Harmony-corrected PCA, calls at --fdr; Module
/// I's networks are trained for the later modules, and `--score paper`
/// ranks with them instead), kin pairing (II), batch correction (III),
/// transformer fusion + DESC subtyping (IV).
///
/// Writes DIR/cells.tsv (`cell score anomaly subtype batch qvalue`, target order),
/// DIR/target.h5ad (the target over the genes used, its obs plus the
/// acsleuth_* columns, obsm embeddings, optionally the corrected values as
/// a layer), DIR/report.json, PNG plots (score distribution, embeddings by
/// call and by subtype, ROC/PR with --truth-key) and DIR/checkpoints/: a
/// rerun of the same command resumes after the last finished module.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Number of subtypes, or `auto`: the k-means partition of the
    /// anomalies with the best mean silhouette, K from 2 up to the Louvain
    /// communities of their kNN graph [default: auto].
    #[arg(long, value_name = "K|auto")]
    pub n_subtypes: Option<String>,
    /// Target obs column with the truth (booleans, or cell-type labels: the
    /// labels absent from the reference's column of that name are the
    /// anomalies): adds metrics to the report and ROC/PR plots.
    #[arg(long, value_name = "COL")]
    pub truth_key: Option<String>,
    /// With --truth-key: the labels that are anomalous (comma-separated),
    /// instead of "absent from the reference".
    #[arg(long, value_name = "LABELS", value_delimiter = ',')]
    pub anomaly_labels: Vec<String>,
    /// Expected anomaly fraction: calls the top fraction by score instead of
    /// the FDR rule.
    #[arg(long, value_name = "R")]
    pub anomaly_ratio: Option<f64>,
    /// The score that ranks and calls [default: novelty].
    #[arg(long, value_enum)]
    pub score: Option<crate::pipeline::ScoreMethod>,
    /// False discovery rate of the calls, in (0, 1): a cell is called when
    /// its Benjamini–Hochberg q-value (from conformal p-values against the
    /// reference's leave-one-out scores) is at most Q [default: 0.1].
    #[arg(long, value_name = "Q")]
    pub fdr: Option<f64>,
    /// Skip Modules II and III: subtype the uncorrected expression.
    #[arg(long)]
    pub no_batch_correction: bool,
    /// Keep the corrected expression of every target cell (layer
    /// `corrected` of target.h5ad; n_target × genes floats in memory).
    #[arg(long)]
    pub keep_corrected: bool,
    /// Start from scratch even when DIR/checkpoints holds a matching run.
    #[arg(long)]
    pub no_resume: bool,
}

/// The flags `run` and `correct` share.
#[derive(clap::Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub io: IoArgs,
    /// TOML settings: top-level keys batch_correction, correction, chunk;
    /// tables `[detect]` (the keys of `acsleuth detect --config`), `[kin]`,
    /// `[style]`, `[subtype]` (`acsleuth config --defaults --run` prints every
    /// key at its default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Target obs column naming each cell's batch (sample, donor,
    /// technology); without it the target is one batch.
    #[arg(long, value_name = "KEY")]
    pub batch_key: Option<String>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Module III (style transfer) epochs [default: 50].
    #[arg(long, value_name = "N")]
    pub epochs_style: Option<usize>,
    /// Batch correction: `kin-shift` (subtract each batch's mean shift from
    /// its kin pairs, on expressed genes; keeps the anomalies' own
    /// expression) or `style` (Module III's style-transfer generator, the
    /// paper's; it maps anomalies onto normal-looking cells) [default:
    /// kin-shift].
    #[arg(long, value_enum)]
    pub correction: Option<crate::pipeline::run::Correction>,
    /// Module II's similarity of encodings: `cosine`, or `inner-product`
    /// (the paper's, which pairs most target cells with the few reference
    /// cells of largest norm) [default: cosine].
    #[arg(long, value_enum, value_name = "SIM")]
    pub kin_similarity: Option<crate::model::kin::KinSimilarity>,
}

impl Common {
    /// Defaults ← config file ← these flags.
    pub fn settings(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::from_toml_file(p)?,
            None => RunConfig::default(),
        };
        if let Some(s) = self.schedule.seed {
            c.set_seed(s);
        }
        self.schedule.apply(&mut c.detect)?;
        if let Some(n) = self.epochs_style {
            c.style.epochs = n;
        }
        if let Some(m) = self.correction {
            c.correction = m;
        }
        if let Some(k) = self.kin_similarity {
            c.kin.similarity = k;
        }
        Ok(c)
    }
}

/// Parses `--n-subtypes`: a positive integer or `auto`.
pub fn parse_n_subtypes(s: &str) -> Result<Option<usize>> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match s.trim().parse::<usize>() {
        Ok(k) if k >= 1 => Ok(Some(k)),
        _ => Err(Error::Config(format!("--n-subtypes must be a positive integer or 'auto', got '{s}'"))),
    }
}

/// Defaults ← config file ← flags.
pub fn settings(a: &Args) -> Result<RunConfig> {
    let mut c = a.common.settings()?;
    if let Some(m) = a.score {
        c.detect.score = m;
    }
    if let Some(q) = a.fdr {
        c.detect.fdr = q;
    }
    if let Some(r) = a.anomaly_ratio {
        c.detect.anomaly_ratio = Some(r);
    }
    if let Some(k) = &a.n_subtypes {
        c.subtype.n_subtypes = parse_n_subtypes(k)?;
    }
    if a.no_batch_correction {
        c.batch_correction = false;
    }
    c.validate()?;
    Ok(c)
}

/// Everything checked before the models start: settings, the truth and
/// batch columns, the device and the output folder.
struct Plan {
    cfg: RunConfig,
    reference: Dataset,
    target: Dataset,
    batches: Batches,
    truth: Option<Truth>,
    opts: RunOptions,
}

fn plan(a: &Args, spill: &std::path::Path) -> Result<Plan> {
    let cfg = settings(a)?;
    if !a.anomaly_labels.is_empty() && a.truth_key.is_none() {
        return Err(Error::Config("--anomaly-labels needs --truth-key".into()));
    }
    let (reference, target) = a.common.io.read()?;
    let batches = Batches::from_obs(&target, a.common.batch_key.as_deref())?;
    let truth = a.truth_key.as_deref().map(|k| Truth::from_obs(&reference, &target, k, &a.anomaly_labels)).transpose()?;
    let ck = a.common.io.out.join("checkpoints");
    if a.no_resume && ck.exists() {
        std::fs::remove_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
    }
    let opts = RunOptions { checkpoint_dir: Some(ck), spill_dir: Some(spill.to_path_buf()), keep_corrected: a.keep_corrected, skip_subtyping: false };
    Ok(Plan { cfg, reference, target, batches, truth, opts })
}

impl Job for Plan {
    type Output = RunResult;
    fn run<B: Backend>(&self, be: &B) -> Result<RunResult> {
        run_workflow(be, &self.reference, &self.target, &self.batches, &self.cfg, &self.opts)
    }
}

/// The accuracy line of a run with truth: each F1 next to what it is of.
pub fn evaluation_line(e: &crate::pipeline::run::Evaluation) -> String {
    let c = e.own_calls.unwrap_or_default();
    format!(
        "against {}: AUROC {:.3}, AP {:.3}; F1 of the calls {:.3} (precision {:.3}, recall {:.3}); F1 at the true anomaly fraction ({:.3}: the top {} cells) {:.3}",
        e.truth_rule,
        e.auroc,
        e.average_precision,
        c.f1,
        c.precision,
        c.recall,
        e.n_true_anomalies as f64 / e.n_cells.max(1) as f64,
        e.n_true_anomalies,
        e.f1_at_true_fraction.f1
    )
}

/// The subtyping line: NMI, ARI and F1 × NMI, or why they are undefined.
pub fn subtyping_line(s: &crate::metrics::evaluation::Subtyping) -> String {
    match (s.nmi, s.ari, s.f1_x_nmi) {
        (Some(n), Some(a), Some(x)) => format!("NMI {n:.3}, ARI {a:.3}, F1×NMI {x:.3}"),
        (Some(n), Some(a), None) => format!("NMI {n:.3}, ARI {a:.3}"),
        _ => s.note.clone().unwrap_or_else(|| "NMI and ARI are undefined".into()),
    }
}

/// Prints a short summary of a finished run to stdout.
pub fn print_summary(res: &RunResult, files: &[PathBuf]) {
    let r = &res.report;
    println!(
        "{} of {} target cells called anomalous; {} subtype(s){}",
        r.n_called,
        r.n_target,
        r.subtype.k,
        if r.subtype.k_inferred { " (inferred)" } else { "" }
    );
    if !r.resumed.is_empty() {
        println!("resumed from checkpoints: {}", r.resumed.join(", "));
    }
    if let Some(e) = &r.evaluation {
        println!("{}", evaluation_line(e));
        if let Some(st) = &e.subtyping {
            println!("subtypes: {}", subtyping_line(st));
        }
    }
    for f in files {
        println!("  {}", f.display());
    }
}

pub fn run(a: Args) -> Result<()> {
    a.common.io.reference()?;
    settings(&a)?;
    if !a.anomaly_labels.is_empty() && a.truth_key.is_none() {
        return Err(Error::Config("--anomaly-labels needs --truth-key".into()));
    }
    let (dev, mut set) = a.common.io.setup()?;
    let p = plan(&a, set.stage())?;
    let mut res = a.common.io.dispatch(dev, &p)?;
    if let Some(t) = &p.truth {
        res.report.evaluation = Some(crate::pipeline::run::evaluate(t, &res.scores, &res.calls, &res.subtypes)?);
    }
    outputs::write_outputs(&mut set, &p.target, &res, p.truth.as_ref())?;
    let files = set.commit()?;
    print_summary(&res, &files);
    for w in &res.report.genes.warnings {
        eprintln!("warning: {w}");
    }
    let d = &res.report.settings.detect;
    if d.score == crate::pipeline::ScoreMethod::Novelty
        && d.anomaly_ratio.is_none()
        && let Some(n) = crate::pipeline::novelty::batch_note(res.report.n_called, res.report.n_target, a.common.batch_key.is_some())
    {
        eprintln!("{n}");
    }
    Ok(())
}
