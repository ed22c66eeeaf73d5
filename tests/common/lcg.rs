//! Knuth's 64-bit LCG (MMIX constants). Tests must not depend on `rand`'s
//! streams, and the kernel tests' expected values were drawn from this one:
//! `f` takes the top 24 bits of the state, so every draw is exact in f32.

use acsleuth::data::DenseMatrix;

/// The generator state; `Lcg(seed)`.
pub struct Lcg(pub u64);

impl Lcg {
    /// Advances the state and returns its top 31 bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Uniform in [lo, hi).
    pub fn f(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 7) as f32 / (1u64 << 24) as f32)
    }
    /// `n` draws uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f(lo, hi)).collect()
    }
    /// `n` integers uniform in [-m, m], as f32 (products exact, ties common).
    pub fn ints(&mut self, n: usize, m: u64) -> Vec<f32> {
        (0..n).map(|_| (self.next() % (2 * m + 1)) as f32 - m as f32).collect()
    }
    /// A `rows × cols` matrix uniform in [-1, 1).
    pub fn dense(&mut self, rows: usize, cols: usize) -> DenseMatrix {
        DenseMatrix { rows, cols, data: self.vec(rows * cols, -1.0, 1.0) }
    }
    /// A `rows × cols` matrix of integers in [-m, m].
    pub fn int_matrix(&mut self, rows: usize, cols: usize, m: u64) -> DenseMatrix {
        DenseMatrix { rows, cols, data: self.ints(rows * cols, m) }
    }
}

/// `n` draws uniform in [lo, hi) from the state `seed` (advanced).
pub fn lcg(seed: &mut u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = Lcg(*seed);
    let v = r.vec(n, lo, hi);
    *seed = r.0;
    v
}
