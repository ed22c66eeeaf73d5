//! The fixed 128-byte header of `matrix.bin` and the byte views of its
//! sections (see the module doc of [`crate::data::store`] for the layout).

use std::path::Path;

use crate::error::{Error, Result};

use super::Layout;

/// First eight bytes of every `matrix.bin`.
pub const MAGIC: [u8; 8] = *b"ACSSTORE";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the header; the first section starts here.
pub const HEADER_LEN: u64 = 128;
/// Every section starts at a multiple of this (cache line; lets the mmap be
/// viewed as `&[f32]` / `&[u32]` / `&[u64]` without copying).
pub const ALIGN: u64 = 64;

/// One section of `matrix.bin`: where it starts, how long it is, its CRC32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

impl Section {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub layout: Layout,
    pub n_cells: u64,
    pub n_genes: u64,
    /// CSR: stored entries. Dense: values that are not zero.
    pub nnz: u64,
    /// f32 values (dense `n_cells × n_genes`, or CSR data).
    pub data: Section,
    /// CSR u32 column indices (empty for dense).
    pub indices: Section,
    /// CSR u64 row pointers (empty for dense).
    pub indptr: Section,
    /// Total length of `matrix.bin`.
    pub file_len: u64,
}

/// Rounds `x` up to the next multiple of [`ALIGN`].
pub fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

impl Header {
    /// Section offsets and lengths for a matrix of this shape: sections in the
    /// order data, indices, indptr, each aligned to [`ALIGN`]. CRCs are left 0.
    pub fn plan(layout: Layout, n_cells: u64, n_genes: u64, nnz: u64) -> Header {
        let data_len = match layout {
            Layout::Dense => n_cells * n_genes * 4,
            Layout::Csr => nnz * 4,
        };
        let data = Section { offset: HEADER_LEN, len: data_len, crc: 0 };
        let (indices, indptr, file_len) = match layout {
            Layout::Dense => (Section::default(), Section::default(), data.end()),
            Layout::Csr => {
                let indices = Section { offset: align_up(data.end()), len: nnz * 4, crc: 0 };
                let indptr = Section { offset: align_up(indices.end()), len: (n_cells + 1) * 8, crc: 0 };
                (indices, indptr, indptr.end())
            }
        };
        Header { layout, n_cells, n_genes, nnz, data, indices, indptr, file_len }
    }

    /// The 128 header bytes, with the header CRC in the last four.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let layout: u32 = match self.layout {
            Layout::Dense => 0,
            Layout::Csr => 1,
        };
        b[12..16].copy_from_slice(&layout.to_le_bytes());
        let u64s = [
            self.n_cells,
            self.n_genes,
            self.nnz,
            self.data.offset,
            self.data.len,
            self.indices.offset,
            self.indices.len,
            self.indptr.offset,
            self.indptr.len,
            self.file_len,
        ];
        for (k, v) in u64s.iter().enumerate() {
            b[16 + 8 * k..24 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        b[96..100].copy_from_slice(&self.data.crc.to_le_bytes());
        b[100..104].copy_from_slice(&self.indices.crc.to_le_bytes());
        b[104..108].copy_from_slice(&self.indptr.crc.to_le_bytes());
        // 108..124 reserved, zero.
        let crc = crc32fast::hash(&b[..124]);
        b[124..128].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header read from `path` (`bytes` is the start of
    /// the file, `actual_len` its length): magic, version, header CRC, that
    /// the sections are where [`Header::plan`] puts them, and the file length.
    pub fn decode(path: &Path, bytes: &[u8], actual_len: u64) -> Result<Header> {
        if bytes.len() < MAGIC.len() || bytes[..8] != MAGIC {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                hint: "matrix.bin does not start with the acsleuth store magic 'ACSSTORE'".into(),
            });
        }
        if bytes.len() < HEADER_LEN as usize {
            return Err(Error::corrupt(
                path,
                format!("truncated: expected at least {HEADER_LEN} bytes of header, found {actual_len}"),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(Error::corrupt(
                path,
                format!("store format version {version} is not supported (this build reads version {VERSION})"),
            ));
        }
        if crc32fast::hash(&bytes[..124]) != u32_at(124) {
            return Err(Error::corrupt(path, "header checksum mismatch (the header is damaged)"));
        }
        let layout = match u32_at(12) {
            0 => Layout::Dense,
            1 => Layout::Csr,
            x => return Err(Error::corrupt(path, format!("unknown layout code {x} in header"))),
        };
        let (n_cells, n_genes, nnz) = (u64_at(16), u64_at(24), u64_at(32));
        // Refuse shapes whose byte sizes would overflow before planning them.
        let cells_genes = n_cells.checked_mul(n_genes).and_then(|x| x.checked_mul(4));
        if cells_genes.is_none() || nnz.checked_mul(8).is_none() || n_cells.checked_add(1).and_then(|x| x.checked_mul(8)).is_none() {
            return Err(Error::corrupt(path, "header shape is out of range"));
        }
        if layout == Layout::Csr && n_genes > u64::from(u32::MAX) {
            return Err(Error::corrupt(path, "CSR store with more genes than u32 indices can address"));
        }
        if layout == Layout::Csr && nnz > n_cells.saturating_mul(n_genes) {
            return Err(Error::corrupt(path, format!("nnz {nnz} exceeds cells × genes")));
        }
        let h = Header {
            layout,
            n_cells,
            n_genes,
            nnz,
            data: Section { offset: u64_at(40), len: u64_at(48), crc: u32_at(96) },
            indices: Section { offset: u64_at(56), len: u64_at(64), crc: u32_at(100) },
            indptr: Section { offset: u64_at(72), len: u64_at(80), crc: u32_at(104) },
            file_len: u64_at(88),
        };
        let mut want = Header::plan(layout, n_cells, n_genes, nnz);
        want.data.crc = h.data.crc;
        want.indices.crc = h.indices.crc;
        want.indptr.crc = h.indptr.crc;
        if want != h {
            return Err(Error::corrupt(path, "header section table does not match the matrix shape"));
        }
        if actual_len < h.file_len {
            return Err(Error::corrupt(
                path,
                format!("truncated: expected {} bytes, found {actual_len}", h.file_len),
            ));
        }
        if actual_len > h.file_len {
            return Err(Error::corrupt(
                path,
                format!("trailing bytes: expected {} bytes, found {actual_len}", h.file_len),
            ));
        }
        Ok(h)
    }
}

// The store is little-endian on disk and viewed in place through the mmap.
#[cfg(not(target_endian = "little"))]
compile_error!("acsleuth's store is read in place and needs a little-endian target");

/// The bytes of a slice of plain numbers (every bit pattern of u8 is valid,
/// and u8 has alignment 1, so this view is always sound).
pub fn as_bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type without padding (sealed trait below).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Views `bytes` as a slice of `T`; `None` when misaligned or of a length
/// that is not a multiple of `size_of::<T>()`.
pub fn from_bytes<T: Plain>(bytes: &[u8]) -> Option<&[T]> {
    // SAFETY: every bit pattern is a valid f32/u32/u64; align_to only
    // returns a middle part that is correctly aligned.
    let (pre, mid, post) = unsafe { bytes.align_to::<T>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// Number types with no padding and no invalid bit patterns.
pub trait Plain: Copy + sealed::Sealed {}
impl Plain for f32 {}
impl Plain for u32 {}
impl Plain for u64 {}
mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let mut h = Header::plan(Layout::Csr, 10, 7, 23);
        h.data.crc = 1;
        h.indices.crc = 2;
        h.indptr.crc = 3;
        let b = h.encode();
        let p = Path::new("m.bin");
        assert_eq!(Header::decode(p, &b, h.file_len).unwrap(), h);
        assert_eq!(h.indices.offset % ALIGN, 0);
        assert_eq!(h.indptr.offset % ALIGN, 0);
        let mut bad = b;
        bad[20] ^= 1;
        assert!(Header::decode(p, &bad, h.file_len).unwrap_err().to_string().contains("header checksum"));
        let e = Header::decode(p, &b, h.file_len - 1).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
