//! In-memory expression matrices and the annotated dataset that every reader
//! returns and every writer takes. Rows are cells, columns are genes.

use std::borrow::Cow;

use super::buffer::Values;
use crate::error::{Error, Result};

/// Dense row-major f32 matrix. `data.len() == rows * cols`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl DenseMatrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        DenseMatrix { rows, cols, data: vec![0.0; rows * cols] }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Compressed sparse rows: f32 values, u32 column indices, u64 row pointers.
/// Indices within a row are strictly increasing. Indices and values may
/// be borrowed from a caller's memory ([`Values`]): read in place, copied
/// before any change.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix {
    pub rows: usize,
    pub cols: usize,
    pub indptr: Vec<u64>,     // [rows + 1]
    pub indices: Values<u32>, // [nnz]
    pub data: Values<f32>,    // [nnz]
}

impl CsrMatrix {
    pub fn empty(cols: usize) -> Self {
        CsrMatrix { rows: 0, cols, indptr: vec![0], indices: Values::default(), data: Values::default() }
    }
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
    /// (indices, values) of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }
    /// Appends one row given as sorted (index, value) pairs.
    pub fn push_row(&mut self, indices: &[u32], values: &[f32]) {
        self.indices.to_mut().extend_from_slice(indices);
        self.data.to_mut().extend_from_slice(values);
        self.rows += 1;
        self.indptr.push(self.data.len() as u64);
    }
    /// The same matrix in memory of its own: borrowed values are copied, so
    /// it no longer depends on (or sees later changes to) the caller's.
    pub fn detached(mut self) -> Self {
        self.indices.to_mut();
        self.data.to_mut();
        self
    }
    pub fn to_dense(&self) -> DenseMatrix {
        let mut d = DenseMatrix::zeros(self.rows, self.cols);
        for i in 0..self.rows {
            let (idx, val) = self.row(i);
            let r = d.row_mut(i);
            for (&j, &v) in idx.iter().zip(val) {
                r[j as usize] = v;
            }
        }
        d
    }
    pub fn from_dense(d: &DenseMatrix) -> Self {
        let mut m = CsrMatrix::empty(d.cols);
        dense_rows_sparse(d, |_, idx, val| m.push_row(idx, val));
        m
    }
}

/// Calls `f(row, indices, values)` for every row of `d`, zeros skipped.
fn dense_rows_sparse(d: &DenseMatrix, mut f: impl FnMut(usize, &[u32], &[f32])) {
    let (mut idx, mut val) = (Vec::new(), Vec::new());
    for i in 0..d.rows {
        idx.clear();
        val.clear();
        for (j, &v) in d.row(i).iter().enumerate() {
            if v != 0.0 {
                idx.push(j as u32);
                val.push(v);
            }
        }
        f(i, &idx, &val)
    }
}

/// An expression matrix, dense or sparse.
#[derive(Clone, Debug, PartialEq)]
pub enum Matrix {
    Dense(DenseMatrix),
    Csr(CsrMatrix),
}

impl Matrix {
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Dense(d) => d.rows,
            Matrix::Csr(c) => c.rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Matrix::Dense(d) => d.cols,
            Matrix::Csr(c) => c.cols,
        }
    }
    /// Number of stored non-zero values.
    pub fn nnz(&self) -> usize {
        match self {
            Matrix::Dense(d) => d.data.iter().filter(|v| **v != 0.0).count(),
            Matrix::Csr(c) => c.nnz(),
        }
    }
    /// The matrix as CSR to read: itself when it is one (no copy), else
    /// converted.
    pub fn csr(&self) -> Cow<'_, CsrMatrix> {
        match self {
            Matrix::Dense(d) => Cow::Owned(CsrMatrix::from_dense(d)),
            Matrix::Csr(c) => Cow::Borrowed(c),
        }
    }
    pub fn to_csr(&self) -> CsrMatrix {
        match self {
            Matrix::Dense(d) => CsrMatrix::from_dense(d),
            Matrix::Csr(c) => c.clone(),
        }
    }
    pub fn to_dense(&self) -> DenseMatrix {
        match self {
            Matrix::Dense(d) => d.clone(),
            Matrix::Csr(c) => c.to_dense(),
        }
    }
    /// Calls `f(row, indices, values)` for every row, sparse view (zeros skipped).
    pub fn for_each_row(&self, mut f: impl FnMut(usize, &[u32], &[f32])) {
        match self {
            Matrix::Csr(c) => (0..c.rows).for_each(|i| {
                let (a, b) = c.row(i);
                f(i, a, b)
            }),
            Matrix::Dense(d) => dense_rows_sparse(d, f),
        }
    }
}

/// One annotation column of cells (AnnData `obs`).
#[derive(Clone, Debug, PartialEq)]
pub enum ObsColumn {
    /// Categories and one code per cell (-1 = missing).
    Categorical { categories: Vec<String>, codes: Vec<i32> },
    Numeric(Vec<f64>),
    /// Whole numbers stored as integers (kept integer when written back).
    Integer(Vec<i64>),
    Bool(Vec<bool>),
    Text(Vec<String>),
}

impl ObsColumn {
    pub fn len(&self) -> usize {
        match self {
            ObsColumn::Categorical { codes, .. } => codes.len(),
            ObsColumn::Numeric(v) => v.len(),
            ObsColumn::Integer(v) => v.len(),
            ObsColumn::Bool(v) => v.len(),
            ObsColumn::Text(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The value of cell `i` as text ("" for a missing category).
    pub fn get_str(&self, i: usize) -> String {
        match self {
            ObsColumn::Categorical { categories, codes } => {
                let c = codes[i];
                if c < 0 { String::new() } else { categories[c as usize].clone() }
            }
            ObsColumn::Numeric(v) => v[i].to_string(),
            ObsColumn::Integer(v) => v[i].to_string(),
            ObsColumn::Bool(v) => v[i].to_string(),
            ObsColumn::Text(v) => v[i].clone(),
        }
    }
}

/// An annotated expression matrix: what readers return and writers take.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Matrix,
    pub cell_names: Vec<String>,
    pub gene_names: Vec<String>,
    /// obs columns in file order.
    pub obs: Vec<(String, ObsColumn)>,
}

impl Dataset {
    pub fn n_cells(&self) -> usize {
        self.x.rows()
    }
    pub fn n_genes(&self) -> usize {
        self.x.cols()
    }
    pub fn obs_column(&self, name: &str) -> Option<&ObsColumn> {
        self.obs.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    /// The cells at `rows` (in that order) with their names and obs values.
    /// Panics on an out-of-range index (callers pass indices they derived
    /// from this dataset).
    pub fn subset_rows(&self, rows: &[usize]) -> Dataset {
        let x = match &self.x {
            Matrix::Csr(c) => {
                let mut m = CsrMatrix::empty(c.cols);
                for &i in rows {
                    let (idx, val) = c.row(i);
                    m.push_row(idx, val);
                }
                Matrix::Csr(m)
            }
            Matrix::Dense(d) => {
                let mut m = DenseMatrix::zeros(rows.len(), d.cols);
                for (k, &i) in rows.iter().enumerate() {
                    m.row_mut(k).copy_from_slice(d.row(i));
                }
                Matrix::Dense(m)
            }
        };
        let obs = self
            .obs
            .iter()
            .map(|(name, col)| {
                let col = match col {
                    ObsColumn::Categorical { categories, codes } => ObsColumn::Categorical {
                        categories: categories.clone(),
                        codes: rows.iter().map(|&i| codes[i]).collect(),
                    },
                    ObsColumn::Numeric(v) => ObsColumn::Numeric(rows.iter().map(|&i| v[i]).collect()),
                    ObsColumn::Integer(v) => ObsColumn::Integer(rows.iter().map(|&i| v[i]).collect()),
                    ObsColumn::Bool(v) => ObsColumn::Bool(rows.iter().map(|&i| v[i]).collect()),
                    ObsColumn::Text(v) => ObsColumn::Text(rows.iter().map(|&i| v[i].clone()).collect()),
                };
                (name.clone(), col)
            })
            .collect();
        Dataset {
            x,
            cell_names: rows.iter().map(|&i| self.cell_names[i].clone()).collect(),
            gene_names: self.gene_names.clone(),
            obs,
        }
    }

    /// Row indices of the cells named in `names`, in that order; an error
    /// names the first name not found.
    pub fn rows_of(&self, names: &[String]) -> Result<Vec<usize>> {
        let index: std::collections::HashMap<&str, usize> =
            self.cell_names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        names
            .iter()
            .map(|n| index.get(n.as_str()).copied().ok_or_else(|| Error::invalid(format!("cell '{n}' not found"))))
            .collect()
    }

    /// Checks shapes and names: every name list matches the matrix and has
    /// no duplicates; at least one cell and one gene.
    pub fn validate(&self) -> Result<()> {
        if self.n_cells() == 0 {
            return Err(Error::invalid("the matrix has zero cells"));
        }
        if self.n_genes() == 0 {
            return Err(Error::invalid("the matrix has zero genes"));
        }
        if self.cell_names.len() != self.n_cells() {
            return Err(Error::invalid(format!(
                "{} cell names for {} cells",
                self.cell_names.len(),
                self.n_cells()
            )));
        }
        if self.gene_names.len() != self.n_genes() {
            return Err(Error::invalid(format!(
                "{} gene names for {} genes",
                self.gene_names.len(),
                self.n_genes()
            )));
        }
        for n in &self.cell_names {
            check_name(n, "cell")?;
        }
        for n in &self.gene_names {
            check_name(n, "gene")?;
        }
        check_unique(&self.cell_names, "cell")?;
        check_unique(&self.gene_names, "gene")?;
        for (name, col) in &self.obs {
            if col.len() != self.n_cells() {
                return Err(Error::invalid(format!(
                    "obs column '{name}' has {} values for {} cells",
                    col.len(),
                    self.n_cells()
                )));
            }
        }
        Ok(())
    }
}

/// The one rule for cell and gene names, wherever they come from: not
/// empty, and no tab, newline or carriage return (every table acsleuth
/// writes is tab-separated, one cell a line, and so is a store's name list).
pub fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("empty {what} name")));
    }
    if name.contains(['\n', '\r', '\t']) {
        return Err(Error::invalid(format!(
            "{what} name {name:?} contains a tab or line break, which tab-separated outputs (cells.tsv, scores.tsv) and stores cannot hold; rename it"
        )));
    }
    Ok(())
}

/// Errors on the first duplicated name, naming it.
pub fn check_unique(names: &[String], what: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for n in names {
        if !seen.insert(n.as_str()) {
            return Err(Error::invalid(format!("duplicated {what} name '{n}'")));
        }
    }
    Ok(())
}

/// A destination for rows written one at a time (streamed writing: a
/// million-cell matrix never needs to be held in memory). The on-disk store
/// writer implements it, and so does [`CsrMatrix`] for in-memory use.
pub trait RowSink {
    /// Appends one cell given as sorted (gene index, value) pairs.
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> Result<()>;
}

impl RowSink for CsrMatrix {
    fn push_row(&mut self, indices: &[u32], values: &[f32]) -> Result<()> {
        CsrMatrix::push_row(self, indices, values);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_rows_keeps_names_values_and_obs() {
        let d = DenseMatrix { rows: 3, cols: 2, data: vec![1., 0., 0., 2., 3., 4.] };
        let ds = Dataset {
            x: Matrix::Csr(CsrMatrix::from_dense(&d)),
            cell_names: vec!["a".into(), "b".into(), "c".into()],
            gene_names: vec!["g1".into(), "g2".into()],
            obs: vec![("k".into(), ObsColumn::Categorical { categories: vec!["x".into(), "y".into()], codes: vec![0, 1, -1] })],
        };
        let s = ds.subset_rows(&[2, 0]);
        assert_eq!(s.x.to_dense().data, vec![3., 4., 1., 0.]);
        assert_eq!(s.cell_names, vec!["c".to_string(), "a".to_string()]);
        assert_eq!(s.obs[0].1.get_str(0), "");
        assert_eq!(s.obs[0].1.get_str(1), "x");
        assert_eq!(ds.rows_of(&["b".into(), "a".into()]).unwrap(), vec![1, 0]);
        assert!(ds.rows_of(&["z".into()]).unwrap_err().to_string().contains("'z'"));
        let dense = Dataset { x: Matrix::Dense(d), ..ds.clone() };
        assert_eq!(dense.subset_rows(&[1]).x.to_dense().data, vec![0., 2.]);
    }
}
