//! Module II, kin pairing: the tiled exact maximum-inner-product search
//! against brute force — sizes on both sides of the CPU twin's 256-row and
//! 512-key blocks and of the search's own tiles, exact ties — on the CPU
//! backend and on the emulated CUDA backend (the kernel path); embedding in
//! eval mode against one full-batch encoder forward; errors for bad input;
//! cosine similarity (the default) against the raw inner product.
//!
//! The timing of 10^5 × 10^4 rows at d = 256 is an ignored test:
//! `cargo test --release --test kin -- --ignored --nocapture`.

use acsleuth::backend::cuda::emu;
use acsleuth::backend::rng::Stream;
use acsleuth::backend::{Backend, CpuBackend};
use acsleuth::data::DenseMatrix;
use acsleuth::model::generator::{Generator, GeneratorConfig};
use acsleuth::model::kin::{embed, kin_pairs, kin_pairs_by, kin_pairs_tiled, normalize_rows, KinPairs, KinSimilarity};

mod common;
use common::Lcg;

/// Products of query row `i` with every key, in f64.
fn products(q: &DenseMatrix, k: &DenseMatrix, i: usize) -> Vec<f64> {
    let qi = q.row(i);
    (0..k.rows).map(|j| qi.iter().zip(k.row(j)).map(|(&a, &b)| a as f64 * b as f64).sum()).collect()
}

/// Brute force: the maximum and the lowest index holding it.
fn brute(q: &DenseMatrix, k: &DenseMatrix, i: usize) -> (f64, usize) {
    let p = products(q, k, i);
    let m = p.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (m, p.iter().position(|&v| v == m).unwrap())
}

/// Real-valued data: the chosen key's product is the maximum up to f32
/// rounding, the reported score is that product, and where the maximum is
/// clear (leads the runner-up by more than rounding) the key is the one.
#[track_caller]
fn check_real(q: &DenseMatrix, k: &DenseMatrix, got: &KinPairs) {
    assert_eq!((got.kin.len(), got.score.len()), (q.rows, q.rows));
    for i in 0..q.rows {
        let p = products(q, k, i);
        let (m, j) = brute(q, k, i);
        let scale: f64 = q.row(i).iter().map(|v| v.abs() as f64).sum();
        let tol = 4.0 * q.cols as f64 * f32::EPSILON as f64 * scale;
        let c = got.kin[i] as usize;
        assert!(m - p[c] <= tol, "row {i}: key {c} ({}) is not the maximum {m} (key {j})", p[c]);
        assert!((got.score[i] as f64 - p[c]).abs() <= tol, "row {i}: score {} vs {}", got.score[i], p[c]);
        let runner_up = p.iter().enumerate().filter(|&(l, _)| l != j).map(|(_, &v)| v).fold(f64::NEG_INFINITY, f64::max);
        if m - runner_up > 2.0 * tol {
            assert_eq!(c, j, "row {i}: clear maximum");
        }
    }
}

/// Integer data: exact agreement with brute force, lowest index on ties.
#[track_caller]
fn check_exact(q: &DenseMatrix, k: &DenseMatrix, got: &KinPairs) {
    for i in 0..q.rows {
        let (m, j) = brute(q, k, i);
        assert_eq!((got.score[i] as f64, got.kin[i] as usize), (m, j), "row {i}");
    }
}

#[test]
fn matches_brute_force_across_block_boundaries() {
    let be = CpuBackend::new();
    let mut r = Lcg(1);
    for (nq, nk, d) in [(1, 1, 1), (63, 65, 3), (255, 511, 17), (256, 512, 8), (257, 513, 33), (300, 1100, 5)] {
        let (q, k) = (r.dense(nq, d), r.dense(nk, d));
        check_real(&q, &k, &kin_pairs(&be, &q, &k).unwrap());
        let (q, k) = (r.int_matrix(nq, d, 1), r.int_matrix(nk, d, 1));
        check_exact(&q, &k, &kin_pairs(&be, &q, &k).unwrap());
    }
}

#[test]
fn result_does_not_depend_on_the_tiles() {
    let be = CpuBackend::new();
    let mut r = Lcg(2);
    let (q, k) = (r.int_matrix(150, 6, 1), r.int_matrix(300, 6, 1));
    let whole = kin_pairs(&be, &q, &k).unwrap();
    check_exact(&q, &k, &whole);
    for (qt, kt) in [(1, 1), (7, 13), (64, 64), (149, 299), (1000, 1000)] {
        assert_eq!(kin_pairs_tiled(&be, &q, &k, qt, kt).unwrap(), whole, "tiles {qt} × {kt}");
    }
    let (q, k) = (r.dense(70, 20), r.dense(90, 20));
    check_real(&q, &k, &kin_pairs_tiled(&be, &q, &k, 9, 11).unwrap());
}

#[test]
fn exact_ties_go_to_the_lowest_index() {
    let be = CpuBackend::new();
    // Keys 1, 3 and 4 give the same largest product with both queries.
    let k = DenseMatrix { rows: 5, cols: 2, data: vec![0., 1., 2., 2., -1., 0., 2., 2., 2., 2.] };
    let q = DenseMatrix { rows: 2, cols: 2, data: vec![1., 1., 0.5, 0.5] };
    let got = kin_pairs_tiled(&be, &q, &k, 1, 2).unwrap();
    assert_eq!(got, KinPairs { kin: vec![1, 1], score: vec![4.0, 2.0] });
    // The tied keys split across tiles: still key 1.
    assert_eq!(kin_pairs_tiled(&be, &q, &k, 2, 3).unwrap().kin, vec![1, 1]);
}

/// The whole search on the emulated CUDA backend (the kernel path).
#[test]
fn emulated_cuda_backend_agrees() {
    let mut r = Lcg(3);
    let (q, k) = (r.int_matrix(70, 40, 1), r.int_matrix(200, 40, 1));
    let want = kin_pairs(&CpuBackend::new(), &q, &k).unwrap();
    assert_eq!(kin_pairs_tiled(&emu::emu_backend(), &q, &k, 65, 130).unwrap(), want);
    let (q, k) = (r.dense(66, 35), r.dense(100, 35));
    check_real(&q, &k, &kin_pairs(&emu::emu_backend(), &q, &k).unwrap());
}

#[test]
fn bad_inputs_are_errors() {
    let be = CpuBackend::new();
    let mut r = Lcg(4);
    let (q, k) = (r.dense(4, 3), r.dense(5, 3));
    let msg = |res: acsleuth::Result<KinPairs>| res.unwrap_err().to_string();
    assert!(msg(kin_pairs(&be, &q, &r.dense(5, 4))).contains("coordinates"));
    assert!(msg(kin_pairs(&be, &DenseMatrix::zeros(0, 3), &k)).contains("no query"));
    assert!(msg(kin_pairs(&be, &q, &DenseMatrix::zeros(0, 3))).contains("no reference"));
    assert!(msg(kin_pairs(&be, &DenseMatrix::zeros(2, 0), &DenseMatrix::zeros(2, 0))).contains("no coordinates"));
    let short = DenseMatrix { rows: 4, cols: 3, data: vec![0.0; 11] };
    assert!(msg(kin_pairs(&be, &short, &k)).contains("holds 11 values"));
    let mut nan = k.clone();
    nan.data[7] = f32::NAN;
    assert!(msg(kin_pairs(&be, &q, &nan)).contains("reference embedding 2 is not finite"));
    assert!(msg(kin_pairs_tiled(&be, &q, &k, 0, 4)).contains("tile"));
    // Finite but overflowing: every product is +∞ − ∞ = NaN.
    let big = DenseMatrix { rows: 1, cols: 2, data: vec![3e38, 3e38] };
    let opp = DenseMatrix { rows: 1, cols: 2, data: vec![3e38, -3e38] };
    assert!(msg(kin_pairs(&be, &big, &opp)).contains("NaN"));
}

/// `dirs` orthogonal directions in `d ≥ dirs + 1` coordinates: keys
/// 0..dirs are the unit directions (norm 1), key `dirs` a large-norm key
/// (norm 100) off to the side; each query is its direction plus noise.
/// Under the inner product the large key wins every query; under cosine
/// each query pairs with its own direction.
fn one_big_key(r: &mut Lcg, dirs: usize, d: usize, per_dir: usize) -> (DenseMatrix, DenseMatrix) {
    let mut k = DenseMatrix::zeros(dirs + 1, d);
    for i in 0..dirs {
        k.data[i * d + i] = 1.0;
    }
    for c in 0..d {
        k.data[dirs * d + c] = 100.0 / (d as f32).sqrt();
    }
    let mut q = DenseMatrix::zeros(dirs * per_dir, d);
    for (n, row) in q.data.chunks_mut(d).enumerate() {
        row.iter_mut().for_each(|v| *v = r.f(0.0, 0.05));
        row[n % dirs] = r.f(0.5, 2.0);
    }
    (q, k)
}

fn distinct(kin: &[u32]) -> usize {
    let mut v = kin.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

#[track_caller]
fn check_big_key<B: Backend>(be: &B, q: &DenseMatrix, k: &DenseMatrix, dirs: usize) {
    let ip = kin_pairs_by(be, q, k, KinSimilarity::InnerProduct).unwrap();
    assert!(ip.kin.iter().all(|&j| j as usize == dirs), "the large key wins every inner product");
    assert_eq!(ip, kin_pairs(be, q, k).unwrap(), "inner product is the plain search");
    assert_eq!(distinct(&ip.kin), 1);
    let cos = kin_pairs_by(be, q, k, KinSimilarity::Cosine).unwrap();
    for (n, (&j, &s)) in cos.kin.iter().zip(&cos.score).enumerate() {
        assert_eq!(j as usize, n % dirs, "query {n} pairs with its own direction");
        assert!(s > 0.9 && s <= 1.0 + 1e-6, "query {n}: cosine {s}");
    }
    assert_eq!(distinct(&cos.kin), dirs);
}

#[test]
fn cosine_is_not_won_by_a_large_norm_key() {
    assert_eq!(KinSimilarity::default(), KinSimilarity::Cosine);
    let mut r = Lcg(6);
    // 600 queries: across the CPU twin's 256-row blocks.
    let (dirs, d) = (12, 16);
    let (q, k) = one_big_key(&mut r, dirs, d, 50);
    check_big_key(&CpuBackend::new(), &q, &k, dirs);
    check_big_key(&emu::emu_backend(), &q, &k, dirs);
    // Cosine is the inner product of normalised rows: brute force agrees.
    let (q, k) = (r.dense(300, 9), r.dense(520, 9));
    let (mut qn, mut kn) = (q.clone(), k.clone());
    normalize_rows(&mut qn);
    normalize_rows(&mut kn);
    check_real(&qn, &kn, &kin_pairs_by(&CpuBackend::new(), &q, &k, KinSimilarity::Cosine).unwrap());
}

#[test]
fn zero_rows_normalise_to_zero_and_pair_by_the_tie_rule() {
    let be = CpuBackend::new();
    let mut m = DenseMatrix { rows: 4, cols: 3, data: vec![0., 0., 0., 3., 4., 0., 3e38, -3e38, 0., 0., 0., 1e-40] };
    normalize_rows(&mut m);
    assert!(m.data.iter().all(|v| v.is_finite()), "{:?}", m.data);
    assert_eq!(&m.data[..6], &[0., 0., 0., 0.6, 0.8, 0.]);
    let h = std::f32::consts::FRAC_1_SQRT_2;
    assert!((m.data[6] - h).abs() < 1e-6 && (m.data[7] + h).abs() < 1e-6, "overflowing squares: {:?}", &m.data[6..9]);
    assert_eq!(&m.data[9..], &[0., 0., 1.], "a subnormal row is not zero");

    // Key 1 is zero. Query 0 (zero) ties everywhere at 0: key 0. Query 1
    // has a negative cosine with keys 0 and 2: the zero key's 0 wins.
    // Query 2 points along key 2.
    let k = DenseMatrix { rows: 3, cols: 2, data: vec![1., 0., 0., 0., 0., 5.] };
    let q = DenseMatrix { rows: 3, cols: 2, data: vec![0., 0., -1., -1., 0., 0.1] };
    let got = kin_pairs_by(&be, &q, &k, KinSimilarity::Cosine).unwrap();
    assert_eq!(got, KinPairs { kin: vec![0, 1, 2], score: vec![0., 0., 1.] });
    // Non-finite input is still refused, with the plain search's message.
    let mut nan = k.clone();
    nan.data[3] = f32::NAN;
    let err = kin_pairs_by(&be, &q, &nan, KinSimilarity::Cosine).unwrap_err().to_string();
    assert!(err.contains("reference embedding 1 is not finite"), "{err}");
}

#[test]
fn run_settings_choose_the_similarity() {
    use acsleuth::pipeline::run::RunConfig;
    assert_eq!(RunConfig::default().kin.similarity, KinSimilarity::Cosine);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("run.toml");
    std::fs::write(&p, "[kin]\nsimilarity = \"inner-product\"\n").unwrap();
    assert_eq!(RunConfig::from_toml_file(&p).unwrap().kin.similarity, KinSimilarity::InnerProduct);
    std::fs::write(&p, "[kin]\nsimilarity = \"dot\"\n").unwrap();
    assert!(RunConfig::from_toml_file(&p).is_err());
}

fn small_generator(be: &CpuBackend) -> Generator<CpuBackend> {
    let cfg = GeneratorConfig {
        genes: 12,
        hidden: 16,
        latent: 8,
        n_resblocks: 2,
        slope: 0.2,
        dropout: 0.3,
        mem_size: 8,
        mem_temperature: 0.05,
        mem_shrink: 0.01,
        memory: false,
    };
    let mut g = Generator::new(be, &cfg, &mut Stream::new(7));
    // Move the BN running statistics away from (0, 1) with training-mode
    // forwards, so eval mode is visibly different from batch statistics.
    let mut x = be.zeros(16 * cfg.genes);
    for s in 0..3 {
        be.fill_uniform(&mut x, 100 + s, 0, 0.0, 3.0);
        g.forward(be, &x, 16, true);
    }
    g
}

#[test]
fn embed_matches_one_full_batch_eval_forward() {
    let be = CpuBackend::new();
    let mut g = small_generator(&be);
    let mut r = Lcg(5);
    let src = DenseMatrix { rows: 23, cols: 12, data: (0..23 * 12).map(|_| r.f(0.0, 3.0)).collect() };
    // (A training forward updates the running statistics: take it first.)
    let train = be.download(g.encode(&be, &be.upload(&src.data), 23, true));
    let full = be.download(g.encode(&be, &be.upload(&src.data), 23, false)); // [23, 8]
    assert!(full.iter().zip(&train).any(|(a, b)| (a - b).abs() > 1e-3), "eval and train forwards should differ");
    let close = |got: &[f32], want: &[f32]| {
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    };
    for chunk in [1, 5, 23, 100] {
        let z = embed(&be, &mut g, &src, None, chunk).unwrap();
        assert_eq!((z.rows, z.cols), (23, 8));
        close(&z.data, &full);
    }
    // A row subset, out of order and with a repeat.
    let rows = [22usize, 0, 5, 5, 13];
    let z = embed(&be, &mut g, &src, Some(&rows), 2).unwrap();
    let want: Vec<f32> = rows.iter().flat_map(|&i| full[i * 8..(i + 1) * 8].to_vec()).collect();
    close(&z.data, &want);
}

#[test]
fn embed_rejects_bad_input() {
    let be = CpuBackend::new();
    let mut g = small_generator(&be);
    let src = DenseMatrix::zeros(4, 12);
    let msg = |res: acsleuth::Result<DenseMatrix>| res.unwrap_err().to_string();
    assert!(msg(embed(&be, &mut g, &DenseMatrix::zeros(4, 11), None, 8)).contains("11 genes"));
    assert!(msg(embed(&be, &mut g, &src, None, 0)).contains("chunk"));
    assert!(msg(embed(&be, &mut g, &DenseMatrix::zeros(0, 12), None, 8)).contains("no cells"));
    assert!(msg(embed(&be, &mut g, &src, Some(&[]), 8)).contains("no cells"));
    assert!(msg(embed(&be, &mut g, &src, Some(&[1, 4]), 8)).contains("row 4 out of range"));
}
