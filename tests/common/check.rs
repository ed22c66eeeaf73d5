//! Tolerance checks. Kernels are compared against their CPU twins with a
//! tolerance relative to each value and to the largest value of the
//! reference, since sums in another order differ by rounding of the largest
//! terms, not of each element.

/// `|got − want| ≤ rtol·|want| + atol·max|want|` elementwise, lengths equal.
#[track_caller]
pub fn close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * w.abs() + atol * scale;
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w} (tolerance {tol})");
    }
}

/// `|got − want| ≤ rtol·max|want|` elementwise, lengths equal.
#[track_caller]
pub fn close64(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rtol * scale, "{what}[{i}]: {g} vs {w} (scale {scale})");
    }
}

/// `‖num − ana‖₂ / max(‖num‖₂, floor)`: the relative error of an analytic
/// gradient against central differences. The floor stands for the
/// finite-difference noise where the true gradient is (near) zero.
pub fn rel_err(num: &[f64], ana: &[f64], floor: f64) -> f64 {
    let d: f64 = num.iter().zip(ana).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let n: f64 = num.iter().map(|a| a * a).sum::<f64>().sqrt();
    d / n.max(floor)
}
