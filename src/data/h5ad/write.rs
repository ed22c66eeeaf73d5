//! Writing the anndata ≥ 0.8 layout: every element tagged with
//! `encoding-type` / `encoding-version`, as `anndata.write_h5ad` does with its
//! default (uncompressed) settings.

use std::path::Path;

use hdf5_pure::{AttrValue, DatasetBuilder, EnumTypeBuilder, FileBuilder, GroupBuilder, make_i8_type};

use crate::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn};

use super::{H5adExtras, WriteOptions};
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

pub(super) fn write(path: &Path, ds: &Dataset, extras: &H5adExtras, opts: &WriteOptions) -> Result<()> {
    let (obsm, layers) = (&extras.obsm[..], &extras.layers[..]);
    check(ds, obsm, layers)?;
    check_extras(ds, extras)?;
    let z = opts.gzip;
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
        Matrix::Dense(d) => dense_into(b.create_dataset("X"), d, z),
        Matrix::Csr(c) => {
            let mut g = b.create_group("X");
            csr_into(&mut g, c, z);
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
    frame_into(&mut obs, &ds.cell_names, &ds.obs, &bool_type);
    b.add_group(obs.finish());

    // var: the gene names only.
    let mut var = b.create_group("var");
    frame_into(&mut var, &ds.gene_names, &extras.var, &bool_type);
    b.add_group(var.finish());

    // raw: its own X and var, as anndata's `.raw`.
    if let Some(raw) = &extras.raw {
        let mut g = b.create_group("raw");
        tag_group(&mut g, "raw", "0.1.0");
        match &raw.x {
            Matrix::Dense(d) => dense_into(g.create_dataset("X"), d, z),
            Matrix::Csr(c) => {
                let mut xg = g.create_group("X");
                csr_into(&mut xg, c, z);
                g.add_group(xg.finish());
            }
        }
        let mut rv = g.create_group("var");
        frame_into(&mut rv, &raw.gene_names, &raw.var, &bool_type);
        g.add_group(rv.finish());
        let mut rm = g.create_group("varm");
        tag_group(&mut rm, "dict", "0.1.0");
        g.add_group(rm.finish());
        b.add_group(g.finish());
    }

    // obsm: dense [cells, k] float32 matrices.
    let mut g = b.create_group("obsm");
    tag_group(&mut g, "dict", "0.1.0");
    for (name, m) in obsm {
        let d = g.create_dataset(name);
        dense_into(d, m, z);
    }
    b.add_group(g.finish());
    // layers: [cells, genes] matrices, dense or CSR like X.
    let mut g = b.create_group("layers");
    tag_group(&mut g, "dict", "0.1.0");
    for (name, m) in layers {
        match m {
            Matrix::Dense(d) => dense_into(g.create_dataset(name), d, z),
            Matrix::Csr(c) => {
                let mut lg = g.create_group(name);
                csr_into(&mut lg, c, z);
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

    let reg = crate::cleanup::register(crate::cleanup::temp_sibling(path));
    let tmp = reg.path().to_path_buf();
    if let Err(e) = b.write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fmt_err(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Compresses a dataset of `len` elements with deflate at `level` (the
/// writer picks the chunks); empty datasets stay contiguous.
fn compress(d: &mut DatasetBuilder, len: usize, level: Option<u32>) {
    if let Some(l) = level
        && len > 0
    {
        d.with_deflate(l);
    }
}

/// A dense [rows, cols] float32 matrix as an `array` dataset.
fn dense_into(d: &mut DatasetBuilder, m: &DenseMatrix, z: Option<u32>) {
    d.with_f32_data(&m.data)
        .with_shape(&[m.rows as u64, m.cols as u64]);
    if let Some(l) = z
        && !m.data.is_empty()
    {
        let rows = m.rows.clamp(1, (1 << 18) / m.cols.max(1)).max(1);
        d.with_chunks(&[rows as u64, m.cols as u64]).with_deflate(l);
    }
    tag_dataset!(d, "array", "0.2.0");
}

/// A CSR matrix as a `csr_matrix` group: float32 data, and int32 column
/// indices and row pointers as anndata writes them (scanpy's compiled code
/// wants both int32) — both int64 only when the non-zeros need it.
fn csr_into(g: &mut GroupBuilder, c: &CsrMatrix, z: Option<u32>) {
    tag_group(g, "csr_matrix", "0.1.0");
    g.set_attr(
        "shape",
        AttrValue::I64Array(vec![c.rows as i64, c.cols as i64]),
    );
    let d = g.create_dataset("data");
    d.with_f32_data(&c.data);
    compress(d, c.data.len(), z);
    if c.data.len() < i32::MAX as usize && c.cols <= i32::MAX as usize {
        let indices: Vec<i32> = c.indices.iter().map(|&i| i as i32).collect();
        let d = g.create_dataset("indices");
        d.with_i32_data(&indices);
        compress(d, indices.len(), z);
        let indptr: Vec<i32> = c.indptr.iter().map(|&p| p as i32).collect();
        let d = g.create_dataset("indptr");
        d.with_i32_data(&indptr);
        compress(d, indptr.len(), z);
    } else {
        let indices: Vec<i64> = c.indices.iter().map(|&i| i as i64).collect();
        let d = g.create_dataset("indices");
        d.with_i64_data(&indices);
        compress(d, indices.len(), z);
        let indptr: Vec<i64> = c.indptr.iter().map(|&p| p as i64).collect();
        let d = g.create_dataset("indptr");
        d.with_i64_data(&indptr);
        compress(d, indptr.len(), z);
    }
}

/// A dataframe: its index and columns (obs, var, raw/var).
fn frame_into(g: &mut GroupBuilder, index: &[String], cols: &[(String, ObsColumn)], bool_type: &hdf5_pure::Datatype) {
    frame_attrs(g, cols.iter().map(|(n, _)| n.as_str()).collect());
    string_array(g, "_index", index);
    for (name, col) in cols {
        column_into(g, name, col, bool_type);
    }
}

/// Checks the var columns and `.raw` against the dataset's shape.
fn check_extras(ds: &Dataset, e: &H5adExtras) -> Result<()> {
    let frame = |what: &str, n: usize, cols: &[(String, ObsColumn)]| -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for (name, c) in cols {
            if name.is_empty() || name.contains('/') || name == "_index" || name == "__categories" || !seen.insert(name) {
                return Err(Error::invalid(format!("{what} column name '{name}' cannot be written to .h5ad")));
            }
            if c.len() != n {
                return Err(Error::invalid(format!("{what} column '{name}' has {} values for {n} rows", c.len())));
            }
        }
        Ok(())
    };
    frame("var", ds.n_genes(), &e.var)?;
    if let Some(r) = &e.raw {
        frame("raw/var", r.gene_names.len(), &r.var)?;
        if r.x.rows() != ds.n_cells() || r.x.cols() != r.gene_names.len() {
            return Err(Error::invalid(format!(
                "raw X is {}×{} for {} cells × {} raw genes",
                r.x.rows(),
                r.x.cols(),
                ds.n_cells(),
                r.gene_names.len()
            )));
        }
    }
    Ok(())
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


/// One dataframe column in anndata's encoding.
fn column_into(g: &mut GroupBuilder, name: &str, col: &ObsColumn, bool_type: &hdf5_pure::Datatype) {
    match col {
        ObsColumn::Categorical { categories, codes } => {
            let mut cg = g.create_group(name);
            tag_group(&mut cg, "categorical", "0.2.0");
            cg.set_attr("ordered", AttrValue::I8(0));
            string_array(&mut cg, "categories", categories);
            // The narrowest signed type that holds every code, as pandas does.
            let c = cg.create_dataset("codes");
            if categories.len() < i8::MAX as usize {
                c.with_i8_data(&codes.iter().map(|&v| v as i8).collect::<Vec<_>>());
            } else if categories.len() < i16::MAX as usize {
                c.with_i16_data(&codes.iter().map(|&v| v as i16).collect::<Vec<_>>());
            } else {
                c.with_i32_data(codes);
            }
            tag_dataset!(c, "array", "0.2.0");
            g.add_group(cg.finish());
        }
        ObsColumn::Numeric(v) => {
            let d = g.create_dataset(name);
            d.with_f64_data(v);
            tag_dataset!(d, "array", "0.2.0");
        }
        ObsColumn::Integer(v) => {
            let d = g.create_dataset(name);
            d.with_i64_data(v);
            tag_dataset!(d, "array", "0.2.0");
        }
        ObsColumn::Bool(v) => {
            let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
            let d = g.create_dataset(name);
            d.with_enum_u8_data(bool_type.clone(), &bytes);
            tag_dataset!(d, "array", "0.2.0");
        }
        ObsColumn::Text(v) => string_array(g, name, v),
    }
}
