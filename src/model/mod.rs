//! The ACsleuth models.

pub mod critic;
pub mod generator;
pub mod kin;
pub mod memory;
pub mod mmd;
pub mod novelty;
pub mod pca;
pub mod scorer;
pub mod source;
pub mod style;
pub mod subtype;
pub mod train;
