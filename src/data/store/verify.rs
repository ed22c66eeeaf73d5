//! Checks run on every [`Store::open`]: each section's CRC32 against the
//! header, and the CSR structure (row pointers non-decreasing from 0 to
//! nnz, column indices in range and strictly increasing within each row).
//!
//! Sections are read by positioned reads in blocks of rows, hashed and
//! checked in parallel and the CRCs combined in order, so opening a store
//! costs one pass over its bytes from the page cache (measured with
//! `cargo run --release --example store_bench`) and none of its pages join
//! the resident set through the map.

use std::fs::File;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};

use super::format::{Header, Section};
use super::Layout;

/// Bytes per block of a parallel pass.
const BLOCK: u64 = 8 << 20;

/// Which section a damage was found in, as the error names it.
fn label(name: &str) -> &str {
    match name {
        "data" => "values (data)",
        "indices" => "column indices (indices)",
        _ => "row pointers (indptr)",
    }
}

fn mismatch(path: &Path, name: &str, s: &Section, got: u32) -> Error {
    Error::corrupt(
        path,
        format!("checksum mismatch in the {} section (stored {:08x}, computed {got:08x}): the store is damaged; convert it again from its source", label(name), s.crc),
    )
}

#[cfg(unix)]
fn read_at(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset).map_err(|e| Error::io(path, e))
}

#[cfg(not(unix))]
fn read_at(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file.try_clone().map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(path, e))?;
    f.read_exact(buf).map_err(|e| Error::io(path, e))
}

/// CRC32 of bytes `[offset, offset + len)` of the file, blocks in parallel.
fn crc_range(file: &File, path: &Path, offset: u64, len: u64) -> Result<crc32fast::Hasher> {
    let blocks: Vec<u64> = (0..len.div_ceil(BLOCK)).collect();
    blocks
        .par_iter()
        .map(|&b| {
            let start = b * BLOCK;
            let mut buf = vec![0u8; (len - start).min(BLOCK) as usize];
            read_at(file, path, offset + start, &mut buf)?;
            let mut h = crc32fast::Hasher::new();
            h.update(&buf);
            Ok(h)
        })
        .try_reduce(crc32fast::Hasher::new, |mut a, b| {
            a.combine(&b);
            Ok(a)
        })
}

/// Checks the CRC of `s` (named `name`).
fn check_crc(file: &File, path: &Path, name: &str, s: &Section) -> Result<()> {
    let got = crc_range(file, path, s.offset, s.len)?.finalize();
    if got == s.crc { Ok(()) } else { Err(mismatch(path, name, s, got)) }
}

/// The checks of a store's `matrix.bin` (at `path`) on open; `indptr` is
/// the row-pointer section already verified by its CRC.
pub(super) fn check_matrix(file: &File, path: &Path, h: &Header, indptr: impl Fn() -> Vec<u64>) -> Result<()> {
    if h.layout == Layout::Dense {
        return check_crc(file, path, "data", &h.data);
    }
    check_crc(file, path, "indptr", &h.indptr)?;
    let p = indptr();
    let monotone = p.first() == Some(&0) && p.last() == Some(&h.nnz) && p.windows(2).all(|w| w[0] <= w[1]);
    if !monotone {
        return Err(Error::corrupt(path, "CSR row pointers are not a valid non-decreasing sequence 0..nnz"));
    }
    check_crc(file, path, "data", &h.data)?;
    check_indices(file, path, h, &p)
}

/// CRC of the indices section and, in the same pass, every row's indices
/// in range and strictly increasing (a repeated index would make one value
/// silently overwrite another).
fn check_indices(file: &File, path: &Path, h: &Header, p: &[u64]) -> Result<()> {
    // Blocks of whole rows of about BLOCK bytes each.
    let per_block = BLOCK / 4;
    let mut starts = vec![0usize];
    let mut next = per_block;
    for (i, &v) in p.iter().enumerate().skip(1) {
        if v >= next && i < p.len() - 1 {
            starts.push(i);
            next = v + per_block;
        }
    }
    starts.push(p.len() - 1);
    let n_genes = h.n_genes;
    let hasher = starts
        .par_windows(2)
        .map(|w| {
            let (r0, r1) = (w[0], w[1]);
            let (a, b) = (p[r0], p[r1]);
            let mut idx = vec![0u32; (b - a) as usize];
            // SAFETY: u32 is valid for every bit pattern; the view covers `idx` exactly.
            let bytes = unsafe { std::slice::from_raw_parts_mut(idx.as_mut_ptr() as *mut u8, idx.len() * 4) };
            read_at(file, path, h.indices.offset + a * 4, bytes)?;
            let mut hs = crc32fast::Hasher::new();
            hs.update(bytes);
            Ok::<_, Error>((hs, first_bad_row(&idx, &p[r0..=r1], r0, n_genes)))
        })
        .try_reduce(
            || (crc32fast::Hasher::new(), None),
            |(mut x, ex), (y, ey)| {
                x.combine(&y);
                Ok((x, ex.or(ey)))
            },
        )?;
    // A flipped bit is reported as damage of the section, not as whatever
    // structure it happens to break.
    let (hasher, bad) = hasher;
    let got = hasher.finalize();
    if got != h.indices.crc {
        return Err(mismatch(path, "indices", &h.indices, got));
    }
    match bad {
        Some(msg) => Err(Error::corrupt(path, msg)),
        None => Ok(()),
    }
}

/// The first row of a block whose indices are out of range or not strictly
/// increasing; `p` holds the block's row pointers, row `r0` first.
fn first_bad_row(idx: &[u32], p: &[u64], r0: usize, n_genes: u64) -> Option<String> {
    let a = p[0];
    for (k, w) in p.windows(2).enumerate() {
        let r = r0 + k;
        let row = &idx[(w[0] - a) as usize..(w[1] - a) as usize];
        if let Some(&j) = row.iter().find(|&&j| u64::from(j) >= n_genes) {
            return Some(format!("row {r}: gene index {j} out of range (the store has {n_genes} genes)"));
        }
        if let Some(w) = row.windows(2).find(|w| w[0] >= w[1]) {
            let what = if w[0] == w[1] { "repeated" } else { "not increasing" };
            return Some(format!("row {r}: gene indices {what} ({}, {})", w[0], w[1]));
        }
    }
    None
}
