//! The memory-mapped on-disk expression store.
//!
//! A store is a directory (by convention named `*.acs`) that holds:
//!
//! | file | content |
//! |---|---|
//! | `matrix.bin` | header + values (below) |
//! | `genes.txt` | one gene name a line, `n_genes` lines |
//! | `cells.txt` | one cell name a line, `n_cells` lines |
//! | `obs.tsv` | the obs table: a header line `cell<TAB>col1<TAB>...`, then one line a cell |
//! | `obs.json` | the kind of each obs column, so [`ObsColumn`](crate::data::ObsColumn)s round-trip exactly |
//!
//! Names are UTF-8, non-empty, unique, and hold no tab, newline or carriage
//! return (they are one a line). In `obs.tsv` a backslash, tab, newline or
//! CR inside a value is written `\\`, `\t`, `\n`, `\r`; a missing
//! categorical value is an empty field and a category that is the empty
//! string is written `\e`; numbers use Rust's shortest round-trip form
//! (`0.1`, `1e300`, `NaN`, `inf`); booleans are `true`/`false`. `obs.json`
//! is `{"format": "acsleuth-obs", "version": 1, "n_cells": N, "columns":
//! [{"name": .., "kind": "categorical", "categories": [..]} | {"name": ..,
//! "kind": "numeric" | "integer" | "bool" | "text"}]}`, in obs column order. The table
//! reads directly in pandas: `pd.read_csv("x.acs/obs.tsv", sep="\t", index_col=0)`.
//!
//! ## `matrix.bin`, byte by byte (all integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `ACSSTORE` (ASCII) |
//! | 8 | 4 | format version, u32 = 1 |
//! | 12 | 4 | layout, u32: 0 = dense, 1 = CSR |
//! | 16 | 8 | n_cells, u64 |
//! | 24 | 8 | n_genes, u64 |
//! | 32 | 8 | nnz, u64: CSR stored entries; dense: count of non-zero values (informative) |
//! | 40 | 8 | values section offset, u64 (= 128) |
//! | 48 | 8 | values section length in bytes, u64 |
//! | 56 | 8 | CSR indices section offset, u64 (0 for dense) |
//! | 64 | 8 | CSR indices section length in bytes (0 for dense) |
//! | 72 | 8 | CSR row-pointer section offset (0 for dense) |
//! | 80 | 8 | CSR row-pointer section length in bytes (0 for dense) |
//! | 88 | 8 | total file length in bytes, u64 |
//! | 96 | 4 | CRC32 (IEEE, as zlib) of the values section, u32 |
//! | 100 | 4 | CRC32 of the indices section (0 for dense) |
//! | 104 | 4 | CRC32 of the row-pointer section (0 for dense) |
//! | 108 | 16 | reserved, zero |
//! | 124 | 4 | CRC32 of bytes 0..124 (the header itself) |
//! | 128 | | sections, each starting at a multiple of 64, zero padding between |
//!
//! Sections:
//! - dense: values, f32 row-major `n_cells × n_genes` (`4·n_cells·n_genes` bytes);
//! - CSR: values f32 `[nnz]`, then column indices u32 `[nnz]` (strictly
//!   increasing within a row, `< n_genes`), then row pointers u64
//!   `[n_cells + 1]` (`0, ..., nnz`, non-decreasing).
//!
//! The file ends right after the last section; nothing trails it.
//! [`Store::open`] checks the magic, version, header CRC, section table,
//! file length, every section's CRC32, the row pointers, the column
//! indices of every row (in range, strictly increasing) and the name
//! counts: one pass over the file, so damage is an error that names the
//! section before any value is used. [`Store::verify`] also checks that
//! every value is finite.
//! The 64-byte alignment lets the memory map be viewed as `&[f32]`,
//! `&[u32]`, `&[u64]` in place, with no copy.
//!
//! From Python (numpy), a CSR store reads as:
//! ```text
//! h = np.fromfile("x.acs/matrix.bin", np.uint64, 10, offset=16)
//! n, g, nnz, do, dl, io, il, po, pl = h[:9]
//! m = np.memmap("x.acs/matrix.bin", np.uint8, "r")
//! X = scipy.sparse.csr_matrix((m[do:do+dl].view(np.float32),
//!     m[io:io+il].view(np.uint32), m[po:po+pl].view(np.uint64)), shape=(n, g))
//! ```
//!
//! Writing is streamed through [`StoreWriter`] with bounded memory (a row at
//! a time; only 8 bytes of row pointer and 8 bytes of name hash per cell are
//! kept) and atomic: everything goes to a temporary sibling directory that
//! is renamed into place by [`StoreWriter::finish`].

use std::io::Read;
use std::path::Path;

use crate::data::{Dataset, Matrix};
use crate::error::Result;

mod format;
mod names;
mod reader;
mod verify;
mod writer;

pub use format::{MAGIC, VERSION};
pub use reader::{RowView, Store};
pub use writer::StoreWriter;

/// How the values are laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major f32, `n_cells × n_genes`.
    Dense,
    /// CSR: f32 data, u32 indices, u64 indptr.
    Csr,
}

impl Layout {
    /// The layout that stores a matrix of this density more compactly:
    /// CSR below 50 % non-zeros (8 bytes an entry vs 4 a value), dense above.
    pub fn for_density(density: f64) -> Layout {
        if density < 0.5 { Layout::Csr } else { Layout::Dense }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Dense => "dense",
            Layout::Csr => "csr",
        })
    }
}

/// Writes an in-memory dataset as a store (atomically).
pub fn write_dataset(path: &Path, ds: &Dataset, layout: Layout) -> Result<()> {
    ds.validate()?;
    let mut w = StoreWriter::create(path, &ds.gene_names, layout)?;
    match &ds.x {
        Matrix::Dense(d) => {
            for i in 0..d.rows {
                w.push_cell_dense(&ds.cell_names[i], d.row(i))?;
            }
        }
        Matrix::Csr(c) => {
            for i in 0..c.rows {
                let (idx, val) = c.row(i);
                w.push_cell(&ds.cell_names[i], idx, val)?;
            }
        }
    }
    w.finish(&ds.obs)
}

/// Copies `src` into a new store at `path`, row by row from the memory
/// map (memory stays bounded whatever the store's size).
pub fn copy_store(src: &Store, path: &Path, layout: Layout) -> Result<()> {
    let mut w = StoreWriter::create(path, src.gene_names(), layout)?;
    for (i, name) in src.cell_names().iter().enumerate() {
        match src.row(i) {
            RowView::Dense(row) => w.push_cell_dense(name, row)?,
            RowView::Sparse(idx, val) => w.push_cell(name, idx, val)?,
        }
    }
    w.finish(src.obs())
}

/// Whether `path` looks like a store (checks the magic only).
pub fn is_store(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path.join("matrix.bin"))
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| magic == MAGIC)
}
