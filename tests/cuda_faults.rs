//! A failing GPU ends a run with a one-line error, never a panic and never
//! a half-written output: the CUDA backend's host code on the emulated
//! device with injected faults (an allocation that fails, a memory limit).
//! The first device error is sticky (later operations are no-ops, downloads
//! give zeros) and `Backend::check`, called by the pipeline at each epoch,
//! pass and scorer step, turns it into `Error::Device`.

use acsleuth::backend::cuda::emu::{emu_backend, emu_backend_with_faults, EmuFaults};
use acsleuth::backend::{Backend, Gemm, Trans};
use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};
use acsleuth::pipeline::detect::{detect_with, DetectOptions};
use acsleuth::pipeline::{DetectConfig, PreprocessMode, ScoreMethod};
use acsleuth::Error;

mod common;
use common::Rng;

#[test]
fn device_errors_are_sticky_not_panics() {
    let be = emu_backend_with_faults(EmuFaults { fail_alloc: Some(3), ..Default::default() });
    let a = be.upload(&[1.0, -2.0, 3.0]); // allocation 1
    let mut b = be.zeros(3); // allocation 2
    be.add(&a, &a, &mut b);
    assert_eq!(be.download(&b), [2.0, -4.0, 6.0]);
    be.check().unwrap();
    let mut c = be.zeros(3); // allocation 3: fails
    assert!(be.error().is_some());
    // Everything after is a no-op: no launches, no allocations, zeros back.
    be.add(&a, &a, &mut c);
    be.gemm(&Gemm::new(Trans::N, Trans::N, 1, 1, 3), &a, &a, &mut b);
    let _d = be.zeros(1000);
    assert_eq!(be.device().allocations(), 3);
    assert_eq!(be.download(&a), [0.0; 3]);
    assert_eq!(be.download(&c), [0.0; 3]);
    assert_eq!(be.sum(&a), 0.0);
    assert_eq!(be.l1_loss(&a, &b, 1.0, &mut c), 0.0);
    match be.check() {
        Err(Error::Device(msg)) => {
            assert!(msg.starts_with("cuda-emu device error: allocation 3 of 12 bytes failed (injected fault)"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        other => panic!("expected a device error, got {other:?}"),
    }
    // The first error stays the error.
    assert!(be.check().unwrap_err().to_string().contains("allocation 3"));
}

#[test]
fn out_of_memory_names_the_cause_and_a_way_out() {
    let be = emu_backend_with_faults(EmuFaults { memory_limit: Some(1024), ..Default::default() });
    {
        let _a = be.upload(&[0.5; 200]); // 800 bytes
        assert_eq!(be.device().live_bytes(), 800);
    }
    assert_eq!(be.device().live_bytes(), 0, "freed buffers return their memory");
    let _a = be.upload(&[0.5; 200]);
    let _b = be.zeros(100); // 400 more: over 1024
    let e = be.check().unwrap_err().to_string();
    assert!(e.contains("allocation of 400 bytes: out of memory (800 of 1024 bytes"), "{e}");
    assert!(e.contains("out of GPU memory: try a smaller batch_size"), "{e}");
    assert!(e.contains("--device cpu"), "{e}");
}

#[test]
fn fault_spec_parses() {
    assert_eq!(EmuFaults::parse("").unwrap(), EmuFaults::default());
    assert_eq!(EmuFaults::parse("alloc=7, memory=4096").unwrap(), EmuFaults { fail_alloc: Some(7), memory_limit: Some(4096) });
    assert!(EmuFaults::parse("alloc").unwrap_err().contains("key=value"));
    assert!(EmuFaults::parse("launch=3").unwrap_err().contains("unknown fault"));
    assert!(EmuFaults::parse("memory=1G").unwrap_err().contains("whole number"));
}


/// Log-expression-like cells (values ≥ 0, a fifth zeros), the last quarter
/// of the target shifted in the first genes.
fn data(n_ref: usize, n_tgt: usize, genes: usize) -> (Dataset, Dataset) {
    let mut r = Rng(5);
    let mut cells = |n: usize, prefix: &str, shifted: usize| {
        let mut v = Vec::with_capacity(n * genes);
        for i in 0..n {
            for g in 0..genes {
                let shift = if i >= n - shifted && g < genes / 5 { 1.5 } else { 0.0 };
                let x = 1.0 + (g % 3) as f64 * 0.7 + shift + 0.4 * (r.next() - 0.5);
                v.push(if r.next() < 0.2 { 0.0 } else { x as f32 });
            }
        }
        Dataset {
            x: Matrix::Csr(CsrMatrix::from_dense(&DenseMatrix { rows: n, cols: genes, data: v })),
            cell_names: (0..n).map(|i| format!("{prefix}{i}")).collect(),
            gene_names: (0..genes).map(|g| format!("G{g}")).collect(),
            obs: vec![],
        }
    };
    (cells(n_ref, "r", 0), cells(n_tgt, "t", n_tgt / 4))
}

fn tiny_config() -> DetectConfig {
    DetectConfig {
        score: ScoreMethod::Paper,
        batch_size: 32,
        mem_size: 64,
        hidden_dim: 32,
        latent_dim: 16,
        critic_hidden: 16,
        scorer_steps: 3,
        prepare_epochs: 1,
        train_epochs: 1,
        preprocess: PreprocessMode::Never,
        ..DetectConfig::default()
    }
}

/// A device that fails during training, during the deviations or scoring,
/// or while the checkpoint is taken: `detect_with` returns the device
/// error (not a panic, not a numerical complaint about the zeros it read)
/// and leaves no model file.
#[test]
fn detect_on_a_failing_device_returns_the_error_and_writes_nothing() {
    let (reference, target) = data(64, 48, 16);
    let cfg = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    let opts = DetectOptions { model_path: Some(model.clone()), ..Default::default() };
    let clean = emu_backend();
    detect_with(&clean, &reference, &target, &cfg, &opts).unwrap();
    assert!(model.exists());
    std::fs::remove_file(&model).unwrap();
    let total = clean.device().allocations();
    eprintln!("{total} device allocations in the clean run");
    for n in [total / 3, 2 * total / 3, total] {
        let be = emu_backend_with_faults(EmuFaults { fail_alloc: Some(n), ..Default::default() });
        match detect_with(&be, &reference, &target, &cfg, &opts) {
            Err(Error::Device(msg)) => assert!(msg.contains(&format!("allocation {n} of")), "{msg}"),
            Err(e) => panic!("allocation {n}/{total}: expected a device error, got {e}"),
            Ok(_) => panic!("allocation {n}/{total}: the run succeeded on a failed device"),
        }
        assert!(!model.exists(), "allocation {n}/{total}: a model was written");
    }
}

/// The binary: one line on stderr, exit status 1 (a panic is 101), and no
/// scores, deviations, report or model in the output folder.
#[test]
fn cli_on_a_failing_device_prints_one_line_and_writes_nothing() {
    let (reference, target) = data(64, 48, 16);
    let dir = tempfile::tempdir().unwrap();
    let (rp, tp) = (dir.path().join("ref.h5ad"), dir.path().join("tgt.h5ad"));
    acsleuth::data::h5ad::write_h5ad(&rp, &reference, &[]).unwrap();
    acsleuth::data::h5ad::write_h5ad(&tp, &target, &[]).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "score = \"paper\"\nbatch_size = 32\nmem_size = 64\nhidden_dim = 32\nlatent_dim = 16\ncritic_hidden = 16\nscorer_steps = 3\n").unwrap();
    let out = dir.path().join("out");
    let run = |faults: &str, device: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_acsleuth"))
            .args(["detect", "--reference", rp.to_str().unwrap(), "--target", tp.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--config", cfg.to_str().unwrap()])
            .args(["--epochs-prepare", "1", "--epochs-train", "1", "--no-preprocess", "--device", device])
            .args(extra)
            .env("ACSLEUTH_EMU_FAULTS", faults)
            .output()
            .unwrap()
    };
    let o = run("alloc=600", "emu", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: cuda-emu device error: allocation 600 of "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for f in ["scores.tsv", "deviations.tsv", "report.json", "model.safetensors"] {
        assert!(!out.join(f).exists(), "{f} was written");
    }
    // A bad fault spec is a configuration error.
    let o = run("alloc=x", "emu", &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("ACSLEUTH_EMU_FAULTS"));
    // --gemm-precision other than f32 is refused on an explicit --device cpu.
    let o = run("", "cpu", &["--gemm-precision", "bf16"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--gemm-precision bf16 needs the CUDA backend"), "{stderr}");
}
