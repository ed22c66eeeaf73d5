//! Which of the two groups the MMD objective separates is "anomalous".
//!
//! The objective is symmetric under swapping the groups together with
//! m ↔ n (p → 1 − p maps a ↔ b), so it does not say which side is which.
//! ACsleuth's premise is that a generator trained on normal reference cells
//! reconstructs anomalies worse, so the anomalous side is the one with the
//! larger deviations.

use super::Real;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Outcome of [`orient`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Orientation {
    /// p was replaced by 1 − p.
    pub flipped: bool,
    /// Mean ‖δ‖ of the side called anomalous, before any flip.
    pub mean_high: f64,
    /// Mean ‖δ‖ of the other side, before any flip.
    pub mean_low: f64,
    /// The p > 0.5 split had an empty side, so p-weighted means were used.
    pub weighted: bool,
}

/// Euclidean norm ‖δ_i‖ of every row of a row-major `cells × genes` buffer.
pub fn row_norms(delta: &[f32], genes: usize) -> Result<Vec<f64>> {
    if genes == 0 || !delta.len().is_multiple_of(genes) {
        return Err(Error::invalid(format!(
            "deviation buffer of {} values is not a whole number of {genes}-gene rows",
            delta.len()
        )));
    }
    Ok(delta
        .par_chunks_exact(genes)
        .map(|r| r.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt())
        .collect())
}

/// Orientation rule (reported to users): **the group with the larger mean
/// reconstruction deviation ‖δ‖ is the anomalous one.** Cells with
/// p > 0.5 form the "high" side and the rest the "low" side; if the high
/// side's mean ‖δ_i‖ is strictly smaller than the low side's, every score is
/// replaced by 1 − p. When one side is empty (all p on one side of 0.5), the
/// sides are compared by p-weighted means, Σ p_i‖δ_i‖/Σ p_i against
/// Σ (1−p_i)‖δ_i‖/Σ (1−p_i). Ties, and scores with no weight on one side,
/// leave p unchanged.
pub fn orient<P: Real>(p: &mut [P], norms: &[f64]) -> Result<Orientation> {
    if p.len() != norms.len() {
        return Err(Error::invalid(format!("{} scores but {} deviation norms", p.len(), norms.len())));
    }
    if let Some(i) = norms.iter().position(|d| !d.is_finite()) {
        return Err(Error::invalid(format!("deviation norm {i} is not finite")));
    }
    if let Some(i) = p.iter().position(|&x| !(0.0..=1.0).contains(&x.into())) {
        return Err(Error::invalid(format!("score p[{i}] = {} is not in [0, 1]", p[i].into())));
    }
    let (mut sh, mut wh, mut sl, mut wl) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&pi, &d) in p.iter().zip(norms) {
        if pi.into() > 0.5 {
            sh += d;
            wh += 1.0;
        } else {
            sl += d;
            wl += 1.0;
        }
    }
    let weighted = wh == 0.0 || wl == 0.0;
    if weighted {
        (sh, wh, sl, wl) = (0.0, 0.0, 0.0, 0.0);
        for (&pi, &d) in p.iter().zip(norms) {
            let pi: f64 = pi.into();
            sh += pi * d;
            wh += pi;
            sl += (1.0 - pi) * d;
            wl += 1.0 - pi;
        }
    }
    let mean_high = if wh > 0.0 { sh / wh } else { f64::NAN };
    let mean_low = if wl > 0.0 { sl / wl } else { f64::NAN };
    let flipped = mean_high < mean_low; // false when either is NaN
    if flipped {
        for x in p.iter_mut() {
            *x = P::from_f64(1.0 - (*x).into());
        }
    }
    Ok(Orientation { flipped, mean_high, mean_low, weighted })
}
