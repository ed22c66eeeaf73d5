//! The PNG figures of `acsleuth::report`: each writes a well-formed PNG of
//! the expected size, rejects bad input with a typed error, and never leaves
//! a partial file.
//!
//! Set `ACSLEUTH_REPORT_EXPORT=/some/dir` to keep a copy of every figure for
//! looking at.

use std::io::Read;
use std::path::{Path, PathBuf};

use acsleuth::data::DenseMatrix;
use acsleuth::report::{self, MAX_SCATTER_POINTS};
use acsleuth::Error;

/// Checks a PNG file end to end: signature, every chunk's CRC, IHDR (8-bit
/// RGB), IDAT inflating to exactly `h × (1 + 3w)` bytes, IEND last.
/// Returns (width, height, file size).
fn check_png(path: &Path) -> (u32, u32, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], &[137, 80, 78, 71, 13, 10, 26, 10], "PNG signature");
    let (mut at, mut dims, mut idat, mut ended) = (8usize, None, Vec::new(), false);
    while at < bytes.len() {
        assert!(!ended, "data after IEND");
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        assert_eq!(h.finalize(), crc, "CRC of chunk {}", String::from_utf8_lossy(kind));
        match kind {
            b"IHDR" => {
                let w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                let hh = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(&data[8..10], &[8, 2], "8-bit RGB");
                dims = Some((w, hh));
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => ended = true,
            _ => {}
        }
        at += 12 + len;
    }
    assert!(ended, "no IEND");
    let (w, h) = dims.expect("no IHDR");
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    assert_eq!(raw.len(), h as usize * (1 + 3 * w as usize), "scanline bytes");
    (w, h, bytes.len())
}

/// Keeps a copy when ACSLEUTH_REPORT_EXPORT is set.
fn export(path: &Path) {
    if let Some(dir) = std::env::var_os("ACSLEUTH_REPORT_EXPORT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, PathBuf::from(dir).join(path.file_name().unwrap())).unwrap();
    }
}

/// Files in `dir` (to catch leftover temporaries).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A deterministic pseudo-random stream in [0, 1).
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut r = Lcg(seed);
    move || r.f(0.0, 1.0)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Scores of 950 normal and 50 anomalous cells, the anomalies higher.
fn detection_data() -> (Vec<f32>, Vec<bool>) {
    let mut u = uniform(1);
    let truth: Vec<bool> = (0..1000).map(|i| i % 20 == 0).collect();
    let scores = truth.iter().map(|&t| u() + if t { 0.6 } else { 0.0 }).collect();
    (scores, truth)
}

#[test]
fn histogram_is_a_png_of_the_expected_size() {
    let d = tempfile::tempdir().unwrap();
    let (scores, truth) = detection_data();
    let groups: Vec<String> = truth.iter().map(|&t| if t { "anomalous" } else { "normal" }.into()).collect();
    let p = d.path().join("score_histogram.png");
    report::plot_score_histogram(&p, &scores, &groups, "Anomaly scores").unwrap();
    let (w, h, size) = check_png(&p);
    assert_eq!((w, h), (1100, 700));
    assert!((5_000..2_000_000).contains(&size), "{size} bytes");
    export(&p);
    assert_eq!(listing(d.path()), ["score_histogram.png"]);
}

#[test]
fn histogram_of_constant_scores_and_one_group() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("constant.png");
    report::plot_score_histogram(&p, &[0.25; 7], &strings(&["all"; 7]), "Constant").unwrap();
    check_png(&p);
    export(&p);
}

#[test]
fn histogram_rejects_bad_input_without_touching_disk() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("h.png");
    let bad = [
        report::plot_score_histogram(&p, &[], &[], "t"),
        report::plot_score_histogram(&p, &[1.0, 2.0], &strings(&["a"]), "t"),
        report::plot_score_histogram(&p, &[1.0, f32::NAN], &strings(&["a", "b"]), "t"),
        report::plot_score_histogram(&p, &[1.0, f32::INFINITY], &strings(&["a", "b"]), "t"),
    ];
    for r in bad {
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }
    assert!(listing(d.path()).is_empty());
}

#[test]
fn scatter_of_a_projection_with_many_labels() {
    let d = tempfile::tempdir().unwrap();
    // 40 labels (more than the legend and palette hold), clusters in 6-D.
    let mut u = uniform(2);
    let n = 4000;
    let mut m = DenseMatrix::zeros(n, 6);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 40;
        for (j, v) in m.row_mut(i).iter_mut().enumerate() {
            *v = u() + if j == c % 6 { (c / 6) as f32 * 2.0 } else { 0.0 };
        }
        labels.push(format!("cell type number {c} with a long name"));
    }
    let xy = report::project_2d(&m).unwrap();
    assert_eq!(xy.len(), n);
    let p = d.path().join("embedding.png");
    report::plot_scatter_with(&p, &xy, &labels, "Embedding (PCA)", ("PC 1", "PC 2")).unwrap();
    let (w, h, _) = check_png(&p);
    assert_eq!((w, h), (1100, 800));
    export(&p);
}

#[test]
fn scatter_subsamples_large_input_deterministically() {
    let d = tempfile::tempdir().unwrap();
    let n = 3 * MAX_SCATTER_POINTS;
    let mut u = uniform(3);
    let xy: Vec<[f32; 2]> = (0..n).map(|_| [u() * 10.0, u()]).collect();
    let labels: Vec<String> = (0..n).map(|i| if i % 50 == 0 { "anomalous".into() } else { "normal".into() }).collect();
    let (a, b) = (d.path().join("a.png"), d.path().join("b.png"));
    let t = std::time::Instant::now();
    report::plot_scatter(&a, &xy, &labels, "Large").unwrap();
    eprintln!("scatter of {n} points: {:?}", t.elapsed());
    report::plot_scatter(&b, &xy, &labels, "Large").unwrap();
    check_png(&a);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same input, same image");
    export(&a);
}

#[test]
fn scatter_of_identical_points_and_empty_labels() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("same.png");
    report::plot_scatter(&p, &[[1.0, -2.0]; 3], &strings(&["", "x", ""]), "Identical").unwrap();
    check_png(&p);
}

#[test]
fn scatter_rejects_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.png");
    assert!(matches!(report::plot_scatter(&p, &[], &[], "t"), Err(Error::Invalid(_))));
    assert!(matches!(report::plot_scatter(&p, &[[0.0, 1.0]], &strings(&["a", "b"]), "t"), Err(Error::Invalid(_))));
    assert!(matches!(report::plot_scatter(&p, &[[0.0, f32::NAN]], &strings(&["a"]), "t"), Err(Error::Invalid(_))));
    assert!(listing(d.path()).is_empty());
}

#[test]
fn roc_pr_is_a_png_and_replaces_an_old_file() {
    let d = tempfile::tempdir().unwrap();
    let (scores, truth) = detection_data();
    let p = d.path().join("roc_pr.png");
    std::fs::write(&p, b"old").unwrap();
    report::plot_roc_pr(&p, &scores, &truth, "Detection against the truth").unwrap();
    let (w, h, _) = check_png(&p);
    assert_eq!((w, h), (1400, 700));
    export(&p);
    assert_eq!(listing(d.path()), ["roc_pr.png"]);
}

#[test]
fn roc_pr_of_constant_scores() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("roc_constant.png");
    report::plot_roc_pr(&p, &[0.5; 4], &[true, false, false, true], "Constant").unwrap();
    check_png(&p);
    export(&p);
}

#[test]
fn roc_pr_rejects_bad_input_and_keeps_the_old_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("roc.png");
    std::fs::write(&p, b"old").unwrap();
    let bad = [
        report::plot_roc_pr(&p, &[], &[], "t"),
        report::plot_roc_pr(&p, &[0.1, 0.2], &[true], "t"),
        report::plot_roc_pr(&p, &[0.1, 0.2], &[true, true], "t"), // one class only
        report::plot_roc_pr(&p, &[0.1, f32::NAN], &[true, false], "t"),
    ];
    for r in bad {
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(listing(d.path()), ["roc.png"]);
}

#[test]
fn unwritable_path_is_an_io_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("missing-folder").join("h.png");
    let r = report::plot_score_histogram(&p, &[1.0, 2.0], &strings(&["a", "b"]), "t");
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert!(listing(d.path()).is_empty());
}

#[test]
fn roc_pr_of_a_million_cells_is_fast() {
    let d = tempfile::tempdir().unwrap();
    let n = 1_000_000;
    let mut u = uniform(4);
    let truth: Vec<bool> = (0..n).map(|i| i % 100 == 0).collect();
    let scores: Vec<f32> = truth.iter().map(|&t| u() + if t { 0.3 } else { 0.0 }).collect();
    let p = d.path().join("roc_1e6.png");
    let t = std::time::Instant::now();
    report::plot_roc_pr(&p, &scores, &truth, "10^6 cells").unwrap();
    let groups: Vec<String> = truth.iter().map(|&t| if t { "anomalous" } else { "normal" }.into()).collect();
    report::plot_score_histogram(&d.path().join("hist_1e6.png"), &scores, &groups, "10^6 cells").unwrap();
    eprintln!("ROC/PR + histogram of {n} cells: {:?}", t.elapsed());
    check_png(&p);
    export(&p);
}

// ---- the run's target.h5ad: input X and obs, new obs columns, obsm, layers ----

use acsleuth::data::h5ad::{describe_h5ad, read_h5ad, read_h5ad_matrix, write_h5ad_with, H5adOptions};
use acsleuth::data::{CsrMatrix, Dataset, Matrix, ObsColumn};

mod common;
use common::Lcg;

/// A run's output: a CSR input with a cell-type column, then the columns a
/// run adds (score, anomaly call, subtype missing for normal cells), two
/// embeddings and a dense `corrected` layer.
type RunOutput = (Dataset, Vec<(String, DenseMatrix)>, Vec<(String, Matrix)>);

fn run_output() -> RunOutput {
    let (n, g) = (12, 5);
    let mut x = DenseMatrix::zeros(n, g);
    for i in 0..n {
        for j in 0..g {
            if (i + 2 * j) % 3 == 0 {
                x.row_mut(i)[j] = (i * g + j) as f32;
            }
        }
    }
    let anomaly: Vec<bool> = (0..n).map(|i| i % 4 == 1).collect();
    let subtype: Vec<Option<String>> =
        (0..n).map(|i| anomaly[i].then(|| format!("subtype {}", i % 8 / 4))).collect();
    let obs = vec![
        (
            "cell_type".to_string(),
            ObsColumn::Categorical { categories: vec!["B".into(), "T".into()], codes: (0..n as i32).map(|i| i % 2).collect() },
        ),
        ("score".to_string(), ObsColumn::Numeric((0..n).map(|i| (i as f32 * 0.1 - 0.3) as f64).collect())),
        ("anomaly".to_string(), ObsColumn::Bool(anomaly)),
        ("subtype".to_string(), report::categorical_column(&subtype)),
    ];
    let ds = Dataset {
        x: Matrix::Csr(CsrMatrix::from_dense(&x)),
        cell_names: (0..n).map(|i| format!("AAAC-{i}")).collect(),
        gene_names: (0..g).map(|j| format!("G{j}")).collect(),
        obs,
    };
    let mut emb = DenseMatrix::zeros(n, 4);
    emb.data.iter_mut().enumerate().for_each(|(k, v)| *v = (k as f32).sin());
    let pca = DenseMatrix { rows: n, cols: 2, data: report::project_2d(&emb).unwrap().concat() };
    let mut corrected = x.clone();
    corrected.data.iter_mut().for_each(|v| *v = *v * 0.5 + 0.25);
    let obsm = vec![("X_acsleuth".to_string(), emb), ("X_acsleuth_pca".to_string(), pca)];
    let layers = vec![("corrected".to_string(), Matrix::Dense(corrected))];
    (ds, obsm, layers)
}

fn dense_json(m: &DenseMatrix) -> serde_json::Value {
    serde_json::json!((0..m.rows).map(|i| m.row(i).to_vec()).collect::<Vec<_>>())
}

#[test]
fn run_h5ad_reads_back_with_obs_obsm_and_layers() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("target.h5ad");
    let (ds, obsm, layers) = run_output();
    write_h5ad_with(&p, &ds, &obsm, &layers).unwrap();
    assert_eq!(listing(d.path()), ["target.h5ad"]);

    let back = read_h5ad(&p, &H5adOptions::default()).unwrap();
    assert_eq!(back, ds, "X, names and obs (subtype code -1 for normal cells)");
    let layout = describe_h5ad(&p).unwrap();
    assert_eq!(layout.obsm, ["X_acsleuth", "X_acsleuth_pca"]);
    assert_eq!(layout.layers, ["corrected"]);
    for (name, m) in &obsm {
        let got = read_h5ad_matrix(&p, &format!("obsm/{name}")).unwrap();
        assert_eq!(got, Some(Matrix::Dense(m.clone())), "obsm {name}");
    }
    assert_eq!(read_h5ad_matrix(&p, "layers/corrected").unwrap().as_ref(), Some(&layers[0].1));
    assert_eq!(read_h5ad_matrix(&p, "layers/missing").unwrap(), None);

    // A CSR layer too, and the old entry point still writes no layers.
    let csr = vec![("counts".to_string(), ds.x.clone())];
    write_h5ad_with(&p, &ds, &[], &csr).unwrap();
    assert_eq!(read_h5ad_matrix(&p, "layers/counts").unwrap().as_ref(), Some(&ds.x));
    acsleuth::data::h5ad::write_h5ad(&p, &ds, &obsm).unwrap();
    assert!(describe_h5ad(&p).unwrap().layers.is_empty());

    // For scripts/check_run_h5ad.py (anndata must read the same).
    if let Some(dir) = std::env::var_os("ACSLEUTH_REPORT_EXPORT") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_h5ad_with(&dir.join("run_output.h5ad"), &ds, &obsm, &layers).unwrap();
        let col = |name: &str| ds.obs_column(name).unwrap();
        let ObsColumn::Numeric(score) = col("score") else { unreachable!() };
        let ObsColumn::Bool(anomaly) = col("anomaly") else { unreachable!() };
        let subtype: Vec<Option<String>> =
            (0..ds.n_cells()).map(|i| Some(col("subtype").get_str(i)).filter(|s| !s.is_empty())).collect();
        let Matrix::Dense(corrected) = &layers[0].1 else { unreachable!() };
        let want = serde_json::json!({
            "obs_names": ds.cell_names,
            "var_names": ds.gene_names,
            "x": dense_json(&ds.x.to_dense()),
            "cell_type": (0..ds.n_cells()).map(|i| col("cell_type").get_str(i)).collect::<Vec<_>>(),
            "score": score,
            "anomaly": anomaly,
            "subtype": subtype,
            "obsm": obsm.iter().map(|(n, m)| (n.clone(), dense_json(m))).collect::<serde_json::Map<_, _>>(),
            "layers": {"corrected": dense_json(corrected)},
        });
        std::fs::write(dir.join("run_output.json"), serde_json::to_string_pretty(&want).unwrap()).unwrap();
    }
}

#[test]
fn run_h5ad_refuses_bad_layers_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("target.h5ad");
    let (ds, obsm, layers) = run_output();
    let wrong_shape = vec![("corrected".to_string(), Matrix::Dense(DenseMatrix::zeros(ds.n_cells(), 3)))];
    let twice = vec![layers[0].clone(), layers[0].clone()];
    let bad_name = vec![("a/b".to_string(), layers[0].1.clone())];
    for l in [wrong_shape, twice, bad_name] {
        let r = write_h5ad_with(&p, &ds, &obsm, &l);
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }
    let short_obsm = vec![("X_acsleuth".to_string(), DenseMatrix::zeros(3, 2))];
    assert!(matches!(write_h5ad_with(&p, &ds, &short_obsm, &layers), Err(Error::Invalid(_))));
    assert!(listing(d.path()).is_empty());
}

#[test]
fn projection_of_many_rows_fits_on_a_subset_and_projects_all() {
    // 150k rows in 4-D with most variance along (1, 1, 0, 0) then (0, 0, 1, 0).
    let n = report::PROJECT_FIT_ROWS + 50_000;
    let mut u = uniform(5);
    let mut m = DenseMatrix::zeros(n, 4);
    for i in 0..n {
        let (a, b) = (u() * 10.0 - 5.0, u() * 4.0 - 2.0);
        m.row_mut(i).copy_from_slice(&[a + 0.1 * u(), a + 0.1 * u(), b, 0.1 * u()]);
    }
    let t = std::time::Instant::now();
    let p = report::project_2d(&m).unwrap();
    eprintln!("project_2d of {n} × 4: {:?}", t.elapsed());
    assert_eq!(p.len(), n);
    // PC 1 ≈ ±(x0 + x1)/√2 up to centring, PC 2 ≈ ±x2: check by correlation.
    let corr = |f: &dyn Fn(usize) -> f64, g: &dyn Fn(usize) -> f64| {
        let (mut sf, mut sg, mut sff, mut sgg, mut sfg) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let (a, b) = (f(i), g(i));
            sf += a;
            sg += b;
            sff += a * a;
            sgg += b * b;
            sfg += a * b;
        }
        let k = n as f64;
        (sfg / k - sf * sg / k / k) / ((sff / k - (sf / k).powi(2)) * (sgg / k - (sg / k).powi(2))).sqrt()
    };
    let c1 = corr(&|i| p[i][0] as f64, &|i| (m.row(i)[0] + m.row(i)[1]) as f64);
    let c2 = corr(&|i| p[i][1] as f64, &|i| m.row(i)[2] as f64);
    assert!(c1.abs() > 0.999 && c2.abs() > 0.999, "{c1} {c2}");
}
