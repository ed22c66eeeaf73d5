//! The kernel sources of `kernels/`, embedded at build time (see build.rs):
//! always the `.cu`/`.cuh` sources (for NVRTC at run time), and PTX when
//! nvcc was found at build time.

mod embed {
    include!(concat!(env!("OUT_DIR"), "/kernels_embed.rs"));
}

/// `(file name, source)` of every kernel file (`*.cu`) and header (`*.cuh`).
pub fn sources() -> &'static [(&'static str, &'static str)] {
    embed::SOURCES
}

/// `(file name, PTX for compute_80)` of every `.cu` when nvcc was found at
/// build time; `None` otherwise (compile [`sources`] with NVRTC).
pub fn ptx() -> Option<&'static [(&'static str, &'static str)]> {
    embed::PTX
}

/// The source of one file by name (`"fused.cu"`, `"common.cuh"`).
pub fn source(name: &str) -> Option<&'static str> {
    sources().iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub use super::signature::global_kernels;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_embedded() {
        for f in ["common.cuh", "adam.cu", "argmax.cu", "desc.cu", "elementwise.cu", "fused.cu", "knn.cu", "memory_attention.cu", "mmd.cu", "norm.cu", "reduce.cu"] {
            assert!(source(f).is_some(), "{f} not embedded");
        }
        assert!(global_kernels(source("mmd.cu").unwrap()).contains(&"mmd_pairwise"));
    }

    /// When nvcc was found at build time, every kernel is an entry of its PTX.
    #[test]
    fn embedded_ptx_has_every_kernel() {
        let Some(ptx) = ptx() else { return };
        for (file, src) in sources().iter().filter(|(f, _)| f.ends_with(".cu")) {
            let (_, p) = ptx.iter().find(|(f, _)| f == file).unwrap_or_else(|| panic!("no PTX for {file}"));
            for k in global_kernels(src) {
                assert!(p.contains(&format!(".entry {k}(")), "{file}: {k} missing from the PTX");
            }
        }
    }
}
