//! [`Store`]: an opened store, values viewed in place through a memory map.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn};
use crate::error::{Error, Result};

use super::format::{from_bytes, Header, Plain, Section, HEADER_LEN};
use super::names::{read_names, read_obs};
use super::Layout;

/// Below this many output values a gather runs on one thread.
const PAR_MIN_VALUES: usize = 1 << 16;
/// Chunk size for the parallel CRC of a section.
const CRC_CHUNK: usize = 8 << 20;

/// An opened store: header checked, values memory-mapped.
///
/// The map assumes nobody rewrites or truncates `matrix.bin` while the
/// store is open (stores are written once, by rename, and never modified in
/// place); truncating it under a live map would fault on access.
pub struct Store {
    path: PathBuf,
    header: Header,
    mmap: Mmap,
    /// The open `matrix.bin`, for positioned reads that bypass the map.
    file: File,
    gene_names: Vec<String>,
    cell_names: Vec<String>,
    obs: Vec<(String, ObsColumn)>,
}

/// One row viewed in place.
#[derive(Clone, Copy, Debug)]
pub enum RowView<'a> {
    /// All `n_genes` values of the row.
    Dense(&'a [f32]),
    /// Sorted gene indices and their values.
    Sparse(&'a [u32], &'a [f32]),
}

impl Store {
    /// Opens and checks the header, every section's CRC32, the CSR
    /// structure and the names: a damaged store is an error naming what is
    /// damaged (one pass over the file; see `verify.rs`).
    pub fn open(path: &Path) -> Result<Self> {
        let mpath = path.join("matrix.bin");
        let file = File::open(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let actual_len = file.metadata().map_err(|e| Error::io(&mpath, e))?.len();
        // SAFETY: stores are immutable once published (see the type's doc).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&mpath, e))?;
        let head = &mmap[..mmap.len().min(HEADER_LEN as usize)];
        let header = Header::decode(&mpath, head, actual_len)?;
        if header.n_cells == 0 || header.n_genes == 0 {
            return Err(Error::corrupt(&mpath, "the header declares zero cells or zero genes"));
        }
        let mut store = Store { path: path.to_path_buf(), header, mmap, file, gene_names: vec![], cell_names: vec![], obs: vec![] };
        super::verify::check_matrix(&store.file, &mpath, &store.header, || store.indptr().to_vec())?;
        store.gene_names = read_names(&path.join("genes.txt"), store.header.n_genes, "gene")?;
        store.cell_names = read_names(&path.join("cells.txt"), store.header.n_cells, "cell")?;
        store.obs = read_obs(path, &store.cell_names)?;
        Ok(store)
    }

    fn corrupt(&self, msg: impl Into<String>) -> Error {
        Error::corrupt(self.path.join("matrix.bin"), msg)
    }

    fn section<T: Plain>(&self, s: Section) -> &[T] {
        let bytes = &self.mmap[s.offset as usize..s.end() as usize];
        // Offsets are multiples of 64 (checked by Header::decode) and the map is page-aligned.
        from_bytes(bytes).expect("store sections are aligned")
    }
    fn data(&self) -> &[f32] {
        self.section(self.header.data)
    }
    fn indices(&self) -> &[u32] {
        self.section(self.header.indices)
    }
    fn indptr(&self) -> &[u64] {
        self.section(self.header.indptr)
    }

    /// Reads every value and checks the data checksums; for CSR also that
    /// indices are in range and strictly increasing within each row; values
    /// must be finite.
    pub fn verify(&self) -> Result<()> {
        let h = &self.header;
        for (name, s) in [("values", h.data), ("indices", h.indices), ("row pointers", h.indptr)] {
            if s.len == 0 {
                continue;
            }
            let got = parallel_crc(&self.mmap[s.offset as usize..s.end() as usize]);
            if got != s.crc {
                return Err(self.corrupt(format!(
                    "checksum mismatch in the {name} section (stored {:08x}, computed {got:08x}): the data is damaged",
                    s.crc
                )));
            }
        }
        if let Some(k) = self.data().par_iter().position_any(|v| !v.is_finite()) {
            return Err(self.corrupt(format!("non-finite value at position {k}")));
        }
        if h.layout == Layout::Csr {
            let n_genes = h.n_genes;
            let bad = (0..self.n_cells()).into_par_iter().find_any(|&i| {
                let (idx, _) = self.csr_row(i);
                idx.iter().any(|&j| u64::from(j) >= n_genes) || idx.windows(2).any(|w| w[0] >= w[1])
            });
            if let Some(i) = bad {
                return Err(self.corrupt(format!("row {i}: gene indices out of range or not increasing")));
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn n_cells(&self) -> usize {
        self.header.n_cells as usize
    }
    pub fn n_genes(&self) -> usize {
        self.header.n_genes as usize
    }
    pub fn layout(&self) -> Layout {
        self.header.layout
    }
    /// Stored entries (CSR) or non-zero values (dense).
    pub fn nnz(&self) -> u64 {
        self.header.nnz
    }
    /// Fraction of the cells × genes values that are non-zero (CSR: stored).
    pub fn density(&self) -> f64 {
        self.header.nnz as f64 / (self.header.n_cells as f64 * self.header.n_genes as f64)
    }
    pub fn gene_names(&self) -> &[String] {
        &self.gene_names
    }
    pub fn cell_names(&self) -> &[String] {
        &self.cell_names
    }
    pub fn obs(&self) -> &[(String, ObsColumn)] {
        &self.obs
    }

    /// Drops the mapped pages of rows `start..end` from this process's
    /// resident set; they stay in the OS page cache and fault back in if
    /// read again. A streaming pass calls it behind itself, so scanning a
    /// store larger than memory keeps the resident set bounded. A hint:
    /// failures are ignored.
    pub fn release_rows(&self, start: usize, end: usize) {
        let end = end.min(self.n_cells());
        if start >= end {
            return;
        }
        let ranges = match self.header.layout {
            Layout::Dense => {
                let row = self.n_genes() * 4;
                vec![(self.header.data.offset as usize + start * row, (end - start) * row)]
            }
            Layout::Csr => {
                let ip = self.indptr();
                let (a, b) = (ip[start] as usize, ip[end] as usize);
                vec![
                    (self.header.data.offset as usize + a * 4, (b - a) * 4),
                    (self.header.indices.offset as usize + a * 4, (b - a) * 4),
                ]
            }
        };
        #[cfg(unix)]
        for (off, len) in ranges {
            // Whole pages inside the range only: rows outside it keep theirs.
            const PAGE: usize = 4096;
            let lo = off.div_ceil(PAGE) * PAGE;
            let hi = ((off + len) / PAGE * PAGE).min(self.mmap.len());
            if hi > lo {
                // SAFETY: a read-only shared file mapping of a file nobody
                // modifies (see the type's doc): dropped pages read back the
                // same bytes, so slices into the map stay valid.
                let _ = unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo) };
            }
        }
        #[cfg(not(unix))]
        let _ = ranges;
    }

    fn csr_row(&self, i: usize) -> (&[u32], &[f32]) {
        let p = self.indptr();
        let (a, b) = (p[i] as usize, p[i + 1] as usize);
        (&self.indices()[a..b], &self.data()[a..b])
    }

    /// Row `i` viewed in place. Panics if `i >= n_cells`.
    pub fn row(&self, i: usize) -> RowView<'_> {
        assert!(i < self.n_cells(), "row {i} out of range ({} cells)", self.n_cells());
        match self.header.layout {
            Layout::Dense => {
                let g = self.n_genes();
                RowView::Dense(&self.data()[i * g..(i + 1) * g])
            }
            Layout::Csr => {
                let (idx, val) = self.csr_row(i);
                RowView::Sparse(idx, val)
            }
        }
    }

    /// Gathers the given rows as dense f32 into `out` (`rows.len() × n_genes`),
    /// reading nothing else. Rows may repeat and come in any order.
    pub fn read_rows_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        self.check_gather(rows, out)?;
        self.gather_rows(out, rows, |dst, r| match self.row(r) {
            RowView::Dense(src) => {
                dst.copy_from_slice(src);
                Ok(())
            }
            RowView::Sparse(idx, val) => self.scatter(r, idx, val, dst),
        })
    }

    /// As [`Store::read_rows_dense`], by positioned reads of the file
    /// instead of through the map: the values come through the OS page
    /// cache and none of the file's pages join this process's resident set.
    /// Random minibatches (training) read this way: through the map, a
    /// fault maps 64 KiB around each row read (fault-around), and an epoch
    /// over a store made about all of it resident (1.8 GB for a 1.6 GB
    /// store), where dropping the pages every few batches cost 5–15 % of
    /// the training time in refaults.
    pub fn read_rows_dense_unmapped(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        #[cfg(not(unix))]
        return self.read_rows_dense(rows, out);
        #[cfg(unix)]
        {
            self.check_gather(rows, out)?;
            let g = self.n_genes();
            self.gather_rows(out, rows, |dst, r| match self.header.layout {
                Layout::Dense => self.read_at(self.header.data.offset + (r * g * 4) as u64, dst),
                Layout::Csr => {
                    let p = self.indptr();
                    let (a, n) = (p[r], (p[r + 1] - p[r]) as usize);
                    let (mut idx, mut val) = (vec![0u32; n], vec![0.0f32; n]);
                    self.read_at(self.header.indices.offset + a * 4, &mut idx)?;
                    self.read_at(self.header.data.offset + a * 4, &mut val)?;
                    self.scatter(r, &idx, &val, dst)
                }
            })
        }
    }

    fn check_gather(&self, rows: &[usize], out: &[f32]) -> Result<()> {
        let g = self.n_genes();
        if out.len() != rows.len() * g {
            return Err(Error::invalid(format!(
                "output buffer holds {} values, {} rows × {g} genes need {}",
                out.len(),
                rows.len(),
                rows.len() * g
            )));
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= self.n_cells()) {
            return Err(Error::invalid(format!("row {r} out of range (the store has {} cells)", self.n_cells())));
        }
        Ok(())
    }

    /// `read(dst, r)` for each row of `out` and its row number, on several
    /// threads when the gather is large.
    fn gather_rows(&self, out: &mut [f32], rows: &[usize], read: impl Fn(&mut [f32], usize) -> Result<()> + Sync) -> Result<()> {
        let g = self.n_genes();
        if out.len() >= PAR_MIN_VALUES && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(g).zip(rows.par_iter()).try_for_each(|(dst, &r)| read(dst, r))
        } else {
            out.chunks_mut(g).zip(rows.iter()).try_for_each(|(dst, &r)| read(dst, r))
        }
    }

    /// Row `r`'s CSR entries written densely into `dst`.
    fn scatter(&self, r: usize, idx: &[u32], val: &[f32], dst: &mut [f32]) -> Result<()> {
        dst.fill(0.0);
        // Checked on open; checked again as positioned reads bypass the map.
        if idx.windows(2).any(|w| w[0] >= w[1]) {
            return Err(self.corrupt(format!("row {r}: gene indices not strictly increasing")));
        }
        for (&j, &v) in idx.iter().zip(val) {
            *dst.get_mut(j as usize).ok_or_else(|| self.corrupt(format!("row {r}: gene index {j} out of range")))? = v;
        }
        Ok(())
    }

    /// Fills `out` from the file's bytes at `offset` (native-endian, as
    /// the map reads them).
    #[cfg(unix)]
    fn read_at<T: Plain>(&self, offset: u64, out: &mut [T]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        // SAFETY: `Plain` types (f32, u32) are valid for every bit pattern;
        // the byte view covers exactly `out`.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, std::mem::size_of_val(out)) };
        self.file.read_exact_at(bytes, offset).map_err(|e| Error::io(self.path.join("matrix.bin"), e))
    }

    /// Row `i` as sorted (gene index, value) pairs, zeros skipped (CSR
    /// stores its entries as written). Panics if `i >= n_cells`.
    pub fn row_sparse(&self, i: usize, indices: &mut Vec<u32>, values: &mut Vec<f32>) {
        indices.clear();
        values.clear();
        match self.row(i) {
            RowView::Sparse(idx, val) => {
                indices.extend_from_slice(idx);
                values.extend_from_slice(val);
            }
            RowView::Dense(row) => {
                for (j, &v) in row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                    indices.push(j as u32);
                    values.push(v);
                }
            }
        }
    }

    /// The whole store in memory.
    pub fn to_dataset(&self) -> Result<Dataset> {
        let (rows, cols) = (self.n_cells(), self.n_genes());
        let x = match self.header.layout {
            Layout::Dense => Matrix::Dense(DenseMatrix { rows, cols, data: self.data().to_vec() }),
            Layout::Csr => {
                if let Some(&j) = self.indices().par_iter().find_any(|&&j| j as usize >= cols) {
                    return Err(self.corrupt(format!("gene index {j} out of range")));
                }
                Matrix::Csr(CsrMatrix {
                    rows,
                    cols,
                    indptr: self.indptr().to_vec(),
                    indices: self.indices().to_vec().into(),
                    data: self.data().to_vec().into(),
                })
            }
        };
        Ok(Dataset {
            x,
            cell_names: self.cell_names.clone(),
            gene_names: self.gene_names.clone(),
            obs: self.obs.clone(),
        })
    }
}

/// CRC32 of `bytes`, chunks hashed in parallel and combined in order.
fn parallel_crc(bytes: &[u8]) -> u32 {
    bytes
        .par_chunks(CRC_CHUNK)
        .map(|c| {
            let mut h = crc32fast::Hasher::new();
            h.update(c);
            h
        })
        .reduce(crc32fast::Hasher::new, |mut a, b| {
            a.combine(&b);
            a
        })
        .finalize()
}
