//! The arithmetic of the CUDA backend's GEMMs ([`GemmPrecision`]).
//!
//! Every GEMM of the model goes through cuBLAS with f32 operands, f32
//! results and f32 accumulation. On tensor-core GPUs (sm_80 and later)
//! cuBLAS can instead round the OPERANDS to TF32 (10 explicit mantissa bits)
//! or BF16 (7) and multiply them on tensor cores, still accumulating in f32:
//! several times the throughput for a loss of operand precision. This
//! module names the three choices, maps them to cuBLAS compute types, and
//! gives the exact operand rounding that the emulation's cuBLAS stand-in
//! ([`super::backend::sgemm_reference`]) applies, so the accuracy cost can
//! be measured without a GPU.
//!
//! Measured cost (tests/cuda_precision.rs, at the model's GEMM shapes,
//! Frobenius error relative to an f64 product): f32 2e-7–8e-7, TF32 3e-4,
//! BF16 2.4e-3 — about the unit roundoff of the operand format
//! (2⁻¹¹ ≈ 4.9e-4, 2⁻⁸ ≈ 3.9e-3), reduced by cancellation in the sums.
//! End to end (Module I on a small simulated input, emulated): TF32 moves
//! the scores by at most 5e-3 and leaves the AUROC unchanged; BF16 moves
//! them by up to 7e-2 (mean 7e-3) and the AUROC by 5e-4.

use std::fmt;
use std::str::FromStr;

/// How the CUDA backend's GEMMs round their operands (accumulation is f32
/// in all three). `F32` is the default and the only choice the CPU backend
/// has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GemmPrecision {
    /// Plain SGEMM (`cublasSgemmStridedBatched`, default math mode).
    #[default]
    F32,
    /// Operands rounded to TF32 (8-bit exponent, 10-bit mantissa) on
    /// tensor cores: `cublasGemmStridedBatchedEx` with
    /// `CUBLAS_COMPUTE_32F_FAST_TF32`. Relative GEMM error ≈ 1e-4–1e-3.
    Tf32,
    /// Operands rounded to BF16 (8-bit exponent, 7-bit mantissa) on tensor
    /// cores: `CUBLAS_COMPUTE_32F_FAST_16BF`. Relative GEMM error ≈ 1e-3–1e-2.
    Bf16,
}

impl GemmPrecision {
    /// Mantissa bits dropped from an f32 operand (23 → 10 or 7).
    fn dropped_bits(self) -> u32 {
        match self {
            GemmPrecision::F32 => 0,
            GemmPrecision::Tf32 => 13,
            GemmPrecision::Bf16 => 16,
        }
    }

    /// `x` rounded to this format's mantissa, to nearest with ties to even
    /// (identity for `F32`). NaN and ±∞ pass unchanged; a finite value may
    /// round up to ±∞ at the top of the range, as a conversion does.
    #[inline(always)]
    pub fn round(self, x: f32) -> f32 {
        let d = self.dropped_bits();
        if d == 0 || !x.is_finite() {
            return x;
        }
        let bits = x.to_bits();
        let half = (1u32 << (d - 1)) - 1;
        let lsb = (bits >> d) & 1;
        // Carry into the exponent is the correct rounding (up to ∞ at the
        // top); the sign bit is never reached from a finite value.
        f32::from_bits((bits + half + lsb) & !((1u32 << d) - 1))
    }

    /// Unit roundoff of the operand format (half an ulp at 1.0).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            GemmPrecision::F32 => 2f64.powi(-24),
            GemmPrecision::Tf32 => 2f64.powi(-11),
            GemmPrecision::Bf16 => 2f64.powi(-8),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GemmPrecision::F32 => "f32",
            GemmPrecision::Tf32 => "tf32",
            GemmPrecision::Bf16 => "bf16",
        }
    }
}

impl FromStr for GemmPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(GemmPrecision::F32),
            "tf32" => Ok(GemmPrecision::Tf32),
            "bf16" => Ok(GemmPrecision::Bf16),
            _ => Err(format!("unknown GEMM precision {s:?}: expected f32, tf32 or bf16")),
        }
    }
}

impl fmt::Display for GemmPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::GemmPrecision::{self, *};

    #[test]
    fn rounding_keeps_the_format_bits_to_nearest_even() {
        // 1 + 2⁻¹⁰ is exact in TF32, 1 + 2⁻¹¹ is a tie → even (1.0),
        // 1 + 3·2⁻¹¹ is a tie → even (1 + 2⁻⁹).
        assert_eq!(Tf32.round(1.0 + 2f32.powi(-10)), 1.0 + 2f32.powi(-10));
        assert_eq!(Tf32.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(Tf32.round(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2f32.powi(-9));
        assert_eq!(Tf32.round(1.0 + 2f32.powi(-11) + 2f32.powi(-20)), 1.0 + 2f32.powi(-10));
        assert_eq!(Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(Bf16.round(-(1.0 + 2f32.powi(-7) + 2f32.powi(-8))), -(1.0 + 2f32.powi(-6)));
        // Rounding up carries into the exponent.
        assert_eq!(Bf16.round(1.999), 2.0);
        assert_eq!(Bf16.round(f32::MAX), f32::INFINITY);
        assert!(Tf32.round(f32::NAN).is_nan());
        assert_eq!(Tf32.round(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert_eq!(F32.round(0.1), 0.1);
        // Within half an ulp of the format everywhere.
        for i in 1..2000 {
            let x = (i as f32 * 0.7311).sin() * 10f32.powi(i % 9 - 4);
            for p in [Tf32, Bf16] {
                let r = p.round(x);
                assert!(((r - x) / x).abs() as f64 <= p.unit_roundoff() * (1.0 + 1e-6), "{p} {x} → {r}");
            }
        }
    }

    #[test]
    fn parses_and_prints() {
        for p in [F32, Tf32, Bf16] {
            assert_eq!(p.to_string().parse::<GemmPrecision>(), Ok(p));
        }
        assert_eq!(" BF16 ".parse::<GemmPrecision>(), Ok(Bf16));
        assert!("fp16".parse::<GemmPrecision>().unwrap_err().contains("expected f32, tf32 or bf16"));
    }
}
