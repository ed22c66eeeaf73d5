//! [`KernelBackend`]: the [`Backend`] trait implemented with the kernels of
//! `kernels/` (through [`super::ops`]) and a column-major SGEMM, over any
//! [`DeviceApi`]. Two devices implement it: [`super::device::CudaDevice`]
//! (cudarc: driver memory, cuBLAS) and [`super::emu::EmuDevice`] (host
//! memory, emulated kernels, a literal column-major SGEMM), so every line of
//! this module — buffer sizes, launch geometry, the row-major → cuBLAS GEMM
//! mapping — runs in the normal test suite without a GPU.
//!
//! Errors are sticky, as in CUDA itself: the trait's methods return no
//! errors, so the first failure of the device (an allocation, a copy, a
//! launch, cuBLAS) is recorded and every later operation becomes a no-op —
//! nothing more is launched on buffers that may not exist, downloads give
//! zeros. The pipeline calls [`Backend::check`] at natural boundaries (each
//! epoch, the deviations pass, each scorer step, before anything is
//! written), which returns the recorded error as [`crate::Error::Device`]
//! with a hint. Shape mismatches still panic: they are programming errors.

mod device_api;
mod state;

use super::launch::DevPtr;
use super::ops::{self, BnBwdPtrs, BnFwdPtrs};
use super::ops_desc;
pub use super::precision::GemmPrecision;
use crate::backend::{Act, AdamStep, Backend, Batch, BnBwd, BnFwd, DropoutMask, Fused, Gemm};

pub use device_api::{sgemm_reference, DeviceApi, SgemmCall};
pub use state::{DevBuf, KernelBackend};
use state::{f32_bytes, f32_bytes_mut, hint};

// SAFETY (for every `unsafe` block below): buffers are sized by their own
// `len`, checked against the shapes by asserts in these methods or in
// `ops` before any launch.
impl<D: DeviceApi> Backend for KernelBackend<D> {
    type Buf = DevBuf<D::Mem>;

    fn name(&self) -> &'static str {
        self.name
    }
    /// Waits for the queued work, then returns the first device error (if
    /// any) with a hint.
    fn check(&self) -> crate::Result<()> {
        if !self.failed() {
            self.record(self.dev.synchronize());
        }
        match self.error() {
            None => crate::progress::check_cancelled(),
            Some(msg) => Err(crate::Error::Device(format!("{} device error: {msg}; {}", self.name, hint(&msg)))),
        }
    }

    fn zeros(&self, len: usize) -> Self::Buf {
        DevBuf { mem: self.alloc(4 * len.max(1)), len }
    }
    fn upload(&self, data: &[f32]) -> Self::Buf {
        let mut b = self.zeros(data.len());
        self.htod(&mut b.mem, 0, f32_bytes(data));
        b
    }
    fn download_into(&self, buf: &Self::Buf, out: &mut [f32]) {
        assert_eq!(out.len(), buf.len, "download_into: length mismatch");
        self.dtoh(&buf.mem, 0, f32_bytes_mut(out));
    }
    fn write(&self, dst: &mut Self::Buf, dst_off: usize, data: &[f32]) {
        assert!(dst_off + data.len() <= dst.len, "write: out of bounds");
        self.htod(&mut dst.mem, 4 * dst_off, f32_bytes(data));
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len
    }
    fn copy(&self, src: &Self::Buf, src_off: usize, dst: &mut Self::Buf, dst_off: usize, len: usize) {
        assert!(src_off + len <= src.len && dst_off + len <= dst.len, "copy: out of bounds");
        if let (Some(s), Some(d), false) = (&src.mem, &mut dst.mem, self.failed()) {
            self.record(self.dev.dtod(s, 4 * src_off, d, 4 * dst_off, 4 * len));
        }
    }
    fn fill(&self, buf: &mut Self::Buf, value: f32) {
        self.launched(unsafe { ops::fill(self.l(), buf.len, value, self.p(buf)) });
    }

    fn gemm(&self, g: &Gemm, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) {
        let (ea, eb, ec) = g.extents();
        assert!(a.len >= ea && b.len >= eb && c.len >= ec, "gemm: buffers shorter than the descriptor");
        if g.m == 0 || g.n == 0 {
            return;
        }
        let call = SgemmCall::from_row_major(g, None, self.p(a), self.p(b), self.p(c));
        unsafe { self.sgemm(call) };
    }
    fn gemm_batched(&self, g: &Gemm, batch: &Batch, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) {
        if batch.count == 0 || g.m == 0 || g.n == 0 {
            return;
        }
        let (ea, eb, ec) = g.extents();
        let last = batch.count - 1;
        assert!(
            a.len >= ea + last * batch.stride_a && b.len >= eb + last * batch.stride_b && c.len >= ec + last * batch.stride_c,
            "gemm_batched: buffers shorter than the batch"
        );
        let call = SgemmCall::from_row_major(g, Some(batch), self.p(a), self.p(b), self.p(c));
        unsafe { self.sgemm(call) };
    }

    fn fused_forward(&self, cfg: &Fused, z: &Self::Buf, bias: Option<&Self::Buf>, bn: Option<BnFwd<'_, Self::Buf>>, y: &mut Self::Buf) {
        let n = cfg.rows * cfg.cols;
        assert!(z.len >= n && y.len >= n, "fused_forward: z/y shorter than rows·cols");
        assert!(bias.is_none_or(|b| b.len >= cfg.cols), "fused_forward: bias shorter than cols");
        let bn = bn.map(|b| {
            for v in [b.gamma.len, b.beta.len, b.running_mean.len, b.running_var.len, b.save_mean.len, b.save_invstd.len] {
                assert!(v >= cfg.cols, "fused_forward: BatchNorm buffer shorter than cols");
            }
            BnFwdPtrs {
                gamma: self.p(b.gamma),
                beta: self.p(b.beta),
                running_mean: self.p(b.running_mean),
                running_var: self.p(b.running_var),
                save_mean: self.p(b.save_mean),
                save_invstd: self.p(b.save_invstd),
            }
        });
        self.launched(unsafe { ops::fused_forward(self.l(), cfg, self.p(z), bias.map(|b| self.p(b)), bn, self.p(y)) });
    }
    fn fused_backward(
        &self,
        cfg: &Fused,
        z: &Self::Buf,
        bias: Option<&Self::Buf>,
        bn: Option<BnBwd<'_, Self::Buf>>,
        dy: &Self::Buf,
        dz: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
    ) {
        let n = cfg.rows * cfg.cols;
        assert!(z.len >= n && dy.len >= n && dz.len >= n, "fused_backward: buffers shorter than rows·cols");
        assert!(bias.is_none_or(|b| b.len >= cfg.cols), "fused_backward: bias shorter than cols");
        assert!(dbias.as_ref().is_none_or(|b| b.len >= cfg.cols), "fused_backward: dbias shorter than cols");
        let bn = bn.map(|b| {
            for v in [b.gamma.len, b.beta.len, b.save_mean.len, b.save_invstd.len, b.dgamma.len, b.dbeta.len] {
                assert!(v >= cfg.cols, "fused_backward: BatchNorm buffer shorter than cols");
            }
            BnBwdPtrs {
                gamma: self.p(b.gamma),
                beta: self.p(b.beta),
                save_mean: self.p(b.save_mean),
                save_invstd: self.p(b.save_invstd),
                dgamma: self.p(b.dgamma),
                dbeta: self.p(b.dbeta),
            }
        });
        let dbias = dbias.map(|b| self.p(b));
        self.launched(unsafe { ops::fused_backward(self.l(), cfg, self.p(z), bias.map(|b| self.p(b)), bn, self.p(dy), self.p(dz), dbias) });
    }
    fn layer_norm_forward(
        &self,
        rows: usize,
        cols: usize,
        eps: f32,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        invstd: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(x.len >= n && y.len >= n && mean.len >= rows && invstd.len >= rows, "layer_norm_forward: buffers too short");
        assert!(gamma.len >= cols && beta.len >= cols, "layer_norm_forward: parameters too short");
        self.launched(unsafe {
            ops::layer_norm_forward(self.l(), rows, cols, eps, self.p(x), self.p(gamma), self.p(beta), self.p(y), self.p(mean), self.p(invstd))
        });
    }
    fn layer_norm_backward(
        &self,
        rows: usize,
        cols: usize,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        invstd: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(x.len >= n && dy.len >= n && dx.len >= n, "layer_norm_backward: buffers too short");
        assert!(gamma.len >= cols && dgamma.len >= cols && dbeta.len >= cols && mean.len >= rows && invstd.len >= rows);
        self.launched(unsafe {
            ops::layer_norm_backward(
                self.l(),
                rows,
                cols,
                self.p(x),
                self.p(gamma),
                self.p(mean),
                self.p(invstd),
                self.p(dy),
                self.p(dx),
                self.p(dgamma),
                self.p(dbeta),
            )
        });
    }
    fn softmax_rows(&self, rows: usize, cols: usize, scale: f32, x: &Self::Buf, y: &mut Self::Buf) {
        assert!(x.len >= rows * cols && y.len >= rows * cols, "softmax_rows: buffers too short");
        self.launched(unsafe { ops::softmax_rows(self.l(), rows, cols, scale, self.p(x), self.p(y)) });
    }
    fn softmax_rows_backward(&self, rows: usize, cols: usize, scale: f32, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        let n = rows * cols;
        assert!(y.len >= n && dy.len >= n && dx.len >= n, "softmax_rows_backward: buffers too short");
        self.launched(unsafe { ops::softmax_rows_backward(self.l(), rows, cols, scale, self.p(y), self.p(dy), self.p(dx)) });
    }

    fn memory_attention_forward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        logits: &Self::Buf,
        w_saved: &mut Self::Buf,
        out: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(logits.len >= n && w_saved.len >= n && out.len >= n, "memory_attention_forward: buffers too short");
        self.launched(unsafe {
            ops::memory_forward(self.l(), rows, cols, inv_tau, lambda, self.p(logits), self.p(w_saved), self.p(out))
        });
    }
    fn memory_attention_backward(
        &self,
        rows: usize,
        cols: usize,
        inv_tau: f32,
        lambda: f32,
        w_saved: &Self::Buf,
        dout: &Self::Buf,
        dlogits: &mut Self::Buf,
    ) {
        let n = rows * cols;
        assert!(w_saved.len >= n && dout.len >= n && dlogits.len >= n, "memory_attention_backward: buffers too short");
        self.launched(unsafe {
            ops::memory_backward(self.l(), rows, cols, inv_tau, lambda, self.p(w_saved), self.p(dout), self.p(dlogits))
        });
    }

    fn row_sums(&self, rows: usize, cols: usize, x: &Self::Buf, out: &mut Self::Buf) {
        assert!(x.len >= rows * cols && out.len >= rows, "row_sums: buffers too short");
        self.launched(unsafe { ops::row_sums(self.l(), rows, cols, false, self.p(x), self.p(out)) });
    }
    fn row_sumsq(&self, rows: usize, cols: usize, x: &Self::Buf, out: &mut Self::Buf) {
        assert!(x.len >= rows * cols && out.len >= rows, "row_sumsq: buffers too short");
        self.launched(unsafe { ops::row_sums(self.l(), rows, cols, true, self.p(x), self.p(out)) });
    }
    fn col_sums(&self, rows: usize, cols: usize, x: &Self::Buf, beta: f32, out: &mut Self::Buf) {
        assert!(x.len >= rows * cols && out.len >= cols, "col_sums: buffers too short");
        self.launched(unsafe { ops::col_sums(self.l(), rows, cols, self.p(x), beta, self.p(out)) });
    }
    fn sum(&self, x: &Self::Buf) -> f32 {
        self.sum_impl(x, false)
    }
    fn sumsq(&self, x: &Self::Buf) -> f32 {
        self.sum_impl(x, true)
    }

    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) {
        let n = self.same_len("axpy", x, y);
        self.launched(unsafe { ops::axpy(self.l(), n, alpha, self.p(x), self.p(y)) });
    }
    fn scale(&self, alpha: f32, x: &mut Self::Buf) {
        self.launched(unsafe { ops::scale(self.l(), x.len, alpha, self.p(x)) });
    }
    fn add(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("add", a, b);
        self.same_len("add", a, out);
        self.launched(unsafe { ops::add(self.l(), n, self.p(a), self.p(b), self.p(out)) });
    }
    fn mul(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("mul", a, b);
        self.same_len("mul", a, out);
        self.launched(unsafe { ops::mul(self.l(), n, self.p(a), self.p(b), self.p(out)) });
    }
    fn add_bias(&self, rows: usize, cols: usize, bias: &Self::Buf, x: &mut Self::Buf) {
        assert!(x.len >= rows * cols && bias.len >= cols, "add_bias: buffers too short");
        self.launched(unsafe { ops::add_bias(self.l(), rows, cols, self.p(bias), self.p(x)) });
    }
    fn act_forward(&self, act: Act, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("act_forward", x, out);
        self.launched(unsafe { ops::act_forward(self.l(), n, act, self.p(x), self.p(out)) });
    }
    fn act_backward(&self, act: Act, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        let n = self.same_len("act_backward", x, dy);
        self.same_len("act_backward", x, dx);
        self.launched(unsafe { ops::act_backward(self.l(), n, act, self.p(x), self.p(dy), self.p(dx)) });
    }
    fn sigmoid(&self, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("sigmoid", x, out);
        self.launched(unsafe { ops::sigmoid(self.l(), n, self.p(x), self.p(out)) });
    }
    fn sigmoid_backward(&self, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) {
        let n = self.same_len("sigmoid_backward", y, dy);
        self.same_len("sigmoid_backward", y, dx);
        self.launched(unsafe { ops::sigmoid_backward(self.l(), n, self.p(y), self.p(dy), self.p(dx)) });
    }
    fn abs(&self, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("abs", x, out);
        self.launched(unsafe { ops::abs(self.l(), n, self.p(x), self.p(out)) });
    }
    fn sign(&self, x: &Self::Buf, out: &mut Self::Buf) {
        let n = self.same_len("sign", x, out);
        self.launched(unsafe { ops::sign(self.l(), n, self.p(x), self.p(out)) });
    }
    fn dropout(&self, mask: &DropoutMask, x: &Self::Buf, y: &mut Self::Buf) {
        let n = self.same_len("dropout", x, y);
        self.launched(unsafe { ops::dropout(self.l(), n, mask, self.p(x), self.p(y)) });
    }
    fn l1_loss(&self, pred: &Self::Buf, target: &Self::Buf, scale: f32, grad: &mut Self::Buf) -> f32 {
        let n = self.same_len("l1_loss", pred, target);
        self.same_len("l1_loss", pred, grad);
        assert!(n > 0, "l1_loss: empty input");
        let partial = self.scratch64(super::launch::MAX_GRID as usize);
        let at = partial.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m));
        let parts = self.launched(unsafe { ops::l1_loss(self.l(), n, scale, self.p(pred), self.p(target), self.p(grad), at) });
        // After a failure nothing ran: no partials to read (the loss reads 0).
        let parts = if self.failed() { 0 } else { parts.unwrap_or(0) };
        (self.read64(&partial, 0, parts).iter().sum::<f64>() / n as f64) as f32
    }

    fn fill_uniform(&self, x: &mut Self::Buf, seed: u64, offset: u64, lo: f32, hi: f32) {
        self.launched(unsafe { ops::fill_uniform(self.l(), x.len, seed, offset, lo, hi, self.p(x)) });
    }
    fn fill_normal(&self, x: &mut Self::Buf, seed: u64, offset: u64, mean: f32, std: f32) {
        self.launched(unsafe { ops::fill_normal(self.l(), x.len, seed, offset, mean, std, self.p(x)) });
    }

    fn adam_step(&self, s: &AdamStep, param: &mut Self::Buf, grad: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf) {
        let n = grad.len;
        assert!(param.len == n && m.len == n && v.len == n, "adam_step: length mismatch");
        self.launched(unsafe { ops::adam_step(self.l(), s, n, self.p(param), self.p(grad), self.p(m), self.p(v)) });
    }

    // ==== DESC soft assignment (kernels/desc.cu via ops_desc.rs) ====
    fn desc_soft_assign(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        z: &Self::Buf,
        mu: &Self::Buf,
        dist: &mut Self::Buf,
        q: &mut Self::Buf,
    ) {
        assert!(z.len >= rows * dim && mu.len >= k * dim, "desc_soft_assign: inputs too short");
        assert!(dist.len >= rows * k && q.len >= rows * k, "desc_soft_assign: outputs too short");
        self.launched(unsafe { ops_desc::soft_assign(self.l(), rows, k, dim, nu, self.p(z), self.p(mu), self.p(dist), self.p(q)) });
    }
    fn desc_kl_grad(
        &self,
        rows: usize,
        k: usize,
        dim: usize,
        nu: f32,
        scale: f32,
        z: &Self::Buf,
        mu: &Self::Buf,
        p: &Self::Buf,
        dist: &Self::Buf,
        g: &mut Self::Buf,
        dz: &mut Self::Buf,
    ) -> f32 {
        assert!(z.len >= rows * dim && mu.len >= k * dim, "desc_kl_grad: inputs too short");
        assert!(p.len >= rows * k && dist.len >= rows * k, "desc_kl_grad: inputs too short");
        assert!(g.len >= rows * k && dz.len >= rows * dim, "desc_kl_grad: outputs too short");
        if rows == 0 {
            return 0.0;
        }
        let row_loss = self.scratch64(rows);
        self.launched(unsafe {
            ops_desc::kl_grad(
                self.l(),
                rows,
                k,
                dim,
                nu,
                scale,
                self.p(z),
                self.p(mu),
                self.p(p),
                self.p(dist),
                self.p(g),
                self.p(dz),
                row_loss.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m)),
            )
        });
        self.read64(&row_loss, 0, rows).iter().sum::<f64>() as f32
    }
    fn desc_centroid_grad(&self, rows: usize, k: usize, dim: usize, z: &Self::Buf, mu: &Self::Buf, g: &Self::Buf, dmu: &mut Self::Buf) {
        assert!(z.len >= rows * dim && mu.len >= k * dim && g.len >= rows * k, "desc_centroid_grad: inputs too short");
        assert!(dmu.len >= k * dim, "desc_centroid_grad: output too short");
        self.launched(unsafe { ops_desc::centroid_grad(self.l(), rows, k, dim, self.p(z), self.p(mu), self.p(g), self.p(dmu)) });
    }
    // ==== end DESC ====
    fn kin_argmax_merge(
        &self,
        rows: usize,
        keys: usize,
        dim: usize,
        key_base: usize,
        q: &Self::Buf,
        k: &Self::Buf,
        best: &mut Self::Buf,
        best_idx: &mut Self::Buf,
    ) {
        assert!(q.len >= rows * dim && k.len >= keys * dim, "kin_argmax_merge: q/k shorter than the tile");
        assert!(best.len >= rows && best_idx.len >= rows, "kin_argmax_merge: best/best_idx shorter than rows");
        self.launched(unsafe {
            super::ops_argmax::kin_argmax(
                self.l(),
                rows,
                keys,
                dim,
                key_base,
                self.p(q),
                self.p(k),
                self.p(best),
                self.p(best_idx),
            )
        });
    }

    fn knn_topk_merge(
        &self,
        rows: usize,
        cols: usize,
        k: usize,
        key_base: usize,
        self_base: Option<usize>,
        prod: &Self::Buf,
        q_norms: &Self::Buf,
        k_norms: &Self::Buf,
        dist2: &mut Self::Buf,
        index: &mut Self::Buf,
    ) {
        assert!(prod.len >= rows * cols && q_norms.len >= rows && k_norms.len >= cols, "knn_topk_merge: inputs shorter than the tile");
        assert!(dist2.len >= rows * k && index.len >= rows * k, "knn_topk_merge: lists shorter than rows × k");
        self.launched(unsafe {
            super::ops_knn::knn_topk_merge(
                self.l(),
                &super::ops_knn::KnnTile { rows, cols, k, key_base, self_base },
                self.p(prod),
                self.p(q_norms),
                self.p(k_norms),
                self.p(dist2),
                self.p(index),
            )
        });
    }

    fn mmd_pairwise_sums(&self, delta: &[f32], genes: usize, a: &[f64], b: &[f64], rbf_coefs: &[f64], u: &mut [f64], v: &mut [f64]) {
        let n = a.len();
        assert!(genes > 0 && delta.len() == n * genes, "mmd_pairwise_sums: delta is not [n, genes]");
        assert!(b.len() == n && u.len() == n && v.len() == n, "mmd_pairwise_sums: length mismatch");
        if n == 0 {
            return;
        }
        let mut d = self.alloc(4 * delta.len());
        self.htod(&mut d, 0, f32_bytes(delta));
        // One f64 scratch: a, b, s, u, v, n values each.
        let mut m = self.scratch64(5 * n);
        let ab: Vec<u8> = a.iter().chain(b).flat_map(|x| x.to_ne_bytes()).collect();
        self.htod(&mut m, 0, &ab);
        let base = m.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m));
        let at = |k: u64| DevPtr(base.0 + 8 * k * n as u64);
        let delta = d.as_ref().map_or(DevPtr(0), |m| self.dev.addr(m));
        let p = ops::MmdPtrs { delta, a: at(0), b: at(1), s: at(2), u: at(3), v: at(4) };
        self.launched(unsafe { ops::mmd_pairwise(self.l(), n, genes, rbf_coefs, &p) });
        u.copy_from_slice(&self.read64(&m, 3 * n, n));
        v.copy_from_slice(&self.read64(&m, 4 * n, n));
    }
}
