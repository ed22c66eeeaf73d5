//! Where training and scoring read cells from: anything that can gather a
//! set of rows as dense f32. In-memory matrices implement it, and so does
//! the memory-mapped [`Store`], so a run over a store streams minibatches
//! from the file instead of loading the matrix.

use rayon::prelude::*;

use crate::data::store::Store;
use crate::data::{CsrMatrix, DenseMatrix, Matrix};
use crate::error::{Error, Result};

/// A matrix of cells (rows) × genes (columns) read by row sets.
pub trait RowSource: Sync {
    fn n_rows(&self) -> usize;
    fn n_cols(&self) -> usize;
    /// Writes rows `rows` (any order, repeats allowed) densely into `out`
    /// (`rows.len() × n_cols`, row-major).
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()>;
    /// Rows `start..start + count` into `out`.
    fn gather_range(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let rows: Vec<usize> = (start..start + count).collect();
        self.gather_dense(&rows, out)
    }
}

fn check(rows: &[usize], n_rows: usize, n_cols: usize, out: &[f32]) -> Result<()> {
    if out.len() != rows.len() * n_cols {
        return Err(Error::invalid(format!(
            "gather buffer holds {} values, {} rows × {n_cols} columns need {}",
            out.len(),
            rows.len(),
            rows.len() * n_cols
        )));
    }
    if let Some(&r) = rows.iter().find(|&&r| r >= n_rows) {
        return Err(Error::invalid(format!("row {r} out of range ({n_rows} rows)")));
    }
    Ok(())
}

impl RowSource for DenseMatrix {
    fn n_rows(&self) -> usize {
        self.rows
    }
    fn n_cols(&self) -> usize {
        self.cols
    }
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        check(rows, self.rows, self.cols, out)?;
        out.par_chunks_mut(self.cols.max(1)).zip(rows.par_iter()).for_each(|(dst, &r)| dst.copy_from_slice(self.row(r)));
        Ok(())
    }
}

impl RowSource for CsrMatrix {
    fn n_rows(&self) -> usize {
        self.rows
    }
    fn n_cols(&self) -> usize {
        self.cols
    }
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        check(rows, self.rows, self.cols, out)?;
        let cols = self.cols;
        out.par_chunks_mut(cols.max(1)).zip(rows.par_iter()).try_for_each(|(dst, &r)| {
            dst.fill(0.0);
            let (idx, val) = self.row(r);
            for (&j, &v) in idx.iter().zip(val) {
                *dst.get_mut(j as usize)
                    .ok_or_else(|| Error::invalid(format!("row {r}: column index {j} out of range ({cols} columns)")))? = v;
            }
            Ok(())
        })
    }
}

impl RowSource for Matrix {
    fn n_rows(&self) -> usize {
        self.rows()
    }
    fn n_cols(&self) -> usize {
        self.cols()
    }
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        match self {
            Matrix::Dense(d) => d.gather_dense(rows, out),
            Matrix::Csr(c) => c.gather_dense(rows, out),
        }
    }
}

impl RowSource for Store {
    fn n_rows(&self) -> usize {
        self.n_cells()
    }
    fn n_cols(&self) -> usize {
        self.n_genes()
    }
    /// Random row sets (minibatches) are read from the file, not the map,
    /// so that training over a store larger than memory keeps its resident
    /// set bounded (see [`Store::read_rows_dense_unmapped`]).
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        self.read_rows_dense_unmapped(rows, out)
    }
    /// A sequential scan (the scoring pass): rows it has passed leave the
    /// resident set, so a store larger than memory streams in bounded RSS.
    fn gather_range(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let rows: Vec<usize> = (start..start + count).collect();
        self.read_rows_dense(&rows, out)?;
        self.release_rows(start, start + count);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_csr_gather_the_same_rows() {
        let d = DenseMatrix { rows: 3, cols: 4, data: vec![0., 1., 0., 2., 3., 0., 0., 0., 0., 0., 5., 6.] };
        let c = CsrMatrix::from_dense(&d);
        let (mut a, mut b) = (vec![0.0; 12], vec![9.0; 12]);
        d.gather_dense(&[2, 0, 2], &mut a).unwrap();
        c.gather_dense(&[2, 0, 2], &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[..4], &[0., 0., 5., 6.]);
        assert!(d.gather_dense(&[3], &mut a[..4]).is_err());
        assert!(c.gather_dense(&[0], &mut a[..3]).is_err());
    }
}
