//! The smooth weight γ_c of the ACsleuth MMD objective.
//!
//! `a(p) = sin(πp)/(πp)` is 1 at p = 0 and 0 at p = 1; `b(p) = sin(πp)/(π(1−p))`
//! is 0 at p = 0 and 1 at p = 1. Both have a removable singularity (a at 0,
//! b at 1), so they are evaluated with a Taylor series there and with the
//! direct formula elsewhere; values and first derivatives are finite and
//! smooth on all of [0, 1].
//!
//! The paper's equation (11) prints the two cross terms with a `+` sign,
//! which gives `+1/(mn)` at the mixed corners and contradicts its own
//! Theorem 3.2. The form used here has the corrected sign:
//!
//! ```text
//! γ_c(p_i, p_j) = a_i a_j/(m(m−1)) + b_i b_j/(n(n−1)) − (a_i b_j + b_i a_j)/(mn)
//! ```
//!
//! so that γ_c(0,0) = 1/(m(m−1)), γ_c(1,1) = 1/(n(n−1)) and
//! γ_c(0,1) = γ_c(1,0) = −1/(mn).

use std::f64::consts::PI;

/// Below this distance from the singular end (in units of p) the series is
/// used. At πp = 0.1 the next omitted series term is ~3e-18 (value) and
/// ~1e-16 (derivative), below f64 rounding, while the direct formula for the
/// derivative loses only ~2 digits to cancellation just above the switch.
pub const SERIES_SWITCH: f64 = 0.1 / PI;

/// `a(p)`, `b(p)` and their derivatives with respect to p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ab {
    pub a: f64,
    pub da: f64,
    pub b: f64,
    pub db: f64,
}

/// `sin(πp)/(πp)` and its derivative in p, for p in [0, 1] (also correct
/// slightly outside). Uses `sin(πp) = sin(π(1−p))` for p > 1/2 so the
/// small values near p = 1 keep full relative precision.
fn sinc_pi(p: f64) -> (f64, f64) {
    if p.abs() < SERIES_SWITCH {
        // sinc(x) = Σ (−1)^k x^{2k}/(2k+1)!, x = πp; d/dp = π·sinc'(x).
        let x = PI * p;
        let x2 = x * x;
        let v = 1.0
            + x2 * (-1.0 / 6.0
                + x2 * (1.0 / 120.0
                    + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0 - x2 / 39_916_800.0))));
        let d = x
            * (-1.0 / 3.0
                + x2 * (1.0 / 30.0
                    + x2 * (-1.0 / 840.0 + x2 * (1.0 / 45_360.0 - x2 / 3_991_680.0))));
        (v, PI * d)
    } else {
        // Reflect so the argument of sin/cos is at most π/2.
        let (s, c) = if p > 0.5 {
            let q = PI * (1.0 - p);
            (q.sin(), -q.cos())
        } else {
            let q = PI * p;
            (q.sin(), q.cos())
        };
        let x = PI * p;
        // d/dp [sin(πp)/(πp)] = cos(πp)/p − sin(πp)/(πp²)
        (s / x, c / p - s / (x * p))
    }
}

/// `a(p)`, `b(p)` and their derivatives. `b(p) = a(1 − p)` because
/// `sin(πp) = sin(π(1 − p))`.
#[inline]
pub fn ab(p: f64) -> Ab {
    let (a, da) = sinc_pi(p);
    let (b, dbq) = sinc_pi(1.0 - p);
    Ab { a, da, b, db: -dbq }
}

/// γ_c(p_i, p_j) for group sizes m (normal) and n (anomalous), corrected
/// sign (see the module docs). Needs m, n > 1.
pub fn gamma_c(pi: f64, pj: f64, m: f64, n: f64) -> f64 {
    let (x, y) = (ab(pi), ab(pj));
    x.a * y.a / (m * (m - 1.0)) + x.b * y.b / (n * (n - 1.0)) - (x.a * y.b + x.b * y.a) / (m * n)
}
