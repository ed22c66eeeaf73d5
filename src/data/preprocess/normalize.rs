//! `sc.pp.normalize_total` and `sc.pp.log1p` on CSR matrices, in f32 as
//! scanpy does (per-cell totals summed in f64 and stored as f32; size
//! factor total/target in f32). The steps are separate so that the target
//! can be sized on all its genes and scaled on the reference's alone
//! ([`super::preprocess_target`]).

use rayon::prelude::*;

use crate::data::CsrMatrix;
use crate::error::{Error, Result};

/// Per-cell totals (library sizes), summed in f64 and stored as f32, over
/// the columns `keep` marks (all of them when `None`).
pub fn library_sizes(x: &CsrMatrix, keep: Option<&[bool]>) -> Vec<f32> {
    (0..x.rows)
        .into_par_iter()
        .map(|r| {
            let (idx, val) = x.row(r);
            match keep {
                None => val.iter().map(|&v| v as f64).sum::<f64>() as f32,
                Some(k) => idx.iter().zip(val).filter(|(j, _)| k[**j as usize]).map(|(_, &v)| v as f64).sum::<f64>() as f32,
            }
        })
        .collect()
}

/// The total every cell is scaled to: `target_sum`, or the median of the
/// nonzero totals (scanpy's default).
pub fn size_target(totals: &[f32], target_sum: Option<f64>) -> Result<f32> {
    match target_sum {
        Some(t) if t > 0.0 && t.is_finite() => Ok(t as f32),
        Some(t) => Err(Error::Config(format!("normalize target sum must be > 0, got {t}"))),
        None => {
            let mut nz: Vec<f32> = totals.iter().copied().filter(|&t| t > 0.0).collect();
            if nz.is_empty() {
                return Err(Error::invalid("every cell has a total count of 0"));
            }
            nz.sort_by(f32::total_cmp);
            let h = nz.len() / 2;
            Ok(if nz.len() % 2 == 1 { nz[h] } else { ((nz[h - 1] as f64 + nz[h] as f64) / 2.0) as f32 })
        }
    }
}

/// Divides each row by its size factor `total / target`; a cell with total
/// 0 is left as it is. `totals` has one entry per row of `x`.
pub fn scale_rows(x: &mut CsrMatrix, totals: &[f32], target: f32) {
    let indptr = &x.indptr;
    let mut rows: Vec<&mut [f32]> = Vec::with_capacity(x.rows);
    let mut rest: &mut [f32] = x.data.to_mut();
    for r in 0..totals.len() {
        let len = (indptr[r + 1] - indptr[r]) as usize;
        let (a, b) = rest.split_at_mut(len);
        rows.push(a);
        rest = b;
    }
    rows.into_par_iter().zip(totals.par_iter()).for_each(|(row, &t)| {
        let s = t / target;
        let s = if s == 0.0 { 1.0 } else { s };
        row.iter_mut().for_each(|v| *v /= s);
    });
}

/// `sc.pp.normalize_total`: scales each cell to the same total. With
/// `target_sum = None` the target is the median total of the cells with a
/// nonzero total. Cells with total 0 stay 0. Returns the target used.
///
/// Note: scanpy 1.11's CSR code path takes the median over all cells,
/// zeros included (its dense path excludes them); the two agree whenever no
/// cell is empty, which the fixtures check.
pub fn normalize_total(x: &mut CsrMatrix, target_sum: Option<f64>) -> Result<f64> {
    let totals = library_sizes(x, None);
    let target = size_target(&totals, target_sum)?;
    scale_rows(x, &totals, target);
    Ok(target as f64)
}

/// `sc.pp.log1p`: natural log of 1 + x, in place.
pub fn log1p(x: &mut CsrMatrix) {
    x.data.to_mut().par_iter_mut().for_each(|v| *v = v.ln_1p());
}
