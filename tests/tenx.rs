//! The 10x Matrix Market reader on folders generated here (plain and
//! gzipped; Cell Ranger 2 `genes.tsv` and Cell Ranger 3 `features.tsv`).

use std::io::Write;
use std::path::Path;

use acsleuth::data::io::{detect, read_dataset, Format, ReadOptions};
use acsleuth::data::tenx::{is_10x_dir, read_10x};
use acsleuth::data::{DenseMatrix, Matrix};
use acsleuth::Error;

/// cells × genes truth for the fixture: 4 cells, 5 features.
fn truth() -> DenseMatrix {
    DenseMatrix {
        rows: 4,
        cols: 5,
        data: vec![
            0.0, 3.0, 0.0, 0.0, 1.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, //
            7.0, 0.0, 2.0, 0.0, 0.0, //
            0.0, 1.0, 0.0, 12.0, 5.0,
        ],
    }
}

/// The fixture as Matrix Market text (genes × cells, entries deliberately
/// not sorted by cell, one comment line).
fn mtx_text() -> String {
    let t = truth();
    let mut entries = vec![];
    for c in (0..t.rows).rev() {
        for g in 0..t.cols {
            let v = t.row(c)[g];
            if v != 0.0 {
                entries.push(format!("{} {} {}", g + 1, c + 1, v as u32));
            }
        }
    }
    format!(
        "%%MatrixMarket matrix coordinate integer general\n%metadata_json: {{}}\n5 4 {}\n{}\n",
        entries.len(),
        entries.join("\n")
    )
}

const BARCODES: &str = "AAAC-1\nAAAG-1\nCCCT-1\nGGGA-1\n";
const FEATURES: &str = "ENSG1\tMT-CO1\tGene Expression\nENSG2\tCD3E\tGene Expression\nENSG3\tCD3E\tGene Expression\nENSG4\tCD3E-1\tGene Expression\nENSG5\tNKG7\tGene Expression\n";

fn put(dir: &Path, name: &str, text: &str, gz: bool) {
    if gz {
        let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
    } else {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn folder(gz: bool, features_name: &str, features: &str, mtx: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    put(d.path(), "matrix.mtx", mtx, gz);
    put(d.path(), "barcodes.tsv", BARCODES, gz);
    put(d.path(), features_name, features, gz);
    d
}

#[test]
fn reads_plain_and_gzipped_with_both_feature_files() {
    // genes.tsv (Cell Ranger 2) has two columns.
    let genes_v2: String = FEATURES.lines().map(|l| l.rsplit_once('\t').unwrap().0.to_string() + "\n").collect();
    for gz in [false, true] {
        for (fname, text) in [("features.tsv", FEATURES), ("genes.tsv", genes_v2.as_str())] {
            let d = folder(gz, fname, text, &mtx_text());
            assert!(is_10x_dir(d.path()));
            assert_eq!(detect(d.path()).unwrap(), Format::TenX);
            let ds = read_dataset(d.path(), &ReadOptions::default()).unwrap();
            let Matrix::Csr(c) = &ds.x else { panic!("10x reads as CSR") };
            assert_eq!(c.to_dense(), truth(), "gz={gz} {fname}");
            assert_eq!(c.nnz(), 7);
            assert_eq!(ds.cell_names, ["AAAC-1", "AAAG-1", "CCCT-1", "GGGA-1"]);
            // scanpy's var_names_make_unique: the second CD3E would be CD3E-1,
            // which is taken, so it becomes CD3E-2.
            assert_eq!(ds.gene_names, ["MT-CO1", "CD3E", "CD3E-2", "CD3E-1", "NKG7"], "gz={gz} {fname}");
        }
    }
}

#[test]
fn single_column_features_and_non_gex_filtering() {
    let one_col = "G1\nG2\nG3\nG4\nG5\n";
    let d = folder(false, "genes.tsv", one_col, &mtx_text());
    assert_eq!(read_10x(d.path()).unwrap().gene_names, ["G1", "G2", "G3", "G4", "G5"]);

    // Antibody-capture features are dropped, as scanpy's gex_only does.
    let mixed = FEATURES.replace("ENSG2\tCD3E\tGene Expression", "ENSG2\tCD3E\tAntibody Capture");
    let d = folder(true, "features.tsv", &mixed, &mtx_text());
    let ds = read_10x(d.path()).unwrap();
    assert_eq!(ds.gene_names, ["MT-CO1", "CD3E-2", "CD3E-1", "NKG7"]);
    let t = truth();
    let dense = ds.x.to_dense();
    for c in 0..4 {
        let want: Vec<f32> = [0, 2, 3, 4].iter().map(|&g| t.row(c)[g]).collect();
        assert_eq!(dense.row(c), want.as_slice());
    }
}

#[test]
fn real_and_pattern_values_and_repeated_entries() {
    let mtx = "%%MatrixMarket matrix coordinate real general\n5 4 3\n1 1 0.5\n1 1 1.25\n5 4 2e-3\n";
    let d = folder(false, "features.tsv", FEATURES, mtx);
    let x = read_10x(d.path()).unwrap().x.to_dense();
    assert_eq!(x.row(0)[0], 1.75);
    assert_eq!(x.row(3)[4], 2e-3);
    let mtx = "%%MatrixMarket matrix coordinate pattern general\n5 4 2\n2 1\n3 4\n";
    let d = folder(false, "features.tsv", FEATURES, mtx);
    let x = read_10x(d.path()).unwrap().x.to_dense();
    assert_eq!((x.row(0)[1], x.row(3)[2], x.data.iter().sum::<f32>()), (1.0, 1.0, 2.0));
}

fn err_of(mtx: &str) -> String {
    let d = folder(false, "features.tsv", FEATURES, mtx);
    let e = read_10x(d.path()).expect_err("must fail");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    e.to_string()
}

#[test]
fn malformed_matrix_market_is_a_clear_error() {
    let h = "%%MatrixMarket matrix coordinate integer general\n";
    let cases: Vec<(String, &str)> = vec![
        ("%%MatrixMarket matrix\n5 4 0\n".into(), "not a Matrix Market header"),
        ("hello\n".into(), "not a Matrix Market header"),
        ("%%MatrixMarket matrix array real general\n5 4\n".into(), "'array' format is not supported"),
        ("%%MatrixMarket matrix coordinate integer symmetric\n5 4 0\n".into(), "symmetry"),
        (format!("{h}5 4\n"), "expected 'rows columns entries'"),
        (format!("{h}5 4 2\n1 1 3\n"), "declares 2 entries but the file has 1"),
        (format!("{h}5 4 1\n1 1 3\n2 2 3\n"), "line 4: more entries than the 1"),
        (format!("{h}5 4 1\n6 1 3\n"), "line 3: entry (6, 1) out of range"),
        (format!("{h}5 4 1\n1 0 3\n"), "out of range"),
        (format!("{h}5 4 1\n1 1 -3\n"), "negative value -3"),
        (format!("{h}5 4 1\n1 1 2.5\n"), "not an integer"),
        (format!("{h}5 4 1\n1 1\n"), "expected 3 fields"),
        ("%%MatrixMarket matrix coordinate real general\n5 4 1\n1 1 nan\n".into(), "non-finite"),
        ("%%MatrixMarket matrix coordinate real general\n5 4 1\n1 1 -0.5\n".into(), "negative value"),
        (format!("{h}6 4 0\n"), "lists 5 features but matrix.mtx has 6 rows"),
        (format!("{h}5 3 0\n"), "lists 4 barcodes but matrix.mtx has 3 columns"),
    ];
    for (mtx, want) in cases {
        let e = err_of(&mtx);
        assert!(e.contains(want), "{mtx:?}: got {e:?}, want {want:?}");
        assert!(!e.contains('\n'), "one-line error: {e:?}");
    }
}

#[test]
fn missing_parts_are_named() {
    let d = folder(false, "features.tsv", FEATURES, &mtx_text());
    std::fs::remove_file(d.path().join("barcodes.tsv")).unwrap();
    let e = read_10x(d.path()).err().unwrap().to_string();
    assert!(e.contains("no barcodes.tsv or barcodes.tsv.gz"), "{e}");
    let d = folder(true, "features.tsv", FEATURES, &mtx_text());
    std::fs::remove_file(d.path().join("features.tsv.gz")).unwrap();
    let e = read_10x(d.path()).err().unwrap().to_string();
    assert!(e.contains("features.tsv[.gz] or genes.tsv[.gz]"), "{e}");
    // A damaged gzip stream is an error, not a panic.
    let d = folder(true, "features.tsv", FEATURES, &mtx_text());
    let p = d.path().join("matrix.mtx.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    assert!(read_10x(d.path()).is_err());
    // Repeated barcodes are refused.
    let d = folder(false, "features.tsv", FEATURES, &mtx_text());
    std::fs::write(d.path().join("barcodes.tsv"), "A\nB\nA\nC\n").unwrap();
    assert!(read_10x(d.path()).err().unwrap().to_string().contains("duplicated cell (barcode) name 'A'"));
}
