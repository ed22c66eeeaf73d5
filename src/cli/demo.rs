//! `acsleuth demo`: the whole workflow on a small simulated dataset, in
//! under a minute on two cores — simulate, run the four modules, evaluate,
//! and say where the outputs are.

use std::path::PathBuf;
use std::time::Instant;

use crate::data::simulate::{simulate_dataset, DeParams, SetKind, SimConfig, Simulator};
use crate::data::store::{write_dataset, Layout};
use crate::error::{Error, Result};
use crate::output::OutputSet;
use crate::pipeline::run::{evaluate, outputs, run_workflow, Batches, Correction, RunConfig, RunOptions, Truth};
use crate::pipeline::DetectConfig;

use super::run::subtyping_line;

/// Run the built-in demonstration: simulate a reference (one batch) and a
/// two-batch target with three anomaly subtypes, run the whole workflow
/// (detection, kin pairing, batch correction, subtyping) and print how
/// well it finds and sorts the anomalies — with the default kin-shift
/// correction, and for comparison with the paper's style-transfer one.
///
/// Writes DIR/reference.acs and DIR/target.acs (the simulated inputs, so
/// `acsleuth run` can be rerun on them) and the outputs of `acsleuth run`:
/// cells.tsv, target.h5ad, report.json, the plots and checkpoints/.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "acsleuth-demo")]
    pub out: PathBuf,
    /// Seed of the simulation and of every model.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cells in the reference and in the target.
    #[arg(long, value_name = "N", default_value_t = 1500)]
    pub cells: usize,
    /// Train with the authors' full schedules (50 + 20 epochs for Module I,
    /// 50 for Module III) instead of the demo's short ones.
    #[arg(long)]
    pub full: bool,
}

/// The demo's short schedules: enough to find and sort the simulated
/// anomalies, short enough for well under a minute on two cores.
pub fn demo_config(seed: u64, full: bool) -> RunConfig {
    let mut c = RunConfig::default();
    if !full {
        c.detect = DetectConfig { prepare_epochs: 10, train_epochs: 5, n_hvg: 2000, ..c.detect };
        c.style.epochs = 10;
    }
    c.set_seed(seed);
    // The default calls (a discovery set at FDR 0.1): the detector is not
    // told how many anomalies there are.
    c
}

/// Fraction of the demo's target cells that are anomalous.
pub const DEMO_ANOMALY_FRACTION: f64 = 0.1;

/// The simulated data: reference from batch 0, target from batches 0 and
/// 1, 10 % of the target in three anomaly types clearly apart from the
/// normal ones (DE on 20 % of genes, LogNormal(2.5, 0.4) factors; as B and
/// NK cells are from the other PBMC types).
pub fn demo_simulation(cells: usize, seed: u64) -> SimConfig {
    SimConfig {
        n_ref: cells,
        n_target: cells,
        n_genes: 3000,
        n_anomaly_types: 3,
        n_batches: 2,
        ref_batches: vec![0],
        target_batches: Some(vec![0, 1]),
        anomaly_ratio: DEMO_ANOMALY_FRACTION,
        anomaly_de: DeParams { prob: 0.2, loc: 2.5, ..DeParams::default() },
        seed,
        ..SimConfig::default()
    }
}

pub fn run(a: Args) -> Result<()> {
    if a.cells < 300 {
        return Err(Error::Config(format!("--cells must be at least 300, got {}", a.cells)));
    }
    let mut set = OutputSet::begin(&a.out)?;
    crate::backend::thread_pool::init_global(None);
    let t0 = Instant::now();
    let sim = Simulator::new(demo_simulation(a.cells, a.seed))?;
    let reference = simulate_dataset(&sim, SetKind::Reference)?;
    let target = simulate_dataset(&sim, SetKind::Target)?;
    for (name, ds) in [("reference.acs", &reference), ("target.acs", &target)] {
        write_dataset(&set.file(name), ds, Layout::Csr)?;
    }
    let truth = Truth::from_obs(&reference, &target, "cell_type", &[])?;
    eprintln!(
        "simulated {} reference and {} target cells × 3000 genes ({} anomalies of 3 types, target in 2 batches) in {:.1} s",
        reference.n_cells(),
        target.n_cells(),
        truth.anomalous.iter().filter(|&&t| t).count(),
        t0.elapsed().as_secs_f64()
    );

    let cfg = demo_config(a.seed, a.full);
    let batches = Batches::from_obs(&target, Some("batch"))?;
    // A fresh run every time: the demo shows the whole workflow.
    let ck = a.out.join("checkpoints");
    if ck.exists() {
        std::fs::remove_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
    }
    let opts = RunOptions { checkpoint_dir: Some(ck), spill_dir: Some(set.stage().to_path_buf()), keep_corrected: false, skip_subtyping: false };
    let mut res = run_workflow(&crate::backend::CpuBackend::new(), &reference, &target, &batches, &cfg, &opts)?;
    let e = evaluate(&truth, &res.scores, &res.calls, &res.subtypes)?;
    res.report.evaluation = Some(e.clone());
    outputs::write_outputs(&mut set, &target, &res, Some(&truth))?;
    // The paper's Modules III + IV for comparison, on the same detection
    // (Modules I and II resume from the checkpoints): style-transfer
    // correction, then the fusion block over Module I's encodings.
    let mut style_cfg = RunConfig { correction: Correction::Style, ..cfg.clone() };
    style_cfg.subtype.features = crate::model::subtype::SubtypeFeatures::ModuleI;
    // The paper infers K as DESC does: the Louvain communities.
    style_cfg.subtype.k_rule = crate::model::subtype::KRule::Louvain;
    let styled = run_workflow(&crate::backend::CpuBackend::new(), &reference, &target, &batches, &style_cfg, &opts)?;
    let es = evaluate(&truth, &styled.scores, &styled.calls, &styled.subtypes)?;

    let files: Vec<_> = set.commit()?.into_iter().filter(|f| f.extension().is_none_or(|e| e != "acs")).collect();
    let s = &res.report.seconds;
    println!("acsleuth demo (seed {}, {:.1} s in all)", a.seed, t0.elapsed().as_secs_f64());
    println!("  Module I   detection        {:.1} s  ({} + {} epochs)", s.module_i, cfg.detect.prepare_epochs, cfg.detect.train_epochs);
    println!("  Module II  kin pairing      {:.1} s", s.module_ii);
    println!("  Module III batch correction {:.1} s  (kin shift; the style generator: {:.1} s, {} epochs)", s.module_iii + s.correction, styled.report.seconds.module_iii, cfg.style.epochs);
    println!("  Module IV  subtyping        {:.1} s  ({} subtypes{})", s.module_iv, res.report.subtype.k, if res.report.subtype.k_inferred { ", inferred" } else { "" });
    println!("  AUROC {:.3}   AP {:.3}   F1 at the true fraction {:.3}", e.auroc, e.average_precision, e.f1_at_true_fraction.f1);
    let n = res.cells.len().max(1) as f64;
    let own = e.own_calls.unwrap_or_default();
    println!(
        "  calls: {} cells at FDR {} (estimated anomaly fraction {:.1} %, truth {:.0} %), F1 {:.3} (precision {:.3}, recall {:.3})",
        res.report.n_called,
        cfg.detect.fdr,
        100.0 * res.report.n_called as f64 * (1.0 - cfg.detect.fdr) / n,
        DEMO_ANOMALY_FRACTION * 100.0,
        own.f1,
        own.precision,
        own.recall
    );
    if let Some(st) = &e.subtyping {
        println!("  subtypes vs the 3 simulated anomaly types: {}", subtyping_line(st));
    }
    if let Some(n) = es.nmi() {
        println!(
            "  (with the paper's Modules III + IV instead — style-transfer correction, fusion of Module I encodings: {} subtypes, NMI {n:.3})",
            styled.report.subtype.k
        );
    }
    println!("outputs in {}:", a.out.display());
    for f in &files {
        println!("  {}", f.display());
    }
    println!(
        "rerun the workflow (authors' full schedules): acsleuth run --reference {0}/reference.acs --target {0}/target.acs --batch-key batch --truth-key cell_type --out {0}/run",
        a.out.display()
    );
    Ok(())
}
