//! Reading dataframes (`obs`, `var`, `raw/var`) and their columns in the
//! anndata 0.7 and 0.8+ layouts: index, categoricals (codes + categories, or
//! 0.7's `__categories`), numbers, booleans, strings, nullable arrays.

use hdf5_pure::{AttrValue, DType, Dataset as H5Dataset, Group};

use super::legacy;
use super::read::{Node, Reader};
use crate::data::ObsColumn;
use crate::error::Result;

/// A dataframe (`obs`, `var`, `raw/var`): the index and its columns.
pub(super) struct Frame {
    pub index: Vec<String>,
    pub columns: Vec<(String, ObsColumn)>,
}

impl Reader<'_> {
    /// Reads a 1-D dataset of names (strings; numbers are formatted).
    pub fn read_strings(&self, d: &H5Dataset, path: &str) -> Result<Vec<String>> {
        match self.h5(d.dtype(), path)? {
            DType::String | DType::VariableLengthString => self.read_checked(d, H5Dataset::read_string, path),
            DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32 => Ok(self
                .read_checked(d, H5Dataset::read_i64, path)?
                .into_iter()
                .map(|v| v.to_string())
                .collect()),
            DType::U64 => Ok(self
                .read_checked(d, H5Dataset::read_u64, path)?
                .into_iter()
                .map(|v| v.to_string())
                .collect()),
            DType::F32 | DType::F64 => Ok(self
                .read_checked(d, H5Dataset::read_f64, path)?
                .into_iter()
                .map(|v| v.to_string())
                .collect()),
            DType::Enum(_) if is_bool(d) => Ok(self
                .read_checked(d, H5Dataset::read_u8, path)?
                .into_iter()
                .map(|v| (v != 0).to_string())
                .collect()),
            other => Err(self.err(format!("{path}: names of type {other}, expected strings"))),
        }
    }

    /// Reads a dataframe: a group (anndata ≥ 0.7) or a compound dataset (≤ 0.6).
    /// With `columns` false only the index is read.
    pub fn read_frame(&self, path: &str, columns: bool) -> Result<Frame> {
        match self.node(path)? {
            None => Err(self.err(format!("no {path} dataframe"))),
            Some(Node::Dataset(d)) => legacy::read_compound_frame(self, &d, path, columns),
            Some(Node::Group(g)) => self.read_group_frame(&g, path, columns),
        }
    }

    fn read_group_frame(&self, g: &Group, path: &str, columns: bool) -> Result<Frame> {
        let attrs = self.group_attrs(g, path)?;
        let index_name = attrs
            .get("_index")
            .and_then(AttrValue::as_str)
            .unwrap_or("_index")
            .to_string();
        let index_path = format!("{path}/{index_name}");
        let index = match self.node(&index_path)? {
            Some(Node::Dataset(d)) => self.read_strings(&d, &index_path)?,
            _ => return Err(self.err(format!("{path}: no index dataset '{index_name}'"))),
        };
        if !columns {
            return Ok(Frame {
                index,
                columns: vec![],
            });
        }
        let order: Vec<String> = match attrs.get("column-order") {
            // An empty column list is written as an empty float array.
            Some(v) => v.as_strings().map(<[String]>::to_vec).unwrap_or_default(),
            None => {
                let mut v = self.h5(g.datasets(), path)?;
                v.extend(self.h5(g.groups(), path)?);
                v.retain(|n| *n != index_name && n != "__categories");
                v.sort();
                v
            }
        };
        let mut cols = Vec::with_capacity(order.len());
        for name in order {
            let col_path = format!("{path}/{name}");
            let Some(col) = self.read_column(path, &name)? else {
                continue;
            };
            if col.len() != index.len() {
                return Err(self.err(format!(
                    "{col_path} has {} values but {path} has {} rows",
                    col.len(),
                    index.len()
                )));
            }
            cols.push((name, col));
        }
        Ok(Frame {
            index,
            columns: cols,
        })
    }

    /// Reads one dataframe column; `None` for encodings with no `ObsColumn` kind.
    fn read_column(&self, frame: &str, name: &str) -> Result<Option<ObsColumn>> {
        let path = format!("{frame}/{name}");
        match self.node(&path)? {
            None => Err(self.err(format!("{frame}: column '{name}' is listed but missing"))),
            Some(Node::Group(g)) => {
                let attrs = self.group_attrs(&g, &path)?;
                let enc = attrs
                    .get("encoding-type")
                    .and_then(AttrValue::as_str)
                    .unwrap_or("");
                match enc {
                    "categorical" => {
                        let codes = self.dataset_at(&format!("{path}/codes"))?;
                        let cats = self.dataset_at(&format!("{path}/categories"))?;
                        let categories = self.read_strings(&cats, &format!("{path}/categories"))?;
                        self.categorical(&codes, &path, categories).map(Some)
                    }
                    "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
                        self.read_nullable(&path, enc).map(Some)
                    }
                    _ => Ok(None),
                }
            }
            Some(Node::Dataset(d)) => {
                let shape = self.h5(d.shape(), &path)?;
                if shape.len() != 1 {
                    return Ok(None);
                }
                // anndata 0.7: codes here, categories in `__categories/<name>`.
                let cat_path = format!("{frame}/__categories/{name}");
                if let Some(Node::Dataset(cats)) = self.node(&cat_path)? {
                    let categories = self.read_strings(&cats, &cat_path)?;
                    return self.categorical(&d, &path, categories).map(Some);
                }
                self.plain_column(&d, &path)
            }
        }
    }

    fn dataset_at(&self, path: &str) -> Result<H5Dataset> {
        match self.node(path)? {
            Some(Node::Dataset(d)) => Ok(d),
            _ => Err(self.err(format!("no dataset {path}"))),
        }
    }

    /// A 1-D dataset column: numbers, booleans or strings.
    pub fn plain_column(&self, d: &H5Dataset, path: &str) -> Result<Option<ObsColumn>> {
        Ok(Some(match self.h5(d.dtype(), path)? {
            DType::String | DType::VariableLengthString => {
                ObsColumn::Text(self.read_checked(d, H5Dataset::read_string, path)?)
            }
            DType::F32 | DType::F64 | DType::U64 => ObsColumn::Numeric(self.read_checked(d, H5Dataset::read_f64, path)?),
            // Integers stay integers, so a rewrite keeps pandas' int dtype.
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 => {
                ObsColumn::Integer(self.read_checked(d, H5Dataset::read_i64, path)?)
            }
            DType::Enum(_) if is_bool(d) => ObsColumn::Bool(
                self.read_checked(d, H5Dataset::read_u8, path)?
                    .into_iter()
                    .map(|v| v != 0)
                    .collect(),
            ),
            _ => return Ok(None),
        }))
    }

    /// Builds a categorical column from a codes dataset, checking every code.
    pub fn categorical(
        &self,
        codes: &H5Dataset,
        path: &str,
        categories: Vec<String>,
    ) -> Result<ObsColumn> {
        let codes = self.read_checked(codes, H5Dataset::read_i32, format_args!("{path} codes"))?;
        let n = categories.len() as i32;
        if let Some(bad) = codes.iter().find(|&&c| c < -1 || c >= n) {
            return Err(self.err(format!("{path}: category code {bad} outside -1..{n}")));
        }
        Ok(ObsColumn::Categorical { categories, codes })
    }

    /// anndata's nullable arrays: `values` plus a `mask` (true = missing).
    /// Integers become f64 with NaN for missing; booleans become a Bool
    /// column when nothing is missing, else a False/True categorical; strings
    /// become text with "" for missing.
    fn read_nullable(&self, path: &str, enc: &str) -> Result<ObsColumn> {
        let values = self.dataset_at(&format!("{path}/values"))?;
        let mask: Vec<bool> = match self.node(&format!("{path}/mask"))? {
            Some(Node::Dataset(m)) => self
                .read_checked(&m, H5Dataset::read_u8, format_args!("{path}/mask"))?
                .into_iter()
                .map(|v| v != 0)
                .collect(),
            _ => vec![],
        };
        let missing = |i: usize| mask.get(i).copied().unwrap_or(false);
        Ok(match enc {
            "nullable-integer" => {
                let v = self.read_checked(&values, H5Dataset::read_f64, path)?;
                ObsColumn::Numeric(
                    v.into_iter()
                        .enumerate()
                        .map(|(i, x)| if missing(i) { f64::NAN } else { x })
                        .collect(),
                )
            }
            "nullable-boolean" => {
                let v = self.read_checked(&values, H5Dataset::read_u8, path)?;
                if mask.iter().any(|&m| m) {
                    let codes = v
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| if missing(i) { -1 } else { (x != 0) as i32 })
                        .collect();
                    ObsColumn::Categorical {
                        categories: vec!["False".into(), "True".into()],
                        codes,
                    }
                } else {
                    ObsColumn::Bool(v.into_iter().map(|x| x != 0).collect())
                }
            }
            _ => {
                let v = self.read_checked(&values, H5Dataset::read_string, path)?;
                ObsColumn::Text(
                    v.into_iter()
                        .enumerate()
                        .map(|(i, s)| if missing(i) { String::new() } else { s })
                        .collect(),
                )
            }
        })
    }
}

/// Whether a dataset is h5py's boolean: an enum over one byte with FALSE/TRUE.
pub(super) fn is_bool(d: &H5Dataset) -> bool {
    matches!(d.dtype(), Ok(DType::Enum(names)) if names.len() == 2
        && names.iter().any(|n| n.eq_ignore_ascii_case("true"))
        && names.iter().any(|n| n.eq_ignore_ascii_case("false")))
        && matches!(d.element_size(), Ok(1))
}
