//! Launch geometry and host-side constants of the kernels in `kernels/`,
//! shared by the CUDA backend and the emulation tests, so the tests run the
//! very geometry a GPU gets. kernels/README.md lists which kernel uses which.
//!
//! Callers skip launches with no work (a grid dimension of 0 is invalid).

use std::ffi::c_void;

use crate::backend::{Act, AdamStep};

/// A device address (`CUdeviceptr`; a host address under emulation) of an
/// f32 or f64 buffer, with the element offset already applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevPtr(pub u64);

impl DevPtr {
    /// The address of element `i` of an f32 buffer.
    pub fn f32_at(self, i: usize) -> DevPtr {
        DevPtr(self.0 + 4 * i as u64)
    }
    /// Host slices as device addresses (emulation).
    pub fn host<T>(s: &[T]) -> DevPtr {
        DevPtr(s.as_ptr() as u64)
    }
    pub fn host_mut<T>(s: &mut [T]) -> DevPtr {
        DevPtr(s.as_mut_ptr() as u64)
    }
}

/// A failed launch: the kernel and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchError {
    pub kernel: String,
    pub message: String,
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kernel {}: {}", self.kernel, self.message)
    }
}

impl std::error::Error for LaunchError {}

/// Something that launches kernels of `kernels/` by name: the CUDA driver,
/// or the CPU emulation ([`super::emu::Emu`]).
pub trait Launcher {
    /// # Safety
    /// `args` must match the kernel's parameters, and every address must
    /// cover what the kernel touches with `dims`.
    unsafe fn launch(&self, kernel: &str, dims: &Dims, args: &mut Args) -> Result<(), LaunchError>;
}

/// Kernel arguments in launch order, each value boxed so its address is
/// stable (what `cuLaunchKernel`'s `void**` expects).
#[derive(Default)]
pub struct Args {
    // Boxed: each value keeps its address when the Vec grows (the pointers
    // in `ptrs` point into the boxes).
    #[allow(clippy::vec_box)]
    vals: Vec<Box<u64>>,
    ptrs: Vec<*mut c_void>,
    /// What each argument is, checked against the kernel's signature at
    /// launch ([`check_args`]).
    kinds: Vec<ArgKind>,
}

/// How a kernel parameter is passed: a device address or a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    Ptr,
    I32,
    U32,
    U64,
    F32,
    F64,
}

mod signatures {
    use super::ArgKind;
    include!(concat!(env!("OUT_DIR"), "/kernel_signatures.rs"));
}

/// The parameters of `kernel` as its `__global__` signature declares them
/// (read by build.rs with `signature::kernel_params`).
pub fn signature(kernel: &str) -> Option<&'static [ArgKind]> {
    signatures::SIGNATURES.iter().find(|(n, _)| *n == kernel).map(|(_, k)| *k)
}

/// `args` against `kernel`'s signature: the same number of arguments, each
/// of the declared kind. Every launcher calls it before launching, so a
/// launch site whose arguments drifted from its kernel fails with a typed
/// error (under emulation in every test run) instead of reading garbage.
pub fn check_args(kernel: &str, args: &Args) -> Result<(), LaunchError> {
    let err = |message: String| Err(LaunchError { kernel: kernel.to_string(), message });
    let Some(want) = signature(kernel) else { return err("no such kernel in kernels/*.cu".into()) };
    if want.len() != args.kinds.len() {
        return err(format!("{} arguments for {} parameters", args.kinds.len(), want.len()));
    }
    match want.iter().zip(&args.kinds).position(|(w, g)| w != g) {
        Some(i) => err(format!("argument {i} is {:?}, the kernel takes {:?}", args.kinds[i], want[i])),
        None => Ok(()),
    }
}

impl Args {
    pub fn new() -> Self {
        Self::default()
    }
    fn push<T: Copy>(mut self, kind: ArgKind, v: T) -> Self {
        assert!(std::mem::size_of::<T>() <= 8 && std::mem::align_of::<T>() <= 8);
        self.kinds.push(kind);
        let mut b = Box::new(0u64);
        let p = (&mut *b as *mut u64).cast::<T>();
        // SAFETY: the box holds 8 bytes aligned to 8, enough for T (asserted).
        unsafe { p.write(v) };
        self.ptrs.push(p.cast());
        self.vals.push(b);
        self
    }
    pub fn i32(self, v: i32) -> Self {
        self.push(ArgKind::I32, v)
    }
    pub fn u32(self, v: u32) -> Self {
        self.push(ArgKind::U32, v)
    }
    pub fn u64(self, v: u64) -> Self {
        self.push(ArgKind::U64, v)
    }
    pub fn f32(self, v: f32) -> Self {
        self.push(ArgKind::F32, v)
    }
    pub fn f64(self, v: f64) -> Self {
        self.push(ArgKind::F64, v)
    }
    /// A device address (a host address under emulation).
    pub fn ptr(self, p: DevPtr) -> Self {
        self.push(ArgKind::Ptr, p.0)
    }
    /// An optional buffer: null when absent.
    pub fn opt(self, p: Option<DevPtr>) -> Self {
        self.push(ArgKind::Ptr, p.map_or(0u64, |p| p.0))
    }
    /// Append `other`'s arguments after these.
    pub fn append(&mut self, other: Args) {
        self.vals.extend(other.vals);
        self.ptrs.extend(other.ptrs);
        self.kinds.extend(other.kinds);
    }
    /// The `void**` array for `cuLaunchKernel`.
    pub fn as_mut_ptr(&mut self) -> *mut *mut c_void {
        self.ptrs.as_mut_ptr()
    }
    /// The argument pointers as a slice (cudarc's `launch_kernel`).
    pub fn as_mut_slice(&mut self) -> &mut [*mut c_void] {
        &mut self.ptrs
    }
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }
}



/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared: u32,
}

/// Threads per block of the 1-D kernels.
pub const BLOCK: u32 = 256;
/// Grid cap of the grid-stride kernels (≥ 30 blocks per SM on an H100).
pub const MAX_GRID: u32 = 4096;
/// Grid cap of `sum_partial` (its partials are summed by one block).
pub const MAX_PARTIALS: u32 = 1024;
/// Rows per thread column in the column-block kernels (`COL_ROWS` in common.cuh).
pub const COL_ROWS: u32 = 8;
/// Cells per tile of `mmd_pairwise` (`PT`), genes per chunk (`PK`).
pub const PAIR_TILE: u32 = 64;
pub const PAIR_CHUNK: u32 = 32;

fn dims1(grid: u64, block: u32, shared: u32) -> Dims {
    let grid = u32::try_from(grid.max(1)).expect("grid too large for one launch");
    Dims { grid: [grid, 1, 1], block: [block, 1, 1], shared }
}

/// Grid-stride kernels over `n` elements.
pub fn elementwise(n: usize) -> Dims {
    dims1((n as u64).div_ceil(BLOCK as u64).min(MAX_GRID as u64), BLOCK, 0)
}

/// `fill_uniform` / `fill_normal`: one thread per Philox block touched by
/// elements `offset..offset + n`.
pub fn philox(n: usize, offset: u64) -> Dims {
    let blocks = (offset + n as u64).div_ceil(4) - offset / 4;
    elementwise(blocks as usize)
}

/// One block per row (`row_sums`, `row_sumsq`, `memory_*`, `mmd_row_*`):
/// as many threads as columns, rounded up to a warp, at most 256.
pub fn per_row(rows: usize, cols: usize) -> Dims {
    let t = (cols.div_ceil(32) * 32).clamp(32, BLOCK as usize) as u32;
    dims1(rows as u64, t, 0)
}

/// Column-block kernels (`col_sums`, `bn_stats`, `bn_backward`,
/// `mmd_linear_ab`): block (32, COL_ROWS) per 32 columns.
pub fn col_blocks(cols: usize) -> Dims {
    Dims { grid: [(cols.div_ceil(32).max(1)) as u32, 1, 1], block: [32, COL_ROWS, 1], shared: 0 }
}

/// `sum_partial` (its grid size is the number of partials for `sum_final`).
pub fn sum_partial(n: usize) -> Dims {
    dims1((n as u64).div_ceil(BLOCK as u64).min(MAX_PARTIALS as u64), BLOCK, 0)
}

/// `sum_final`: one block.
pub fn sum_final() -> Dims {
    dims1(1, BLOCK, 0)
}

/// `mmd_pairwise` over `n` cells: a block per 64 cells, two 32×65 f32
/// chunks of dynamic shared memory.
pub fn mmd_pairwise(n: usize) -> Dims {
    dims1((n as u64).div_ceil(PAIR_TILE as u64), BLOCK, 2 * PAIR_CHUNK * (PAIR_TILE + 1) * 4)
}

/// Kernel encoding of an activation: (code, slope) as in common.cuh.
pub fn act_code(act: Act) -> (i32, f32) {
    match act {
        Act::Identity => (0, 0.0),
        Act::Relu => (1, 0.0),
        Act::LeakyRelu(s) => (2, s),
    }
}

/// Step constants of `adam_step`, folded on the host exactly as the CPU
/// backend does: (step_size, bc2_sqrt, decay, wd_coupled).
pub fn adam_consts(s: &AdamStep) -> (f32, f32, f32, f32) {
    assert!(s.t >= 1, "adam_step: steps count from 1");
    let bc1 = 1.0 - (s.beta1 as f64).powi(s.t as i32);
    let bc2 = 1.0 - (s.beta2 as f64).powi(s.t as i32);
    let decay = if s.decoupled { 1.0 - s.lr * s.weight_decay } else { 1.0 };
    let wd = if s.decoupled { 0.0 } else { s.weight_decay };
    ((s.lr as f64 / bc1) as f32, bc2.sqrt() as f32, decay, wd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_against_the_kernel_signature() {
        // `fill_value(u64 n, float value, float* x)` in elementwise.cu.
        assert_eq!(signature("fill_value"), Some(&[ArgKind::U64, ArgKind::F32, ArgKind::Ptr][..]));
        let ok = Args::new().u64(3).f32(1.0).ptr(DevPtr(0));
        check_args("fill_value", &ok).unwrap();
        let short = Args::new().u64(3).f32(1.0);
        assert!(check_args("fill_value", &short).unwrap_err().message.contains("2 arguments for 3"));
        let swapped = Args::new().u32(3).f32(1.0).ptr(DevPtr(0));
        assert!(check_args("fill_value", &swapped).unwrap_err().message.contains("argument 0 is U32"));
        assert!(check_args("no_such_kernel", &ok).is_err());
        // Every kernel of every family has a signature.
        for (file, src) in super::super::kernels::sources() {
            for k in super::super::signature::global_kernels(src) {
                assert!(signature(k).is_some(), "{k} of {file}");
            }
        }
    }

    #[test]
    fn geometry_covers_the_work() {
        assert_eq!(elementwise(0).grid[0], 1);
        assert_eq!(elementwise(257).grid[0], 2);
        assert_eq!(elementwise(1 << 30).grid[0], MAX_GRID);
        // offset 3, n 2 touches Philox blocks 0 and 1.
        assert_eq!(philox(2, 3).grid[0], 1);
        assert_eq!(per_row(5, 1).block[0], 32);
        assert_eq!(per_row(5, 1000).block[0], 256);
        assert_eq!(col_blocks(33).grid[0], 2);
        assert_eq!(mmd_pairwise(65).grid[0], 2);
    }
}
