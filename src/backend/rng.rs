//! Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11,
//! "Parallel random numbers: as easy as 1, 2, 3").
//!
//! Why counter-based: value `i` of the stream `(seed, offset)` is a pure
//! function of `(seed, offset + i)`, so a CUDA thread can compute exactly the
//! value the CPU computes at the same index, with no shared generator state
//! and in any order. Every random draw of the engine (initialisation,
//! dropout masks, shuffles' keys, GP interpolation weights) goes through here.
//!
//! Mapping from an index `j = offset + i` to bits (the CUDA twin must match):
//! - 32-bit word `j`: Philox block `j / 4` (counter `(lo32(j/4), hi32(j/4), 0, 0)`,
//!   key `(lo32(seed), hi32(seed))`), lane `j % 4`.
//! - uniform `j`: `((word_j >> 8) + 0.5) · 2⁻²⁴`, in the open interval (0, 1);
//!   exact in f32, so bit-identical on every device.
//! - normal `j`: Box–Muller on the pair of words `(4·(j/4) + 2·((j%4)/2),
//!   … + 1)`, i.e. lanes (0,1) feed normals 0 and 1 of a block, lanes (2,3)
//!   normals 2 and 3; even `j` takes `r·cos θ`, odd `j` takes `r·sin θ`.
//!   Computed in f64 and rounded to f32 (a CUDA kernel doing the same in
//!   double agrees to the last bit except in rare rounding ties of libm).
//! - dropout keep `j`: `uniform_j >= p` (kept with probability 1 − p).

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// The Philox4x32 bijection with 10 rounds (Random123's `philox4x32_R(10, ...)`).
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

#[inline]
fn block(seed: u64, b: u64) -> [u32; 4] {
    philox4x32_10([b as u32, (b >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])
}

/// 32-bit word `j` of stream `seed`.
#[inline]
pub fn word(seed: u64, j: u64) -> u32 {
    block(seed, j / 4)[(j % 4) as usize]
}

/// Bits to a uniform in (0, 1): 24 high bits, centred in their cell.
#[inline(always)]
pub fn bits_to_uniform(x: u32) -> f32 {
    ((x >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// Uniform `j` of stream `seed`, in (0, 1).
#[inline]
pub fn uniform(seed: u64, j: u64) -> f32 {
    bits_to_uniform(word(seed, j))
}

/// Standard normal `j` of stream `seed` (Box–Muller, see the module doc).
#[inline]
pub fn normal(seed: u64, j: u64) -> f32 {
    let w = block(seed, j / 4);
    let pair = ((j % 4) / 2) as usize;
    let (z0, z1) = box_muller(w[2 * pair], w[2 * pair + 1]);
    if j.is_multiple_of(2) { z0 } else { z1 }
}

#[inline]
fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let u1 = bits_to_uniform(a) as f64;
    let u2 = bits_to_uniform(b) as f64;
    let r = (-2.0 * u1.ln()).sqrt();
    let t = std::f64::consts::TAU * u2;
    ((r * t.cos()) as f32, (r * t.sin()) as f32)
}

/// Dropout decision for element `j`: true when kept (probability 1 − p).
#[inline]
pub fn keep(seed: u64, j: u64, p: f32) -> bool {
    uniform(seed, j) >= p
}

/// Fill `out[i]` with uniform `offset + i` mapped to `[lo, hi)`; whole
/// Philox blocks are computed once for four outputs.
pub fn fill_uniform(seed: u64, offset: u64, lo: f32, hi: f32, out: &mut [f32]) {
    for_each_word(seed, offset, out, |x| lo + (hi - lo) * bits_to_uniform(x));
}

/// Fill `out[i]` with `mean + std · normal(seed, offset + i)`.
pub fn fill_normal(seed: u64, offset: u64, mean: f32, std: f32, out: &mut [f32]) {
    // Block-wise: four normals per Philox block.
    let mut i = 0usize;
    while i < out.len() {
        let j = offset + i as u64;
        let b = j / 4;
        let w = block(seed, b);
        let (a0, a1) = box_muller(w[0], w[1]);
        let (a2, a3) = box_muller(w[2], w[3]);
        let zs = [a0, a1, a2, a3];
        let mut lane = (j % 4) as usize;
        while lane < 4 && i < out.len() {
            out[i] = mean + std * zs[lane];
            lane += 1;
            i += 1;
        }
    }
}

fn for_each_word(seed: u64, offset: u64, out: &mut [f32], f: impl Fn(u32) -> f32) {
    let mut i = 0usize;
    while i < out.len() {
        let j = offset + i as u64;
        let w = block(seed, j / 4);
        let mut lane = (j % 4) as usize;
        while lane < 4 && i < out.len() {
            out[i] = f(w[lane]);
            lane += 1;
            i += 1;
        }
    }
}

/// A host-side key dispenser: hands out disjoint `(seed, offset)` ranges so
/// that consecutive draws (dropout masks of successive layers and steps)
/// never reuse random numbers. Cheap to clone and to checkpoint (two u64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub seed: u64,
    pub offset: u64,
}

impl Stream {
    pub fn new(seed: u64) -> Self {
        Stream { seed, offset: 0 }
    }
    /// Reserve `n` values; returns the offset of the first. Offsets are
    /// rounded to whole Philox blocks so ranges never share a block.
    pub fn take(&mut self, n: usize) -> u64 {
        let start = self.offset;
        self.offset += (n as u64).div_ceil(4) * 4;
        start
    }
    /// An independent stream for a sub-task (e.g. one layer's init), keyed by
    /// a hash of this seed and `tag`.
    pub fn fork(&self, tag: u64) -> Stream {
        let w = philox4x32_10([tag as u32, (tag >> 32) as u32, 0xF0F0_0001, 0], [
            self.seed as u32,
            (self.seed >> 32) as u32,
        ]);
        Stream::new((w[0] as u64) | ((w[1] as u64) << 32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer tests from Random123's `kat_vectors` (philox4x32 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn streams_are_pure_functions_of_index() {
        let mut a = vec![0.0; 37];
        fill_uniform(7, 5, 0.0, 1.0, &mut a);
        for (i, &v) in a.iter().enumerate() {
            assert_eq!(v, uniform(7, 5 + i as u64));
        }
        let mut n = vec![0.0; 37];
        fill_normal(7, 3, 0.0, 1.0, &mut n);
        for (i, &v) in n.iter().enumerate() {
            assert_eq!(v, normal(7, 3 + i as u64));
        }
    }

    #[test]
    fn moments() {
        let n = 200_000;
        let mut u = vec![0.0; n];
        fill_uniform(1, 0, 0.0, 1.0, &mut u);
        let m = u.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!((m - 0.5).abs() < 0.005, "uniform mean {m}");
        assert!(u.iter().all(|&x| x > 0.0 && x < 1.0));
        let mut z = vec![0.0; n];
        fill_normal(2, 0, 0.0, 1.0, &mut z);
        let m = z.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let v = z.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "normal mean {m} var {v}");
        let kept = (0..n as u64).filter(|&j| keep(3, j, 0.1)).count() as f64 / n as f64;
        assert!((kept - 0.9).abs() < 0.005);
    }

    #[test]
    fn stream_ranges_disjoint() {
        let mut s = Stream::new(9);
        let a = s.take(5);
        let b = s.take(3);
        assert_eq!(a, 0);
        assert_eq!(b, 8);
        assert_ne!(s.fork(1).seed, s.fork(2).seed);
    }
}
