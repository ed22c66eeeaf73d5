//! The `acsleuth` command line: flags are parsed and validated here, then
//! handed to the library. Each subcommand lives in its own file with its
//! `Args` struct and a `run` function.

use clap::{Parser, Subcommand};

pub mod common;
pub mod convert;
pub mod correct;
pub mod demo;
pub mod detect;
pub mod inspect;
pub mod run;
pub mod simulate;
pub mod evaluate;

/// acsleuth: find anomalous cells in single-cell RNA-seq data and sort them
/// into subtypes (after ACsleuth, IJCAI 2024).
///
/// A reference set of normal cells teaches a GAN with a memory bank what
/// normal looks like; target cells that it reconstructs badly get high
/// anomaly scores from an MMD-based scorer.
#[derive(Parser, Debug)]
#[command(name = "acsleuth", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the built-in demonstration: simulate, run the whole workflow, evaluate (under a minute).
    Demo(demo::Args),
    /// Convert an .h5ad file or a 10x folder into acsleuth's memory-mapped store (or a store back to .h5ad).
    Convert(convert::Args),
    /// Show what a data file holds: shape, sparsity, value kind, obs columns.
    Inspect(inspect::Args),
    /// Simulate reference and target count data with known anomalies.
    Simulate(Box<simulate::Args>),
    /// Find anomalous cells in a target set given normal reference cells: novelty in a joint, batch-corrected PCA, calls at a false discovery rate.
    Detect(detect::Args),
    /// Run the whole workflow: detect, pair, batch-correct, subtype (Modules I–IV).
    Run(Box<run::Args>),
    /// Batch-correct the target: map every target cell into reference space (Modules I–III).
    Correct(correct::Args),
    /// Score anomaly calls or subtypes against the truth (AUROC, AP, F1, NMI, ARI).
    Evaluate(evaluate::Args),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> crate::Result<()> {
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Simulate(a) => simulate::run(*a),
        Command::Demo(a) => demo::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Detect(a) => detect::run(a),
        Command::Run(a) => run::run(*a),
        Command::Correct(a) => correct::run(a),
    }
}
