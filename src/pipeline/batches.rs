//! Which batch (sample, donor, technology) each target cell belongs to,
//! from an obs column of the target (`--batch-key`).

use crate::data::{Dataset, ObsColumn};
use crate::error::{Error, Result};

/// Batch names and each target cell's batch index.
#[derive(Clone, Debug, PartialEq)]
pub struct Batches {
    pub names: Vec<String>,
    /// `[n_target]` index into `names`.
    pub of: Vec<u32>,
}

impl Batches {
    /// Every cell in one batch.
    pub fn single(n_cells: usize) -> Self {
        Batches { names: vec!["all".into()], of: vec![0; n_cells] }
    }

    /// From obs column `key` of the target (categorical, text, boolean or
    /// integer); `None` puts every cell in one batch. Names are sorted so
    /// the order does not depend on the cells' order. A cell with no value
    /// is an error: a batch cannot be guessed.
    pub fn from_obs(target: &Dataset, key: Option<&str>) -> Result<Self> {
        Self::from_columns(&target.obs, &target.cell_names, key)
    }

    /// [`Batches::from_obs`] on obs columns and cell names held elsewhere
    /// (e.g. a store's).
    pub fn from_columns(obs: &[(String, ObsColumn)], cell_names: &[String], key: Option<&str>) -> Result<Self> {
        let Some(key) = key else { return Ok(Self::single(cell_names.len())) };
        let col = obs.iter().find(|(n, _)| n == key).map(|(_, c)| c).ok_or_else(|| {
            let names: Vec<&str> = obs.iter().map(|(n, _)| n.as_str()).collect();
            Error::invalid(format!("--batch-key {key}: the target has no such obs column (it has: {})", names.join(", ")))
        })?;
        if let ObsColumn::Numeric(v) = col
            && let Some(x) = v.iter().find(|x| !x.is_finite() || x.fract() != 0.0)
        {
            return Err(Error::invalid(format!("--batch-key {key}: numeric values must be whole numbers, found {x}")));
        }
        let values: Vec<String> = (0..col.len()).map(|i| col.get_str(i)).collect();
        if let Some(i) = values.iter().position(|v| v.is_empty()) {
            return Err(Error::invalid(format!("--batch-key {key}: cell '{}' has no batch", cell_names[i])));
        }
        let mut names = values.clone();
        names.sort();
        names.dedup();
        let of = values.iter().map(|v| names.binary_search(v).unwrap_or(0) as u32).collect();
        Ok(Batches { names, of })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DenseMatrix, Matrix};

    fn ds(col: ObsColumn) -> Dataset {
        let n = col.len();
        Dataset {
            x: Matrix::Dense(DenseMatrix::zeros(n, 1)),
            cell_names: (0..n).map(|i| format!("c{i}")).collect(),
            gene_names: vec!["g".into()],
            obs: vec![("b".into(), col)],
        }
    }

    #[test]
    fn batches_from_columns() {
        let t = ds(ObsColumn::Text(vec!["y".into(), "x".into(), "y".into()]));
        assert_eq!(Batches::from_obs(&t, Some("b")).unwrap(), Batches { names: vec!["x".into(), "y".into()], of: vec![1, 0, 1] });
        assert_eq!(Batches::from_obs(&t, None).unwrap().names.len(), 1);
        assert!(Batches::from_obs(&t, Some("nope")).is_err());
        let c = ds(ObsColumn::Categorical { categories: vec!["a".into()], codes: vec![0, -1] });
        assert!(Batches::from_obs(&c, Some("b")).unwrap_err().to_string().contains("no batch"));
        let f = ds(ObsColumn::Numeric(vec![1.0, 1.5]));
        assert!(Batches::from_obs(&f, Some("b")).is_err());
    }
}
