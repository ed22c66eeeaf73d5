//! Module IV (fine-grained subtyping): finite-difference checks of the DESC
//! loss backward and of the fusion block backward through both tokens;
//! k-means against sklearn; Louvain's K on blobs; `subtype()` end to end on
//! separated blobs; edge cases as typed errors.

use std::collections::HashMap;

use acsleuth::backend::cpu_desc;
use acsleuth::backend::rng::{self, Stream};
use acsleuth::backend::{CpuBackend, CpuBuf};
use acsleuth::data::matrix::DenseMatrix;
use acsleuth::metrics::{ari, nmi};
use acsleuth::model::subtype::{infer_k, kmeans, subtype, Fusion, SubtypeConfig};
use acsleuth::nn::Module;

mod common;
use common::rel_err;

fn rnd(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut v = vec![0.0; n];
    rng::fill_uniform(seed, 0, lo, hi, &mut v);
    v
}

/// Rows of a `[rows, k]` target: positive, normalised, one exact zero.
fn target(rows: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut p = rnd(rows * k, seed, 0.05, 1.0);
    for (i, r) in p.chunks_mut(k).enumerate() {
        r[i % k] = 0.0;
        let s: f32 = r.iter().sum();
        r.iter_mut().for_each(|v| *v /= s);
    }
    p
}

/// DESC loss (f64 sum) of `z: [rows, dim]`, `mu: [k, dim]`, `p`.
fn desc_loss(rows: usize, k: usize, dim: usize, nu: f32, z: &[f32], mu: &[f32], p: &[f32]) -> f64 {
    let (mut dist, mut q) = (vec![0.0; rows * k], vec![0.0; rows * k]);
    cpu_desc::desc_soft_assign(rows, k, dim, nu, z, mu, &mut dist, &mut q);
    let (mut g, mut dz) = (vec![0.0; rows * k], vec![0.0; rows * dim]);
    cpu_desc::desc_kl_grad(rows, k, dim, nu, 1.0 / rows as f32, z, mu, p, &dist, &mut g, &mut dz)
}

/// Central differences of `f` at `x` for the coordinates `idx`.
fn numeric(x: &[f32], idx: &[usize], h: f32, f: &dyn Fn(&[f32]) -> f64) -> Vec<f64> {
    idx.iter()
        .map(|&i| {
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[i] += h;
            xm[i] -= h;
            (f(&xp) - f(&xm)) / (2.0 * h as f64)
        })
        .collect()
}

#[test]
fn desc_loss_backward_matches_finite_differences() {
    let (rows, k, dim) = (7, 4, 5);
    for nu in [1.0f32, 3.0] {
        let z = rnd(rows * dim, 1, -1.5, 1.5);
        let mu = rnd(k * dim, 2, -1.5, 1.5);
        let p = target(rows, k, 3);
        let (mut dist, mut q) = (vec![0.0; rows * k], vec![0.0; rows * k]);
        cpu_desc::desc_soft_assign(rows, k, dim, nu, &z, &mu, &mut dist, &mut q);
        let (mut g, mut dz) = (vec![0.0; rows * k], vec![0.0; rows * dim]);
        cpu_desc::desc_kl_grad(rows, k, dim, nu, 1.0 / rows as f32, &z, &mu, &p, &dist, &mut g, &mut dz);
        let mut dmu = vec![0.0; k * dim];
        cpu_desc::desc_centroid_grad(rows, k, dim, &z, &mu, &g, &mut dmu);

        let all_z: Vec<usize> = (0..z.len()).collect();
        let num = numeric(&z, &all_z, 1e-2, &|zz| desc_loss(rows, k, dim, nu, zz, &mu, &p));
        let e = rel_err(&num, &dz.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-12);
        assert!(e < 1e-3, "ν={nu}: ∂L/∂z* relative error {e}");
        let all_mu: Vec<usize> = (0..mu.len()).collect();
        let num = numeric(&mu, &all_mu, 1e-2, &|mm| desc_loss(rows, k, dim, nu, &z, mm, &p));
        let e = rel_err(&num, &dmu.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-12);
        assert!(e < 1e-3, "ν={nu}: ∂L/∂μ relative error {e}");
        // And a gradient off by 5 % would fail the check.
        let wrong: Vec<f64> = dmu.iter().map(|&v| 1.05 * v as f64).collect();
        assert!(rel_err(&num, &wrong, 1e-12) > 1e-2);
    }
}

/// The fusion block followed by the DESC loss: gradients w.r.t. both tokens
/// of every cell and w.r.t. weights of the first and last layer, by central
/// differences. Every evaluation builds a fresh block from the same seed,
/// so its dropout masks (p = 0.1, training mode) are the same each time.
#[test]
fn fusion_backward_through_both_tokens() {
    let be = CpuBackend::new();
    let (b, d, k, heads, ffn, layers) = (4, 8, 3, 4, 12, 2);
    let make = || Fusion::new(&CpuBackend::new(), d, layers, heads, ffn, 0.1, &mut Stream::new(9));
    let tokens = rnd(b * 2 * d, 4, -1.0, 1.0);
    let mu = rnd(k * d, 5, -1.0, 1.0);
    let p = target(b, k, 6);
    let snapshot: HashMap<String, Vec<f32>> = {
        let mut f = make();
        let mut m = HashMap::new();
        f.visit("", &mut |n, p| {
            m.insert(n.to_string(), p.value.0.clone());
        });
        m
    };
    let loss = |tok: &[f32], perturb: Option<(&str, usize, f32)>| -> f64 {
        let mut f = make();
        f.visit("", &mut |n, prm| {
            prm.value.0.copy_from_slice(&snapshot[n]);
            if let Some((name, i, h)) = perturb
                && name == n
            {
                prm.value.0[i] += h;
            }
        });
        let zs = f.forward(&be, &CpuBuf(tok.to_vec()), b, true).0.clone();
        desc_loss(b, k, d, 1.0, &zs, &mu, &p)
    };

    // Analytic.
    let mut f = make();
    let zs = f.forward(&be, &CpuBuf(tokens.clone()), b, true).0.clone();
    let (mut dist, mut q) = (vec![0.0; b * k], vec![0.0; b * k]);
    cpu_desc::desc_soft_assign(b, k, d, 1.0, &zs, &mu, &mut dist, &mut q);
    let (mut g, mut dzs) = (vec![0.0; b * k], vec![0.0; b * d]);
    cpu_desc::desc_kl_grad(b, k, d, 1.0, 1.0 / b as f32, &zs, &mu, &p, &dist, &mut g, &mut dzs);
    let dtok = f.backward(&be, &CpuBuf(dzs)).0.clone();
    let mut grads: HashMap<String, Vec<f32>> = HashMap::new();
    f.visit("", &mut |n, prm| {
        if prm.trainable {
            grads.insert(n.to_string(), prm.grad.0.clone());
        }
    });

    let h = 2e-3;
    for (token, name) in [(0usize, "z"), (1, "ζ")] {
        let idx: Vec<usize> = (0..b).flat_map(|i| (0..d).map(move |c| (2 * i + token) * d + c)).collect();
        let num = numeric(&tokens, &idx, h, &|t| loss(t, None));
        let ana: Vec<f64> = idx.iter().map(|&i| dtok[i] as f64).collect();
        assert!(num.iter().any(|v| v.abs() > 1e-6), "{name} token: zero gradient");
        let e = rel_err(&num, &ana, 1e-12);
        assert!(e < 2e-2, "{name} token: relative error {e}");
    }
    let params = ["layers.0.self_attn.in_proj_weight", "layers.0.linear1.weight", "layers.1.linear2.weight", "layers.1.norm2.weight"];
    for name in params {
        let grad = grads.get(name).unwrap_or_else(|| panic!("no parameter {name}; have {:?}", grads.keys()));
        let idx: Vec<usize> = (0..16).map(|i| (i * 7919) % grad.len()).collect();
        let num: Vec<f64> = idx
            .iter()
            .map(|&i| (loss(&tokens, Some((name, i, h))) - loss(&tokens, Some((name, i, -h)))) / (2.0 * h as f64))
            .collect();
        let ana: Vec<f64> = idx.iter().map(|&i| grad[i] as f64).collect();
        let e = rel_err(&num, &ana, 1e-12);
        assert!(e < 2e-2, "{name}: relative error {e}");
    }
}

/// `k` Gaussian blobs of `per` cells in `d` dimensions, centres `sep` apart
/// along separate axes; returns the points and the true labels.
fn blobs(k: usize, per: usize, d: usize, sep: f32, sd: f32, seed: u64) -> (DenseMatrix, Vec<u32>) {
    let n = k * per;
    let mut noise = vec![0.0; n * d];
    rng::fill_normal(seed, 0, 0.0, sd, &mut noise);
    let mut x = DenseMatrix::zeros(n, d);
    let mut lab = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % k;
        lab.push(c as u32);
        for j in 0..d {
            x.data[i * d + j] = noise[i * d + j] + if j % k == c { sep } else { 0.0 };
        }
    }
    (x, lab)
}

#[test]
fn kmeans_recovers_blobs() {
    let (x, truth) = blobs(4, 50, 10, 6.0, 0.5, 1);
    let km = kmeans(&x, 4, 5, 3).unwrap();
    assert_eq!(ari(&truth, &km.labels).unwrap(), 1.0);
    assert_eq!((km.centroids.rows, km.centroids.cols), (4, 10));
    // Inertia is the within-cluster sum of squares of the labels returned.
    let mut w = 0.0f64;
    for i in 0..x.rows {
        let c = km.centroids.row(km.labels[i] as usize);
        w += x.row(i).iter().zip(c).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
    }
    assert!((w - km.inertia).abs() < 1e-3 * w, "{w} vs {}", km.inertia);
}

#[test]
fn kmeans_matches_sklearn_inertia() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/subtype/kmeans.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (n, d) = (fx["n"].as_u64().unwrap() as usize, fx["d"].as_u64().unwrap() as usize);
    let data: Vec<f32> = fx["x"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let x = DenseMatrix { rows: n, cols: d, data };
    for (k, want) in fx["inertia"].as_object().unwrap() {
        let k: usize = k.parse().unwrap();
        let want = want.as_f64().unwrap();
        let got = kmeans(&x, k, 20, 0).unwrap().inertia;
        assert!((got - want).abs() <= 1e-4 * want, "k = {k}: inertia {got}, sklearn {want}");
    }
}

#[test]
fn infer_k_finds_three_blobs() {
    let (x, truth) = blobs(3, 80, 8, 5.0, 0.6, 2);
    let (k, labels) = infer_k(&x, 15, 1.0, 0).unwrap();
    assert_eq!(k, 3);
    assert!(ari(&truth, &labels).unwrap() > 0.99);
    // One cell, two cells, knn larger than the data: no panic.
    assert_eq!(infer_k(&DenseMatrix { rows: 1, cols: 2, data: vec![1.0, 2.0] }, 15, 1.0, 0).unwrap(), (1, vec![0]));
    let two = DenseMatrix { rows: 2, cols: 2, data: vec![0.0, 0.0, 1.0, 1.0] };
    assert!(infer_k(&two, 15, 1.0, 0).unwrap().0 >= 1);
    assert!(infer_k(&two, 0, 1.0, 0).is_err());
}

fn small_config(k: Option<usize>) -> SubtypeConfig {
    SubtypeConfig { n_subtypes: k, ffn: 32, lr: 1e-3, max_epochs: 20, restarts: 5, seed: 1, ..SubtypeConfig::default() }
}

/// z: three separated blobs; ζ: noise of the same scale.
fn blob_inputs() -> (DenseMatrix, DenseMatrix, Vec<u32>) {
    let (z, truth) = blobs(3, 60, 16, 4.0, 0.7, 3);
    let mut zeta = DenseMatrix::zeros(z.rows, z.cols);
    rng::fill_normal(4, 0, 0.0, 1.0, &mut zeta.data);
    (z, zeta, truth)
}

#[test]
fn subtype_recovers_blobs_with_given_and_inferred_k() {
    let be = CpuBackend::new();
    let (z, zeta, truth) = blob_inputs();
    // tol = 0 keeps training for all epochs (blobs this clear converge at
    // the first refresh otherwise); the default tol stops early.
    let fixed = SubtypeConfig { tol: 0.0, max_epochs: 8, ..small_config(Some(3)) };
    for (cfg, inferred) in [(fixed, false), (small_config(None), true)] {
        let r = subtype(&be, &z, &zeta, &cfg).unwrap();
        assert_eq!(r.k, 3, "k (inferred: {inferred})");
        assert_eq!(r.k_inferred, inferred);
        assert_eq!((r.q.rows, r.q.cols), (z.rows, 3));
        assert_eq!((r.z_star.rows, r.z_star.cols), (z.rows, z.cols));
        for i in 0..z.rows {
            let s: f32 = r.q.row(i).iter().sum();
            assert!((s - 1.0).abs() < 1e-4);
        }
        assert!(r.epochs >= 1 && r.epochs <= cfg.max_epochs && r.log.len() == r.epochs);
        if cfg.tol == 0.0 {
            assert_eq!(r.epochs, cfg.max_epochs);
        }
        assert!(r.log.iter().all(|e| e.kl.is_finite() && e.kl >= -1e-6));
        let score = nmi(&truth, &r.labels).unwrap();
        assert!(score > 0.9, "NMI {score} (inferred: {inferred}); log {:?}", r.log);
    }
}

#[test]
fn edge_cases_are_errors_or_sensible() {
    let be = CpuBackend::new();
    let (z, zeta, _) = blob_inputs();
    let sub = |n: usize| DenseMatrix { rows: n, cols: z.cols, data: z.data[..n * z.cols].to_vec() };
    let subz = |n: usize| DenseMatrix { rows: n, cols: z.cols, data: zeta.data[..n * z.cols].to_vec() };
    // More subtypes than cells; zero subtypes.
    assert!(subtype(&be, &sub(2), &subz(2), &small_config(Some(3))).is_err());
    assert!(subtype(&be, &sub(5), &subz(5), &small_config(Some(0))).is_err());
    // K = 1: one subtype, nothing trained.
    let r = subtype(&be, &sub(5), &subz(5), &small_config(Some(1))).unwrap();
    assert_eq!((r.k, r.labels, r.epochs), (1, vec![0; 5], 0));
    // n = K: each cell its own subtype.
    let r = subtype(&be, &sub(3), &subz(3), &SubtypeConfig { max_epochs: 2, ..small_config(Some(3)) }).unwrap();
    assert_eq!(r.k, 3);
    // One cell, K inferred.
    let r = subtype(&be, &sub(1), &subz(1), &small_config(None)).unwrap();
    assert_eq!((r.k, r.labels.len()), (1, 1));
    // Shape mismatch, width not a multiple of the heads, NaN, no cells.
    assert!(subtype(&be, &sub(5), &subz(4), &small_config(Some(2))).is_err());
    let odd = DenseMatrix { rows: 4, cols: 6, data: vec![0.5; 24] };
    assert!(subtype(&be, &odd, &odd, &small_config(Some(2))).is_err());
    let mut nan = sub(5);
    nan.data[3] = f32::NAN;
    assert!(subtype(&be, &nan, &subz(5), &small_config(Some(2))).is_err());
    assert!(subtype(&be, &sub(0), &subz(0), &small_config(Some(2))).is_err());
    // k-means: k = 0, k > n, identical points.
    assert!(kmeans(&sub(5), 0, 3, 0).is_err());
    assert!(kmeans(&sub(5), 6, 3, 0).is_err());
    let same = DenseMatrix { rows: 4, cols: 2, data: vec![1.0; 8] };
    let km = kmeans(&same, 3, 3, 0).unwrap();
    assert_eq!(km.inertia, 0.0);
}
