//! .h5ad reading (the shared real datasets, the fixtures made by
//! scripts/make_h5ad_fixtures.py), writing round trips, and errors.
//!
//! Set ACSLEUTH_H5AD_EXPORT=DIR to also leave the written files (and a JSON
//! description of what they hold) in DIR for scripts/check_h5ad_written.py,
//! which opens them with Python anndata.

use std::path::{Path, PathBuf};
use std::time::Instant;

use acsleuth::Error;
use acsleuth::data::h5ad::{H5adOptions, describe_h5ad, read_h5ad, write_h5ad};
use acsleuth::data::summary::{ValueKind, looks_like_raw_counts, summarize_matrix};
use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix, ObsColumn};
use serde_json::{Value, json};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/h5ad")
        .join(name)
}

/// A shared dataset, or None (with a note) where this machine lacks it.
fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(SHARED).join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not present", p.display());
        None
    }
}

fn read(p: &Path) -> Dataset {
    read_h5ad(p, &H5adOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn read_raw(p: &Path) -> Dataset {
    read_h5ad(p, &H5adOptions { use_raw: true }).unwrap_or_else(|e| panic!("{e}"))
}

/// Count of cells in category `label` of a categorical column.
fn count(ds: &Dataset, column: &str, label: &str) -> usize {
    match ds.obs_column(column) {
        Some(ObsColumn::Categorical { categories, codes }) => {
            let k = categories
                .iter()
                .position(|c| c == label)
                .expect("category present") as i32;
            codes.iter().filter(|&&c| c == k).count()
        }
        other => panic!("{column} is not categorical: {other:?}"),
    }
}

#[test]
fn pbmc68k_reduced_old_layout_dense_x_and_raw() {
    let Some(p) = shared("pbmc68k_reduced/10x_pbmc68k_reduced.h5ad") else {
        return;
    };
    let ds = read(&p);
    ds.validate().unwrap();
    assert_eq!((ds.n_cells(), ds.n_genes()), (700, 765));
    assert!(matches!(ds.x, Matrix::Dense(_)));
    assert_eq!(ds.cell_names[0], "AAAGCCTGGCTAAC-1");
    assert_eq!(ds.gene_names[0], "HES4");
    assert_eq!(count(&ds, "bulk_labels", "CD19+ B"), 95);
    assert_eq!(count(&ds, "bulk_labels", "CD56+ NK"), 31);
    assert_eq!(count(&ds, "phase", "G2M"), 17);
    assert!(matches!(ds.obs_column("n_genes"), Some(ObsColumn::Numeric(v)) if v[0] == 1003.0));
    let s = summarize_matrix(&ds.x);
    assert_eq!(s.kind, ValueKind::Scaled);
    assert!(
        (s.min - -2.032).abs() < 1e-3 && (s.max - 28.408).abs() < 1e-3,
        "{s:?}"
    );

    let raw = read_raw(&p);
    assert_eq!((raw.n_cells(), raw.n_genes()), (700, 765));
    assert_eq!(raw.x.nnz(), 174_400);
    assert!(matches!(raw.x, Matrix::Csr(_)));
    let s = summarize_matrix(&raw.x);
    assert_eq!(s.kind, ValueKind::LogNormalized);
    assert!((s.max - 6.489).abs() < 1e-3);
    let e = s.expm1_row_sums.unwrap();
    assert!(
        (e.min - 1092.56).abs() < 0.1 && (e.max - 2782.40).abs() < 0.1,
        "{e:?}"
    );
    assert_eq!(s.expm1_sums_constant, Some(false));

    let layout = describe_h5ad(&p).unwrap();
    assert!(layout.has_raw);
    assert_eq!(layout.raw_shape, Some((700, 765)));
    assert_eq!(layout.x_encoding, "dense");
    assert_eq!(layout.obsm, vec!["X_pca", "X_umap"]);
}

#[test]
fn kang_gzip_csr_counts_and_categoricals() {
    let Some(p) = shared("kang_ifnb_pbmc/kang_ifnb_counts.h5ad") else {
        return;
    };
    let t = Instant::now();
    let ds = read(&p);
    eprintln!("kang read in {:.2} s", t.elapsed().as_secs_f64());
    ds.validate().unwrap();
    assert_eq!((ds.n_cells(), ds.n_genes()), (13_999, 14_053));
    assert_eq!(ds.x.nnz(), 9_787_436);
    assert_eq!(ds.cell_names[0], "AAACATACATTTCC.1");
    assert_eq!(count(&ds, "stim", "CTRL"), 6_548);
    assert_eq!(count(&ds, "stim", "STIM"), 7_451);
    assert_eq!(count(&ds, "celltype_silver", "B"), 1_386);
    assert_eq!(count(&ds, "celltype_silver", "NK"), 633);
    match ds.obs_column("is_anomaly_B_NK") {
        Some(ObsColumn::Bool(v)) => assert_eq!(v.iter().filter(|&&b| b).count(), 2_019),
        other => panic!("{other:?}"),
    }
    assert!(looks_like_raw_counts(&ds.x));
    let s = summarize_matrix(&ds.x);
    assert_eq!(s.kind, ValueKind::RawCounts);
    assert_eq!(s.max, 3828.0);
    let lib = s.library_size.unwrap();
    assert_eq!((lib.min, lib.median, lib.max), (678.0, 1674.0, 11789.0));
    let err = read_h5ad(&p, &H5adOptions { use_raw: true }).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { .. }) && err.to_string().contains(".raw"),
        "{err}"
    );
}

#[test]
fn oligodendroglioma_v07_layout() {
    let Some(p) = shared("oligodendroglioma/oligodendroglioma.h5ad") else {
        return;
    };
    let ds = read(&p);
    ds.validate().unwrap();
    assert_eq!((ds.n_cells(), ds.n_genes()), (184, 9_450));
    assert_eq!(ds.x.nnz(), 770_139);
    assert_eq!(count(&ds, "cell_type", "malignant_93"), 40);
    assert_eq!(count(&ds, "cell_type", "Microglia/Macrophage"), 19);
    assert!(ds.cell_names.contains(&"MGH53_P4_H08".to_string()));
    assert_eq!(summarize_matrix(&ds.x).kind, ValueKind::NormalizedLinear);
}

/// Compares a read dataset with its description in fixtures/h5ad/expected.json.
fn check_against_expected(ds: &Dataset, e: &Value) {
    let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
    assert_eq!((ds.n_cells(), ds.n_genes()), (shape[0], shape[1]));
    let names = |v: &Value| -> Vec<String> { serde_json::from_value(v.clone()).unwrap() };
    assert_eq!(ds.cell_names, names(&e["obs_names"]));
    assert_eq!(ds.gene_names, names(&e["var_names"]));
    let x: Vec<Vec<f64>> = serde_json::from_value(e["x"].clone()).unwrap();
    let dense = ds.x.to_dense();
    for (i, row) in x.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert_eq!(dense.row(i)[j], v as f32, "X[{i},{j}]");
        }
    }
    if let Matrix::Csr(c) = &ds.x {
        for i in 0..c.rows {
            assert!(
                c.row(i).0.windows(2).all(|w| w[0] < w[1]),
                "row {i} indices not strictly increasing"
            );
        }
    }
    let cols = e["obs"].as_object().unwrap();
    assert_eq!(ds.obs.len(), cols.len());
    // (serde_json maps are sorted by key, so look columns up by name.)
    for (name, col) in &ds.obs {
        let ecol = cols
            .get(name)
            .unwrap_or_else(|| panic!("unexpected column {name}"));
        let values = &ecol["values"];
        match (ecol["kind"].as_str().unwrap(), col) {
            ("categorical", ObsColumn::Categorical { categories, codes }) => {
                assert_eq!(*categories, names(&ecol["categories"]), "{name}");
                let ec: Vec<i32> = serde_json::from_value(ecol["codes"].clone()).unwrap();
                assert_eq!(*codes, ec, "{name}");
            }
            ("numeric", ObsColumn::Numeric(v)) => {
                let ev: Vec<Option<f64>> = serde_json::from_value(values.clone()).unwrap();
                for (a, b) in v.iter().zip(&ev) {
                    match b {
                        Some(b) => assert_eq!(a, b, "{name}"),
                        None => assert!(a.is_nan(), "{name}"),
                    }
                }
            }
            ("numeric", ObsColumn::Integer(v)) => {
                let ev: Vec<f64> = serde_json::from_value(values.clone()).unwrap();
                assert_eq!(v.iter().map(|&x| x as f64).collect::<Vec<_>>(), ev, "{name}");
            }
            ("bool", ObsColumn::Bool(v)) => {
                assert_eq!(
                    *v,
                    serde_json::from_value::<Vec<bool>>(values.clone()).unwrap(),
                    "{name}"
                );
            }
            ("nullable_bool", ObsColumn::Categorical { categories, codes }) => {
                assert_eq!(*categories, ["False", "True"]);
                let ev: Vec<Option<bool>> = serde_json::from_value(values.clone()).unwrap();
                let want: Vec<i32> = ev.iter().map(|b| b.map_or(-1, |b| b as i32)).collect();
                assert_eq!(*codes, want, "{name}");
            }
            ("text", ObsColumn::Text(v)) => assert_eq!(*v, names(values), "{name}"),
            (kind, col) => panic!("{name}: expected {kind}, read {col:?}"),
        }
    }
}

#[test]
fn fixtures_match_what_anndata_reads() {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    for (name, want_csr) in [
        ("dense", false),
        ("csc", true),
        ("int_csr", true),
        ("old_v07", true),
    ] {
        let ds = read(&fixture(&format!("{name}.h5ad")));
        assert_eq!(matches!(ds.x, Matrix::Csr(_)), want_csr, "{name}");
        check_against_expected(&ds, &expected[name]);
    }
}

#[test]
fn errors_are_typed_and_name_the_file() {
    let opts = H5adOptions::default();
    let p = fixture("not_hdf5.h5ad");
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(matches!(e, Error::UnknownFormat { .. }), "{e}");
    assert!(e.to_string().contains("not_hdf5.h5ad"));

    let p = fixture("no_x.h5ad");
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt { .. }) && e.to_string().contains("no X matrix"),
        "{e}"
    );
    assert!(e.to_string().contains("no_x.h5ad"));

    let p = fixture("does_not_exist.h5ad");
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");

    let e = read_h5ad(&fixture("dense.h5ad"), &H5adOptions { use_raw: true }).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");

    // Truncated HDF5: the signature is there, the rest is not.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.h5ad");
    let bytes = std::fs::read(fixture("dense.h5ad")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let e = read_h5ad(&cut, &opts).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(!e.to_string().contains('\n'));
}

/// A small dataset with every ObsColumn kind, awkward values included.
fn all_kinds(x: Matrix) -> Dataset {
    let n = x.rows();
    let cells: Vec<String> = (0..n).map(|i| format!("cell-{i}")).collect();
    let genes: Vec<String> = (0..x.cols()).map(|j| format!("Gène{j}")).collect();
    let obs = vec![
        (
            "batch".to_string(),
            ObsColumn::Categorical {
                categories: vec!["ctrl".into(), "stim ÿ".into(), "unused".into()],
                codes: (0..n)
                    .map(|i| if i == 2 { -1 } else { (i % 2) as i32 })
                    .collect(),
            },
        ),
        (
            "score".to_string(),
            ObsColumn::Numeric(
                (0..n)
                    .map(|i| {
                        if i == 1 {
                            f64::NAN
                        } else {
                            i as f64 * 0.5 - 1.0
                        }
                    })
                    .collect(),
            ),
        ),
        (
            "flag".to_string(),
            ObsColumn::Bool((0..n).map(|i| i % 3 == 0).collect()),
        ),
        (
            "note".to_string(),
            ObsColumn::Text(
                (0..n)
                    .map(|i| {
                        if i == 0 {
                            String::new()
                        } else {
                            format!("n{i}")
                        }
                    })
                    .collect(),
            ),
        ),
    ];
    Dataset {
        x,
        cell_names: cells,
        gene_names: genes,
        obs,
    }
}

fn example_x(n: usize, g: usize) -> DenseMatrix {
    let mut d = DenseMatrix::zeros(n, g);
    for i in 0..n {
        for j in 0..g {
            if (i * 7 + j * 3) % 4 == 0 {
                d.row_mut(i)[j] = (i * g + j) as f32 * 0.25;
            }
        }
    }
    d
}

/// A JSON description for scripts/check_h5ad_written.py.
fn describe(ds: &Dataset, obsm: &[(String, DenseMatrix)]) -> Value {
    let obs: serde_json::Map<String, Value> = ds
        .obs
        .iter()
        .map(|(name, col)| {
            let v = match col {
                ObsColumn::Categorical { categories, codes } => json!({"kind": "categorical", "categories": categories, "codes": codes}),
                ObsColumn::Numeric(v) => json!({"kind": "numeric", "values": v.iter().map(|x| if x.is_nan() { None } else { Some(*x) }).collect::<Vec<_>>()}),
                ObsColumn::Integer(v) => json!({"kind": "numeric", "values": v}),
                ObsColumn::Bool(v) => json!({"kind": "bool", "values": v}),
                ObsColumn::Text(v) => json!({"kind": "text", "values": v}),
            };
            (name.clone(), v)
        })
        .collect();
    let x = ds.x.to_dense();
    json!({
        "obs_order": ds.obs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "shape": [ds.n_cells(), ds.n_genes()],
        "sparse": matches!(ds.x, Matrix::Csr(_)),
        "x": (0..x.rows).map(|i| x.row(i).to_vec()).collect::<Vec<_>>(),
        "obs_names": ds.cell_names,
        "var_names": ds.gene_names,
        "obs": obs,
        "obsm": obsm.iter().map(|(k, m)| (k.clone(), json!((0..m.rows).map(|i| m.row(i).to_vec()).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
    })
}

fn export_dir() -> Option<PathBuf> {
    std::env::var_os("ACSLEUTH_H5AD_EXPORT").map(PathBuf::from)
}

#[test]
fn write_read_round_trip_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let dense = example_x(5, 6);
    let obsm = vec![
        (
            "X_pca".to_string(),
            DenseMatrix {
                rows: 5,
                cols: 2,
                data: (0..10).map(|v| v as f32 - 3.5).collect(),
            },
        ),
        (
            "X_acsleuth".to_string(),
            DenseMatrix {
                rows: 5,
                cols: 3,
                data: (0..15).map(|v| v as f32 * 0.1).collect(),
            },
        ),
    ];
    for (label, x) in [
        ("csr", Matrix::Csr(CsrMatrix::from_dense(&dense))),
        ("dense", Matrix::Dense(dense.clone())),
    ] {
        let ds = all_kinds(x);
        let p = dir.path().join(format!("kinds_{label}.h5ad"));
        write_h5ad(&p, &ds, &obsm).unwrap();
        let back = read(&p);
        assert_eq!(back.x, ds.x, "{label}");
        assert_eq!(back.cell_names, ds.cell_names);
        assert_eq!(back.gene_names, ds.gene_names);
        assert_eq!(back.obs.len(), ds.obs.len());
        for ((n1, c1), (n2, c2)) in back.obs.iter().zip(&ds.obs) {
            assert_eq!(n1, n2);
            match (c1, c2) {
                (ObsColumn::Numeric(a), ObsColumn::Numeric(b)) => {
                    assert!(
                        a.iter()
                            .zip(b)
                            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())),
                        "{n1}"
                    )
                }
                _ => assert_eq!(c1, c2, "{n1}"),
            }
        }
        // obsm, read with hdf5-pure directly.
        let f = hdf5_pure::File::open(&p).unwrap();
        for (name, m) in &obsm {
            let d = f.dataset(&format!("obsm/{name}")).unwrap();
            assert_eq!(d.shape().unwrap(), vec![m.rows as u64, m.cols as u64]);
            assert_eq!(d.read_f32().unwrap(), m.data);
        }
        let layout = describe_h5ad(&p).unwrap();
        assert_eq!(layout.obsm, vec!["X_acsleuth", "X_pca"]);
        assert!(!layout.has_raw);
        if let Some(out) = export_dir() {
            std::fs::create_dir_all(&out).unwrap();
            std::fs::copy(&p, out.join(format!("kinds_{label}.h5ad"))).unwrap();
            let j = serde_json::to_string(&describe(&ds, &obsm)).unwrap();
            std::fs::write(out.join(format!("kinds_{label}.json")), j).unwrap();
        }
    }
    // Only the two outputs: no temporary files left behind.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["kinds_csr.h5ad", "kinds_dense.h5ad"]);
}

#[test]
fn rewrite_of_python_fixture_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["dense", "csc", "old_v07"] {
        let ds = read(&fixture(&format!("{name}.h5ad")));
        let p = dir.path().join(format!("{name}.h5ad"));
        write_h5ad(&p, &ds, &[]).unwrap();
        let back = read(&p);
        assert_eq!(back.x, ds.x, "{name}");
        assert_eq!(back.cell_names, ds.cell_names);
        assert_eq!(format!("{:?}", back.obs), format!("{:?}", ds.obs), "{name}");
        // Overwriting an existing file works too.
        write_h5ad(&p, &back, &[]).unwrap();
        if let Some(out) = export_dir() {
            std::fs::create_dir_all(&out).unwrap();
            std::fs::copy(&p, out.join(format!("rewrite_{name}.h5ad"))).unwrap();
            std::fs::write(
                out.join(format!("rewrite_{name}.json")),
                serde_json::to_string(&describe(&ds, &[])).unwrap(),
            )
            .unwrap();
        }
    }
}

/// Heavy: only with ACSLEUTH_H5AD_EXPORT set (for the Python check).
#[test]
fn export_kang_rewrite() {
    let (Some(out), Some(p)) = (export_dir(), shared("kang_ifnb_pbmc/kang_ifnb_counts.h5ad"))
    else {
        return;
    };
    let ds = read(&p);
    std::fs::create_dir_all(&out).unwrap();
    let t = Instant::now();
    let dst = out.join("rewrite_kang.h5ad");
    write_h5ad(&dst, &ds, &[]).unwrap();
    eprintln!(
        "kang written in {:.2} s ({} MB)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&dst).unwrap().len() >> 20
    );
    assert_eq!(read(&dst), ds);
}

#[test]
fn write_refuses_bad_input_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.h5ad");
    let mut ds = all_kinds(Matrix::Dense(example_x(4, 3)));
    ds.gene_names.pop();
    assert!(matches!(write_h5ad(&p, &ds, &[]), Err(Error::Invalid(_))));
    let ds = all_kinds(Matrix::Dense(example_x(4, 3)));
    let wrong = vec![("X_pca".to_string(), DenseMatrix::zeros(3, 2))];
    assert!(matches!(
        write_h5ad(&p, &ds, &wrong),
        Err(Error::Invalid(_))
    ));
    let mut bad_name = ds.clone();
    bad_name.obs[0].0 = "a/b".into();
    assert!(matches!(
        write_h5ad(&p, &bad_name, &[]),
        Err(Error::Invalid(_))
    ));
    let missing_dir = dir.path().join("no/such/dir/out.h5ad");
    assert!(write_h5ad(&missing_dir, &ds, &[]).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Writes a minimal hand-made h5ad: X built by `x`, obs/var indexes given.
fn hand_made(path: &Path, obs: &[&str], var: &[&str], x: impl FnOnce(&mut hdf5_pure::FileBuilder)) {
    use hdf5_pure::{AttrValue, FileBuilder};
    let mut b = FileBuilder::new();
    x(&mut b);
    for (name, index) in [("obs", obs), ("var", var)] {
        let mut g = b.create_group(name);
        g.set_attr("_index", AttrValue::VarLenString("_index".into()));
        g.set_attr("encoding-type", AttrValue::VarLenString("dataframe".into()));
        g.create_dataset("_index").with_vlen_strings(index);
        b.add_group(g.finish());
    }
    b.write(path).unwrap();
}

#[test]
fn shape_mismatch_and_unsupported_encoding_are_reported() {
    use hdf5_pure::AttrValue;
    let dir = tempfile::tempdir().unwrap();
    let opts = H5adOptions::default();

    let p = dir.path().join("mismatch.h5ad");
    hand_made(&p, &["a", "b", "c"], &["g1", "g2"], |b| {
        b.create_dataset("X")
            .with_f32_data(&[1.0, 2.0, 3.0, 4.0])
            .with_shape(&[2, 2]);
    });
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt { .. }) && e.to_string().contains("2 rows but obs has 3 names"),
        "{e}"
    );

    let p = dir.path().join("genes.h5ad");
    hand_made(&p, &["a", "b"], &["g1"], |b| {
        b.create_dataset("X")
            .with_f32_data(&[1.0, 2.0, 3.0, 4.0])
            .with_shape(&[2, 2]);
    });
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(
        e.to_string().contains("2 columns but var has 1 names"),
        "{e}"
    );

    let p = dir.path().join("awkward.h5ad");
    hand_made(&p, &["a"], &["g1"], |b| {
        let mut g = b.create_group("X");
        g.set_attr(
            "encoding-type",
            AttrValue::VarLenString("awkward-array".into()),
        );
        b.add_group(g.finish());
    });
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt { .. })
            && e.to_string()
                .contains("unsupported X encoding 'awkward-array'"),
        "{e}"
    );

    // A CSR whose index points past the last gene.
    let p = dir.path().join("bad_index.h5ad");
    hand_made(&p, &["a"], &["g1", "g2"], |b| {
        let mut g = b.create_group("X");
        g.set_attr(
            "encoding-type",
            AttrValue::VarLenString("csr_matrix".into()),
        );
        g.set_attr("shape", AttrValue::I64Array(vec![1, 2]));
        g.create_dataset("data").with_f32_data(&[1.0]);
        g.create_dataset("indices").with_i32_data(&[2]);
        g.create_dataset("indptr").with_i32_data(&[0, 1]);
        b.add_group(g.finish());
    });
    let e = read_h5ad(&p, &opts).unwrap_err();
    assert!(e.to_string().contains("index out of range"), "{e}");
}

/// Regression (fuzzing, #15 item 12): a damaged sparse X whose `data`
/// declares 2,147,483,838 values in a 136 KB file made the reader allocate
/// and fill 8 GB for 14 s before comparing it with the 190 indices. A
/// dataset that declares more than its file can hold is now refused before
/// it is read.
#[test]
fn a_dataset_declaring_more_than_the_file_holds_is_refused_before_reading() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/h5ad/regression_declared_size");
    let e = acsleuth::data::io::read_dataset(&path, &acsleuth::data::io::ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("X/data: the dataset declares 2147483838 values of 4 bytes, more than the file's"), "{e}");
}
