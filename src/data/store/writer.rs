//! [`StoreWriter`]: streams cells into a new store with bounded memory.
//!
//! Values go straight to `matrix.bin` (after a zeroed header that `finish` overwrites with the real one), CSR
//! column indices to a side file `indices.part`, cell names to `cells.txt`,
//! all through buffered writers with CRCs computed on the way. Only the CSR
//! row pointers (8 bytes a cell) and a 64-bit hash of each cell name (for
//! the duplicate check) stay in memory. `finish` appends the indices and
//! row pointers, writes the real header, syncs, and renames the temporary
//! directory into place.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::hash::{Hash, Hasher as _};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::data::{ObsColumn, RowSink};
use crate::error::{Error, Result};

use super::format::{as_bytes, Header, HEADER_LEN};
use super::names::{check_name, check_obs, write_names, write_obs};
use super::Layout;

const BUF: usize = 1 << 20;

/// Removes the temporary directory when dropped, unless disarmed.
/// The temporary folder, registered for removal if the process is stopped.
struct TmpDir(Option<PathBuf>, #[allow(dead_code)] crate::cleanup::Registered);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Streams cells into a new store; nothing appears at the final path until
/// [`StoreWriter::finish`] succeeds (temporary location, then rename).
///
/// The temporary directory `.<name>.tmp-<pid>-<k>` sits beside the final
/// path (same filesystem, so the rename is atomic) and is removed if the
/// writer is dropped without `finish` or `finish` fails.
pub struct StoreWriter {
    final_path: PathBuf,
    tmp: TmpDir,
    tmp_path: PathBuf,
    layout: Layout,
    n_genes: usize,
    n_cells: u64,
    nnz: u64,
    matrix: BufWriter<File>,
    data_crc: crc32fast::Hasher,
    /// CSR only: the side file of column indices and its CRC.
    indices: Option<(BufWriter<File>, crc32fast::Hasher)>,
    /// CSR only: row pointers `[n_cells + 1]`.
    indptr: Vec<u64>,
    cells: BufWriter<File>,
    /// 64-bit hashes of the cell names seen; a repeat triggers an exact check at finish.
    name_hashes: HashSet<u64>,
    hash_repeat: bool,
    /// Scratch: one dense row `[n_genes]` / one sparse row.
    dense_row: Vec<f32>,
    sparse_idx: Vec<u32>,
    sparse_val: Vec<f32>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl StoreWriter {
    /// Starts a store at `path` (a directory that must not exist yet) for
    /// cells over `gene_names`.
    pub fn create(path: &Path, gene_names: &[String], layout: Layout) -> Result<Self> {
        if path.symlink_metadata().is_ok() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists; remove it first"),
            ));
        }
        if gene_names.is_empty() {
            return Err(Error::invalid("a store needs at least one gene"));
        }
        if layout == Layout::Csr && gene_names.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::invalid("too many genes for u32 CSR indices"));
        }
        for g in gene_names {
            check_name(g, "gene")?;
        }
        crate::data::check_unique(gene_names, "gene")?;
        let name = path
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{}: not a usable store path", path.display())))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::io(
                &parent,
                std::io::Error::new(std::io::ErrorKind::NotFound, "the store's parent directory does not exist"),
            ));
        }
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}-{}", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
        let tmp_path = parent.join(tmp_name);
        std::fs::create_dir(&tmp_path).map_err(|e| Error::io(&tmp_path, e))?;
        let tmp = TmpDir(Some(tmp_path.clone()), crate::cleanup::register(tmp_path.clone()));

        write_names(&tmp_path.join("genes.txt"), gene_names)?;
        let create = |f: &str| -> Result<BufWriter<File>> {
            let p = tmp_path.join(f);
            // Read access too: `finish` copies indices.part back out.
            let f = File::options().read(true).write(true).create_new(true).open(&p);
            Ok(BufWriter::with_capacity(BUF, f.map_err(|e| Error::io(&p, e))?))
        };
        let mut matrix = create("matrix.bin")?;
        // Placeholder header, overwritten by `finish`.
        matrix.write_all(&[0u8; HEADER_LEN as usize]).map_err(|e| Error::io(tmp_path.join("matrix.bin"), e))?;
        let indices = match layout {
            Layout::Csr => Some((create("indices.part")?, crc32fast::Hasher::new())),
            Layout::Dense => None,
        };
        let cells = create("cells.txt")?;
        Ok(StoreWriter {
            final_path: path.to_path_buf(),
            tmp,
            layout,
            n_genes: gene_names.len(),
            n_cells: 0,
            nnz: 0,
            matrix,
            data_crc: crc32fast::Hasher::new(),
            indices,
            indptr: if layout == Layout::Csr { vec![0] } else { Vec::new() },
            cells,
            name_hashes: HashSet::new(),
            hash_repeat: false,
            dense_row: Vec::new(),
            sparse_idx: Vec::new(),
            sparse_val: Vec::new(),
            tmp_path,
        })
    }

    /// Cells pushed so far.
    pub fn n_cells(&self) -> u64 {
        self.n_cells
    }

    /// Stored entries so far (CSR) or non-zero values (dense).
    pub fn nnz(&self) -> u64 {
        self.nnz
    }

    fn io(&self, file: &str) -> impl Fn(std::io::Error) -> Error + '_ {
        let p = self.tmp_path.join(file);
        move |e| Error::io(&p, e)
    }

    fn check_cell_name(&mut self, name: &str) -> Result<()> {
        check_name(name, "cell").map_err(|e| match e {
            Error::Invalid(m) => Error::invalid(format!("row {}: {m}", self.n_cells)),
            e => e,
        })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        if !self.name_hashes.insert(h.finish()) {
            self.hash_repeat = true;
        }
        Ok(())
    }

    fn bad_value(&self, name: &str, v: f32, gene: usize) -> Error {
        Error::invalid(format!("cell '{name}' (row {}): value {v} at gene {gene} is not finite", self.n_cells))
    }

    /// Appends one cell given as sorted (gene index, value) pairs.
    pub fn push_cell(&mut self, name: &str, indices: &[u32], values: &[f32]) -> Result<()> {
        let row = self.n_cells;
        if indices.len() != values.len() {
            return Err(Error::invalid(format!(
                "cell '{name}' (row {row}): {} indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        let mut prev: Option<u32> = None;
        for (&j, &v) in indices.iter().zip(values) {
            if j as usize >= self.n_genes {
                return Err(Error::invalid(format!(
                    "cell '{name}' (row {row}): gene index {j} out of range (the store has {} genes)",
                    self.n_genes
                )));
            }
            if prev.is_some_and(|p| j <= p) {
                return Err(Error::invalid(format!(
                    "cell '{name}' (row {row}): gene indices not strictly increasing at {j}"
                )));
            }
            if !v.is_finite() {
                return Err(self.bad_value(name, v, j as usize));
            }
            prev = Some(j);
        }
        self.check_cell_name(name)?;
        match self.layout {
            Layout::Csr => self.write_sparse(indices, values)?,
            Layout::Dense => {
                let mut row = std::mem::take(&mut self.dense_row);
                row.clear();
                row.resize(self.n_genes, 0.0);
                for (&j, &v) in indices.iter().zip(values) {
                    row[j as usize] = v;
                }
                let r = self.write_dense(&row);
                self.dense_row = row;
                r?
            }
        }
        self.finish_row(name)
    }

    /// Appends one cell given as a dense row of `n_genes` values.
    pub fn push_cell_dense(&mut self, name: &str, row: &[f32]) -> Result<()> {
        if row.len() != self.n_genes {
            return Err(Error::invalid(format!(
                "cell '{name}' (row {}): {} values for {} genes",
                self.n_cells,
                row.len(),
                self.n_genes
            )));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(self.bad_value(name, row[j], j));
        }
        self.check_cell_name(name)?;
        match self.layout {
            Layout::Dense => self.write_dense(row)?,
            Layout::Csr => {
                let (mut idx, mut val) = (std::mem::take(&mut self.sparse_idx), std::mem::take(&mut self.sparse_val));
                idx.clear();
                val.clear();
                for (j, &v) in row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                    idx.push(j as u32);
                    val.push(v);
                }
                let r = self.write_sparse(&idx, &val);
                (self.sparse_idx, self.sparse_val) = (idx, val);
                r?
            }
        }
        self.finish_row(name)
    }

    fn write_dense(&mut self, row: &[f32]) -> Result<()> {
        let b = as_bytes(row);
        self.data_crc.update(b);
        self.matrix.write_all(b).map_err(self.io("matrix.bin"))?;
        self.nnz += row.iter().filter(|v| **v != 0.0).count() as u64;
        Ok(())
    }

    fn write_sparse(&mut self, indices: &[u32], values: &[f32]) -> Result<()> {
        let vb = as_bytes(values);
        self.data_crc.update(vb);
        self.matrix.write_all(vb).map_err(self.io("matrix.bin"))?;
        let ib = as_bytes(indices);
        let (w, crc) = self.indices.as_mut().expect("CSR writer has an indices file");
        crc.update(ib);
        if let Err(e) = w.write_all(ib) {
            return Err(self.io("indices.part")(e));
        }
        self.nnz += values.len() as u64;
        self.indptr.push(self.nnz);
        Ok(())
    }

    fn finish_row(&mut self, name: &str) -> Result<()> {
        let r = self.cells.write_all(name.as_bytes()).and_then(|_| self.cells.write_all(b"\n"));
        r.map_err(self.io("cells.txt"))?;
        self.n_cells += 1;
        Ok(())
    }

    /// Writes the obs columns (one value per cell pushed), the checksum and
    /// the names, then moves the store into place.
    pub fn finish(self, obs: &[(String, ObsColumn)]) -> Result<()> {
        let StoreWriter {
            final_path,
            mut tmp,
            tmp_path,
            layout,
            n_genes,
            n_cells,
            nnz,
            matrix,
            data_crc,
            indices,
            indptr,
            mut cells,
            hash_repeat,
            ..
        } = self;
        let io = |f: &str| {
            let p = tmp_path.join(f);
            move |e| Error::io(&p, e)
        };
        if n_cells == 0 {
            return Err(Error::invalid("the store has zero cells"));
        }
        check_obs(obs, n_cells)?;
        cells.flush().map_err(io("cells.txt"))?;
        drop(cells);
        let cells_txt = tmp_path.join("cells.txt");
        if hash_repeat {
            find_duplicate(&cells_txt)?;
        }

        let mut h = Header::plan(layout, n_cells, n_genes as u64, nnz);
        h.data.crc = data_crc.finalize();
        let mut m = matrix.into_inner().map_err(|e| io("matrix.bin")(e.into_error()))?;
        if let Some((w, crc)) = indices {
            let mut part = w.into_inner().map_err(|e| io("indices.part")(e.into_error()))?;
            h.indices.crc = crc.finalize();
            pad_to(&mut m, h.data.end(), h.indices.offset).map_err(io("matrix.bin"))?;
            part.seek(SeekFrom::Start(0)).map_err(io("indices.part"))?;
            // `io::copy` between files uses copy_file_range on Linux (no user-space copy).
            let copied = std::io::copy(&mut part, &mut m).map_err(io("matrix.bin"))?;
            if copied != h.indices.len {
                return Err(Error::Other(format!("indices.part: copied {copied} of {} bytes", h.indices.len)));
            }
            drop(part);
            std::fs::remove_file(tmp_path.join("indices.part")).map_err(io("indices.part"))?;
            pad_to(&mut m, h.indices.end(), h.indptr.offset).map_err(io("matrix.bin"))?;
            let b = as_bytes(&indptr);
            h.indptr.crc = crc32fast::hash(b);
            m.write_all(b).map_err(io("matrix.bin"))?;
        }
        m.seek(SeekFrom::Start(0)).map_err(io("matrix.bin"))?;
        m.write_all(&h.encode()).map_err(io("matrix.bin"))?;
        m.sync_all().map_err(io("matrix.bin"))?;
        let len = m.metadata().map_err(io("matrix.bin"))?.len();
        if len != h.file_len {
            return Err(Error::Other(format!("matrix.bin: wrote {len} bytes, expected {}", h.file_len)));
        }
        drop(m);

        write_obs(&tmp_path, &cells_txt, obs, n_cells)?;
        // Make the directory entries durable before the rename publishes them.
        if let Ok(d) = File::open(&tmp_path) {
            let _ = d.sync_all();
        }
        if final_path.symlink_metadata().is_ok() {
            return Err(Error::io(
                &final_path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "appeared while the store was being written"),
            ));
        }
        std::fs::rename(&tmp_path, &final_path).map_err(|e| Error::io(&final_path, e))?;
        tmp.0 = None;
        Ok(())
    }
}

/// Writes zeros from `at` up to `to`.
fn pad_to(w: &mut File, at: u64, to: u64) -> std::io::Result<()> {
    w.write_all(&vec![0u8; (to - at) as usize])
}

/// Exact duplicate check over `cells.txt` (run only when two name hashes
/// collided, so the name set is built at most once and only in that case).
fn find_duplicate(cells_txt: &Path) -> Result<()> {
    let r = BufReader::new(File::open(cells_txt).map_err(|e| Error::io(cells_txt, e))?);
    let mut seen = HashSet::new();
    for (i, line) in r.lines().enumerate() {
        let name = line.map_err(|e| Error::io(cells_txt, e))?;
        if seen.contains(&name) {
            return Err(Error::invalid(format!("duplicated cell name '{name}' (row {i})")));
        }
        seen.insert(name);
    }
    Ok(())
}

impl RowSink for StoreWriter {
    /// Names the cell `cell{i}` (i = its row, from 0).
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> Result<()> {
        let name = format!("cell{}", self.n_cells);
        self.push_cell(&name, indices, values)
    }
}
