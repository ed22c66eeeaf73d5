//! Host orchestration of kernels/desc.cu (DESC soft assignment and KL
//! backward, Module IV), written against [`Launcher`] like [`super::ops`]
//! (whose module doc states the safety contract shared by these functions).
#![allow(clippy::missing_safety_doc)]

use super::launch::{self, stub, DevPtr, Dims, Launcher};
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
    let d = rows_geometry(rows, k, dim);
    // SAFETY: forwarded to the callers (see super::ops).
    unsafe { stub::desc_soft_assign(l, d, u32_of("k", k), u32_of("dim", dim), nu, z, mu, dist, q) }
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
    let d = rows_geometry(rows, k, dim);
    // SAFETY: forwarded to the callers (see super::ops).
    unsafe { stub::desc_kl_grad(l, d, u32_of("k", k), u32_of("dim", dim), nu, scale, z, mu, p, dist, g, dz, row_loss) }
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
    let (rows32, k32, dim32) = (u32_of("rows", rows), u32_of("k", k), u32_of("dim", dim));
    // SAFETY: forwarded to the callers (see super::ops).
    unsafe { stub::desc_centroid_grad(l, launch::per_row(k, dim), rows32, k32, dim32, z, mu, g, dmu) }
}
