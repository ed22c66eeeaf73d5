//! Parameters, the parameter walk ([`Module`]), zeroing gradients, the Adam
//! optimiser, cosine annealing, and safetensors checkpoints.
//!
//! Every model implements [`Module::visit`], which hands each named tensor to
//! a closure; zeroing all gradients, one optimiser step and saving/loading
//! are then one call each over any model.

use std::collections::HashMap;
use std::path::Path;

use crate::backend::{AdamStep, Backend};
use crate::{Error, Result};

/// A named tensor of a layer: a trainable parameter (with gradient and, once
/// an optimiser ran, its Adam moments) or a persistent buffer (BN running
/// statistics, spectral-norm vectors: `trainable = false`, empty `grad`).
pub struct Param<B: Backend> {
    pub value: B::Buf,
    pub grad: B::Buf,
    /// PyTorch shape, e.g. `[out, in]` for a Linear weight.
    pub shape: Vec<usize>,
    pub trainable: bool,
    /// A 2-D tensor stored as the transpose of `shape` (`[in, out]` for a
    /// Linear weight of shape `[out, in]`): the input layers keep their
    /// weights so, see `DenseConfig::sparse_input`. Checkpoints and
    /// [`Param::torch_values`] use PyTorch's layout either way.
    pub transposed: bool,
    /// Adam first/second moments, allocated by the first step.
    pub adam: Option<(B::Buf, B::Buf)>,
}

impl<B: Backend> Param<B> {
    pub fn new(be: &B, shape: &[usize]) -> Self {
        let n = shape.iter().product();
        Param { value: be.zeros(n), grad: be.zeros(n), shape: shape.to_vec(), trainable: true, transposed: false, adam: None }
    }
    /// A persistent non-trainable buffer.
    pub fn buffer(be: &B, shape: &[usize], fill: f32) -> Self {
        let n = shape.iter().product();
        let mut value = be.zeros(n);
        if fill != 0.0 {
            be.fill(&mut value, fill);
        }
        Param { value, grad: be.zeros(0), shape: shape.to_vec(), trainable: false, transposed: false, adam: None }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `buf` (the value or the gradient) in PyTorch's layout, `shape`.
    pub fn torch_layout(&self, be: &B, buf: &B::Buf) -> Vec<f32> {
        let v = be.download(buf);
        match (self.transposed, self.shape.as_slice()) {
            // Stored [cols, rows]: back to [rows, cols].
            (true, &[rows, cols]) => transpose(&v, cols, rows),
            _ => v,
        }
    }

    /// The value in PyTorch's layout.
    pub fn torch_values(&self, be: &B) -> Vec<f32> {
        self.torch_layout(be, &self.value)
    }

    /// Set the value from PyTorch's layout.
    pub fn set_torch_values(&mut self, be: &B, v: &[f32]) {
        assert_eq!(v.len(), self.numel(), "set_torch_values: wrong length");
        match (self.transposed, self.shape.as_slice()) {
            (true, &[rows, cols]) => be.write(&mut self.value, 0, &transpose(v, rows, cols)),
            _ => be.write(&mut self.value, 0, v),
        }
    }

    /// Switch a 2-D parameter (no optimiser state yet) to transposed
    /// storage, keeping its values.
    pub fn store_transposed(&mut self, be: &B) {
        assert!(self.shape.len() == 2 && self.adam.is_none() && !self.transposed, "store_transposed: a fresh 2-D parameter");
        let v = self.torch_values(be);
        self.transposed = true;
        self.set_torch_values(be, &v);
    }
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// Anything that owns named tensors.
pub trait Module<B: Backend> {
    /// Call `f(name, tensor)` for every tensor, names joined to `prefix` as
    /// PyTorch's `state_dict` would (see [`super::join`]).
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<B>));
}

/// Set every gradient of `m` to zero.
pub fn zero_grads<B: Backend>(be: &B, m: &mut dyn Module<B>) {
    m.visit("", &mut |_, p| {
        if p.trainable {
            be.fill(&mut p.grad, 0.0);
        }
    });
}

/// Number of trainable scalars.
pub fn count_trainable<B: Backend>(m: &mut dyn Module<B>) -> usize {
    let mut n = 0;
    m.visit("", &mut |_, p| {
        if p.trainable {
            n += p.numel();
        }
    });
    n
}

/// Adam / AdamW as `torch.optim.Adam(params, lr, betas, eps, weight_decay)`
/// (coupled L2 decay) or `AdamW` (`decoupled = true`).
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    /// Steps taken so far.
    pub t: u32,
}

impl Adam {
    pub fn new(lr: f32, beta1: f32, beta2: f32) -> Self {
        Adam { lr, beta1, beta2, eps: 1e-8, weight_decay: 0.0, decoupled: false, t: 0 }
    }
    pub fn weight_decay(mut self, wd: f32, decoupled: bool) -> Self {
        self.weight_decay = wd;
        self.decoupled = decoupled;
        self
    }
    /// One step over every trainable tensor of `m` (one fused kernel per
    /// tensor).
    pub fn step<B: Backend>(&mut self, be: &B, m: &mut dyn Module<B>) {
        self.t += 1;
        let s = AdamStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
            t: self.t,
        };
        m.visit("", &mut |_, p| {
            if !p.trainable {
                return;
            }
            let n = p.numel();
            let (mm, vv) = p.adam.get_or_insert_with(|| (be.zeros(n), be.zeros(n)));
            be.adam_step(&s, &mut p.value, &p.grad, mm, vv);
        });
    }
}

/// Learning rate of `torch.optim.lr_scheduler.CosineAnnealingLR` with
/// `eta_min = 0` after `epoch` scheduler steps of `t_max`:
/// `base · (1 + cos(π·epoch/t_max)) / 2` (the closed form the recursive
/// PyTorch update follows).
pub fn cosine_lr(base: f32, epoch: usize, t_max: usize) -> f32 {
    if t_max == 0 {
        return base;
    }
    let c = (std::f64::consts::PI * epoch as f64 / t_max as f64).cos();
    (base as f64 * (1.0 + c) / 2.0) as f32
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `safetensors::serialize` with the header's keys sorted: the crate
/// writes its metadata (and tensor index) in a HashMap's order, which
/// changes from run to run, so the same model gave different bytes. The
/// data section is unchanged (its offsets are relative to its start).
pub fn serialize<'a>(
    views: Vec<(String, safetensors::tensor::TensorView<'a>)>,
    meta: Option<HashMap<String, String>>,
) -> std::result::Result<Vec<u8>, String> {
    let bytes = safetensors::serialize(views, meta).map_err(|e| e.to_string())?;
    let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| "short safetensors output")?) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| e.to_string())?;
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut e: Vec<(String, serde_json::Value)> = m.into_iter().collect();
                e.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(e.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let mut h = serde_json::to_vec(&sorted(header)).map_err(|e| e.to_string())?;
    // The data section starts at an 8-byte boundary (spaces pad, as the crate does).
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + h.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Save every tensor of `m` (parameters and buffers) to a safetensors file,
/// named as in PyTorch. Written to a temporary file and renamed, so a failed
/// save never leaves a half-written checkpoint.
pub fn save<B: Backend>(be: &B, m: &mut dyn Module<B>, path: &Path, meta: Option<HashMap<String, String>>) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    m.visit("", &mut |name, p| {
        tensors.push((name.to_string(), p.shape.clone(), to_bytes(&p.torch_values(be))));
    });
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Other(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = serialize(views, meta).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    // Written through File::create (mode 0666 less the umask, as every
    // other output; safetensors' own writer makes the file 0600), synced,
    // then renamed over the final name.
    // A temporary sibling named with the process id and registered: a stop
    // (SIGINT in the CLI) removes it, and so does the next run beside it
    // after a kill.
    let tmp = crate::cleanup::temp_sibling(path);
    let _reg = crate::cleanup::register(tmp.clone());
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Load every tensor of `m` from a safetensors file written by [`save`] (or
/// by PyTorch with the same names). Every tensor must be present with the
/// same shape and dtype F32; extra tensors in the file are ignored. The one
/// exception is a BatchNorm's `num_batches_tracked`, which older
/// checkpoints (the scorer's, before its BN shared `nn::norm::BnParams`)
/// lack: it then keeps its value, as PyTorch loads a state dict written
/// before the counter existed.
pub fn load<B: Backend>(be: &B, m: &mut dyn Module<B>, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::corrupt(path, format!("not a safetensors file: {e}")))?;
    let mut err: Option<Error> = None;
    m.visit("", &mut |name, p| {
        if err.is_some() {
            return;
        }
        if name.ends_with("num_batches_tracked") && st.tensor(name).is_err() {
            return;
        }
        match read_tensor(&st, name, &p.shape) {
            Ok(v) => p.set_torch_values(be, &v),
            Err(msg) => err = Some(Error::corrupt(path, msg)),
        }
    });
    err.map_or(Ok(()), Err)
}

/// One F32 tensor of a safetensors file, checked against `shape`.
pub fn read_tensor(st: &safetensors::SafeTensors<'_>, name: &str, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
    let t = st.tensor(name).map_err(|_| format!("tensor {name} missing"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!("tensor {name}: dtype {:?}, expected F32", t.dtype()));
    }
    if t.shape() != shape {
        return Err(format!("tensor {name}: shape {:?}, expected {shape:?}", t.shape()));
    }
    Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 10: model files were 0600 (safetensors' own writer)
    /// while every other output follows the umask; they now have the mode
    /// a plainly created file gets.
    #[cfg(unix)]
    #[test]
    fn saved_checkpoints_get_the_mode_of_any_other_output() {
        use crate::backend::CpuBackend;
        use crate::nn::BatchNorm1d;
        use std::os::unix::fs::PermissionsExt;
        let be = CpuBackend::new();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.tsv");
        std::fs::File::create(&plain).unwrap();
        let model = dir.path().join("m.safetensors");
        save(&be, &mut BatchNorm1d::new(&be, 2), &model, None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&model), mode(&plain));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "a temporary was left: {left:?}");
        load(&be, &mut BatchNorm1d::new(&be, 2), &model).unwrap();
    }

    /// A BatchNorm checkpoint written before `num_batches_tracked` was kept
    /// (the scorer's, until its BN became `BnParams`) still loads; any other
    /// missing tensor is an error.
    #[test]
    fn checkpoints_without_num_batches_tracked_load() {
        use crate::backend::CpuBackend;
        use crate::nn::BatchNorm1d;
        let be = CpuBackend::new();
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &Path, names: &[&str]| {
            let data: Vec<Vec<u8>> = names.iter().map(|_| to_bytes(&[2.0, 3.0])).collect();
            let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = names
                .iter()
                .zip(&data)
                .map(|(n, d)| (n.to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], d).unwrap()))
                .collect();
            safetensors::serialize_to_file(views, None, path).unwrap();
        };
        let old = dir.path().join("old.safetensors");
        write(&old, &["weight", "bias", "running_mean", "running_var"]);
        let mut bn = BatchNorm1d::new(&be, 2);
        load(&be, &mut bn, &old).unwrap();
        assert_eq!(be.download(&bn.params.running_var.value), [2.0, 3.0]);
        assert_eq!(be.download(&bn.params.num_batches_tracked.value), [0.0]);
        let broken = dir.path().join("broken.safetensors");
        write(&broken, &["weight", "bias", "running_mean"]);
        let e = load(&be, &mut BatchNorm1d::new(&be, 2), &broken).unwrap_err().to_string();
        assert!(e.contains("running_var missing"), "{e}");
    }

    /// Regression (kill test): the same model saved twice gave different
    /// bytes — safetensors writes its metadata in a HashMap's order. The
    /// sorted header is byte-stable and still reads back.
    #[test]
    fn serialized_bytes_do_not_depend_on_hash_order() {
        let data = to_bytes(&[1.0, 2.0, 3.0]);
        let once = || {
            let views = vec![
                ("b".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data).unwrap()),
                ("a".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data).unwrap()),
            ];
            let meta: HashMap<String, String> = (0..12).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
            serialize(views, Some(meta)).unwrap()
        };
        let first = once();
        for _ in 0..8 {
            assert_eq!(once(), first);
        }
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("a").unwrap().data(), data.as_slice());
        let (_, meta) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["key7"], "value 7");
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
    }

    /// Values of torch's CosineAnnealingLR(T_max = 4) from lr 1.
    #[test]
    fn cosine_schedule() {
        let want = [1.0, 0.853_553_4, 0.5, 0.146_446_6, 0.0];
        for (e, w) in want.iter().enumerate() {
            assert!((cosine_lr(1.0, e, 4) - w).abs() < 1e-6);
        }
    }
}
