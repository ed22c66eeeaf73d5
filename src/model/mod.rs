//! The ACsleuth models.

pub mod critic;
pub mod mmd;
pub mod pca;
