//! Preprocessing against scanpy 1.11.5 on fixtures/preprocess/ (a seeded
//! 500-cell x 2000-gene sample of the Kang PBMC counts, written by
//! scripts/make_preprocess_fixtures.py).

use acsleuth::data::preprocess::{self, hvg, HvgFlavor, Preprocess, ValueKind};
use acsleuth::data::{CsrMatrix, Dataset, DenseMatrix, Matrix};
use acsleuth::Error;
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/preprocess");

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()).unwrap()
}
fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}
fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
}

struct Fixture {
    counts: CsrMatrix,
    genes: Vec<String>,
    cells: Vec<String>,
    expected: Value,
}

fn load() -> Fixture {
    let c = json("counts.json");
    let counts = CsrMatrix {
        rows: c["rows"].as_u64().unwrap() as usize,
        cols: c["cols"].as_u64().unwrap() as usize,
        indptr: c["indptr"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect(),
        indices: c["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect(),
        data: c["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect(),
    };
    let names = |k: &str| c[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    Fixture { counts, genes: names("genes"), cells: names("cells"), expected: json("expected.json") }
}

/// |a − b| ≤ 1e-5·|b|, or ≤ 1e-7 absolute near 0; NaN only where NaN.
fn close_all(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let worst = a.iter().zip(b).filter(|(_, y)| y.is_finite() && y.abs() > 1e-3).map(|(x, y)| ((x - y) / y).abs()).fold(0.0, f64::max);
    println!("{what}: max relative difference {worst:.2e}");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if y.is_nan() {
            assert!(x.is_nan(), "{what}[{i}]: {x} vs scanpy NaN");
            continue;
        }
        assert!((x - y).abs() <= 1e-5 * y.abs() + 1e-7, "{what}[{i}]: {x} vs scanpy {y}");
    }
}

fn scanpy_lognorm() -> Vec<f64> {
    let raw = std::fs::read(format!("{DIR}/lognorm.f32")).unwrap();
    raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect()
}

fn filtered(fx: &Fixture) -> CsrMatrix {
    let f = preprocess::filter_genes(&fx.counts, &fx.genes, 3, true);
    preprocess::select_columns(&fx.counts, &f.kept)
}

#[test]
fn gene_filter_matches_scanpy() {
    let fx = load();
    let f = preprocess::filter_genes(&fx.counts, &fx.genes, 3, true);
    assert_eq!(f.kept, usizes(&fx.expected["kept"]));
    assert!(f.dropped_min_cells > 0);
    // ERCC1..ERCC8 are real genes, kept by the name rule.
    assert_eq!(f.dropped_by_name, 0);
    // Issue 15 item 10: reports carry the count, not the index list (on
    // Kang 13,100 indices made report.json 215 KB; now 3.5 KB).
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["n_kept"], f.kept.len());
    assert!(json.get("kept").is_none(), "{json}");
}

#[test]
fn gene_name_rule() {
    for n in ["MT-CO1", "mt-Nd1", "Mt-Atp6", "ERCC-00002", "ercc-00130"] {
        assert!(preprocess::is_dropped_gene_name(n), "{n}");
    }
    for n in ["ERCC1", "ERCC6L2", "MTOR", "MT1A", "CD3D", "M", ""] {
        assert!(!preprocess::is_dropped_gene_name(n), "{n}");
    }
}

#[test]
fn normalize_total_and_log1p_match_scanpy() {
    let fx = load();
    let mut x = filtered(&fx);
    let target = preprocess::normalize_total(&mut x, None).unwrap();
    assert_eq!(target, fx.expected["target_sum"].as_f64().unwrap());
    preprocess::log1p(&mut x);
    let want = scanpy_lognorm();
    let got: Vec<f64> = x.data.iter().map(|&v| v as f64).collect();
    close_all(&got, &want, "log1p(normalize_total)");
}

#[test]
fn seurat_v3_matches_scanpy() {
    let fx = load();
    let x = filtered(&fx);
    let e = &fx.expected["seurat_v3"];
    let h = hvg::seurat_v3(&x, Some(500)).unwrap();
    close_all(&h.means, &f64s(&e["means"]), "means");
    close_all(&h.variances, &f64s(&e["variances"]), "variances");
    close_all(&h.normalized, &f64s(&e["variances_norm"]), "variances_norm");
    assert_eq!(h.selected, usizes(&e["selected_500"]));
    // Ranks agree up to the order among exactly tied values (numpy's
    // argsort is not stable).
    for (j, r) in f64s(&e["rank_500"]).iter().enumerate() {
        if !r.is_nan() {
            let ties = h.normalized.iter().filter(|&&v| v == h.normalized[j]).count();
            assert!(h.rank[j].abs_diff(*r as usize) < ties, "rank of gene {j}: {} vs {r}", h.rank[j]);
        }
    }
    assert_eq!(h.loess_singular_fits, 0);
    let h200 = hvg::seurat_v3(&x, Some(200)).unwrap();
    assert_eq!(h200.selected, usizes(&e["selected_200"]));
    assert_eq!(hvg::seurat_v3(&x, None).unwrap().selected.len(), x.cols);
}

#[test]
fn seurat_dispersion_matches_scanpy() {
    let fx = load();
    // scanpy's own log-normalized values as input, to test the HVG step alone.
    let mut x = filtered(&fx);
    x.data = scanpy_lognorm().iter().map(|&v| v as f32).collect();
    let e = &fx.expected["seurat"];
    let h = hvg::seurat(&x, Some(500)).unwrap();
    close_all(&h.means, &f64s(&e["means"]), "means");
    close_all(&h.dispersions, &f64s(&e["dispersions"]), "dispersions");
    close_all(&h.normalized, &f64s(&e["dispersions_norm"]), "dispersions_norm");
    assert_eq!(h.selected, usizes(&e["selected_500"]));
    assert_eq!(hvg::seurat(&x, Some(200)).unwrap().selected, usizes(&e["selected_200"]));
}

fn dataset(x: CsrMatrix, cells: Vec<String>, genes: Vec<String>) -> Dataset {
    Dataset { x: Matrix::Csr(x), cell_names: cells, gene_names: genes, obs: vec![] }
}

#[test]
fn align_reorders_fills_and_refuses() {
    // 2 cells x 3 genes: A B C.
    let x = CsrMatrix::from_dense(&DenseMatrix { rows: 2, cols: 3, data: vec![1., 2., 3., 4., 5., 6.] });
    let names: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
    let refg: Vec<String> = ["C", "Z", "A"].iter().map(|s| s.to_string()).collect();
    let (m, a) = preprocess::align_genes(&x, &names, &refg, 0.5).unwrap();
    assert_eq!(m.to_dense().data, vec![3., 0., 1., 6., 0., 4.]);
    assert_eq!((a.n_shared, a.n_missing), (2, 1));
    assert_eq!(a.missing_examples, vec!["Z".to_string()]);
    let too_few: Vec<String> = ["C", "Y", "Z"].iter().map(|s| s.to_string()).collect();
    assert!(matches!(preprocess::align_genes(&x, &names, &too_few, 0.5), Err(Error::Invalid(_))));
    let none: Vec<String> = ["X", "Y"].iter().map(|s| s.to_string()).collect();
    assert!(matches!(preprocess::align_genes(&x, &names, &none, 0.0), Err(Error::Invalid(_))));
}

#[test]
fn value_kind_detection() {
    let fx = load();
    let ds = dataset(fx.counts.clone(), fx.cells.clone(), fx.genes.clone());
    assert_eq!(preprocess::detect_value_kind(&ds).unwrap(), ValueKind::RawCounts);
    let mut lg = fx.counts.clone();
    preprocess::normalize_total(&mut lg, None).unwrap();
    preprocess::log1p(&mut lg);
    let ds = dataset(lg.clone(), fx.cells.clone(), fx.genes.clone());
    assert_eq!(preprocess::detect_value_kind(&ds).unwrap(), ValueKind::LogNormalized);
    lg.data.to_mut()[5] = f32::NAN;
    let ds = dataset(lg.clone(), fx.cells.clone(), fx.genes.clone());
    let err = preprocess::detect_value_kind(&ds).unwrap_err().to_string();
    assert!(err.contains(&fx.cells[0]), "{err}");
    lg.data.to_mut()[5] = -1.0;
    let ds = dataset(lg, fx.cells.clone(), fx.genes.clone());
    assert!(matches!(preprocess::detect_value_kind(&ds), Err(Error::Invalid(_))));
}

#[test]
fn pair_chain_selects_reference_hvgs_and_aligns_target() {
    let fx = load();
    // Reference: first 300 cells; target: the other 200 with genes reversed
    // and the last 50 removed.
    let split = |lo: usize, hi: usize| {
        let d = fx.counts.to_dense();
        DenseMatrix { rows: hi - lo, cols: d.cols, data: d.data[lo * d.cols..hi * d.cols].to_vec() }
    };
    let r = dataset(CsrMatrix::from_dense(&split(0, 300)), fx.cells[..300].to_vec(), fx.genes.clone());
    let td = split(300, 500);
    let keep: Vec<usize> = (50..td.cols).rev().collect();
    let tx = preprocess::select_columns(&CsrMatrix::from_dense(&td), &(50..td.cols).collect::<Vec<_>>());
    let tx = preprocess::remap_columns(&tx, &(0..keep.len()).map(|i| Some((keep.len() - 1 - i) as u32)).collect::<Vec<_>>(), keep.len());
    let t = dataset(tx, fx.cells[300..].to_vec(), keep.iter().map(|&j| fx.genes[j].clone()).collect());
    for flavor in [HvgFlavor::SeuratV3, HvgFlavor::Seurat] {
        let cfg = Preprocess { hvg_flavor: flavor, n_top_genes: Some(200), ..Preprocess::default() };
        let p = preprocess::preprocess_pair(&r, &t, &cfg).unwrap();
        assert_eq!(p.genes.len(), p.reference.cols);
        assert_eq!(p.target.cols, p.genes.len());
        assert_eq!(p.target.rows, 200);
        assert_eq!(p.report.alignment.n_shared + p.report.alignment.n_missing, p.genes.len());
        // A shared gene's target column holds the target's own
        // normalize_total + log1p values (computed over the target's genes).
        let mut own = t.x.to_csr();
        preprocess::normalize_total(&mut own, None).unwrap();
        preprocess::log1p(&mut own);
        let (own_d, out_d) = (own.to_dense(), p.target.to_dense());
        let g = p.genes.iter().position(|g| t.gene_names.contains(g)).unwrap();
        let tj = t.gene_names.iter().position(|x| *x == p.genes[g]).unwrap();
        for c in 0..200 {
            assert_eq!(out_d.data[c * out_d.cols + g], own_d.data[c * own_d.cols + tj]);
        }
        // Genes the target lacks are zero columns and are reported.
        for m in &p.report.alignment.missing_examples {
            let j = p.genes.iter().position(|x| x == m).unwrap();
            assert!((0..200).all(|c| out_d.data[c * out_d.cols + j] == 0.0));
        }
        assert!(serde_json::to_string(&p.report).unwrap().contains("alignment"));
    }
}

#[test]
fn remap_columns_drops_moves_and_sorts_each_row() {
    // Row 0's indices are stored out of order, as some writers leave them.
    let x = CsrMatrix {
        rows: 3,
        cols: 4,
        indptr: vec![0, 3, 3, 6],
        indices: vec![2, 0, 3, 0, 1, 3].into(),
        data: vec![1., 2., 3., 4., 5., 6.].into(),
    };
    // Column 1 dropped; 0 → 2, 2 → 0, 3 → 1.
    let m = preprocess::remap_columns(&x, &[Some(2), None, Some(0), Some(1)], 3);
    assert_eq!(m.indptr, vec![0, 3, 3, 5]);
    assert_eq!(&m.indices[..], &[0, 1, 2, 1, 2]);
    assert_eq!(&m.data[..], &[1., 3., 2., 6., 4.]);
    assert_eq!((m.rows, m.cols), (3, 3));
}

/// The target is sized on the genes the name rule keeps and scaled on the
/// reference's genes alone; the values must be those of the chain it
/// replaced: filter by name, normalize_total + log1p, then align.
#[test]
fn target_preparation_equals_filter_normalize_then_align() {
    let fx = load();
    let d = fx.counts.to_dense();
    let half = |lo: usize, hi: usize| DenseMatrix { rows: hi - lo, cols: d.cols, data: d.data[lo * d.cols..hi * d.cols].to_vec() };
    let r = dataset(CsrMatrix::from_dense(&half(0, 300)), fx.cells[..300].to_vec(), fx.genes.clone());
    // The target's first two genes renamed to mitochondrial ones.
    let mut tgenes = fx.genes.clone();
    tgenes[0] = "MT-ND1".into();
    tgenes[1] = "mt-Co1".into();
    let t = dataset(CsrMatrix::from_dense(&half(300, 500)), fx.cells[300..].to_vec(), tgenes.clone());
    let cfg = Preprocess { n_top_genes: Some(150), ..Preprocess::default() };
    let mut pr = preprocess::preprocess_reference(&r, &cfg).unwrap();
    // A reference list that names a gene the rule drops (a checkpoint made
    // under other settings): it must count as missing, as before.
    pr.genes[0] = "MT-ND1".into();
    let genes = pr.genes.clone();
    let out = preprocess::preprocess_target(pr, &t, &cfg).unwrap();

    let keep: Vec<usize> = (0..tgenes.len()).filter(|&j| !preprocess::is_dropped_gene_name(&tgenes[j])).collect();
    let mut want = preprocess::select_columns(&t.x.to_csr(), &keep);
    let target_sum = preprocess::normalize_total(&mut want, None).unwrap();
    preprocess::log1p(&mut want);
    let names: Vec<String> = keep.iter().map(|&j| tgenes[j].clone()).collect();
    let (want, al) = preprocess::align_genes(&want, &names, &genes, 0.5).unwrap();
    assert_eq!(out.target.indptr, want.indptr);
    assert_eq!(out.target.indices[..], want.indices[..]);
    assert_eq!(out.target.data[..], want.data[..]);
    assert_eq!(out.report.target_target_sum, Some(target_sum));
    assert_eq!((out.report.alignment.n_shared, out.report.alignment.n_missing), (al.n_shared, al.n_missing));
    assert_eq!(out.report.alignment.missing_examples[0], "MT-ND1");
}
