//! Host orchestration of kernels/desc.cu (DESC soft assignment and KL
//! backward, Module IV), written against [`Launcher`] like [`super::ops`]
//! (whose module doc states the safety contract shared by these functions).
#![allow(clippy::missing_safety_doc)]

use super::launch::{self, Args, DevPtr, Dims, Launcher};
use super::ops::Result;

fn u32_of(what: &str, v: usize) -> u32 {
    u32::try_from(v).unwrap_or_else(|_| panic!("desc: {what} = {v} exceeds 2³² − 1"))
}

/// One block per row, its threads a multiple of 32 covering `max(dim, k)`
/// (at most 256): warps over centroids in the distance pass, threads over
/// centroids and then over `dim` in the others.
pub fn rows_geometry(rows: usize, k: usize, dim: usize) -> Dims {
    launch::per_row(rows, dim.max(k))
}

unsafe fn go(l: &dyn Launcher, kernel: &str, dims: Dims, mut args: Args) -> Result<()> {
    // SAFETY: forwarded to the callers (see super::ops).
    unsafe { l.launch(kernel, &dims, &mut args) }
}

/// `desc_soft_assign`: writes `dist` and `q` (`[rows, k]`).
#[allow(clippy::too_many_arguments)]
pub unsafe fn soft_assign(
    l: &dyn Launcher,
    rows: usize,
    k: usize,
    dim: usize,
    nu: f32,
    z: DevPtr,
    mu: DevPtr,
    dist: DevPtr,
    q: DevPtr,
) -> Result<()> {
    if rows == 0 || k == 0 {
        return Ok(());
    }
    let a = Args::new().u32(u32_of("k", k)).u32(u32_of("dim", dim)).f32(nu).ptr(z).ptr(mu).ptr(dist).ptr(q);
    unsafe { go(l, "desc_soft_assign", rows_geometry(rows, k, dim), a) }
}

/// `desc_kl_grad`: writes `g: [rows, k]`, `dz: [rows, dim]` and the per-row
/// losses `row_loss: [rows]` (f64; the loss is their sum).
#[allow(clippy::too_many_arguments)]
pub unsafe fn kl_grad(
    l: &dyn Launcher,
    rows: usize,
    k: usize,
    dim: usize,
    nu: f32,
    scale: f32,
    z: DevPtr,
    mu: DevPtr,
    p: DevPtr,
    dist: DevPtr,
    g: DevPtr,
    dz: DevPtr,
    row_loss: DevPtr,
) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let a = Args::new()
        .u32(u32_of("k", k))
        .u32(u32_of("dim", dim))
        .f32(nu)
        .f32(scale)
        .ptr(z)
        .ptr(mu)
        .ptr(p)
        .ptr(dist)
        .ptr(g)
        .ptr(dz)
        .ptr(row_loss);
    unsafe { go(l, "desc_kl_grad", rows_geometry(rows, k, dim), a) }
}

/// `desc_centroid_grad`: accumulates into `dmu: [k, dim]`, one block per
/// centroid, threads over `dim`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn centroid_grad(
    l: &dyn Launcher,
    rows: usize,
    k: usize,
    dim: usize,
    z: DevPtr,
    mu: DevPtr,
    g: DevPtr,
    dmu: DevPtr,
) -> Result<()> {
    if k == 0 || dim == 0 {
        return Ok(());
    }
    let a = Args::new().u32(u32_of("rows", rows)).u32(u32_of("k", k)).u32(u32_of("dim", dim)).ptr(z).ptr(mu).ptr(g).ptr(dmu);
    unsafe { go(l, "desc_centroid_grad", launch::per_row(k, dim), a) }
}
