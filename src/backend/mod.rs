//! The Backend trait and its CPU implementation (in progress).
