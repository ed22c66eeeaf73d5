//! Every CPU primitive against a naive loop, on odd shapes, with transposes,
//! leading dimensions and offsets.

use super::cpu::GemmThreading;
use super::*;

fn rnd(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; n];
    rng::fill_uniform(seed, 0, -1.0, 1.0, &mut v);
    v
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
    }
}

fn naive_gemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    for i in 0..g.m {
        for j in 0..g.n {
            let mut s = 0.0f64;
            for p in 0..g.k {
                let av = if g.ta == Trans::N { a[g.a_off + i * g.lda + p] } else { a[g.a_off + p * g.lda + i] };
                let bv = if g.tb == Trans::N { b[g.b_off + p * g.ldb + j] } else { b[g.b_off + j * g.ldb + p] };
                s += av as f64 * bv as f64;
            }
            let ci = g.c_off + i * g.ldc + j;
            let old = if g.beta == 0.0 { 0.0 } else { g.beta as f64 * c[ci] as f64 };
            c[ci] = (g.alpha as f64 * s + old) as f32;
        }
    }
}

#[test]
fn gemm_all_layouts() {
    // The vector shapes (m = 1 or k = 1) take the plain-loop path, small and
    // large enough to be split over tasks.
    let shapes = [(1, 1, 1), (7, 5, 3), (33, 17, 65), (130, 70, 9), (64, 300, 40), (5, 129, 257), (1, 9, 7), (1, 700, 300), (1, 1, 5000), (6, 4, 1), (300, 600, 1)];
    let mut seed = 1;
    for &(m, n, k) in &shapes {
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                    let mut g = Gemm::new(ta, tb, m, n, k).alpha(alpha).beta(beta);
                    g.lda += 3;
                    g.ldb += 1;
                    g.ldc += 2;
                    g.a_off = 5;
                    g.b_off = 2;
                    g.c_off = 7;
                    let (ea, eb, ec) = g.extents();
                    let a = rnd(ea + 4, seed);
                    let b = rnd(eb + 1, seed + 1);
                    let c0 = rnd(ec + 3, seed + 2);
                    seed += 3;
                    let mut want = c0.clone();
                    naive_gemm(&g, &a, &b, &mut want);
                    for t in [GemmThreading::Single, GemmThreading::Internal, GemmThreading::RowSplit, GemmThreading::ColSplit, GemmThreading::Auto] {
                        let be = CpuBackend::with_gemm_threading(t);
                        let mut c = CpuBuf(c0.clone());
                        be.gemm(&g, &CpuBuf(a.clone()), &CpuBuf(b.clone()), &mut c);
                        close(&c.0, &want, 1e-4, &format!("gemm {m}x{n}x{k} {ta:?}{tb:?} {t:?}"));
                    }
                }
            }
        }
    }
}

/// Large products with a mostly-zero left operand take the zero-skipping
/// path (cpu_sparse) in both orientations that have one, and denser ones
/// the dense kernel: all match the naive product. Widths with 8-wide and
/// scalar tails; op(B) from 18 K to 300 K values (cached or not).
#[test]
fn gemm_sparse_left_operand() {
    let mut seed = 100;
    for density in [0.0, 0.04, 0.25, 0.6] {
        for (ta, tb, m, n, k) in [(Trans::N, Trans::N, 70, 260, 600), (Trans::T, Trans::N, 600, 130, 70), (Trans::N, Trans::T, 70, 260, 600), (Trans::N, Trans::N, 80, 90, 600), (Trans::N, Trans::N, 40, 300, 1000), (Trans::T, Trans::N, 200, 300, 1000)] {
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0)] {
                let mut g = Gemm::new(ta, tb, m, n, k).alpha(alpha).beta(beta);
                g.lda += 3;
                g.ldc += 2;
                g.a_off = 5;
                g.c_off = 7;
                let (ea, eb, ec) = g.extents();
                let keep = rnd(ea, seed);
                let a: Vec<f32> = rnd(ea, seed + 1).iter().zip(&keep).map(|(&v, &u)| if (u + 1.0) / 2.0 < density { v } else { 0.0 }).collect();
                let b = rnd(eb, seed + 2);
                let c0 = rnd(ec, seed + 3);
                seed += 4;
                let mut want = c0.clone();
                naive_gemm(&g, &a, &b, &mut want);
                for t in [GemmThreading::Single, GemmThreading::Auto] {
                    let mut c = CpuBuf(c0.clone());
                    CpuBackend::with_gemm_threading(t).gemm(&g, &CpuBuf(a.clone()), &CpuBuf(b.clone()), &mut c);
                    close(&c.0, &want, 1e-4, &format!("sparse gemm {ta:?}{tb:?} density {density} {t:?}"));
                }
            }
        }
    }
}

#[test]
fn gemm_beta_zero_ignores_nan() {
    let be = CpuBackend::new();
    let g = Gemm::new(Trans::N, Trans::N, 3, 4, 2);
    let mut c = CpuBuf(vec![f32::NAN; 12]);
    be.gemm(&g, &CpuBuf(rnd(6, 1)), &CpuBuf(rnd(8, 2)), &mut c);
    assert!(c.0.iter().all(|v| v.is_finite()));
}

#[test]
fn gemm_batched_matches_loop() {
    let be = CpuBackend::new();
    // 6 batches of [3,4]·[4,5]ᵀ-style products with padding between them.
    let mut g = Gemm::new(Trans::N, Trans::T, 3, 5, 4);
    g.lda = 8;
    g.ldb = 8;
    g.ldc = 5;
    g.a_off = 4;
    g.b_off = 1;
    let batch = Batch { count: 6, stride_a: 30, stride_b: 41, stride_c: 16 };
    let a = rnd(4 + 6 * 30, 3);
    let b = rnd(1 + 6 * 41, 4);
    let mut want = vec![0.0; 6 * 16];
    for i in 0..6 {
        let gi = Gemm { a_off: g.a_off + i * 30, b_off: g.b_off + i * 41, c_off: i * 16, ..g };
        naive_gemm(&gi, &a, &b, &mut want);
    }
    let mut c = CpuBuf(vec![0.0; 6 * 16]);
    be.gemm_batched(&g, &batch, &CpuBuf(a), &CpuBuf(b), &mut c);
    close(&c.0, &want, 1e-5, "gemm_batched");
}

/// Naive f64 BN forward for one configuration.
#[allow(clippy::too_many_arguments)]
fn naive_fused(cfg: &Fused, z: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32], rm: &mut [f32], rv: &mut [f32], bn: bool) -> Vec<f32> {
    let (r, c) = (cfg.rows, cfg.cols);
    let mut y = vec![0.0; r * c];
    for j in 0..c {
        let col: Vec<f64> = (0..r).map(|i| (z[i * c + j] + bias[j]) as f64).collect();
        let (mu, inv) = if !bn {
            (0.0, 1.0)
        } else if cfg.train {
            let mu = col.iter().sum::<f64>() / r as f64;
            let ss = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>();
            rm[j] = (0.9 * rm[j] as f64 + 0.1 * mu) as f32;
            rv[j] = (0.9 * rv[j] as f64 + 0.1 * ss / (r - 1) as f64) as f32;
            (mu, 1.0 / (ss / r as f64 + cfg.eps as f64).sqrt())
        } else {
            (rm[j] as f64, 1.0 / (rv[j] as f64 + cfg.eps as f64).sqrt())
        };
        for i in 0..r {
            let a = if bn { (col[i] - mu) * inv * gamma[j] as f64 + beta[j] as f64 } else { col[i] };
            let f = cfg.dropout.map_or(1.0, |m| if cfg.train { m.factor(i * c + j) } else { 1.0 });
            y[i * c + j] = cfg.act.f(a as f32) * f;
        }
    }
    y
}

#[test]
fn fused_forward_matches_naive() {
    let be = CpuBackend::new();
    for &(rows, cols) in &[(2, 1), (5, 7), (128, 300), (40, 1000)] {
        for act in [Act::Identity, Act::Relu, Act::LeakyRelu(0.2)] {
            for train in [true, false] {
                for bn in [true, false] {
                    let dropout = Some(DropoutMask { p: 0.3, seed: 11, offset: 4 });
                    let cfg = Fused { rows, cols, act, dropout, train, eps: 1e-5, momentum: 0.1 };
                    let z = rnd(rows * cols, 1);
                    let bias = rnd(cols, 2);
                    let gamma: Vec<f32> = rnd(cols, 3).iter().map(|v| 1.0 + 0.5 * v).collect();
                    let beta = rnd(cols, 4);
                    let mut rm = rnd(cols, 5);
                    let mut rv: Vec<f32> = rnd(cols, 6).iter().map(|v| 1.0 + 0.5 * v).collect();
                    let (mut rm2, mut rv2) = (CpuBuf(rm.clone()), CpuBuf(rv.clone()));
                    let want = naive_fused(&cfg, &z, &bias, &gamma, &beta, &mut rm, &mut rv, bn);
                    let mut y = be.zeros(rows * cols);
                    let (g, b) = (CpuBuf(gamma), CpuBuf(beta));
                    let (mut sm, mut si) = (be.zeros(cols), be.zeros(cols));
                    #[allow(clippy::unnecessary_lazy_evaluations)]
                    let bnf = bn.then(|| BnFwd {
                        gamma: &g,
                        beta: &b,
                        running_mean: &mut rm2,
                        running_var: &mut rv2,
                        save_mean: &mut sm,
                        save_invstd: &mut si,
                    });
                    be.fused_forward(&cfg, &CpuBuf(z), Some(&CpuBuf(bias)), bnf, &mut y);
                    let what = format!("fused {rows}x{cols} {act:?} train={train} bn={bn}");
                    close(&y.0, &want, 1e-4, &what);
                    if bn {
                        close(&rm2.0, &rm, 1e-5, &what);
                        close(&rv2.0, &rv, 1e-5, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn reductions_and_elementwise() {
    let be = CpuBackend::new();
    let (r, c) = (37, 41);
    let x = rnd(r * c, 9);
    let xb = CpuBuf(x.clone());
    let mut out = be.zeros(r);
    be.row_sums(r, c, &xb, &mut out);
    let want: Vec<f32> = (0..r).map(|i| x[i * c..(i + 1) * c].iter().sum()).collect();
    close(&out.0, &want, 1e-5, "row_sums");
    be.row_sumsq(r, c, &xb, &mut out);
    let want: Vec<f32> = (0..r).map(|i| x[i * c..(i + 1) * c].iter().map(|v| v * v).sum()).collect();
    close(&out.0, &want, 1e-5, "row_sumsq");
    let mut cs = CpuBuf(vec![1.0; c]);
    be.col_sums(r, c, &xb, 2.0, &mut cs);
    let want: Vec<f32> = (0..c).map(|j| 2.0 + (0..r).map(|i| x[i * c + j]).sum::<f32>()).collect();
    close(&cs.0, &want, 1e-5, "col_sums");
    assert!((be.sum(&xb) - x.iter().sum::<f32>()).abs() < 1e-3);
    assert!((be.sumsq(&xb) - x.iter().map(|v| v * v).sum::<f32>()).abs() < 1e-3);

    // Large enough to take the parallel path.
    let n = 70_001;
    let a = rnd(n, 1);
    let b = rnd(n, 2);
    let (ab, bb) = (CpuBuf(a.clone()), CpuBuf(b.clone()));
    let mut o = be.zeros(n);
    be.add(&ab, &bb, &mut o);
    close(&o.0, &a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>(), 0.0, "add");
    be.mul(&ab, &bb, &mut o);
    close(&o.0, &a.iter().zip(&b).map(|(x, y)| x * y).collect::<Vec<_>>(), 0.0, "mul");
    let mut y = bb.clone();
    be.axpy(0.5, &ab, &mut y);
    close(&y.0, &a.iter().zip(&b).map(|(x, y)| y + 0.5 * x).collect::<Vec<_>>(), 1e-7, "axpy");
    be.scale(3.0, &mut y);
    be.abs(&ab, &mut o);
    close(&o.0, &a.iter().map(|v| v.abs()).collect::<Vec<_>>(), 0.0, "abs");
    be.sign(&CpuBuf(vec![-2.0, 0.0, 3.0]), &mut CpuBuf(vec![0.0; 3]));
    let mut s = CpuBuf(vec![0.0; 3]);
    be.sign(&CpuBuf(vec![-2.0, 0.0, 3.0]), &mut s);
    assert_eq!(s.0, vec![-1.0, 0.0, 1.0]);
    be.sigmoid(&ab, &mut o);
    close(&o.0, &a.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect::<Vec<_>>(), 1e-6, "sigmoid");
    let mut d = be.zeros(n);
    be.sigmoid_backward(&o, &bb, &mut d);
    close(&d.0, &o.0.iter().zip(&b).map(|(y, g)| g * y * (1.0 - y)).collect::<Vec<_>>(), 1e-6, "sigmoid_bwd");
    be.act_forward(Act::LeakyRelu(0.2), &ab, &mut o);
    close(&o.0, &a.iter().map(|&v| if v > 0.0 { v } else { 0.2 * v }).collect::<Vec<_>>(), 0.0, "lrelu");
    be.act_backward(Act::Relu, &ab, &bb, &mut d);
    close(&d.0, &a.iter().zip(&b).map(|(&x, &g)| if x > 0.0 { g } else { 0.0 }).collect::<Vec<_>>(), 0.0, "relu_bwd");
    let mask = DropoutMask { p: 0.25, seed: 3, offset: 8 };
    be.dropout(&mask, &ab, &mut o);
    close(&o.0, &a.iter().enumerate().map(|(j, v)| v * mask.factor(j)).collect::<Vec<_>>(), 0.0, "dropout");
    let mut bx = CpuBuf(x.clone());
    let bias = rnd(c, 4);
    be.add_bias(r, c, &CpuBuf(bias.clone()), &mut bx);
    close(&bx.0, &x.iter().enumerate().map(|(i, v)| v + bias[i % c]).collect::<Vec<_>>(), 0.0, "add_bias");
    let mut g = be.zeros(n);
    let l = be.l1_loss(&ab, &bb, 30.0, &mut g);
    let want = a.iter().zip(&b).map(|(x, y)| (x - y).abs() as f64).sum::<f64>() / n as f64;
    assert!((l as f64 - want).abs() < 1e-6);
    close(&g.0, &a.iter().zip(&b).map(|(x, y)| 30.0 * (x - y).signum() / n as f32).collect::<Vec<_>>(), 1e-6, "l1 grad");
    let mut u = be.zeros(n);
    be.fill_uniform(&mut u, 5, 12, -2.0, 3.0);
    let mut w = vec![0.0; n];
    rng::fill_uniform(5, 12, -2.0, 3.0, &mut w);
    assert_eq!(u.0, w);
    be.fill_normal(&mut u, 5, 12, 1.0, 2.0);
    rng::fill_normal(5, 12, 1.0, 2.0, &mut w);
    assert_eq!(u.0, w);
}

#[test]
fn softmax_and_layer_norm() {
    let be = CpuBackend::new();
    let (r, c) = (9, 13);
    let x = rnd(r * c, 1);
    let mut y = be.zeros(r * c);
    be.softmax_rows(r, c, 20.0, &CpuBuf(x.clone()), &mut y);
    for i in 0..r {
        let row: Vec<f64> = x[i * c..(i + 1) * c].iter().map(|&v| (v as f64 * 20.0).exp()).collect();
        let s: f64 = row.iter().sum();
        let want: Vec<f32> = row.iter().map(|v| (v / s) as f32).collect();
        close(&y.0[i * c..(i + 1) * c], &want, 1e-5, "softmax");
    }
    let dy = rnd(r * c, 2);
    let mut dx = be.zeros(r * c);
    be.softmax_rows_backward(r, c, 20.0, &y, &CpuBuf(dy.clone()), &mut dx);
    for i in 0..r {
        let yr = &y.0[i * c..(i + 1) * c];
        let dot: f32 = (0..c).map(|j| yr[j] * dy[i * c + j]).sum();
        for j in 0..c {
            let want = 20.0 * yr[j] * (dy[i * c + j] - dot);
            assert!((dx.0[i * c + j] - want).abs() < 1e-4);
        }
    }
    let gamma = rnd(c, 3);
    let beta = rnd(c, 4);
    let (mut m, mut s) = (be.zeros(r), be.zeros(r));
    be.layer_norm_forward(r, c, 1e-5, &CpuBuf(x.clone()), &CpuBuf(gamma.clone()), &CpuBuf(beta.clone()), &mut y, &mut m, &mut s);
    for i in 0..r {
        let row = &x[i * c..(i + 1) * c];
        let mu = row.iter().sum::<f32>() / c as f32;
        let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f32>() / c as f32;
        for j in 0..c {
            let want = (row[j] - mu) / (var + 1e-5).sqrt() * gamma[j] + beta[j];
            assert!((y.0[i * c + j] - want).abs() < 1e-4);
        }
    }
}

#[test]
fn adam_matches_formula() {
    let be = CpuBackend::new();
    let n = 40_000;
    for decoupled in [false, true] {
        let p0 = rnd(n, 1);
        let g = rnd(n, 2);
        let (mut p, mut m, mut v) = (CpuBuf(p0.clone()), be.zeros(n), be.zeros(n));
        let mut want = p0.clone();
        let (mut mw, mut vw) = (vec![0.0f64; n], vec![0.0f64; n]);
        for t in 1..=3 {
            let s = AdamStep { lr: 1e-2, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, decoupled, t };
            be.adam_step(&s, &mut p, &CpuBuf(g.clone()), &mut m, &mut v);
            for i in 0..n {
                let mut gi = g[i] as f64;
                let mut pi = want[i] as f64;
                if decoupled {
                    pi *= 1.0 - 1e-2 * 0.1;
                } else {
                    gi += 0.1 * pi;
                }
                mw[i] = 0.5 * mw[i] + 0.5 * gi;
                vw[i] = 0.999 * vw[i] + 0.001 * gi * gi;
                let mh = mw[i] / (1.0 - 0.5f64.powi(t as i32));
                let vh = vw[i] / (1.0 - 0.999f64.powi(t as i32));
                want[i] = (pi - 1e-2 * mh / (vh.sqrt() + 1e-8)) as f32;
            }
        }
        close(&p.0, &want, 1e-5, "adam");
    }
}
