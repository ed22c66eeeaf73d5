//! Reading X, the obs/var dataframes and their columns (anndata 0.7 and
//! 0.8+ layouts; the ≤ 0.6 compound layout is in `legacy`).

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;

use hdf5_pure::{AttrValue, DType, Dataset as H5Dataset, File, FormatError, Group};

use super::H5adLayout;
use crate::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};
use crate::error::{Error, Result};

/// An object found at a path: a group or a dataset.
pub(super) enum Node {
    Group(Group),
    Dataset(H5Dataset),
}

/// Most bytes a filtered (compressed) dataset may decode to per byte of
/// the file: DEFLATE cannot exceed about 1032:1, and shuffle does not
/// change sizes. An unfiltered dataset is stored as it is read, so it fits
/// in the file.
pub const MAX_DECODED_RATIO: u64 = 1032;

/// One open .h5ad file and its path (for error messages).
pub(super) struct Reader<'a> {
    pub path: &'a Path,
    pub file: &'a File,
}

impl<'a> Reader<'a> {
    pub fn new(path: &'a Path, file: &'a File) -> Self {
        Reader { path, file }
    }

    /// A one-line `Corrupt` error naming the file.
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::corrupt(self.path, msg)
    }

    /// Reads a dataset with `read` after checking that its declared size is
    /// one the file can hold ([`MAX_DECODED_RATIO`]): a damaged header that
    /// declares billions of values made the reader allocate them first (a
    /// 136 KB file took 8 GB and 14 s before "2147483838 values but 190
    /// indices"; found by fuzzing).
    pub fn read_checked<T>(&self, d: &H5Dataset, read: impl FnOnce(&H5Dataset) -> Result<T, hdf5_pure::Error>, what: impl Display) -> Result<T> {
        let shape = self.h5(d.shape(), &what)?;
        let elem = self.h5(d.element_size(), &what)?.max(1);
        let bytes = shape.iter().try_fold(elem, |a, &x| a.checked_mul(x));
        let file_len = std::fs::metadata(self.path).map_err(|e| Error::io(self.path, e))?.len();
        let limit = if d.filters().is_empty() { file_len } else { file_len.saturating_mul(MAX_DECODED_RATIO) };
        match bytes {
            Some(b) if b <= limit => self.h5(read(d), what),
            _ => Err(self.err(format!(
                "{what}: the dataset declares {} values of {elem} bytes, more than the file's {file_len} bytes can hold",
                shape.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" × ")
            ))),
        }
    }

    /// Maps an hdf5-pure error to `Corrupt`, saying what was being read.
    pub fn h5<T>(&self, r: Result<T, hdf5_pure::Error>, what: impl Display) -> Result<T> {
        r.map_err(|e| self.err(format!("{what}: {e}")))
    }

    /// The group or dataset at `path`, or `None` when nothing is there.
    pub fn node(&self, path: &str) -> Result<Option<Node>> {
        match self.file.group(path) {
            Ok(g) => Ok(Some(Node::Group(g))),
            Err(hdf5_pure::Error::NotAGroup(_)) => match self.file.dataset(path) {
                Ok(d) => Ok(Some(Node::Dataset(d))),
                Err(hdf5_pure::Error::NotADataset(_)) | Err(hdf5_pure::Error::NotAGroup(_)) => {
                    Ok(None)
                }
                Err(e) => Err(self.err(format!("{path}: {e}"))),
            },
            Err(hdf5_pure::Error::Format(FormatError::PathNotFound(_))) => Ok(None),
            Err(e) => Err(self.err(format!("{path}: {e}"))),
        }
    }

    pub fn group_attrs(&self, g: &Group, path: &str) -> Result<HashMap<String, AttrValue>> {
        self.h5(g.attrs(), format_args!("{path}: attributes"))
    }

    /// Reads the whole dataset: X, obs names and columns, var names.
    pub fn read(&self, use_raw: bool) -> Result<Dataset> {
        let (x_path, var_path) = if use_raw {
            if self.node("raw/X")?.is_some() {
                ("raw/X", "raw/var")
            } else if self.node("raw.X")?.is_some() {
                ("raw.X", "raw.var")
            } else {
                return Err(self.err("no .raw matrix (raw/X); read X by leaving out --raw"));
            }
        } else {
            ("X", "var")
        };
        let x = self
            .read_matrix(x_path)?
            .ok_or_else(|| self.err("no X matrix"))?;
        let obs = self.read_frame("obs", true)?;
        let var = self.read_frame(var_path, false)?;
        if obs.index.len() != x.rows() {
            return Err(self.err(format!(
                "{x_path} has {} rows but obs has {} names",
                x.rows(),
                obs.index.len()
            )));
        }
        if var.index.len() != x.cols() {
            return Err(self.err(format!(
                "{x_path} has {} columns but {var_path} has {} names",
                x.cols(),
                var.index.len()
            )));
        }
        Ok(Dataset {
            x,
            cell_names: obs.index,
            gene_names: var.index,
            obs: obs.columns,
        })
    }

    /// The file's layout, without reading any matrix.
    pub fn describe(&self) -> Result<H5adLayout> {
        let x_encoding = match self.node("X")? {
            None => return Err(self.err("no X matrix")),
            Some(Node::Dataset(_)) => "dense".to_string(),
            Some(Node::Group(g)) => {
                sparse_format(&self.group_attrs(&g, "X")?).unwrap_or_else(|| "unknown".into())
            }
        };
        let raw = match self.node("raw/X")? {
            Some(n) => Some(("raw/X", n)),
            None => self.node("raw.X")?.map(|n| ("raw.X", n)),
        };
        let raw_shape = match &raw {
            None => None,
            Some((p, Node::Dataset(d))) => {
                let s = self.h5(d.shape(), p)?;
                (s.len() == 2).then(|| (s[0] as usize, s[1] as usize))
            }
            Some((p, Node::Group(g))) => sparse_shape(&self.group_attrs(g, p)?),
        };
        Ok(H5adLayout {
            has_raw: raw.is_some(),
            raw_shape,
            x_encoding,
            obsm: self.member_names("obsm")?,
            layers: self.member_names("layers")?,
        })
    }

    /// Names held by a mapping element (`obsm`, `layers`): the members of a
    /// group, or the fields of an old-style compound dataset.
    pub(super) fn member_names(&self, path: &str) -> Result<Vec<String>> {
        let mut names = match self.node(path)? {
            None => vec![],
            Some(Node::Group(g)) => {
                let mut v = self.h5(g.datasets(), path)?;
                v.extend(self.h5(g.groups(), path)?);
                v
            }
            Some(Node::Dataset(d)) => match self.h5(d.datatype(), path)? {
                hdf5_pure::Datatype::Compound { members, .. } => {
                    members.into_iter().map(|m| m.name).collect()
                }
                _ => vec![],
            },
        };
        names.sort();
        Ok(names)
    }

    /// Reads a matrix element (dense dataset or sparse group); `None` if absent.
    pub fn read_matrix(&self, path: &str) -> Result<Option<Matrix>> {
        match self.node(path)? {
            None => Ok(None),
            Some(Node::Dataset(d)) => {
                let shape = self.h5(d.shape(), path)?;
                if shape.len() != 2 {
                    return Err(self.err(format!(
                        "{path} is a {}-dimensional array, expected a 2-D matrix",
                        shape.len()
                    )));
                }
                let data = self.read_values(&d, path)?;
                let (rows, cols) = (shape[0] as usize, shape[1] as usize);
                if data.len() != rows * cols {
                    return Err(self.err(format!(
                        "{path}: {} values for shape {rows}×{cols}",
                        data.len()
                    )));
                }
                Ok(Some(Matrix::Dense(DenseMatrix { rows, cols, data })))
            }
            Some(Node::Group(g)) => {
                let attrs = self.group_attrs(&g, path)?;
                let format = sparse_format(&attrs).unwrap_or_default();
                let csc = match format.as_str() {
                    "csr_matrix" => false,
                    "csc_matrix" => true,
                    "" => {
                        return Err(self.err(format!(
                            "{path} is a group without an encoding-type; expected a dense array, csr_matrix or csc_matrix"
                        )));
                    }
                    other => {
                        return Err(self.err(format!(
                            "unsupported {path} encoding '{other}' (expected a dense array, csr_matrix or csc_matrix)"
                        )));
                    }
                };
                let (rows, cols) = sparse_shape(&attrs)
                    .ok_or_else(|| self.err(format!("{path}: no valid 'shape' attribute")))?;
                let (major, minor) = if csc { (cols, rows) } else { (rows, cols) };
                let comp = self.read_compressed(path, major, minor)?;
                let csr = if csc {
                    csc_to_csr(rows, cols, comp)
                } else {
                    comp.into_csr(rows, cols)
                };
                Ok(Some(Matrix::Csr(canonicalize(csr))))
            }
        }
    }

    /// Reads `data`, `indices` and `indptr` of a compressed sparse group and
    /// checks them against the shape (`major` = rows for CSR, cols for CSC).
    fn read_compressed(&self, path: &str, major: usize, minor: usize) -> Result<Compressed> {
        let ds = |name: &str| -> Result<H5Dataset> {
            let p = format!("{path}/{name}");
            match self.node(&p)? {
                Some(Node::Dataset(d)) => Ok(d),
                _ => Err(self.err(format!("{path}: sparse matrix without '{name}'"))),
            }
        };
        let (d_data, d_indices, d_indptr) = (ds("data")?, ds("indices")?, ds("indptr")?);
        // The two big arrays decompress on two threads.
        let (data, indices) = rayon::join(
            || self.read_values(&d_data, &format!("{path}/data")),
            || self.read_indices(&d_indices, &format!("{path}/indices"), minor),
        );
        let (data, indices) = (data?, indices?);
        let ip = format!("{path}/indptr");
        let indptr: Vec<u64> = match self.h5(d_indptr.dtype(), &ip)? {
            DType::U64 | DType::U32 | DType::U16 | DType::U8 => {
                self.read_checked(&d_indptr, H5Dataset::read_u64, &ip)?
            }
            _ => {
                let v = self.read_checked(&d_indptr, H5Dataset::read_i64, &ip)?;
                if v.iter().any(|&p| p < 0) {
                    return Err(self.err(format!("{ip}: negative row pointer")));
                }
                v.into_iter().map(|p| p as u64).collect()
            }
        };
        if data.len() != indices.len() {
            return Err(self.err(format!(
                "{path}: {} values but {} indices",
                data.len(),
                indices.len()
            )));
        }
        if indptr.len() != major + 1 {
            return Err(self.err(format!(
                "{ip} has {} entries, expected {} for the shape",
                indptr.len(),
                major + 1
            )));
        }
        if indptr[0] != 0
            || indptr[major] != data.len() as u64
            || indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(self.err(format!(
                "{ip} is not a valid pointer array for {} values",
                data.len()
            )));
        }
        Ok(Compressed {
            indptr,
            indices,
            data,
        })
    }

    /// Reads a numeric dataset as f32 (any float or integer type).
    pub fn read_values(&self, d: &H5Dataset, path: &str) -> Result<Vec<f32>> {
        match self.h5(d.dtype(), path)? {
            DType::F32
            | DType::F64
            | DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64 => self.read_checked(d, H5Dataset::read_f32, path),
            other => Err(self.err(format!("{path}: values of type {other}, expected numbers"))),
        }
    }

    /// Reads an integer index array as u32, checking every index is in `0..bound`.
    fn read_indices(&self, d: &H5Dataset, path: &str, bound: usize) -> Result<Vec<u32>> {
        let out_of_range = || self.err(format!("{path}: index out of range 0..{bound}"));
        let v: Vec<u32> = match self.h5(d.dtype(), path)? {
            DType::U32 | DType::U16 | DType::U8 => self.read_checked(d, H5Dataset::read_u32, path)?,
            DType::I32 | DType::I16 | DType::I8 => {
                let v = self.read_checked(d, H5Dataset::read_i32, path)?;
                if v.iter().any(|&i| i < 0) {
                    return Err(out_of_range());
                }
                v.into_iter().map(|i| i as u32).collect()
            }
            DType::I64 | DType::U64 => {
                let v = self.read_checked(d, H5Dataset::read_i64, path)?;
                if v.iter().any(|&i| i < 0 || i as u64 >= bound as u64) {
                    return Err(out_of_range());
                }
                v.into_iter().map(|i| i as u32).collect()
            }
            other => {
                return Err(self.err(format!(
                    "{path}: indices of type {other}, expected integers"
                )));
            }
        };
        if v.iter().any(|&i| i as usize >= bound) {
            return Err(out_of_range());
        }
        Ok(v)
    }
}
/// The sparse encoding named by a group's attributes ("csr_matrix",
/// "csc_matrix", another encoding name, or None when there is none).
fn sparse_format(attrs: &HashMap<String, AttrValue>) -> Option<String> {
    if let Some(e) = attrs.get("encoding-type").and_then(AttrValue::as_str) {
        return Some(e.to_string());
    }
    // anndata ≤ 0.6 (h5sparse): "csr" / "csc".
    attrs
        .get("h5sparse_format")
        .and_then(AttrValue::as_str)
        .map(|f| {
            if f == "csr" || f == "csc" {
                format!("{f}_matrix")
            } else {
                f.to_string()
            }
        })
}

/// (rows, cols) from a sparse group's `shape` (or old `h5sparse_shape`).
fn sparse_shape(attrs: &HashMap<String, AttrValue>) -> Option<(usize, usize)> {
    let v = attrs
        .get("shape")
        .or_else(|| attrs.get("h5sparse_shape"))?
        .to_i64s()?;
    match v.as_slice() {
        &[r, c] if r >= 0 && c >= 0 => Some((r as usize, c as usize)),
        _ => None,
    }
}

/// The three arrays of a compressed sparse matrix, validated.
struct Compressed {
    indptr: Vec<u64>,
    indices: Vec<u32>,
    data: Vec<f32>,
}

impl Compressed {
    fn into_csr(self, rows: usize, cols: usize) -> CsrMatrix {
        CsrMatrix {
            rows,
            cols,
            indptr: self.indptr,
            indices: self.indices.into(),
            data: self.data.into(),
        }
    }
}

/// Transposes a CSC matrix (column pointers over row indices) into CSR by a
/// counting sort; column indices come out in increasing order per row.
fn csc_to_csr(rows: usize, cols: usize, c: Compressed) -> CsrMatrix {
    let nnz = c.data.len();
    // indptr[r + 1] counts row r first, then becomes a running sum.
    let mut indptr = vec![0u64; rows + 1];
    for &r in &c.indices {
        indptr[r as usize + 1] += 1;
    }
    for r in 0..rows {
        indptr[r + 1] += indptr[r];
    }
    let mut next: Vec<u64> = indptr[..rows].to_vec();
    let mut indices = vec![0u32; nnz];
    let mut data = vec![0f32; nnz];
    for col in 0..cols {
        for k in c.indptr[col] as usize..c.indptr[col + 1] as usize {
            let r = c.indices[k] as usize;
            let pos = next[r] as usize;
            indices[pos] = col as u32;
            data[pos] = c.data[k];
            next[r] += 1;
        }
    }
    CsrMatrix {
        rows,
        cols,
        indptr,
        indices: indices.into(),
        data: data.into(),
    }
}

/// Makes column indices strictly increasing in every row (sorting rows that
/// are not, summing duplicates as scipy does). Untouched when already so.
pub(super) fn canonicalize(m: CsrMatrix) -> CsrMatrix {
    let sorted = (0..m.rows).all(|i| m.row(i).0.windows(2).all(|w| w[0] < w[1]));
    if sorted {
        return m;
    }
    let mut out = CsrMatrix::empty(m.cols);
    let mut pairs: Vec<(u32, f32)> = Vec::new();
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    for i in 0..m.rows {
        let (ri, rv) = m.row(i);
        pairs.clear();
        pairs.extend(ri.iter().copied().zip(rv.iter().copied()));
        pairs.sort_by_key(|p| p.0);
        idx.clear();
        val.clear();
        for &(j, v) in &pairs {
            if idx.last() == Some(&j) {
                *val.last_mut().expect("val has one entry per idx") += v;
            } else {
                idx.push(j);
                val.push(v);
            }
        }
        out.push_row(&idx, &val);
    }
    out
}
