//! PCA baseline against scikit-learn (fixtures/pca, made by
//! scripts/make_pca_fixture.py) and the subspace solvers against Jacobi.

use std::sync::atomic::{AtomicUsize, Ordering};

use acsleuth::data::{CsrMatrix, DenseMatrix};
use acsleuth::model::pca::{eigen, Pca, PcaOptions, PcaSolver};
use acsleuth::model::source::RowSource;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;

struct Fixture {
    n_ref: usize,
    n_tgt: usize,
    genes: usize,
    k: usize,
    reference: Vec<f32>,
    target: Vec<f32>,
    mean: Vec<f64>,
    components: Vec<f64>,
    ev: Vec<f64>,
    evr: Vec<f64>,
    err: Vec<f64>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pca/pca_fixture.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let f64s = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>();
    let f32s = |k: &str| f64s(k).into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let us = |k: &str| v[k].as_u64().unwrap() as usize;
    Fixture {
        n_ref: us("n_ref"),
        n_tgt: us("n_tgt"),
        genes: us("genes"),
        k: us("k"),
        reference: f32s("reference"),
        target: f32s("target"),
        mean: f64s("mean"),
        components: f64s("components"),
        ev: f64s("explained_variance"),
        evr: f64s("explained_variance_ratio"),
        err: f64s("reconstruction_error"),
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

fn check_against_fixture(fx: &Fixture, solver: PcaSolver) {
    let opts = PcaOptions { n_components: fx.k, solver, ..Default::default() };
    let pca = Pca::fit(&fx.reference, fx.n_ref, fx.genes, &opts).unwrap();
    assert!(pca.converged, "{solver:?}");
    for (a, b) in pca.mean.iter().zip(&fx.mean) {
        assert!((a - b).abs() < 1e-9 * b.abs().max(1.0));
    }
    for i in 0..fx.k {
        assert!(rel(pca.explained_variance[i], fx.ev[i]) < 1e-5, "{solver:?} ev {i}");
        assert!(rel(pca.explained_variance_ratio[i], fx.evr[i]) < 1e-5, "{solver:?} evr {i}");
        let (mine, theirs) = (&pca.components[i * fx.genes..(i + 1) * fx.genes], &fx.components[i * fx.genes..(i + 1) * fx.genes]);
        let dot: f64 = mine.iter().zip(theirs).map(|(a, b)| a * b).sum();
        let s = dot.signum();
        let diff = mine.iter().zip(theirs).map(|(a, b)| (a - s * b).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-5, "{solver:?} component {i} differs by {diff}");
    }
    let err = pca.reconstruction_error(&fx.target, fx.n_tgt).unwrap();
    for (i, (a, b)) in err.iter().zip(&fx.err).enumerate() {
        assert!(rel(*a, *b) < 1e-4, "{solver:?} row {i}: {a} vs {b}");
    }
}

#[test]
fn matches_scikit_learn() {
    let fx = fixture();
    for solver in [PcaSolver::Auto, PcaSolver::Exact, PcaSolver::Subspace, PcaSolver::Streamed] {
        check_against_fixture(&fx, solver);
    }
}

#[test]
fn components_follow_sklearn_sign_convention() {
    let fx = fixture();
    let pca = Pca::fit(&fx.reference, fx.n_ref, fx.genes, &PcaOptions { n_components: fx.k, ..Default::default() }).unwrap();
    for comp in pca.components.chunks(fx.genes) {
        let big = comp.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        assert!(big > 0.0);
    }
}

fn low_rank(n: usize, g: usize, rank: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut z = |s: f64| -> f64 { let e: f64 = StandardNormal.sample(&mut rng); s * e };
    let basis: Vec<f64> = (0..rank * g).map(|_| z(1.0)).collect();
    let mut x = vec![0.0f32; n * g];
    for i in 0..n {
        let coef: Vec<f64> = (0..rank).map(|r| z(10.0 / (1.0 + r as f64))).collect();
        for j in 0..g {
            let mut v = 1.0 + z(0.3);
            for r in 0..rank {
                v += coef[r] * basis[r * g + j];
            }
            x[i * g + j] = v as f32;
        }
    }
    x
}

#[test]
fn subspace_iteration_matches_the_exact_solver() {
    let (n, g, k) = (400, 150, 12);
    let x = low_rank(n, g, 20, 1);
    let target = low_rank(60, g, 25, 2);
    let exact = Pca::fit(&x, n, g, &PcaOptions { n_components: k, solver: PcaSolver::Exact, ..Default::default() }).unwrap();
    let e_err = exact.reconstruction_error(&target, 60).unwrap();
    for solver in [PcaSolver::Subspace, PcaSolver::Streamed] {
        let sub = Pca::fit(&x, n, g, &PcaOptions { n_components: k, solver, seed: 7, ..Default::default() }).unwrap();
        assert!(sub.converged && sub.iterations > 0, "{solver:?}");
        for i in 0..k {
            let r = rel(sub.explained_variance[i], exact.explained_variance[i]);
            assert!(r < 1e-10, "{solver:?} λ{i}: relative difference {r:e}");
        }
        let s_err = sub.reconstruction_error(&target, 60).unwrap();
        for (a, b) in s_err.iter().zip(&e_err) {
            assert!(rel(*a, *b) < 1e-6);
        }
        // transform: projections agree up to each component's sign
        let (pe, ps) = (exact.transform(&target, 60).unwrap(), sub.transform(&target, 60).unwrap());
        for (a, b) in pe.iter().zip(&ps) {
            assert!((a.abs() - b.abs()).abs() < 1e-5 * a.abs().max(1.0));
        }
    }
}

#[test]
fn jacobi_diagonalises_a_symmetric_matrix() {
    let n = 40;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let mut a = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v: f64 = StandardNormal.sample(&mut rng);
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    let (vals, vecs) = eigen::jacobi(a.clone(), n);
    assert!(vals.windows(2).all(|w| w[0] >= w[1]));
    for i in 0..n {
        let v = &vecs[i * n..(i + 1) * n];
        for r in 0..n {
            let av: f64 = (0..n).map(|c| a[r * n + c] * v[c]).sum();
            assert!((av - vals[i] * v[r]).abs() < 1e-10);
        }
        for j in 0..n {
            let d: f64 = v.iter().zip(&vecs[j * n..(j + 1) * n]).map(|(x, y)| x * y).sum();
            assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
        }
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let x = low_rank(10, 6, 2, 4);
    let opts = |k| PcaOptions { n_components: k, ..Default::default() };
    assert!(Pca::fit(&x, 10, 6, &opts(7)).is_err()); // k > genes
    assert!(Pca::fit(&x, 10, 6, &opts(0)).is_err());
    assert!(Pca::fit(&x, 11, 6, &opts(2)).is_err()); // wrong length
    assert!(Pca::fit(&x[..6], 1, 6, &opts(1)).is_err()); // one cell
    let mut bad = x.clone();
    bad[13] = f32::NAN;
    assert!(Pca::fit(&bad, 10, 6, &opts(2)).is_err());
    let pca = Pca::fit(&x, 10, 6, &opts(2)).unwrap();
    assert!(pca.reconstruction_error(&x[..7], 1).is_err());
    assert!(pca.reconstruction_error(&bad, 10).is_err());
    assert_eq!(pca.reconstruction_error(&x, 10).unwrap().len(), 10);
}

/// A row source that remembers the most rows it was asked for at once.
struct Counting<'a> {
    inner: &'a dyn RowSource,
    most: AtomicUsize,
}

impl RowSource for Counting<'_> {
    fn n_rows(&self) -> usize {
        self.inner.n_rows()
    }
    fn n_cols(&self) -> usize {
        self.inner.n_cols()
    }
    fn gather_dense(&self, rows: &[usize], out: &mut [f32]) -> acsleuth::error::Result<()> {
        self.most.fetch_max(rows.len(), Ordering::Relaxed);
        self.inner.gather_dense(rows, out)
    }
}

#[test]
fn fitting_from_a_row_source_gives_the_dense_fits_bits_in_blocks() {
    // 1,300 rows: two full blocks of 512 and a partial one.
    let (n, g) = (1300, 40);
    let x = low_rank(n, g, 6, 5);
    let dense = DenseMatrix { rows: n, cols: g, data: x.clone() };
    let csr = CsrMatrix::from_dense(&dense);
    for solver in [PcaSolver::Exact, PcaSolver::Subspace, PcaSolver::Streamed] {
        let opts = PcaOptions { n_components: 5, solver, seed: 3, ..Default::default() };
        let want = Pca::fit(&x, n, g, &opts).unwrap();
        for source in [&dense as &dyn RowSource, &csr] {
            let counting = Counting { inner: source, most: AtomicUsize::new(0) };
            let got = Pca::fit_rows(&counting, &opts).unwrap();
            assert_eq!(got.mean, want.mean, "{solver:?}");
            assert_eq!(got.components, want.components, "{solver:?}");
            assert_eq!(got.explained_variance, want.explained_variance, "{solver:?}");
            assert_eq!(got.explained_variance_ratio, want.explained_variance_ratio, "{solver:?}");
            // The covariance solvers never hold the rows dense; the
            // implicit one reads them at every iteration, so it does.
            let most = counting.most.load(Ordering::Relaxed);
            if solver == PcaSolver::Streamed {
                assert_eq!(most, n);
            } else {
                assert!(most <= 512, "{solver:?} read {most} rows at once");
            }
        }
    }
}

#[test]
fn a_non_finite_value_names_its_row() {
    let (n, g) = (1300, 8);
    let mut x = low_rank(n, g, 3, 6);
    x[1100 * g + 3] = f32::INFINITY;
    let dense = DenseMatrix { rows: n, cols: g, data: x.clone() };
    let opts = PcaOptions { n_components: 2, ..Default::default() };
    for e in [Pca::fit(&x, n, g, &opts).unwrap_err(), Pca::fit_rows(&dense, &opts).unwrap_err()] {
        assert!(e.to_string().contains("non-finite value in row 1100"), "{e}");
    }
}
