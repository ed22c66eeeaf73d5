//! Replays the fuzz corpus kept in `fuzz/corpus/` (issue #15 item 12)
//! through the same entry points libFuzzer drives (`acsleuth::data::fuzz`):
//! no input may panic, and the seeds made from real data
//! (`scripts/fuzz_seeds.py`) must read as valid inputs, so that the
//! fuzzer starts inside the formats. Findings are kept in the corpus as
//! `regression_*` files, each with a named test in the reader it broke.

use std::path::Path;

type Harness = fn(&[u8], &Path) -> bool;

fn replay(target: &str, harness: Harness, valid_prefixes: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let scratch = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&p).unwrap();
        let ok = std::panic::catch_unwind(|| harness(&bytes, scratch.path())).unwrap_or_else(|_| panic!("{target}/{name} panicked"));
        if valid_prefixes.iter().any(|v| name.starts_with(v)) {
            assert!(ok, "seed {target}/{name} does not read as a valid input");
        }
        n += 1;
    }
    assert!(n >= 3, "{target}: only {n} corpus files");
    eprintln!("{target}: {n} corpus inputs replayed");
}

#[test]
fn store_corpus_replays_without_panics() {
    replay("store", acsleuth::data::fuzz::store, &["acsleuth_"]);
}

#[test]
fn h5ad_corpus_replays_without_panics() {
    replay("h5ad", acsleuth::data::fuzz::h5ad, &["anndata_", "acsleuth_", "fixture_full", "fixture_dense", "fixture_csc"]);
}

#[test]
fn tenx_corpus_replays_without_panics() {
    replay("tenx", acsleuth::data::fuzz::tenx, &["mtx_"]);
}
