//! The ACsleuth models.

pub mod generator;
pub mod memory;
pub mod mmd;
pub mod pca;
pub mod scorer;
pub mod source;
