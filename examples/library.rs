//! acsleuth as a library: the whole workflow on in-memory matrices, then
//! the same four modules called one by one — a template another tool can
//! copy. No file is read or written.
//!
//! cargo run --release --example library
//!
//! Inputs are [`Dataset`]s: build one from your own arrays (as below) or
//! read one with `acsleuth::data::io::read_dataset` (.h5ad, 10x, store).
//! Values may be raw counts (normalized, log-transformed and reduced to
//! highly variable genes on the reference, as scanpy does) or already
//! log-normalized.

use acsleuth::backend::CpuBackend;
use acsleuth::data::simulate::{simulate_dataset, DeParams, SetKind, SimConfig, Simulator};
use acsleuth::data::{Dataset, DenseMatrix, Matrix, ObsColumn};
use acsleuth::model::style;
use acsleuth::pipeline::detect::{self, DetectOptions, Inputs};
use acsleuth::pipeline::run::{self, Batches, RunConfig, RunOptions, Truth};
use acsleuth::Result;

/// A `Dataset` from plain arrays: `values` is cells × genes, row-major.
fn dataset_from_arrays(values: Vec<f32>, cells: Vec<String>, genes: Vec<String>, batch: Vec<String>) -> Dataset {
    let (rows, cols) = (cells.len(), genes.len());
    Dataset {
        x: Matrix::Dense(DenseMatrix { rows, cols, data: values }),
        cell_names: cells,
        gene_names: genes,
        obs: vec![("batch".to_string(), ObsColumn::Text(batch))],
    }
}

fn main() -> Result<()> {
    // Optional, once, first thing in `main`: build rayon's global pool with
    // this thread as one of its workers, as the `acsleuth` command does (a
    // training iteration runs hundreds of short parallel loops; started from
    // outside the pool each one costs a wake-up and a sleep). `Some(n)` sets
    // the thread count. Skip it if your program configures rayon itself.
    acsleuth::backend::thread_pool::init_global(None);

    // Some data: simulated counts (any matrices would do; see
    // `dataset_from_arrays` for building one from your own arrays).
    let sim = Simulator::new(SimConfig {
        n_ref: 600,
        n_target: 600,
        n_genes: 1000,
        n_anomaly_types: 2,
        anomaly_ratio: 0.15,
        n_batches: 2,
        ref_batches: vec![0],
        target_batches: Some(vec![0, 1]),
        anomaly_de: DeParams { prob: 0.15, loc: 2.0, ..DeParams::default() },
        seed: 7,
        ..SimConfig::default()
    })?;
    let reference = simulate_dataset(&sim, SetKind::Reference)?;
    let simulated = simulate_dataset(&sim, SetKind::Target)?;
    let batch_col = simulated.obs_column("batch").expect("the simulator writes a batch column");
    let target = Dataset {
        obs: simulated.obs.clone(),
        ..dataset_from_arrays(
            simulated.x.to_dense().data,
            simulated.cell_names.clone(),
            simulated.gene_names.clone(),
            (0..simulated.n_cells()).map(|i| batch_col.get_str(i)).collect(),
        )
    };

    // Settings: the authors' defaults, shortened here so the example is quick.
    let mut cfg = RunConfig::default();
    cfg.detect.prepare_epochs = 5;
    cfg.detect.train_epochs = 3;
    cfg.detect.n_hvg = 500;
    cfg.style.epochs = 5;
    cfg.subtype.n_subtypes = Some(2);
    cfg.set_seed(1);
    let be = CpuBackend::new();

    // 1. The whole workflow in one call.
    let batches = Batches::from_obs(&target, Some("batch"))?;
    let res = run::run_workflow(&be, &reference, &target, &batches, &cfg, &RunOptions::default())?;
    let truth = Truth::from_obs(&reference, &target, "cell_type", &[])?;
    let e = run::evaluate(&truth, &res.scores, &res.calls, &res.subtypes)?;
    println!("whole workflow: {} of {} cells called anomalous, {} subtypes", res.anomalies.len(), res.cells.len(), res.report.subtype.k);
    println!("  AUROC {:.3}, F1 {:.3}, NMI {:.3}", e.auroc, e.f1(), e.nmi().unwrap_or(0.0));
    for i in res.anomalies.iter().take(3) {
        println!("  {}: score {:.3}, subtype {:?}", res.cells[*i], res.scores[*i], res.subtypes[*i]);
    }

    // 2. The same modules one by one (e.g. to swap one out).
    let prep = detect::prepare(&reference, &target, &cfg.detect)?;
    let inputs = Inputs::prepared(&prep, &target, None, &cfg.detect, 0.0)?;
    let (det, mut m1) = detect::train_module_i(&be, &inputs, &cfg.detect, &DetectOptions::default())?;
    let normal: Vec<usize> = (0..det.calls.len()).filter(|&i| !det.calls[i]).collect();
    let anomalies: Vec<usize> = (0..det.calls.len()).filter(|&i| det.calls[i]).collect();
    let generator = &mut m1.trainer.generator;
    let pairs = run::kin_pairing(&be, generator, &prep.reference, &prep.target, &normal, cfg.chunk)?;
    let pair_ref: Vec<usize> = pairs.kin.iter().map(|&k| k as usize).collect();
    let (mut stylegen, _log) = style::train_style(
        &be,
        Some(&mut *generator),
        &prep.reference,
        &prep.target,
        &normal,
        &pair_ref,
        &batches.of,
        batches.names.len(),
        &cfg.style,
    )?;
    let pass = run::correct_target(&be, generator, Some(&mut stylegen), None, &prep.target, &batches.of, &anomalies, cfg.chunk, false)?;
    println!("module by module: {} kin pairs, corrected encodings {} × {}", pairs.kin.len(), pass.z.rows, pass.z.cols);
    if anomalies.len() >= 2 {
        let sub = run::subtype_anomalies(&be, generator, &pass.anomaly_values, &cfg.subtype, cfg.chunk)?;
        println!("  {} anomalies in {} subtypes", sub.labels.len(), sub.k);
    }
    Ok(())
}
