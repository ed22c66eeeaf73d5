//! Entry points for fuzzing the readers (issue #15 item 12). Each takes
//! arbitrary bytes, lays them out as its reader's input in a scratch
//! folder and reads them the way the commands do; an error is a pass, a
//! panic, a hang or an abort is a finding. `fuzz/` drives them under
//! libFuzzer (`cargo +nightly fuzz run store`); `tests/fuzz_corpus.rs`
//! replays the corpus kept in `fuzz/corpus/` in every `cargo test`.
//!
//! Inputs of several files are one byte string cut at [`SEP`].

use std::path::Path;

use crate::data::io::{read_dataset, ReadOptions};
use crate::data::store::Store;

/// Cuts a fuzz input into the files of a multi-file format.
pub const SEP: &[u8] = b"--8<--";

/// The first `n` parts of `bytes` cut at [`SEP`] (missing parts empty).
pub fn parts(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = bytes;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

/// Joins files into one fuzz input (the seed corpus is made this way).
pub fn join(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(f);
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    // A scratch folder the harness owns: failing to write it is not a
    // finding about the reader.
    std::fs::write(dir.join(name), bytes).expect("fuzz scratch folder is writable");
}

/// A store folder: matrix.bin, genes.txt, cells.txt, obs.tsv, obs.json
/// (the last two left out when empty). Opened
/// (header, CRCs, CSR structure, names), then every row read and the
/// whole store turned into a dataset.
pub fn store(bytes: &[u8], scratch: &Path) -> bool {
    let dir = scratch.join("s.acs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz scratch folder is writable");
    let p = parts(bytes, 5);
    for (name, b) in ["matrix.bin", "genes.txt", "cells.txt", "obs.tsv", "obs.json"].iter().zip(&p) {
        if !(name.starts_with("obs") && b.is_empty()) {
            write(&dir, name, b);
        }
    }
    match Store::open(&dir) {
        Ok(s) => {
            for i in 0..s.n_cells() {
                let _ = s.row(i);
            }
            s.to_dataset().is_ok()
        }
        Err(_) => false,
    }
}

/// An .h5ad file read as `X` and as `.raw`, as the commands do.
pub fn h5ad(bytes: &[u8], scratch: &Path) -> bool {
    let path = scratch.join("x.h5ad");
    write(scratch, "x.h5ad", bytes);
    let x = read_dataset(&path, &ReadOptions { use_raw: false }).is_ok();
    let _ = read_dataset(&path, &ReadOptions { use_raw: true });
    let _ = crate::data::h5ad::describe_h5ad(&path);
    x
}

/// A 10x folder: matrix.mtx (or .mtx.gz when the part starts with gzip's
/// magic), barcodes.tsv, features.tsv.
pub fn tenx(bytes: &[u8], scratch: &Path) -> bool {
    let dir = scratch.join("tenx");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz scratch folder is writable");
    let p = parts(bytes, 3);
    let mtx = if p[0].starts_with(&[0x1f, 0x8b]) { "matrix.mtx.gz" } else { "matrix.mtx" };
    write(&dir, mtx, p[0]);
    write(&dir, "barcodes.tsv", p[1]);
    write(&dir, "features.tsv", p[2]);
    read_dataset(&dir, &ReadOptions::default()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_join_are_inverse() {
        let files: [&[u8]; 3] = [b"a", b"", b"bc"];
        assert_eq!(parts(&join(&files), 3), files.to_vec());
        assert_eq!(parts(b"only", 3), vec![&b"only"[..], b"", b""]);
        let extra = join(&[b"a", b"b", b"c", b"d"]);
        assert_eq!(parts(&extra, 2), vec![&b"a"[..], &extra[1 + SEP.len()..]]);
    }
}
