//! The CPU backend: rayon for parallel loops, the `gemm` crate for products
//! (`cpu_gemm`), the fused layer kernels in `cpu_fused`.
//! Elementwise code is plain loops over slices; large ones are split in
//! chunks over rayon (small ones stay on the calling thread, where rayon's
//! fork/join would cost more than the work).

use rayon::prelude::*;

use super::{rng, Act, AdamStep, Backend, Batch, BnBwd, BnFwd, DropoutMask, Fused, Gemm};

/// A CPU "device" buffer: a plain vector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuBuf(pub Vec<f32>);

impl CpuBuf {
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// How GEMMs use the cores (see `benches/gemm.rs` for the measurements that
/// chose the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmThreading {
    /// One call to `gemm` with its own rayon parallelism.
    Internal,
    /// Split the rows of C over rayon tasks, each a single-threaded `gemm`.
    RowSplit,
    /// Split the columns of C likewise.
    ColSplit,
    /// Per shape, what measured faster on 2 cores (see `cpu_gemm`).
    Auto,
    /// Single-threaded (reference / tiny shapes).
    Single,
}

/// The CPU backend. Stateless apart from its threading choice; cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct CpuBackend {
    pub gemm_threading: GemmThreading,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend { gemm_threading: GemmThreading::Auto }
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_gemm_threading(t: GemmThreading) -> Self {
        CpuBackend { gemm_threading: t }
    }
}

/// Elements per rayon task for elementwise loops.
pub(crate) const CHUNK: usize = 1 << 14;

/// `f(out_chunk, offset)` over chunks of `out`, in parallel when large.
pub(crate) fn par_chunks(out: &mut [f32], f: impl Fn(&mut [f32], usize) + Sync + Send) {
    if out.len() <= CHUNK {
        f(out, 0);
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| f(c, i * CHUNK));
    }
}

fn zip_map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Send) {
    assert_eq!(x.len(), out.len(), "elementwise: length mismatch");
    par_chunks(out, |o, off| {
        let n = o.len();
        for (d, &s) in o.iter_mut().zip(&x[off..off + n]) {
            *d = f(s);
        }
    });
}

fn zip2_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) {
    assert!(a.len() == out.len() && b.len() == out.len(), "elementwise: length mismatch");
    par_chunks(out, |o, off| {
        let a = &a[off..off + o.len()];
        let b = &b[off..off + o.len()];
        for i in 0..o.len() {
            o[i] = f(a[i], b[i]);
        }
    });
}

fn sum_f64(x: &[f32], f: impl Fn(f32) -> f64 + Sync + Send) -> f64 {
    if x.len() <= CHUNK {
        x.iter().map(|&v| f(v)).sum()
    } else {
        // Chunk sums added in order (rayon's `sum` combines where work was
        // stolen, so its bits vary from run to run).
        x.par_chunks(CHUNK).map(|c| c.iter().map(|&v| f(v)).sum::<f64>()).collect::<Vec<f64>>().iter().sum()
    }
}

impl Backend for CpuBackend {
    type Buf = CpuBuf;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn zeros(&self, len: usize) -> CpuBuf {
        CpuBuf(vec![0.0; len])
    }
    fn upload(&self, data: &[f32]) -> CpuBuf {
        CpuBuf(data.to_vec())
    }
    fn download_into(&self, buf: &CpuBuf, out: &mut [f32]) {
        out.copy_from_slice(&buf.0);
    }
    fn write(&self, dst: &mut CpuBuf, dst_off: usize, data: &[f32]) {
        dst.0[dst_off..dst_off + data.len()].copy_from_slice(data);
    }
    fn len(&self, buf: &CpuBuf) -> usize {
        buf.0.len()
    }
    fn copy(&self, src: &CpuBuf, src_off: usize, dst: &mut CpuBuf, dst_off: usize, len: usize) {
        dst.0[dst_off..dst_off + len].copy_from_slice(&src.0[src_off..src_off + len]);
    }
    fn fill(&self, buf: &mut CpuBuf, value: f32) {
        buf.0.fill(value);
    }

    fn gemm(&self, g: &Gemm, a: &CpuBuf, b: &CpuBuf, c: &mut CpuBuf) {
        super::cpu_gemm::gemm(self.gemm_threading, g, &a.0, &b.0, &mut c.0);
    }
    fn gemm_batched(&self, g: &Gemm, batch: &Batch, a: &CpuBuf, b: &CpuBuf, c: &mut CpuBuf) {
        super::cpu_gemm::gemm_batched(g, batch, &a.0, &b.0, &mut c.0);
    }

    fn fused_forward(&self, cfg: &Fused, z: &CpuBuf, bias: Option<&CpuBuf>, bn: Option<BnFwd<'_, CpuBuf>>, y: &mut CpuBuf) {
        super::cpu_fused::fused_forward(cfg, z, bias, bn, y);
    }
    #[allow(clippy::too_many_arguments)]
    fn fused_backward(
        &self,
        cfg: &Fused,
        z: &CpuBuf,
        bias: Option<&CpuBuf>,
        bn: Option<BnBwd<'_, CpuBuf>>,
        dy: &CpuBuf,
        dz: &mut CpuBuf,
        dbias: Option<&mut CpuBuf>,
    ) {
        super::cpu_fused::fused_backward(cfg, z, bias, bn, dy, dz, dbias);
    }
    fn layer_norm_forward(
        &self,
        rows: usize,
        cols: usize,
        eps: f32,
        x: &CpuBuf,
        gamma: &CpuBuf,
        beta: &CpuBuf,
        y: &mut CpuBuf,
        mean: &mut CpuBuf,
        invstd: &mut CpuBuf,
    ) {
        super::cpu_fused::layer_norm_forward(rows, cols, eps, x, gamma, beta, y, mean, invstd);
    }
    fn layer_norm_backward(
        &self,
        rows: usize,
        cols: usize,
        x: &CpuBuf,
        gamma: &CpuBuf,
        mean: &CpuBuf,
        invstd: &CpuBuf,
        dy: &CpuBuf,
        dx: &mut CpuBuf,
        dgamma: &mut CpuBuf,
        dbeta: &mut CpuBuf,
    ) {
        super::cpu_fused::layer_norm_backward(rows, cols, x, gamma, mean, invstd, dy, dx, dgamma, dbeta);
    }
    fn softmax_rows(&self, rows: usize, cols: usize, scale: f32, x: &CpuBuf, y: &mut CpuBuf) {
        super::cpu_fused::softmax_rows(rows, cols, scale, &x.0, &mut y.0);
    }
    fn softmax_rows_backward(&self, rows: usize, cols: usize, scale: f32, y: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) {
        super::cpu_fused::softmax_rows_backward(rows, cols, scale, &y.0, &dy.0, &mut dx.0);
    }

    fn memory_attention_forward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        logits: &CpuBuf,
        w_saved: &mut CpuBuf,
        out: &mut CpuBuf,
    ) {
        let n = rows * cols;
        super::cpu_memory_attention::memory_attention_forward(
            rows,
            cols,
            inv_tau,
            lambda,
            &logits.0[..n],
            &mut w_saved.0[..n],
            &mut out.0[..n],
        );
    }
    fn memory_attention_backward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        w_saved: &CpuBuf,
        dout: &CpuBuf,
        dlogits: &mut CpuBuf,
    ) {
        let n = rows * cols;
        super::cpu_memory_attention::memory_attention_backward(
            rows,
            cols,
            inv_tau,
            lambda,
            &w_saved.0[..n],
            &dout.0[..n],
            &mut dlogits.0[..n],
        );
    }

    fn row_sums(&self, rows: usize, cols: usize, x: &CpuBuf, out: &mut CpuBuf) {
        assert!(x.0.len() >= rows * cols && out.0.len() >= rows, "row_sums: buffers too short");
        for (r, o) in out.0[..rows].iter_mut().enumerate() {
            *o = x.0[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).sum::<f64>() as f32;
        }
    }
    fn row_sumsq(&self, rows: usize, cols: usize, x: &CpuBuf, out: &mut CpuBuf) {
        assert!(x.0.len() >= rows * cols && out.0.len() >= rows, "row_sumsq: buffers too short");
        for (r, o) in out.0[..rows].iter_mut().enumerate() {
            *o = x.0[r * cols..(r + 1) * cols].iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() as f32;
        }
    }
    fn col_sums(&self, rows: usize, cols: usize, x: &CpuBuf, beta: f32, out: &mut CpuBuf) {
        assert!(x.0.len() >= rows * cols && out.0.len() >= cols, "col_sums: buffers too short");
        let out = &mut out.0[..cols];
        if beta == 0.0 {
            out.fill(0.0);
        } else if beta != 1.0 {
            out.iter_mut().for_each(|o| *o *= beta);
        }
        for r in 0..rows {
            for (o, &v) in out.iter_mut().zip(&x.0[r * cols..(r + 1) * cols]) {
                *o += v;
            }
        }
    }
    fn sum(&self, x: &CpuBuf) -> f32 {
        sum_f64(&x.0, |v| v as f64) as f32
    }
    fn sumsq(&self, x: &CpuBuf) -> f32 {
        sum_f64(&x.0, |v| (v as f64) * (v as f64)) as f32
    }

    fn axpy(&self, alpha: f32, x: &CpuBuf, y: &mut CpuBuf) {
        assert_eq!(x.0.len(), y.0.len(), "axpy: length mismatch");
        par_chunks(&mut y.0, |o, off| {
            let n = o.len();
            for (d, &s) in o.iter_mut().zip(&x.0[off..off + n]) {
                *d += alpha * s;
            }
        });
    }
    fn scale(&self, alpha: f32, x: &mut CpuBuf) {
        par_chunks(&mut x.0, |o, _| o.iter_mut().for_each(|v| *v *= alpha));
    }
    fn add(&self, a: &CpuBuf, b: &CpuBuf, out: &mut CpuBuf) {
        zip2_map(&a.0, &b.0, &mut out.0, |x, y| x + y);
    }
    fn mul(&self, a: &CpuBuf, b: &CpuBuf, out: &mut CpuBuf) {
        zip2_map(&a.0, &b.0, &mut out.0, |x, y| x * y);
    }
    fn add_bias(&self, rows: usize, cols: usize, bias: &CpuBuf, x: &mut CpuBuf) {
        assert!(x.0.len() >= rows * cols && bias.0.len() >= cols, "add_bias: buffers too short");
        for row in x.0[..rows * cols].chunks_mut(cols) {
            for (v, &b) in row.iter_mut().zip(&bias.0) {
                *v += b;
            }
        }
    }
    fn act_forward(&self, act: Act, x: &CpuBuf, out: &mut CpuBuf) {
        zip_map(&x.0, &mut out.0, |v| act.f(v));
    }
    fn act_backward(&self, act: Act, x: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) {
        zip2_map(&x.0, &dy.0, &mut dx.0, |x, g| g * act.df(x));
    }
    fn sigmoid(&self, x: &CpuBuf, out: &mut CpuBuf) {
        zip_map(&x.0, &mut out.0, |v| 1.0 / (1.0 + (-v).exp()));
    }
    fn sigmoid_backward(&self, y: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) {
        zip2_map(&y.0, &dy.0, &mut dx.0, |y, g| g * y * (1.0 - y));
    }
    fn abs(&self, x: &CpuBuf, out: &mut CpuBuf) {
        zip_map(&x.0, &mut out.0, f32::abs);
    }
    fn sign(&self, x: &CpuBuf, out: &mut CpuBuf) {
        zip_map(&x.0, &mut out.0, sign);
    }
    fn dropout(&self, mask: &DropoutMask, x: &CpuBuf, y: &mut CpuBuf) {
        assert_eq!(x.0.len(), y.0.len(), "dropout: length mismatch");
        // The uniforms of a chunk come four per Philox block (as
        // `fill_uniform`), then each becomes the mask factor of
        // `DropoutMask::factor`: the same values, a quarter of the hashing.
        let keep = 1.0 / (1.0 - mask.p);
        par_chunks(&mut y.0, |o, off| {
            rng::fill_uniform(mask.seed, mask.offset + off as u64, 0.0, 1.0, o);
            let n = o.len();
            for (d, &xv) in o.iter_mut().zip(&x.0[off..off + n]) {
                *d = xv * if *d >= mask.p { keep } else { 0.0 };
            }
        });
    }
    fn l1_loss(&self, pred: &CpuBuf, target: &CpuBuf, scale: f32, grad: &mut CpuBuf) -> f32 {
        let n = pred.0.len();
        assert!(n > 0 && target.0.len() == n, "l1_loss: length mismatch or empty");
        let g = scale / n as f32;
        zip2_map(&pred.0, &target.0, &mut grad.0, |p, t| g * sign(p - t));
        let total: f64 = if n <= CHUNK {
            pred.0.iter().zip(&target.0).map(|(&p, &t)| (p - t).abs() as f64).sum()
        } else {
            pred.0
                .par_chunks(CHUNK)
                .zip(target.0.par_chunks(CHUNK))
                .map(|(p, t)| p.iter().zip(t).map(|(&p, &t)| (p - t).abs() as f64).sum::<f64>())
                .sum()
        };
        (total / n as f64) as f32
    }

    fn fill_uniform(&self, x: &mut CpuBuf, seed: u64, offset: u64, lo: f32, hi: f32) {
        // Chunks start at multiples of CHUNK (a multiple of 4): Philox blocks
        // line up exactly as in a serial fill.
        par_chunks(&mut x.0, |o, off| rng::fill_uniform(seed, offset + off as u64, lo, hi, o));
    }
    fn fill_normal(&self, x: &mut CpuBuf, seed: u64, offset: u64, mean: f32, std: f32) {
        par_chunks(&mut x.0, |o, off| rng::fill_normal(seed, offset + off as u64, mean, std, o));
    }

    fn adam_step(&self, s: &AdamStep, param: &mut CpuBuf, grad: &CpuBuf, m: &mut CpuBuf, v: &mut CpuBuf) {
        let n = grad.0.len();
        assert!(param.0.len() == n && m.0.len() == n && v.0.len() == n, "adam_step: length mismatch");
        assert!(s.t >= 1, "adam_step: steps count from 1");
        let bc1 = 1.0 - (s.beta1 as f64).powi(s.t as i32);
        let bc2 = 1.0 - (s.beta2 as f64).powi(s.t as i32);
        let step_size = (s.lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = if s.decoupled { 1.0 - s.lr * s.weight_decay } else { 1.0 };
        let (b1, b2, eps) = (s.beta1, s.beta2, s.eps);
        let wd_coupled = if s.decoupled { 0.0 } else { s.weight_decay };
        let g = &grad.0;
        let mm = &mut m.0;
        let vv = &mut v.0;
        param
            .0
            .par_chunks_mut(CHUNK)
            .zip(mm.par_chunks_mut(CHUNK))
            .zip(vv.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, ((p, m), v))| {
                let g = &g[ci * CHUNK..ci * CHUNK + p.len()];
                // Zipped iterators (no bounds checks) so the loop vectorises.
                for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    let gi = g + wd_coupled * *p;
                    // Same order of operations as torch's single-tensor Adam.
                    *m += (gi - *m) * (1.0 - b1);
                    *v = *v * b2 + (1.0 - b2) * gi * gi;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p = *p * decay - step_size * *m / denom;
                }
            });
    }

    // ==== DESC soft assignment (twins in cpu_desc.rs) ====
    fn desc_soft_assign(&self, rows: usize, k: usize, dim: usize, nu: f32, z: &CpuBuf, mu: &CpuBuf, dist: &mut CpuBuf, q: &mut CpuBuf) {
        super::cpu_desc::desc_soft_assign(rows, k, dim, nu, &z.0, &mu.0, &mut dist.0, &mut q.0);
    }
    fn desc_kl_grad(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        scale: f32,
        z: &CpuBuf,
        mu: &CpuBuf,
        p: &CpuBuf,
        dist: &CpuBuf,
        g: &mut CpuBuf,
        dz: &mut CpuBuf,
    ) -> f32 {
        super::cpu_desc::desc_kl_grad(rows, k, dim, nu, scale, &z.0, &mu.0, &p.0, &dist.0, &mut g.0, &mut dz.0) as f32
    }
    fn desc_centroid_grad(&self, rows: usize, k: usize, dim: usize, z: &CpuBuf, mu: &CpuBuf, g: &CpuBuf, dmu: &mut CpuBuf) {
        super::cpu_desc::desc_centroid_grad(rows, k, dim, &z.0, &mu.0, &g.0, &mut dmu.0);
    }
    // ==== end DESC ====
    fn kin_argmax_merge(
        &self,
        rows: usize,
        keys: usize,
        dim: usize,
        key_base: usize,
        q: &CpuBuf,
        k: &CpuBuf,
        best: &mut CpuBuf,
        best_idx: &mut CpuBuf,
    ) {
        super::cpu_argmax::kin_argmax_merge(rows, keys, dim, key_base, &q.0, &k.0, &mut best.0, &mut best_idx.0);
    }
    fn knn_topk_merge(
        &self,
        rows: usize,
        cols: usize,
        k: usize,
        key_base: usize,
        self_base: Option<usize>,
        prod: &CpuBuf,
        q_norms: &CpuBuf,
        k_norms: &CpuBuf,
        dist2: &mut CpuBuf,
        index: &mut CpuBuf,
    ) {
        super::cpu_knn::knn_topk_merge(rows, cols, k, key_base, self_base, &prod.0, &q_norms.0, &k_norms.0, &mut dist2.0, &mut index.0);
    }
    fn mmd_pairwise_sums(&self, delta: &[f32], genes: usize, a: &[f64], b: &[f64], rbf_coefs: &[f64], u: &mut [f64], v: &mut [f64]) {
        use super::cpu_mmd::{pairwise_row_sums, row_sq_norms, GramPrecision, TILE};
        assert!(rbf_coefs.len() <= 4, "mmd_pairwise_sums: at most 4 RBF bandwidths");
        let s = row_sq_norms(delta, genes);
        let (su, sv) = pairwise_row_sums(delta, genes, &s, a, b, rbf_coefs, TILE, GramPrecision::F32);
        u.copy_from_slice(&su);
        v.copy_from_slice(&sv);
    }
}

#[inline(always)]
pub(crate) fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}
