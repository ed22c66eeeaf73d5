//! The memory block of Module I's generator (ARCHITECTURE §3).
//!
//! A queue `Q: [mem_size, dim]` of past encoder outputs. For a batch of
//! latent codes `z: [batch, dim]`:
//!
//! ```text
//! logits = z Qᵀ                                   [batch, mem_size]
//! ŵ      = renorm(shrink(softmax(logits / τ)))    one fused kernel
//! z̃      = ŵ Q                                    [batch, dim]
//! ```
//!
//! Q is a buffer, not a parameter: the backward reaches `z` only. After each
//! generator step the batch's (detached) codes replace the oldest rows of Q
//! ([`MemoryBlock::push`], first in first out), so `mem_size` must be a
//! multiple of the batch size. Q starts as U(±1/√dim) from the
//! counter-based RNG, as the authors' `reset_parameters`.

use crate::backend::rng::Stream;
use crate::backend::{ensure, Backend, Gemm, Trans};
use crate::nn::{init, join, Module, Param};

pub struct MemoryBlock<B: Backend> {
    pub mem_size: usize,
    pub dim: usize,
    /// 1/τ of the attention softmax.
    pub inv_tau: f32,
    /// Hard-shrinkage threshold λ.
    pub lambda: f32,
    /// The queue `[mem_size, dim]` (state-dict name `mem`).
    pub queue: Param<B>,
    /// Next row of the queue to overwrite, kept as a one-element f32 buffer
    /// (`mem_ptr`) so that checkpoints carry it. It is the only copy: a
    /// host-side mirror went stale when a checkpoint was loaded.
    pub ptr: Param<B>,
    batch: usize,
    /// `[batch, mem_size]`: logits, saved softmax, attention weights and
    /// their gradients.
    logits: B::Buf,
    w: B::Buf,
    att: B::Buf,
    datt: B::Buf,
    dlogits: B::Buf,
    /// `[batch, dim]`: output and input gradient.
    out: B::Buf,
    dz: B::Buf,
}

impl<B: Backend> MemoryBlock<B> {
    pub fn new(be: &B, mem_size: usize, dim: usize, temperature: f32, lambda: f32, rng: &mut Stream) -> Self {
        let mut queue = Param::buffer(be, &[mem_size, dim], 0.0);
        init::uniform_bound(be, &mut queue.value, 1.0 / (dim.max(1) as f32).sqrt(), rng);
        MemoryBlock {
            mem_size,
            dim,
            inv_tau: 1.0 / temperature,
            lambda,
            queue,
            ptr: Param::buffer(be, &[1], 0.0),
            batch: 0,
            logits: be.zeros(0),
            w: be.zeros(0),
            att: be.zeros(0),
            datt: be.zeros(0),
            dlogits: be.zeros(0),
            out: be.zeros(0),
            dz: be.zeros(0),
        }
    }

    /// `z̃ = ŵ Q` for `z: [batch, dim]`; returns `[batch, dim]`.
    pub fn forward(&mut self, be: &B, z: &B::Buf, batch: usize) -> &B::Buf {
        let (m, d) = (self.mem_size, self.dim);
        self.batch = batch;
        for b in [&mut self.logits, &mut self.w, &mut self.att] {
            ensure(be, b, batch * m);
        }
        ensure(be, &mut self.out, batch * d);
        be.gemm(&Gemm::new(Trans::N, Trans::T, batch, m, d), z, &self.queue.value, &mut self.logits);
        be.memory_attention_forward(batch, m, self.inv_tau, self.lambda, &self.logits, &mut self.w, &mut self.att);
        be.gemm(&Gemm::new(Trans::N, Trans::N, batch, d, m), &self.att, &self.queue.value, &mut self.out);
        &self.out
    }

    /// Attention weights ŵ of the last forward, `[batch, mem_size]`.
    pub fn attention(&self) -> &B::Buf {
        &self.att
    }

    /// Backward of the last forward from `dout: [batch, dim]`; returns
    /// `dz: [batch, dim]`.
    pub fn backward(&mut self, be: &B, dout: &B::Buf) -> &B::Buf {
        let (m, d, batch) = (self.mem_size, self.dim, self.batch);
        ensure(be, &mut self.datt, batch * m);
        ensure(be, &mut self.dlogits, batch * m);
        ensure(be, &mut self.dz, batch * d);
        // dŵ = dout Qᵀ: [batch, dim]·[mem, dim]ᵀ.
        be.gemm(&Gemm::new(Trans::N, Trans::T, batch, m, d), dout, &self.queue.value, &mut self.datt);
        be.memory_attention_backward(batch, m, self.inv_tau, self.lambda, &self.w, &self.datt, &mut self.dlogits);
        // dz = dlogits Q: [batch, mem]·[mem, dim].
        be.gemm(&Gemm::new(Trans::N, Trans::N, batch, d, m), &self.dlogits, &self.queue.value, &mut self.dz);
        &self.dz
    }

    /// FIFO update: the first `batch·dim` values of `z` (a batch of encoder
    /// outputs, treated as constants) replace the oldest `batch` rows.
    /// Panics when `batch` does not divide `mem_size` (checked by
    /// `TrainConfig::validate` before training).
    pub fn push(&mut self, be: &B, z: &B::Buf, batch: usize) {
        assert!(
            batch > 0 && self.mem_size.is_multiple_of(batch),
            "memory queue of {} rows cannot take batches of {batch}",
            self.mem_size
        );
        let p = self.next_row(be);
        let p = if p + batch <= self.mem_size { p } else { 0 };
        be.copy(z, 0, &mut self.queue.value, p * self.dim, batch * self.dim);
        be.fill(&mut self.ptr.value, ((p + batch) % self.mem_size) as f32);
    }

    /// The queue pointer, read from its buffer (one value per generator
    /// step: the step already reads its losses back). A value that is not a
    /// row index (a hand-edited checkpoint) restarts the queue at row 0.
    pub fn next_row(&self, be: &B) -> usize {
        let p = be.download(&self.ptr.value)[0];
        if p.is_finite() && p >= 0.0 { (p as usize) % self.mem_size.max(1) } else { 0 }
    }
}

impl<B: Backend> Module<B> for MemoryBlock<B> {
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        f(&join(prefix, "mem"), &mut self.queue);
        f(&join(prefix, "mem_ptr"), &mut self.ptr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    /// f64 reference of the whole block for finite differences.
    fn block_f64(z: &[f64], q: &[f64], batch: usize, m: usize, d: usize, inv_tau: f64, lambda: f64) -> Vec<f64> {
        let mut out = vec![0.0; batch * d];
        for b in 0..batch {
            let l: Vec<f64> = (0..m).map(|k| (0..d).map(|j| z[b * d + j] * q[k * d + j]).sum()).collect();
            let w = crate::backend::cpu_memory_attention::memory_attention_f64(inv_tau, lambda, &l);
            for j in 0..d {
                out[b * d + j] = (0..m).map(|k| w[k] * q[k * d + j]).sum();
            }
        }
        out
    }

    #[test]
    fn backward_matches_finite_differences_through_the_block() {
        let be = CpuBackend::new();
        let (batch, m, d) = (3, 16, 8);
        let (tau, lambda) = (0.05f32, 0.01f32);
        let mut rng = Stream::new(5);
        let mut blk = MemoryBlock::new(&be, m, d, tau, lambda, &mut rng);
        // Codes of moderate size so the softmax is neither one-hot nor flat.
        let mut z = be.zeros(batch * d);
        be.fill_normal(&mut z, 9, 0, 0.0, 0.4);
        let mut dout = be.zeros(batch * d);
        be.fill_normal(&mut dout, 9, 1000, 0.0, 1.0);
        blk.forward(&be, &z, batch);
        let dz = be.download(blk.backward(&be, &dout));
        let z64: Vec<f64> = be.download(&z).iter().map(|&v| v as f64).collect();
        let q64: Vec<f64> = be.download(&blk.queue.value).iter().map(|&v| v as f64).collect();
        let g64: Vec<f64> = be.download(&dout).iter().map(|&v| v as f64).collect();
        let loss = |zz: &[f64]| -> f64 {
            block_f64(zz, &q64, batch, m, d, 1.0 / tau as f64, lambda as f64).iter().zip(&g64).map(|(a, b)| a * b).sum()
        };
        let h = 1e-6;
        let mut worst = 0.0f64;
        for i in 0..batch * d {
            let (mut p, mut n) = (z64.clone(), z64.clone());
            p[i] += h;
            n[i] -= h;
            let fd = (loss(&p) - loss(&n)) / (2.0 * h);
            let err = (fd - dz[i] as f64).abs() / (1.0 + fd.abs());
            worst = worst.max(err);
        }
        assert!(worst < 2e-3, "worst relative error {worst}");
    }

    #[test]
    fn push_replaces_the_oldest_rows_in_order() {
        let be = CpuBackend::new();
        let (m, d) = (4, 3);
        let mut blk = MemoryBlock::new(&be, m, d, 0.05, 0.01, &mut Stream::new(1));
        let init = be.download(&blk.queue.value);
        let bound = 1.0 / (d as f32).sqrt();
        assert!(init.iter().all(|v| v.abs() <= bound));
        blk.push(&be, &be.upload(&[1.0; 6]), 2);
        blk.push(&be, &be.upload(&[2.0; 6]), 2);
        assert_eq!(be.download(&blk.queue.value), [[1.0; 6], [2.0; 6]].concat());
        blk.push(&be, &be.upload(&[3.0; 6]), 2);
        assert_eq!(be.download(&blk.queue.value), [[3.0; 6], [2.0; 6]].concat());
        assert_eq!(be.download(&blk.ptr.value), [2.0]);
    }
}
