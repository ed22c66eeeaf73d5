//! The ACsleuth models (in progress).
