//! The one reader of kernel signatures in `kernels/*.cu`, shared by
//! build.rs (which includes this file with `#[path]`, so it may use std
//! only) and the crate ([`super::kernels::global_kernels`]).

/// Names of the `__global__` kernels of a source, in order:
/// `__global__ void NAME(`.
pub fn global_kernels(src: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("__global__") {
        rest = &rest[i + "__global__".len()..];
        let Some(t) = rest.trim_start().strip_prefix("void") else { continue };
        let t = t.trim_start();
        let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(t.len());
        if end > 0 && t[end..].trim_start().starts_with('(') {
            names.push(&t[..end]);
        }
    }
    names
}
