//! The modules of ACsleuth as steps of one run: settings, outputs, reports.

pub mod batches;
pub mod config;
pub mod detect;
pub mod inputs;
pub mod novelty;
pub mod prepare;
pub mod detector;
pub mod run;

pub use config::{DetectConfig, Kernel, PreprocessMode, ScoreMethod};
