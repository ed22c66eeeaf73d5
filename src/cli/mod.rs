//! The `acsleuth` command line: flags are parsed and validated here, then
//! handed to the library. Each subcommand lives in its own file with its
//! `Args` struct and a `run` function.

use clap::{Parser, Subcommand};

pub mod common;
pub mod config;
pub mod config_docs;
pub mod convert;
pub mod correct;
pub mod demo;
pub mod detect;
pub mod inspect;
pub mod run;
pub mod simulate;
mod values;
pub mod evaluate;

/// acsleuth: find anomalous cells in single-cell RNA-seq data and sort them
/// into subtypes (after ACsleuth, IJCAI 2024).
///
/// Target cells are scored against a reference of normal cells in a joint,
/// batch-corrected representation and called at a false discovery rate;
/// `run` then pairs, batch-corrects and subtypes the anomalies. The
/// paper's GAN + MMD scorer is `detect --score paper`.
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
    /// Print every setting at its default, as the TOML file --config takes.
    Config(config::Args),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> crate::Result<()> {
    // SIGINT/SIGTERM remove this command's temporaries and end it.
    crate::cleanup::install();
    // A status line every 30 s where the bars are hidden (stderr to a log).
    let _status = crate::progress::StatusLines::start();
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Simulate(a) => simulate::run(*a),
        Command::Demo(a) => demo::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Detect(a) => detect::run(a),
        Command::Run(a) => run::run(*a),
        Command::Correct(a) => correct::run(a),
        Command::Config(a) => config::run(a),
    }
}
