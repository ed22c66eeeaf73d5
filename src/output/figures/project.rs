//! Data for the figures and the output .h5ad: the 2-D PCA projection of an
//! embedding, and categorical obs columns with missing values.

use crate::data::{DenseMatrix, ObsColumn};
use crate::error::{Error, Result};
use crate::model::pca::{Pca, PcaOptions, PcaSolver};

/// Most rows the projection's axes are fitted on; above this the axes come
/// from a fixed pseudo-random subset (every row is still projected). With
/// 10^5 rows the top two axes of an embedding are estimated far more
/// precisely than a scatter plot can show, at a bounded cost.
pub const PROJECT_FIT_ROWS: usize = 100_000;

/// Projects the rows of `x` [n × d] onto their first two principal
/// components (centred on the mean, signs as scikit-learn's PCA), `[n]` pairs.
///
/// Needs n ≥ 2 rows and d ≥ 2 columns of finite values. Rows beyond
/// [`PROJECT_FIT_ROWS`] do not take part in fitting the axes.
pub fn project_2d(x: &DenseMatrix) -> Result<Vec<[f32; 2]>> {
    if x.data.len() != x.rows * x.cols {
        return Err(Error::invalid(format!(
            "projection: {} values for a {}×{} matrix",
            x.data.len(),
            x.rows,
            x.cols
        )));
    }
    if x.rows < 2 {
        return Err(Error::invalid(format!("projection to 2-D needs at least 2 rows, got {}", x.rows)));
    }
    if x.cols < 2 {
        return Err(Error::invalid(format!(
            "projection to 2-D needs at least 2 dimensions, got {}",
            x.cols
        )));
    }
    let opts = PcaOptions { n_components: 2, solver: PcaSolver::Auto, seed: 0, ..PcaOptions::default() };
    let pca = if x.rows > PROJECT_FIT_ROWS {
        let mut rows = super::sample_indices(x.rows, PROJECT_FIT_ROWS, 0);
        rows.sort_unstable(); // sequential reads of x
        let mut fit = Vec::with_capacity(rows.len() * x.cols); // [PROJECT_FIT_ROWS × d]
        for &r in &rows {
            fit.extend_from_slice(x.row(r));
        }
        Pca::fit(&fit, rows.len(), x.cols, &opts)?
    } else {
        Pca::fit_matrix(x, &opts)?
    };
    let y = pca.transform(&x.data, x.rows)?; // [n × 2]
    Ok(y.chunks_exact(2).map(|p| [p[0] as f32, p[1] as f32]).collect())
}

/// A categorical obs column from per-cell values where `None` (or an empty
/// string) is missing: categories sorted, missing cells get code −1, which
/// anndata reads as NaN (e.g. the subtype of cells called normal).
pub fn categorical_column(values: &[Option<String>]) -> ObsColumn {
    let mut categories: Vec<String> =
        values.iter().flatten().filter(|v| !v.is_empty()).cloned().collect();
    categories.sort_unstable();
    categories.dedup();
    let codes = values
        .iter()
        .map(|v| match v {
            Some(s) if !s.is_empty() => categories.binary_search(s).map(|i| i as i32).unwrap_or(-1),
            _ => -1,
        })
        .collect();
    ObsColumn::Categorical { categories, codes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categorical_missing_is_minus_one() {
        let v = vec![Some("b".to_string()), None, Some("a".to_string()), Some(String::new()), Some("b".into())];
        let c = categorical_column(&v);
        assert_eq!(
            c,
            ObsColumn::Categorical { categories: vec!["a".into(), "b".into()], codes: vec![1, -1, 0, -1, 1] }
        );
        assert_eq!(c.get_str(1), "");
    }

    #[test]
    fn projection_of_a_line_is_along_the_first_axis() {
        // Points on the line y = 2x in 3-D (z constant): all variance on PC 1.
        let n = 20;
        let mut m = DenseMatrix::zeros(n, 3);
        for i in 0..n {
            let t = i as f32 - 9.5;
            m.row_mut(i).copy_from_slice(&[t, 2.0 * t, 1.0]);
        }
        let p = project_2d(&m).unwrap();
        assert_eq!(p.len(), n);
        let scale = 5f32.sqrt();
        for (i, q) in p.iter().enumerate() {
            let t = i as f32 - 9.5;
            assert!((q[0].abs() - t.abs() * scale).abs() < 1e-3, "{q:?}");
            assert!(q[1].abs() < 1e-3, "{q:?}");
        }
    }

    #[test]
    fn projection_rejects_bad_shapes() {
        assert!(matches!(project_2d(&DenseMatrix::zeros(1, 5)), Err(Error::Invalid(_))));
        assert!(matches!(project_2d(&DenseMatrix::zeros(5, 1)), Err(Error::Invalid(_))));
        let mut m = DenseMatrix::zeros(3, 2);
        m.data[1] = f32::NAN;
        assert!(project_2d(&m).is_err());
    }
}
