//! Writing the anndata ≥ 0.8 layout: every element tagged with
//! `encoding-type` / `encoding-version`, as `anndata.write_h5ad` does with its
//! default (uncompressed) settings.

use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, DatasetBuilder, EnumTypeBuilder, FileBuilder, GroupBuilder, make_i8_type};

use crate::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn};
use crate::error::{Error, Result};

fn text(s: &str) -> AttrValue {
    AttrValue::VarLenString(s.to_string())
}

/// Tags an element with its anndata encoding.
fn tag_group(g: &mut GroupBuilder, enc: &str, version: &str) {
    g.set_attr("encoding-type", text(enc));
    g.set_attr("encoding-version", text(version));
}

macro_rules! tag_dataset {
    ($d:expr, $enc:expr, $ver:expr) => {
        $d.set_attr("encoding-type", text($enc))
            .set_attr("encoding-version", text($ver))
    };
}

/// Checks what anndata (and HDF5 names) cannot hold before touching disk.
fn check(ds: &Dataset, obsm: &[(String, DenseMatrix)], layers: &[(String, Matrix)]) -> Result<()> {
    ds.validate()?;
    let bad_name = |n: &str| n.is_empty() || n.contains('/') || n == "." || n == "..";
    for (name, _) in &ds.obs {
        if bad_name(name) || name == "_index" || name == "__categories" {
            return Err(Error::invalid(format!(
                "obs column name '{name}' cannot be written to .h5ad"
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &ds.obs {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!("duplicated obs column '{name}'")));
        }
    }
    seen.clear();
    for (name, m) in obsm {
        if bad_name(name) {
            return Err(Error::invalid(format!(
                "obsm name '{name}' cannot be written to .h5ad"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!("duplicated obsm entry '{name}'")));
        }
        if m.rows != ds.n_cells() || m.data.len() != m.rows * m.cols {
            return Err(Error::invalid(format!(
                "obsm '{name}' is {}×{} for {} cells",
                m.rows,
                m.cols,
                ds.n_cells()
            )));
        }
    }
    seen.clear();
    for (name, m) in layers {
        if bad_name(name) {
            return Err(Error::invalid(format!(
                "layer name '{name}' cannot be written to .h5ad"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!("duplicated layer '{name}'")));
        }
        if m.rows() != ds.n_cells() || m.cols() != ds.n_genes() {
            return Err(Error::invalid(format!(
                "layer '{name}' is {}×{} for {} cells × {} genes",
                m.rows(),
                m.cols(),
                ds.n_cells(),
                ds.n_genes()
            )));
        }
        let consistent = match m {
            Matrix::Dense(d) => d.data.len() == d.rows * d.cols,
            Matrix::Csr(c) => {
                c.indptr.len() == c.rows + 1
                    && c.indices.len() == c.data.len()
                    && c.indptr.last().copied() == Some(c.data.len() as u64)
            }
        };
        if !consistent {
            return Err(Error::invalid(format!("layer '{name}' has inconsistent storage sizes")));
        }
    }
    if let Matrix::Csr(c) = &ds.x
        && c.cols > i32::MAX as usize
    {
        return Err(Error::invalid(format!(
            "{} genes exceed the 32-bit index range",
            c.cols
        )));
    }
    Ok(())
}

pub(super) fn write(
    path: &Path,
    ds: &Dataset,
    obsm: &[(String, DenseMatrix)],
    layers: &[(String, Matrix)],
) -> Result<()> {
    check(ds, obsm, layers)?;
    let fmt_err =
        |e: hdf5_pure::Error| Error::Other(format!("{}: cannot write .h5ad: {e}", path.display()));
    let fmt_err2 = |e: hdf5_pure::FormatError| {
        Error::Other(format!("{}: cannot write .h5ad: {e}", path.display()))
    };

    let mut b = FileBuilder::new();
    b.set_attr("encoding-type", text("anndata"));
    b.set_attr("encoding-version", text("0.1.0"));

    // X: shape [cells, genes].
    match &ds.x {
        Matrix::Dense(d) => dense_into(b.create_dataset("X"), d),
        Matrix::Csr(c) => {
            let mut g = b.create_group("X");
            csr_into(&mut g, c);
            b.add_group(g.finish());
        }
    }

    // obs: index plus every column.
    let bool_type = EnumTypeBuilder::with_base(make_i8_type())
        .value("FALSE", 0)
        .value("TRUE", 1)
        .build()
        .map_err(fmt_err2)?;
    let mut obs = b.create_group("obs");
    frame_attrs(&mut obs, ds.obs.iter().map(|(n, _)| n.as_str()).collect());
    string_array(&mut obs, "_index", &ds.cell_names);
    for (name, col) in &ds.obs {
        match col {
            ObsColumn::Categorical { categories, codes } => {
                let mut g = obs.create_group(name);
                tag_group(&mut g, "categorical", "0.2.0");
                g.set_attr("ordered", AttrValue::I8(0));
                string_array(&mut g, "categories", categories);
                // The narrowest signed type that holds every code, as pandas does.
                let c = g.create_dataset("codes");
                if categories.len() < i8::MAX as usize {
                    c.with_i8_data(&codes.iter().map(|&v| v as i8).collect::<Vec<_>>());
                } else if categories.len() < i16::MAX as usize {
                    c.with_i16_data(&codes.iter().map(|&v| v as i16).collect::<Vec<_>>());
                } else {
                    c.with_i32_data(codes);
                }
                tag_dataset!(c, "array", "0.2.0");
                obs.add_group(g.finish());
            }
            ObsColumn::Numeric(v) => {
                let d = obs.create_dataset(name);
                d.with_f64_data(v);
                tag_dataset!(d, "array", "0.2.0");
            }
            ObsColumn::Bool(v) => {
                let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
                let d = obs.create_dataset(name);
                d.with_enum_u8_data(bool_type.clone(), &bytes);
                tag_dataset!(d, "array", "0.2.0");
            }
            ObsColumn::Text(v) => string_array(&mut obs, name, v),
        }
    }
    b.add_group(obs.finish());

    // var: the gene names only.
    let mut var = b.create_group("var");
    frame_attrs(&mut var, vec![]);
    string_array(&mut var, "_index", &ds.gene_names);
    b.add_group(var.finish());

    // obsm: dense [cells, k] float32 matrices.
    let mut g = b.create_group("obsm");
    tag_group(&mut g, "dict", "0.1.0");
    for (name, m) in obsm {
        let d = g.create_dataset(name);
        d.with_f32_data(&m.data)
            .with_shape(&[m.rows as u64, m.cols as u64]);
        tag_dataset!(d, "array", "0.2.0");
    }
    b.add_group(g.finish());
    // layers: [cells, genes] matrices, dense or CSR like X.
    let mut g = b.create_group("layers");
    tag_group(&mut g, "dict", "0.1.0");
    for (name, m) in layers {
        match m {
            Matrix::Dense(d) => dense_into(g.create_dataset(name), d),
            Matrix::Csr(c) => {
                let mut lg = g.create_group(name);
                csr_into(&mut lg, c);
                g.add_group(lg.finish());
            }
        }
    }
    b.add_group(g.finish());
    for name in ["obsp", "uns", "varm", "varp"] {
        let mut g = b.create_group(name);
        tag_group(&mut g, "dict", "0.1.0");
        b.add_group(g.finish());
    }

    let tmp = temp_path(path);
    if let Err(e) = b.write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fmt_err(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A dense [rows, cols] float32 matrix as an `array` dataset.
fn dense_into(d: &mut DatasetBuilder, m: &DenseMatrix) {
    d.with_f32_data(&m.data)
        .with_shape(&[m.rows as u64, m.cols as u64]);
    tag_dataset!(d, "array", "0.2.0");
}

/// A CSR matrix as a `csr_matrix` group: float32 data, int32 column
/// indices (the scipy default; checked to fit), int64 row pointers.
fn csr_into(g: &mut GroupBuilder, c: &CsrMatrix) {
    tag_group(g, "csr_matrix", "0.1.0");
    g.set_attr(
        "shape",
        AttrValue::I64Array(vec![c.rows as i64, c.cols as i64]),
    );
    g.create_dataset("data").with_f32_data(&c.data);
    let indices: Vec<i32> = c.indices.iter().map(|&i| i as i32).collect();
    g.create_dataset("indices").with_i32_data(&indices);
    let indptr: Vec<i64> = c.indptr.iter().map(|&p| p as i64).collect();
    g.create_dataset("indptr").with_i64_data(&indptr);
}

/// The dataframe attributes: index name, column order, encoding.
fn frame_attrs(g: &mut GroupBuilder, columns: Vec<&str>) {
    g.set_attr("_index", text("_index"));
    // anndata writes an empty column list as an empty float array.
    let order = if columns.is_empty() {
        AttrValue::F64Array(vec![])
    } else {
        AttrValue::VarLenStringArray(columns.into_iter().map(str::to_string).collect())
    };
    g.set_attr("column-order", order);
    tag_group(g, "dataframe", "0.2.0");
}

/// A variable-length UTF-8 string dataset tagged `string-array`.
fn string_array(g: &mut GroupBuilder, name: &str, values: &[String]) {
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let d = g.create_dataset(name);
    d.with_vlen_strings(&refs);
    tag_dataset!(d, "string-array", "0.2.0");
}

/// A hidden sibling of `path` to write before renaming into place.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
