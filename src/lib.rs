//! acsleuth: fast anomalous-cell detection and subtyping for single-cell
//! RNA-seq, after the ACsleuth method (Xu, Ding et al., IJCAI 2024).
//!
//! Layout (one concern per module; ARCHITECTURE.md in the repository has
//! the full map, the data flow of a run and the math):
//! - [`data`]: expression matrices (memory-mapped store, h5ad, 10x),
//!   preprocessing as scanpy does it, and the simulator.
//! - [`metrics`]: AUROC, AP, F1, NMI, ARI.
//! - [`backend`]: the `Backend` trait of primitive ops and its CPU side.
//! - [`nn`]: layers with forward and backward side by side.
//! - [`model`]: the ACsleuth models (generator, critic, γ_c MMD scorer, ...).
//! - [`pipeline`]: the modules as steps of one run.
//! - [`output`]: every file a command writes: all-or-nothing output sets,
//!   atomic files, TSV, JSON, PNG figures.
//! - [`cli`]: the `acsleuth` command.
//! - [`progress`], [`cleanup`]: process-wide services every layer may use
//!   (progress bars and cancellation; temporaries removed on a stop).
//! - [`allocator`]: freed memory given back to the OS between stages.

pub mod error;
pub mod data;
pub mod metrics;
pub mod backend;
pub mod nn;
pub mod model;
pub mod pipeline;
pub mod cli;
pub mod progress;
pub mod cleanup;
pub mod allocator;
pub mod output;

/// The PNG figures (now [`output::figures`]).
pub use output::figures as report;

pub use error::{Error, Result};
