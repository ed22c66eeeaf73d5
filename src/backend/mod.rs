//! The Backend trait and its CPU implementation (in progress).
pub mod cpu_memory;
