//! Batch-mixing metrics: silhouette against scikit-learn, the kNN metrics
//! against neighbours from scikit-learn's NearestNeighbors, on
//! fixtures/mixing/cases.json (scripts/make_mixing_fixtures.py); the kNN
//! search against a naive one across several tiles; behaviour on mixed and
//! separated batches; typed errors.

use acsleuth::backend::rng;
use acsleuth::data::DenseMatrix;
use acsleuth::metrics::{knn_indices, knn_label_accuracy, knn_mixing, silhouette};
use serde_json::Value;

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mixing/cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

#[test]
fn metrics_match_sklearn() {
    let fx = load();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for (ci, c) in cases.iter().enumerate() {
        let rows: Vec<Vec<f32>> = c["x"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
            .collect();
        let x = DenseMatrix { rows: rows.len(), cols: rows[0].len(), data: rows.concat() };
        let labels: Vec<u32> = c["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let k = c["k"].as_u64().unwrap() as usize;
        let s = silhouette(&x, &labels).unwrap();
        let want = c["silhouette"].as_f64().unwrap();
        assert!((s - want).abs() < 1e-9, "case {ci}: silhouette {s} vs sklearn {want}");
        let m = knn_mixing(&x, &labels, k).unwrap();
        let want = c["knn_mixing"].as_f64().unwrap();
        assert!((m - want).abs() < 1e-12, "case {ci}: knn_mixing {m} vs {want}");
        let a = knn_label_accuracy(&x, &labels, k).unwrap();
        let want = c["knn_label_accuracy"].as_f64().unwrap();
        assert!((a - want).abs() < 1e-12, "case {ci}: knn_label_accuracy {a} vs {want}");
    }
}

fn random(n: usize, g: usize, seed: u64, shift: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; n * g];
    rng::fill_normal(seed, 0, shift, 1.0, &mut v);
    v
}

/// 700 cells: several query blocks and tiles, with a partial last one.
#[test]
fn knn_matches_a_naive_search() {
    let (n, g, k) = (700, 6, 9);
    let x = DenseMatrix { rows: n, cols: g, data: random(n, g, 1, 0.0) };
    let nb = knn_indices(&x, k).unwrap();
    for i in (0..n).step_by(37) {
        let mut d: Vec<(f64, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| (x.row(i).iter().zip(x.row(j)).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>(), j))
            .collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let want: Vec<u32> = d[..k].iter().map(|&(_, j)| j as u32).collect();
        assert_eq!(&nb[i * k..(i + 1) * k], &want[..], "cell {i}");
    }
}

/// Two batches drawn from one distribution mix (score near 2); shifted
/// apart they do not (score 1, silhouette near 1).
#[test]
fn mixed_and_separated_batches() {
    let (n, g) = (400, 5);
    let batches: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let mixed = DenseMatrix { rows: n, cols: g, data: random(n, g, 2, 0.0) };
    let mut apart = mixed.clone();
    for (i, &b) in batches.iter().enumerate() {
        if b == 1 {
            apart.row_mut(i).iter_mut().for_each(|v| *v += 20.0);
        }
    }
    let (mm, ma) = (knn_mixing(&mixed, &batches, 20).unwrap(), knn_mixing(&apart, &batches, 20).unwrap());
    assert!(mm > 1.7 && (ma - 1.0).abs() < 1e-12, "mixed {mm}, apart {ma}");
    let (sm, sa) = (silhouette(&mixed, &batches).unwrap(), silhouette(&apart, &batches).unwrap());
    assert!(sm.abs() < 0.05 && sa > 0.8, "silhouette mixed {sm}, apart {sa}");
    // Batch labels are not preserved when mixed (about half), and fully when apart.
    let (am, aa) = (knn_label_accuracy(&mixed, &batches, 15).unwrap(), knn_label_accuracy(&apart, &batches, 15).unwrap());
    assert!((0.3..0.7).contains(&am) && aa == 1.0, "accuracy mixed {am}, apart {aa}");
}

#[test]
fn bad_inputs_are_errors() {
    let x = DenseMatrix { rows: 4, cols: 2, data: vec![0., 0., 1., 0., 0., 1., 1., 1.] };
    let msg = |r: acsleuth::Result<f64>| r.unwrap_err().to_string();
    assert!(msg(silhouette(&x, &[0, 1, 0])).contains("3 labels for 4 cells"));
    assert!(msg(silhouette(&x, &[1, 1, 1, 1])).contains("got 1"));
    assert!(msg(silhouette(&x, &[0, 1, 2, 3])).contains("got 4"));
    assert!(msg(knn_mixing(&x, &[0, 1, 0, 1], 0)).contains("k must be"));
    assert!(msg(knn_mixing(&x, &[0, 1, 0, 1], 4)).contains("k must be"));
    assert!(msg(knn_label_accuracy(&x, &[0, 1], 1)).contains("2 labels for 4 cells"));
    let mut nan = x.clone();
    nan.data[3] = f32::NAN;
    assert!(msg(knn_mixing(&nan, &[0, 1, 0, 1], 2)).contains("cell 1, feature 1"));
    let empty = DenseMatrix { rows: 0, cols: 2, data: vec![] };
    assert!(msg(silhouette(&empty, &[])).contains("no cells"));
    assert!(knn_indices(&x, 3).is_ok());
}
