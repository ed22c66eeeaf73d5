//! The γ_c MMD objective of Module I, on plain slices (CPU, rayon).
//!
//! For reconstruction deviations δ ∈ R^{N×G} (row-major f32) and anomaly
//! scores p ∈ \[0,1\]^N the scorer minimises
//!
//! ```text
//! L_p = − Σ_i Σ_{j≠i} k(δ_i, δ_j) γ_c(p_i, p_j)
//! ```
//!
//! with γ_c from [`gamma`] (the paper's eq. 11 with its cross-term sign
//! corrected). Writing a_i = a(p_i), b_i = b(p_i), c₁ = 1/(m(m−1)),
//! c₂ = 1/(n(n−1)), c₃ = 1/(mn) and the off-diagonal kernel row sums
//!
//! ```text
//! u_i = Σ_{j≠i} k(δ_i,δ_j) a_j        v_i = Σ_{j≠i} k(δ_i,δ_j) b_j
//! ```
//!
//! the loss is `L = −(c₁ Σ a_i u_i + c₂ Σ b_i v_i − 2 c₃ Σ a_i v_i)` and
//! `∂L/∂p_i = −2[(c₁u_i − c₃v_i) a'_i + (c₂v_i − c₃u_i) b'_i] + ∂L/∂n`,
//! the last term present only for soft counts (n = Σ p, m = N − n, so
//! ∂n/∂p_i = 1 and ∂m/∂p_i = −1 for every i).
//!
//! Every form therefore reduces to computing u and v (two length-N
//! vectors), followed by one O(N) pass (`finish`) shared by all forms:
//! - [`linear_exact`]: the linear kernel δ_i·δ_j in O(N·G) time and
//!   O(N + G) memory, u_i = δ_i·A − a_i‖δ_i‖² with A = Σ a_j δ_j.
//! - [`pairwise`]: any kernel (linear or a sum of RBFs) in row tiles of
//!   the Gram matrix, O(N²·G) time, never storing an N×N matrix.
//!
//! Sums that span cells are accumulated in f64 in a fixed order, so
//! results do not depend on the number of threads.

pub mod gamma;
mod linear;
mod orient;
mod pairwise;

pub use gamma::{ab, gamma_c, Ab};
pub use linear::linear_exact;
pub use orient::{orient, row_norms, Orientation};
pub use pairwise::{median_bandwidth, pairwise, rbf_coefs, GramPrecision, PairwiseOptions};

use crate::error::{Error, Result};

/// Each group (normal, anomalous) must hold at least this many (possibly
/// fractional) cells, so that m(m−1) and n(n−1) are ≥ 2. Soft counts are
/// clamped into [MIN_GROUP, N − MIN_GROUP]; while clamped, the counts do
/// not contribute to the gradient.
pub const MIN_GROUP: f64 = 2.0;

/// Score types accepted for p (f32 from a scorer, f64 in tests).
pub trait Real: Copy + Send + Sync + Into<f64> + 'static + sealed::Sealed {
    fn from_f64(x: f64) -> Self;
}
impl Real for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}
impl Real for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
}
mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// How the group sizes m (normal) and n (anomalous) are set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Counts {
    /// n = Σ p_i, m = N − n; differentiable, enters the gradient.
    Soft,
    /// n = ratio·N, m = N − n; constants. n is kept fractional (the
    /// authors' code truncates to an integer; the difference is below one
    /// cell and keeps n > 0 for small N·ratio).
    Ratio(f64),
}

/// Kernel on deviation vectors.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// k(x, y) = x·y (the authors' choice; exact O(N·G) form exists).
    Linear,
    /// k(x, y) = Σ_h exp(−‖x−y‖²/(2h²)) over the given bandwidths h > 0.
    Rbf { bandwidths: Vec<f64> },
}

/// A validated view of the deviations: `cells × genes`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Deviations<'a> {
    data: &'a [f32],
    cells: usize,
    genes: usize,
}

impl<'a> Deviations<'a> {
    pub fn new(data: &'a [f32], cells: usize, genes: usize) -> Result<Self> {
        if genes == 0 {
            return Err(Error::invalid("deviations have zero genes"));
        }
        if cells.checked_mul(genes) != Some(data.len()) {
            return Err(Error::invalid(format!(
                "deviation buffer holds {} values, expected {cells} cells × {genes} genes",
                data.len()
            )));
        }
        Ok(Deviations { data, cells, genes })
    }
    pub fn cells(&self) -> usize {
        self.cells
    }
    pub fn genes(&self) -> usize {
        self.genes
    }
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.genes..(i + 1) * self.genes]
    }
}

/// Loss, gradient and the group sizes used.
#[derive(Clone, Debug)]
pub struct MmdValue {
    pub loss: f64,
    /// ∂L/∂p_i, one per cell.
    pub grad: Vec<f64>,
    /// Normal-group size m used (after clamping for soft counts).
    pub m: f64,
    /// Anomalous-group size n used (after clamping for soft counts).
    pub n: f64,
    /// Soft counts fell outside [MIN_GROUP, N − MIN_GROUP] and were clamped.
    pub clamped: bool,
}

/// The loss with the kernel's natural form: the exact O(N·G) form for the
/// linear kernel, the tiled pairwise form (default options) for RBF.
pub fn loss<P: Real>(delta: Deviations<'_>, p: &[P], counts: Counts, kernel: &Kernel) -> Result<MmdValue> {
    match kernel {
        Kernel::Linear => linear_exact(delta, p, counts),
        Kernel::Rbf { .. } => pairwise(delta, p, counts, kernel, &PairwiseOptions::default()),
    }
}

/// a, b and derivatives for every p_i, checking p is finite and in [0, 1].
pub(crate) fn eval_ab<P: Real>(p: &[P], cells: usize) -> Result<Vec<Ab>> {
    if p.len() != cells {
        return Err(Error::invalid(format!("{} scores for {cells} cells", p.len())));
    }
    p.iter()
        .enumerate()
        .map(|(i, &pi)| {
            let pi: f64 = pi.into();
            if !(0.0..=1.0).contains(&pi) {
                Err(Error::invalid(format!("score p[{i}] = {pi} is not in [0, 1]")))
            } else {
                Ok(ab(pi))
            }
        })
        .collect()
}

/// Group sizes (m, n), whether soft counts are active in the gradient, and
/// whether they were clamped.
pub(crate) struct Groups {
    m: f64,
    n: f64,
    soft: bool,
    clamped: bool,
}

pub(crate) fn groups<P: Real>(p: &[P], counts: Counts) -> Result<Groups> {
    let total = p.len() as f64;
    match counts {
        Counts::Soft => {
            if total < 2.0 * MIN_GROUP {
                return Err(Error::invalid(format!(
                    "the MMD objective needs at least {} cells, got {}",
                    2.0 * MIN_GROUP,
                    p.len()
                )));
            }
            let n: f64 = p.iter().map(|&x| x.into()).sum();
            let nc = n.clamp(MIN_GROUP, total - MIN_GROUP);
            let clamped = nc != n;
            Ok(Groups { m: total - nc, n: nc, soft: !clamped, clamped })
        }
        Counts::Ratio(r) => {
            let n = r * total;
            let m = total - n;
            if !(r > 0.0 && r < 1.0) || n < MIN_GROUP || m < MIN_GROUP {
                return Err(Error::Config(format!(
                    "anomaly ratio {r} over {} cells gives {n} anomalous and {m} normal cells; \
                     each group needs at least {MIN_GROUP}",
                    p.len()
                )));
            }
            Ok(Groups { m, n, soft: false, clamped: false })
        }
    }
}

/// Loss and gradient from the kernel row sums u, v (see the module docs).
/// O(N), shared by every form (and mirrored by a device reduction).
pub(crate) fn finish(ab: &[Ab], u: &[f64], v: &[f64], g: &Groups) -> MmdValue {
    let (m, n) = (g.m, g.n);
    let c1 = 1.0 / (m * (m - 1.0));
    let c2 = 1.0 / (n * (n - 1.0));
    let c3 = 1.0 / (m * n);
    let (mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0);
    for ((x, &ui), &vi) in ab.iter().zip(u).zip(v) {
        saa += x.a * ui;
        sbb += x.b * vi;
        sab += x.a * vi;
    }
    let loss = -(c1 * saa + c2 * sbb - 2.0 * c3 * sab);
    // ∂L/∂n through c₁(m), c₂(n), c₃(m, n) with m = N − n.
    let dn = if g.soft {
        let dc1 = (2.0 * m - 1.0) * c1 * c1; // dc₁/dn = −dc₁/dm
        let dc2 = -(2.0 * n - 1.0) * c2 * c2;
        let dc3 = (n - m) * c3 * c3;
        -(saa * dc1 + sbb * dc2 - 2.0 * sab * dc3)
    } else {
        0.0
    };
    let grad = ab
        .iter()
        .zip(u)
        .zip(v)
        .map(|((x, &ui), &vi)| {
            -2.0 * ((c1 * ui - c3 * vi) * x.da + (c2 * vi - c3 * ui) * x.db) + dn
        })
        .collect();
    MmdValue { loss, grad, m, n, clamped: g.clamped }
}
