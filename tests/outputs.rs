//! Issue #15 items 3–5 through the binary: all-or-nothing output sets,
//! temporaries cleaned up on a stop and after a kill, one writer per
//! output folder.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use acsleuth::data::simulate::{simulate_dataset, SetKind, SimConfig, Simulator};
use acsleuth::data::store::{write_dataset, Layout};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_acsleuth"))
}

fn acsleuth(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small reference/target pair as stores under `dir`.
fn data(dir: &Path, n: usize) -> (String, String) {
    let sim = Simulator::new(SimConfig { n_ref: n, n_target: n, n_genes: 400, n_anomaly_types: 2, anomaly_ratio: 0.15, seed: 5, ..SimConfig::default() }).unwrap();
    let (r, t) = (dir.join("ref.acs"), dir.join("tgt.acs"));
    write_dataset(&r, &simulate_dataset(&sim, SetKind::Reference).unwrap(), Layout::Csr).unwrap();
    write_dataset(&t, &simulate_dataset(&sim, SetKind::Target).unwrap(), Layout::Csr).unwrap();
    (r.to_string_lossy().into_owned(), t.to_string_lossy().into_owned())
}

fn detect_args<'a>(r: &'a str, t: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["detect", "--reference", r, "--target", t, "--out", out, "--device", "cpu", "--n-hvg", "200", "--seed", "1"]
}

fn run_args<'a>(r: &'a str, t: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "run", "--reference", r, "--target", t, "--out", out, "--device", "cpu", "--n-hvg", "200", "--seed", "1", "--epochs-prepare", "2",
        "--epochs-train", "1", "--anomaly-ratio", "0.15", "--n-subtypes", "2",
    ]
}

/// Names in `dir` (empty when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Hidden entries acsleuth leaves beside or inside a folder (temporaries,
/// staging folders, locks).
fn leftovers(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n.starts_with('.')).collect()
}

#[test]
fn failed_input_check_creates_no_out_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 120);
    let out = dir.path().join("res");
    let mut args = detect_args(&r, &t, out.to_str().unwrap());
    args.extend(["--batch-key", "NOSUCH"]);
    let o = acsleuth(&args);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--batch-key NOSUCH"), "{}", text(&o.stderr));
    assert!(!out.exists(), "--out was created although the input check failed");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}

/// `run`'s outputs appear together: polled while it runs, the folder never
/// holds some of the final files without the others; reruns replace the
/// set as a whole and keep the checkpoints and the user's own files.
#[test]
fn output_set_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 200);
    let out = dir.path().join("res");
    let final_set = ["cells.tsv", "embedding_calls.png", "embedding_subtypes.png", "report.json", "scores.png", "target.h5ad"];
    for round in 0..2 {
        let mut child = bin().args(run_args(&r, &t, out.to_str().unwrap())).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut seen = 0usize;
        loop {
            let present: Vec<String> = names(&out).into_iter().filter(|n| final_set.contains(&n.as_str())).collect();
            assert!(present.is_empty() || present.len() == final_set.len(), "round {round}: partial set {present:?}");
            seen += 1;
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(seen > 10);
        let got = names(&out);
        for f in final_set {
            assert!(got.contains(&f.to_string()), "{got:?}");
        }
        assert!(got.contains(&"checkpoints".to_string()));
        if round == 0 {
            std::fs::write(out.join("my_notes.txt"), "mine").unwrap();
        }
    }
    assert_eq!(std::fs::read_to_string(out.join("my_notes.txt")).unwrap(), "mine");
    assert!(leftovers(dir.path()).is_empty() && leftovers(&out).is_empty(), "{:?} {:?}", leftovers(dir.path()), leftovers(&out));
}

/// `--out a/b/c` with `a/b` missing works as before (the parents are
/// made; `--out` itself appears with the complete set).
#[test]
fn out_with_missing_parents_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 120);
    let out = dir.path().join("a/b/res");
    let o = acsleuth(&detect_args(&r, &t, out.to_str().unwrap()));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(names(&out), ["report.json", "scores.tsv"]);
    assert!(leftovers(&dir.path().join("a/b")).is_empty());
}

#[test]
fn stale_temporaries_of_dead_processes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 120);
    let out = dir.path().join("res");
    // What a SIGKILLed run leaves: temporaries inside --out and its
    // checkpoints, a staging folder beside it (pid 999999: not running).
    std::fs::create_dir_all(out.join("checkpoints")).unwrap();
    std::fs::write(out.join(".cells.tsv.tmp-999999"), "partial").unwrap();
    std::fs::write(out.join("checkpoints/.module2.json.tmp-999999"), "partial").unwrap();
    std::fs::write(out.join(".acsleuth-spill-999999-0.f32"), "spill").unwrap();
    std::fs::create_dir(dir.path().join(".res.tmp-999999-0")).unwrap();
    let o = acsleuth(&detect_args(&r, &t, out.to_str().unwrap()));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    assert!(leftovers(&out.join("checkpoints")).is_empty());
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    assert!(out.join("scores.tsv").exists() && out.join("report.json").exists());
}

#[cfg(unix)]
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// SIGINT and SIGTERM stop a command cleanly: exit 128 + signal, no
/// temporaries, the previous outputs untouched.
#[cfg(unix)]
#[test]
fn sigint_and_sigterm_leave_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 300);
    let out = dir.path().join("res");
    let o = acsleuth(&detect_args(&r, &t, out.to_str().unwrap()));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before = std::fs::read(out.join("scores.tsv")).unwrap();
    let mut stopped = 0;
    for (sig, after_ms) in [(libc::SIGINT, 300u64), (libc::SIGTERM, 800), (libc::SIGINT, 1500)] {
        let mut args = run_args(&r, &t, out.to_str().unwrap());
        args.push("--no-resume");
        let child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        signal(child.id(), sig);
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            continue; // finished before the signal: nothing to check
        }
        assert_eq!(o.status.code(), Some(128 + sig), "{}", text(&o.stderr));
        assert!(leftovers(dir.path()).is_empty(), "beside: {:?}", leftovers(dir.path()));
        assert!(leftovers(&out).is_empty(), "inside: {:?}", leftovers(&out));
        assert!(leftovers(&out.join("checkpoints")).is_empty());
        assert_eq!(std::fs::read(out.join("scores.tsv")).unwrap(), before, "previous outputs changed");
        assert!(!out.join("cells.tsv").exists(), "a partial new set appeared");
        stopped += 1;
    }
    assert!(stopped >= 2, "only {stopped} of 3 runs were stopped by the signal");
}

/// A second command on the same --out fails at once, naming the holder.
#[test]
fn second_writer_on_one_out_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (r, t) = data(dir.path(), 120);
    let out = dir.path().join("res");
    let lock = acsleuth::output::lock::OutLock::acquire(&out).unwrap();
    let t0 = Instant::now();
    let o = acsleuth(&run_args(&r, &t, out.to_str().unwrap()));
    assert!(!o.status.success());
    assert!(t0.elapsed() < Duration::from_secs(5));
    let err = text(&o.stderr);
    let me = format!("pid {}", std::process::id());
    assert!(err.contains("another acsleuth command is writing this output folder") && err.contains(&me) && err.contains("host") && err.contains("started"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists());
    drop(lock);
    let o = acsleuth(&detect_args(&r, &t, out.to_str().unwrap()));
    assert!(o.status.success(), "{}", text(&o.stderr));
}
