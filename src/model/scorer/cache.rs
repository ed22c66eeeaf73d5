//! A row-major f32 matrix that the scorer reads many times in row chunks:
//! held in memory when it fits the budget, otherwise in a temporary file.
//!
//! Why a file and plain reads rather than a memory map: at 10^6 cells ×
//! 3000 genes the deviations take 12 GB. Pages of a mapped file count in
//! the process's resident set once touched, so a map would hold the RSS at
//! the file size; positioned reads go through the kernel's page cache,
//! which keeps the file hot when RAM allows but is not charged to the
//! process. The file is unlinked right after creation (on Unix), so it
//! disappears with the process even after a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

enum Storage {
    Mem(Vec<f32>),
    Disk {
        file: File,
        path: PathBuf,
        /// The path still exists and is removed on drop (non-Unix).
        linked: bool,
        bytes: Vec<u8>,
    },
}

/// `rows × cols` f32 values, written once by row blocks, read by row blocks.
pub struct RowCache {
    rows: usize,
    cols: usize,
    storage: Storage,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl RowCache {
    /// In memory when `rows·cols·4 ≤ budget_bytes`, else a temporary file
    /// in `spill_dir`.
    pub fn new(rows: usize, cols: usize, budget_bytes: usize, spill_dir: &Path) -> Result<Self> {
        let len = rows.checked_mul(cols).ok_or_else(|| Error::invalid("cache size overflows"))?;
        if len.saturating_mul(4) <= budget_bytes {
            return Ok(RowCache { rows, cols, storage: Storage::Mem(vec![0.0; len]) });
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = spill_dir.join(format!(".acsleuth-spill-{}-{n}.f32", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.set_len(len as u64 * 4).map_err(|e| Error::io(&path, e))?;
        // Unlink now where the OS allows it: the open handle keeps the data.
        let linked = !(cfg!(unix) && std::fs::remove_file(&path).is_ok());
        Ok(RowCache { rows, cols, storage: Storage::Disk { file, path, linked, bytes: Vec::new() } })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The whole matrix, when held in memory.
    pub fn in_memory(&self) -> Option<&[f32]> {
        match &self.storage {
            Storage::Mem(v) => Some(v),
            Storage::Disk { .. } => None,
        }
    }
    pub fn on_disk(&self) -> bool {
        matches!(self.storage, Storage::Disk { .. })
    }

    fn range(&self, r0: usize, len: usize) -> Result<(usize, usize)> {
        let cols = self.cols.max(1);
        if !len.is_multiple_of(cols) || r0 + len / cols > self.rows {
            return Err(Error::Other(format!(
                "internal: rows {r0}..+{} of a {}-row cache",
                len / cols,
                self.rows
            )));
        }
        Ok((r0 * self.cols, len))
    }

    /// Writes whole rows starting at row `r0`.
    pub fn write_rows(&mut self, r0: usize, data: &[f32]) -> Result<()> {
        let (off, len) = self.range(r0, data.len())?;
        match &mut self.storage {
            Storage::Mem(v) => v[off..off + len].copy_from_slice(data),
            Storage::Disk { file, path, bytes, .. } => {
                bytes.clear();
                bytes.extend(data.iter().flat_map(|x| x.to_le_bytes()));
                file.seek(SeekFrom::Start(off as u64 * 4)).map_err(|e| Error::io(&*path, e))?;
                file.write_all(bytes).map_err(|e| Error::io(&*path, e))?;
            }
        }
        Ok(())
    }

    /// Rows `r0..r0 + rows` in place, when held in memory (saves a copy).
    pub fn rows_in_memory(&self, r0: usize, rows: usize) -> Option<&[f32]> {
        match &self.storage {
            Storage::Mem(v) if r0 + rows <= self.rows => Some(&v[r0 * self.cols..(r0 + rows) * self.cols]),
            _ => None,
        }
    }

    /// Reads whole rows starting at row `r0` into `out`.
    pub fn read_rows(&mut self, r0: usize, out: &mut [f32]) -> Result<()> {
        let (off, len) = self.range(r0, out.len())?;
        match &mut self.storage {
            Storage::Mem(v) => out.copy_from_slice(&v[off..off + len]),
            Storage::Disk { file, path, bytes, .. } => {
                bytes.resize(len * 4, 0);
                file.seek(SeekFrom::Start(off as u64 * 4)).map_err(|e| Error::io(&*path, e))?;
                file.read_exact(bytes).map_err(|e| Error::io(&*path, e))?;
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        Ok(())
    }
}

impl Drop for RowCache {
    fn drop(&mut self) {
        if let Storage::Disk { path, linked: true, .. } = &self.storage {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_disk_caches_round_trip() {
        let dir = std::env::temp_dir();
        let data: Vec<f32> = (0..60).map(|i| i as f32 * 0.5 - 3.0).collect();
        for budget in [usize::MAX, 0] {
            let mut c = RowCache::new(10, 6, budget, &dir).unwrap();
            assert_eq!(c.on_disk(), budget == 0);
            c.write_rows(0, &data[..36]).unwrap();
            c.write_rows(6, &data[36..]).unwrap();
            let mut out = vec![0.0; 18];
            c.read_rows(4, &mut out).unwrap();
            assert_eq!(out, &data[24..42]);
            assert!(c.read_rows(8, &mut out).is_err());
        }
    }
}
