//! Exact linear-kernel form: O(N·G) time, O(N + G) memory.
//!
//! With A = Σ_j a_j δ_j and B = Σ_j b_j δ_j (G-vectors) and s_i = ‖δ_i‖²,
//! the off-diagonal row sums of the linear kernel are
//! u_i = δ_i·A − a_i s_i and v_i = δ_i·B − b_i s_i, so
//! Σ_{i≠j} a_i a_j δ_i·δ_j = A·A − Σ a_i² s_i and likewise for the other
//! terms. Two passes over δ: (1) s_i and the partial sums of A, B per row
//! block; (2) δ_i·A and δ_i·B. All accumulation is in f64.

use super::{eval_ab, finish, groups, Counts, Deviations, MmdValue, Real};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// At most this many row blocks in pass 1, so the partial sums take
/// O(BLOCKS·G) memory and their (ordered) reduction is deterministic.
const BLOCKS: usize = 64;
const MIN_BLOCK_ROWS: usize = 512;

/// Loss and ∂L/∂p for the linear kernel k(δ_i, δ_j) = δ_i·δ_j, exactly.
pub fn linear_exact<P: Real>(delta: Deviations<'_>, p: &[P], counts: Counts) -> Result<MmdValue> {
    let (cells, genes) = (delta.cells(), delta.genes());
    let ab = eval_ab(p, cells)?;
    let grp = groups(p, counts)?;
    let data = delta.data();

    // Pass 1: per block, partial A, B (2·G) and the row norms s.
    let block = cells.div_ceil(BLOCKS).max(MIN_BLOCK_ROWS);
    let mut s = vec![0.0f64; cells]; // [N] ‖δ_i‖²
    let partials: Vec<Vec<f64>> = data
        .par_chunks(block * genes)
        .zip(s.par_chunks_mut(block))
        .zip(ab.par_chunks(block))
        .map(|((rows, s_blk), ab_blk)| {
            let mut acc = vec![0.0f64; 2 * genes]; // [A | B]
            let (acc_a, acc_b) = acc.split_at_mut(genes);
            for ((row, si), x) in rows.chunks_exact(genes).zip(s_blk.iter_mut()).zip(ab_blk) {
                let mut norm = 0.0f64;
                for ((&d, ea), eb) in row.iter().zip(acc_a.iter_mut()).zip(acc_b.iter_mut()) {
                    let d = d as f64;
                    norm += d * d;
                    *ea += x.a * d;
                    *eb += x.b * d;
                }
                *si = norm;
            }
            acc
        })
        .collect();
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("deviation row {i} holds a non-finite value")));
    }
    let mut ab_sum = vec![0.0f64; 2 * genes];
    for part in &partials {
        for (t, &x) in ab_sum.iter_mut().zip(part) {
            *t += x;
        }
    }
    let (sum_a, sum_b) = ab_sum.split_at(genes);

    // Pass 2: u_i = δ_i·A − a_i s_i, v_i = δ_i·B − b_i s_i.
    let (u, v): (Vec<f64>, Vec<f64>) = data
        .par_chunks_exact(genes)
        .zip(s.par_iter())
        .zip(ab.par_iter())
        .map(|((row, &si), x)| {
            let (mut da, mut db) = (0.0f64, 0.0f64);
            for ((&d, &ea), &eb) in row.iter().zip(sum_a).zip(sum_b) {
                let d = d as f64;
                da += d * ea;
                db += d * eb;
            }
            (da - x.a * si, db - x.b * si)
        })
        .unzip();
    Ok(finish(&ab, &u, &v, &grp))
}
