//! Issue #15 item 13: kill testing. `run`, `detect` and `convert` are
//! SIGKILLed at 20 moments spread over an uninterrupted run's duration
//! (every module of `run` and the output phase), and rerun each time.
//! While each runs and after each kill, the output folder holds either
//! none or all of the final outputs; every rerun ends with outputs
//! byte-identical to an uninterrupted run (report.json and the checkpoint
//! notes compared without their timing fields and the list of resumed
//! modules) and no temporaries.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acsleuth::data::simulate::{simulate_dataset, SetKind, SimConfig, Simulator};
use acsleuth::data::store::{write_dataset, Layout};

/// Moments per command.
const MOMENTS: u64 = 20;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_acsleuth"))
}

fn run_ok(args: &[String]) {
    let o = bin().args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A reference/target pair of `n` cells each as stores under `dir`.
fn data(dir: &Path, n: usize, genes: usize) -> (String, String) {
    let sim = Simulator::new(SimConfig { n_ref: n, n_target: n, n_genes: genes, n_anomaly_types: 2, anomaly_ratio: 0.15, seed: 5, ..SimConfig::default() }).unwrap();
    let (r, t) = (dir.join("ref.acs"), dir.join("tgt.acs"));
    write_dataset(&r, &simulate_dataset(&sim, SetKind::Reference).unwrap(), Layout::Csr).unwrap();
    write_dataset(&t, &simulate_dataset(&sim, SetKind::Target).unwrap(), Layout::Csr).unwrap();
    (r.to_string_lossy().into_owned(), t.to_string_lossy().into_owned())
}

/// Every file under `p` (a file or a folder), relative path → bytes;
/// JSON files without their timing fields.
fn contents(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![p.to_path_buf()];
    while let Some(q) = stack.pop() {
        if q.is_dir() {
            for e in std::fs::read_dir(&q).unwrap().flatten() {
                stack.push(e.path());
            }
            continue;
        }
        let rel = q.strip_prefix(p).unwrap_or(&q).to_string_lossy().into_owned();
        let bytes = std::fs::read(&q).unwrap();
        let bytes = if q.extension().is_some_and(|e| e == "json") { without_timings(&bytes) } else { bytes };
        out.push((rel, bytes));
    }
    out.sort();
    out
}

/// A JSON document without the keys that describe the run rather than its
/// results: measured seconds, and `resumed` (the modules a rerun took from
/// checkpoints).
fn without_timings(bytes: &[u8]) -> Vec<u8> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !k.contains("seconds") && k != "timings" && k != "resumed");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    strip(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// Hidden entries (temporaries, staging folders, locks) in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect()
}

/// What one kill test checks: the command, where its final outputs are
/// (names inside `out`, or `out` itself when `final_set` is empty) and
/// how to compare them.
struct KillTest {
    args: Vec<String>,
    /// Added to the killed runs only (`run --no-resume`: each killed run
    /// starts its modules afresh instead of resuming the last rerun's).
    kill_args: Vec<String>,
    out: PathBuf,
    final_set: &'static [&'static str],
}

impl KillTest {
    /// Final outputs present now: a count out of `final_set.len()` (or
    /// of 1 when the output is `out` itself).
    fn present(&self) -> usize {
        if self.final_set.is_empty() {
            return self.out.exists() as usize;
        }
        self.final_set.iter().filter(|f| self.out.join(f).exists()).count()
    }

    fn complete(&self) -> usize {
        self.final_set.len().max(1)
    }

    fn outputs(&self) -> Vec<(String, Vec<u8>)> {
        if self.final_set.is_empty() {
            return contents(&self.out);
        }
        let mut v = vec![];
        for f in self.final_set {
            for (rel, b) in contents(&self.out.join(f)) {
                v.push((format!("{f}/{rel}"), b));
            }
        }
        v
    }

    /// Kills at `MOMENTS` moments spread over `full`; returns how many
    /// runs were killed before they ended. A run that ends before its
    /// moment (the machine got faster) shortens `full` to its own duration
    /// and its moment is tried once more.
    fn run(&self, clean: &[(String, Vec<u8>)], mut full: Duration) -> u64 {
        let parent = self.out.parent().unwrap().to_path_buf();
        let mut killed = 0;
        for k in 1..=MOMENTS {
            for attempt in 0..2 {
                let started = Instant::now();
                let mut child = bin().args(&self.args).args(&self.kill_args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
                let at = started + full.mul_f64(k as f64 / (MOMENTS + 1) as f64);
                while Instant::now() < at && child.try_wait().unwrap().is_none() {
                    let n = self.present();
                    assert!(n == 0 || n == self.complete(), "moment {k}: a partial set ({n} of {})", self.complete());
                    std::thread::sleep(Duration::from_micros(500));
                }
                let ended = child.try_wait().unwrap().is_some();
                if !ended {
                    // SAFETY: signalling our own child by pid.
                    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
                    killed += 1;
                }
                child.wait().unwrap();
                if ended {
                    full = full.min(started.elapsed());
                }
                let n = self.present();
                assert!(n == 0 || n == self.complete(), "kill {k} left a partial set ({n} of {})", self.complete());
                run_ok(&self.args);
                let got = self.outputs();
                let differ: Vec<&String> = got.iter().filter(|g| !clean.contains(g)).map(|g| &g.0).collect();
                assert!(got.len() == clean.len() && differ.is_empty(), "kill {k}: the rerun's outputs differ from an uninterrupted run's: {differ:?}");
                for d in [&parent, &self.out, &self.out.join("checkpoints")] {
                    assert!(leftovers(d).is_empty(), "kill {k}: left {:?} in {}", leftovers(d), d.display());
                }
                if !ended || attempt == 1 {
                    break;
                }
            }
        }
        killed
    }
}

/// Runs the command once to completion (the reference outputs and the
/// duration the kill moments spread over), then the kill test.
fn kill_test(args: Vec<String>, kill_args: &[&str], out: PathBuf, final_set: &'static [&'static str]) -> u64 {
    let t = KillTest { args, kill_args: strings(kill_args), out, final_set };
    let started = Instant::now();
    run_ok(&t.args);
    let full = started.elapsed();
    let clean = t.outputs();
    assert!(!clean.is_empty());
    // Each kill starts from the previous state (the rerun's complete set):
    // the first from none.
    if t.out.is_dir() {
        std::fs::remove_dir_all(&t.out).unwrap();
    } else {
        std::fs::remove_file(&t.out).unwrap();
    }
    let killed = t.run(&clean, full);
    eprintln!("{}: {killed} of {MOMENTS} runs killed (uninterrupted: {full:?})", t.args[0]);
    killed
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn killed_run_leaves_no_partial_set_and_rerun_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 300, 400);
    let out = dir.path().join("res");
    let args = strings(&[
        "run", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--device", "cpu", "--n-hvg", "200", "--seed", "1",
        "--epochs-prepare", "2", "--epochs-train", "1", "--anomaly-ratio", "0.15", "--n-subtypes", "2",
    ]);
    let set = &["cells.tsv", "embedding_calls.png", "embedding_subtypes.png", "report.json", "scores.png", "target.h5ad"];
    let killed = kill_test(args, &["--no-resume"], out, set);
    assert!(killed >= MOMENTS * 3 / 4, "only {killed} runs were killed");
}

#[test]
fn killed_detect_leaves_no_partial_set_and_rerun_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 800, 600);
    let out = dir.path().join("det");
    let args = strings(&["detect", "--reference", &r, "--target", &t, "--out", out.to_str().unwrap(), "--device", "cpu", "--n-hvg", "300", "--seed", "1", "--save-model"]);
    let killed = kill_test(args, &[], out, &["scores.tsv", "report.json", "model.safetensors"]);
    assert!(killed >= MOMENTS * 3 / 4, "only {killed} runs were killed");
}

#[test]
fn killed_convert_leaves_no_partial_output_and_rerun_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (_, t) = data(dir.path(), 6000, 2000);
    let h5ad = dir.path().join("t.h5ad");
    let killed = kill_test(strings(&["convert", &t, h5ad.to_str().unwrap(), "--force"]), &[], h5ad.clone(), &[]);
    // A conversion takes tens of milliseconds: the late moments may come
    // after it ended, the early ones before it began writing.
    assert!(killed >= MOMENTS / 2, "only {killed} conversions were killed");
    let back = dir.path().join("back.acs");
    let killed = kill_test(strings(&["convert", h5ad.to_str().unwrap(), back.to_str().unwrap(), "--force"]), &[], back, &[]);
    assert!(killed >= MOMENTS / 2, "only {killed} conversions were killed");
}
