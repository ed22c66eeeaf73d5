//! The ACsleuth models.

pub mod mmd;
pub mod pca;
