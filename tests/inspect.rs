//! `acsleuth inspect` run as a user runs it: the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/h5ad")
        .join(name)
}

fn inspect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("the acsleuth binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn kang_lists_stim_with_both_conditions() {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/kang_ifnb_pbmc/kang_ifnb_counts.h5ad"));
    if !p.exists() {
        eprintln!("skipping: {} not present", p.display());
        return;
    }
    let o = inspect(&[p.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("13,999 cells × 14,053 genes"), "{out}");
    assert!(out.contains("raw counts"), "{out}");
    let stim = out
        .find("stim (categorical, 2 levels)")
        .expect("stim column listed");
    let block = &out[stim..];
    let (ctrl, stim_line) = (block.find("CTRL").unwrap(), block.find("STIM").unwrap());
    assert!(
        block[ctrl..].lines().next().unwrap().contains("6,548"),
        "{out}"
    );
    assert!(
        block[stim_line..].lines().next().unwrap().contains("7,451"),
        "{out}"
    );
}

#[test]
fn json_output_on_a_fixture() {
    let o = inspect(&["--json", fixture("dense.h5ad").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(v["format"], "h5ad");
    assert_eq!(v["summary"]["rows"], 6);
    assert_eq!(v["summary"]["kind"], "scaled");
    assert_eq!(v["h5ad"]["obsm"][0], "X_pca");
    let group = v["obs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "group")
        .unwrap();
    assert_eq!(group["source"], "categorical");
    assert_eq!(group["missing"], 1);
    let score = v["obs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "score")
        .unwrap();
    assert_eq!(score["kind"], "numeric");
    assert_eq!(score["range"]["max"], 3.0);
}

#[test]
fn level_lists_are_capped() {
    let o = inspect(&["--max-levels", "2", fixture("dense.h5ad").to_str().unwrap()]);
    assert!(o.status.success());
    let out = stdout(&o);
    // `note` has 6 distinct values: 2 shown, 4 summed up.
    assert!(out.contains("... 4 more levels (4 cells)"), "{out}");
}

#[test]
fn bad_input_fails_with_one_line() {
    for (name, want) in [
        ("not_hdf5.h5ad", "unknown format"),
        ("no_x.h5ad", "no X matrix"),
        ("missing.h5ad", "no such file"),
    ] {
        let o = inspect(&[fixture(name).to_str().unwrap()]);
        assert!(!o.status.success(), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let o = inspect(&["--raw", fixture("dense.h5ad").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".raw"));
}
