//! The simulator: determinism (seeds, thread counts), truth labels,
//! statistics of the counts, configuration errors, and the
//! `acsleuth simulate` command.

use std::path::Path;
use std::process::Command;

use acsleuth::data::simulate::{sample_nb, simulate_dataset, Dropout, SetKind, SimConfig, Simulator};
use acsleuth::data::{CsrMatrix, Dataset, Matrix, ObsColumn};
use rand::SeedableRng;

/// Several chunks per set, the last one partial.
fn small() -> SimConfig {
    SimConfig { n_ref: 700, n_target: 1100, n_genes: 400, seed: 7, ..SimConfig::default() }
}

fn csr(ds: &Dataset) -> &CsrMatrix {
    match &ds.x {
        Matrix::Csr(c) => c,
        Matrix::Dense(_) => panic!("the simulator returns CSR"),
    }
}

fn both(config: SimConfig) -> (Dataset, Dataset) {
    let sim = Simulator::new(config).unwrap();
    (simulate_dataset(&sim, SetKind::Reference).unwrap(), simulate_dataset(&sim, SetKind::Target).unwrap())
}

fn in_pool(threads: usize, config: SimConfig) -> (Dataset, Dataset) {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| both(config))
}

#[test]
fn same_seed_same_data_different_seed_differs() {
    let (r1, t1) = both(small());
    let (r2, t2) = both(small());
    assert_eq!(r1, r2);
    assert_eq!(t1, t2);
    let (r3, t3) = both(SimConfig { seed: 8, ..small() });
    assert_ne!(csr(&r1).data, csr(&r3).data);
    assert_ne!(csr(&t1).data, csr(&t3).data);
    r1.validate().unwrap();
    t1.validate().unwrap();
}

#[test]
fn thread_count_does_not_change_the_output() {
    let one = in_pool(1, small());
    let two = in_pool(2, small());
    let three = in_pool(3, small());
    assert_eq!(one, two);
    assert_eq!(one, three);
}

fn codes(ds: &Dataset, col: &str) -> (Vec<String>, Vec<i32>) {
    match ds.obs_column(col) {
        Some(ObsColumn::Categorical { categories, codes }) => (categories.clone(), codes.clone()),
        other => panic!("{col}: {other:?}"),
    }
}

#[test]
fn truth_labels_are_exact() {
    let config = SimConfig { n_target: 1001, anomaly_ratio: 0.13, n_batches: 3, n_anomaly_types: 3, ..small() };
    let n_anom = (0.13f64 * 1001.0).round() as usize;
    let sim = Simulator::new(config).unwrap();
    let (r, t) = (simulate_dataset(&sim, SetKind::Reference).unwrap(), simulate_dataset(&sim, SetKind::Target).unwrap());

    // Target: exact anomaly count, split evenly over the anomaly types.
    let Some(ObsColumn::Bool(is_anom)) = t.obs_column("is_anomaly") else { panic!("is_anomaly") };
    assert_eq!(is_anom.iter().filter(|&&a| a).count(), n_anom);
    let (acats, acodes) = codes(&t, "anomaly_type");
    assert_eq!(acats, ["normal", "anomaly1", "anomaly2", "anomaly3"]);
    for a in 1..=3 {
        let n = acodes.iter().filter(|&&c| c == a).count();
        assert!(n == n_anom / 3 || n == n_anom / 3 + 1, "anomaly{a}: {n}");
    }
    let (tcats, tcodes) = codes(&t, "cell_type");
    assert_eq!(tcats.len(), 5 + 3);
    for i in 0..t.n_cells() {
        assert_eq!(is_anom[i], tcodes[i] >= 5);
        assert_eq!(acodes[i] > 0, is_anom[i]);
        if is_anom[i] {
            assert_eq!(tcats[tcodes[i] as usize], acats[acodes[i] as usize]);
        }
    }
    // Every batch present in the target, evenly.
    let (bcats, bcodes) = codes(&t, "batch");
    assert_eq!(bcats, ["batch0", "batch1", "batch2"]);
    for b in 0..3 {
        let n = bcodes.iter().filter(|&&c| c == b).count();
        assert!((333..=334).contains(&n), "batch{b}: {n}");
    }
    // Reference: normal types only, all of them, from batch 0 only.
    let Some(ObsColumn::Bool(ref_anom)) = r.obs_column("is_anomaly") else { panic!("is_anomaly") };
    assert!(ref_anom.iter().all(|&a| !a));
    let (_, rcodes) = codes(&r, "cell_type");
    for k in 0..5 {
        assert_eq!(rcodes.iter().filter(|&&c| c == k).count(), 700 / 5);
    }
    assert!(codes(&r, "batch").1.iter().all(|&b| b == 0));

    assert_eq!(r.cell_names[0], "ref_000001");
    assert_eq!(t.cell_names[1000], "tgt_001001");
    assert_eq!(t.gene_names[0], "gene0001");
    assert_eq!(t.gene_names[399], "gene0400");
}

#[test]
fn reference_batches_can_be_spread() {
    let config = SimConfig { n_batches: 3, ref_batches: vec![0, 2], target_batches: Some(vec![1]), ..small() };
    let (r, t) = both(config);
    let rb = codes(&r, "batch").1;
    assert_eq!(rb.iter().filter(|&&b| b == 0).count(), 350);
    assert_eq!(rb.iter().filter(|&&b| b == 2).count(), 350);
    assert!(codes(&t, "batch").1.iter().all(|&b| b == 1));
}

fn row_totals(m: &CsrMatrix) -> Vec<f64> {
    (0..m.rows).map(|i| m.row(i).1.iter().map(|&v| v as f64).sum()).collect()
}

#[test]
fn library_sizes_match_the_lognormal() {
    let config = SimConfig { n_ref: 4000, n_genes: 1000, ..small() };
    let expected = (config.lib_loc + config.lib_scale * config.lib_scale / 2.0).exp();
    let sim = Simulator::new(config).unwrap();
    let r = simulate_dataset(&sim, SetKind::Reference).unwrap();
    let totals = row_totals(csr(&r));
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    assert!((mean / expected - 1.0).abs() < 0.03, "mean library {mean}, expected {expected}");
    // Spread of log totals ≈ lib_scale (plus a little count noise).
    let logs: Vec<f64> = totals.iter().map(|t| t.ln()).collect();
    let lm = logs.iter().sum::<f64>() / logs.len() as f64;
    let sd = (logs.iter().map(|l| (l - lm).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
    assert!((0.27..0.36).contains(&sd), "sd of log library {sd}");
    // Counts are integers.
    assert!(csr(&r).data.iter().all(|v| v.fract() == 0.0 && *v > 0.0));
}

/// Mean of counts / library total per gene over the cells selected.
fn mean_profile(m: &CsrMatrix, cells: &[usize]) -> Vec<f64> {
    let mut acc = vec![0.0; m.cols];
    for &i in cells {
        let (idx, val) = m.row(i);
        let total: f64 = val.iter().map(|&v| v as f64).sum();
        for (&j, &v) in idx.iter().zip(val) {
            acc[j as usize] += v as f64 / total.max(1.0);
        }
    }
    acc.iter().map(|a| a / cells.len() as f64).collect()
}

#[test]
fn anomaly_de_genes_shift_their_means() {
    let config = SimConfig { n_target: 4000, n_genes: 1000, anomaly_ratio: 0.3, n_batches: 1, ..small() };
    let sim = Simulator::new(config).unwrap();
    let t = simulate_dataset(&sim, SetKind::Target).unwrap();
    let m = csr(&t);
    let types = codes(&t, "cell_type").1;
    let anom: Vec<usize> = (0..m.rows).filter(|&i| types[i] == 5).collect(); // anomaly1
    let normal: Vec<usize> = (0..m.rows).filter(|&i| types[i] < 5).collect();
    let (pa, pn) = (mean_profile(m, &anom), mean_profile(m, &normal));

    // The observed profile of anomaly1 follows its true profile.
    let truth = sim.profile(5, 0);
    let expressed: Vec<usize> = (0..1000).filter(|&j| truth[j] * 3000.0 > 0.5).collect();
    let corr = correlation(
        &expressed.iter().map(|&j| pa[j].max(1e-9).ln()).collect::<Vec<_>>(),
        &expressed.iter().map(|&j| truth[j].ln()).collect::<Vec<_>>(),
    );
    assert!(corr > 0.95, "log-profile correlation {corr}");

    // Its DE genes move in their direction against the normal cells.
    let f = sim.de_factors(5);
    let lfc = |genes: Vec<usize>| -> f64 {
        genes.iter().map(|&j| (pa[j] / pn[j]).ln()).sum::<f64>() / genes.len() as f64
    };
    let up: Vec<usize> = expressed.iter().copied().filter(|&j| f[j] > 2.0).collect();
    let down: Vec<usize> = expressed.iter().copied().filter(|&j| f[j] < 0.5).collect();
    let flat: Vec<usize> = expressed.iter().copied().filter(|&j| f[j] == 1.0).collect();
    assert!(up.len() >= 5 && down.len() >= 5, "{} up, {} down", up.len(), down.len());
    let (lu, ld, lf) = (lfc(up), lfc(down), lfc(flat));
    assert!(lu > 0.5, "mean log fold change of up genes {lu}");
    assert!(ld < -0.5, "mean log fold change of down genes {ld}");
    assert!(lf.abs() < 0.15, "mean log fold change of non-DE genes {lf}");
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn negative_binomial_moments() {
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
    // Both branches (inversion below a mean of 16, Poisson-Gamma above),
    // including tiny sizes.
    for &(mu, r) in &[(0.05, 0.05), (0.7, 2.0), (3.0, 0.5), (12.0, 5.0), (40.0, 3.0), (200.0, 20.0)] {
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| sample_nb(&mut rng, mu, r) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let want_var = mu + mu * mu / r;
        let se = (want_var / n as f64).sqrt();
        assert!((mean - mu).abs() < 5.0 * se, "mu {mu} r {r}: mean {mean}");
        assert!((var / want_var - 1.0).abs() < 0.1, "mu {mu} r {r}: var {var}, want {want_var}");
    }
    // P(0) = (1 + mu/r)^-r.
    let (mu, r) = (0.8, 0.3);
    let zeros = (0..200_000).filter(|_| sample_nb(&mut rng, mu, r) == 0).count() as f64 / 200_000.0;
    let want = (1.0f64 + mu / r).powf(-r);
    assert!((zeros - want).abs() < 0.005, "P(0) {zeros}, want {want}");
}

#[test]
fn dropout_removes_counts() {
    let base = SimConfig { n_target: 600, n_genes: 300, ..small() };
    let (_, plain) = both(base.clone());
    let (_, dropped) = both(SimConfig { dropout: Some(Dropout { mid: 1.0, shape: -1.0 }), ..base });
    assert!(csr(&dropped).nnz() < csr(&plain).nnz() * 9 / 10);
}

#[test]
fn bad_configurations_are_refused() {
    let bad = [
        SimConfig { anomaly_ratio: -0.1, ..small() },
        SimConfig { anomaly_ratio: 1.0, ..small() },
        SimConfig { anomaly_ratio: 0.0001, ..small() },
        SimConfig { anomaly_ratio: f64::NAN, ..small() },
        SimConfig { n_ref: 0, ..small() },
        SimConfig { n_target: 0, ..small() },
        SimConfig { n_genes: 0, ..small() },
        SimConfig { n_types: 0, ..small() },
        SimConfig { n_target: 20, anomaly_ratio: 0.1, n_anomaly_types: 3, ..small() },
        SimConfig { n_target: 2, anomaly_ratio: 0.9, n_anomaly_types: 1, ..small() },
        SimConfig { n_batches: 2, ref_batches: vec![2], ..small() },
        SimConfig { ref_batches: vec![], ..small() },
        SimConfig { target_batches: Some(vec![0, 0]), ..small() },
        SimConfig { lib_scale: -1.0, ..small() },
        SimConfig { mean_rate: 0.0, ..small() },
        SimConfig { condition_shift: -0.1, ..small() },
        SimConfig { condition_shift: f64::NAN, ..small() },
        SimConfig { condition_shift: f64::INFINITY, ..small() },
    ];
    for c in bad {
        let err = Simulator::new(c.clone()).err().unwrap_or_else(|| panic!("accepted {c:?}"));
        assert!(matches!(err, acsleuth::Error::Config(_)), "{err}");
    }
}

#[test]
fn config_round_trips_through_json() {
    let c = SimConfig { dropout: Some(Dropout { mid: 0.5, shape: -2.0 }), target_batches: Some(vec![1]), ..small() };
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<SimConfig>(&text).unwrap(), c);
    // Missing fields take their defaults; unknown ones are refused.
    let partial: SimConfig = serde_json::from_str(r#"{"n_ref": 10}"#).unwrap();
    assert_eq!(partial, SimConfig { n_ref: 10, ..SimConfig::default() });
    assert!(serde_json::from_str::<SimConfig>(r#"{"n_cells": 10}"#).is_err());
}

// ---- the command line ----

fn acsleuth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_acsleuth")).args(args).env("ACSLEUTH_QUIET", "1").output().unwrap()
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error:") && err.contains(needle), "{err}");
}

#[test]
fn cli_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let o = out.to_str().unwrap();
    assert_one_line_error(&acsleuth(&["simulate", "--out", o, "--anomaly-ratio", "1.5"]), "anomaly_ratio");
    assert_one_line_error(&acsleuth(&["simulate", "--out", o, "--anomaly-ratio", "-0.1"]), "anomaly_ratio");
    for v in ["-0.5", "nan", "inf"] {
        assert_one_line_error(&acsleuth(&["simulate", "--out", o, "--condition-shift", v]), "condition_shift must be a finite number >= 0");
    }
    assert_one_line_error(&acsleuth(&["simulate", "--out", o, "--n-target", "0"]), "n_target");
    assert_one_line_error(
        &acsleuth(&["simulate", "--out", o, "--n-target", "10", "--n-anomaly-types", "2"]),
        "fewer than the 2 anomaly types",
    );
    assert_one_line_error(&acsleuth(&["simulate", "--out", o, "--ref-batches", "0,5"]), "ref_batches");
    assert!(!out.exists(), "nothing is written on a refused configuration");

    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, r#"{"n_cells": 3}"#).unwrap();
    assert_one_line_error(&acsleuth(&["simulate", "--out", o, "--config", bad_json.to_str().unwrap()]), "n_cells");
}

#[test]
fn cli_does_not_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    assert_one_line_error(&acsleuth(&["simulate", "--out", out.to_str().unwrap()]), "--force");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

fn read_truth(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split('\t').map(String::from).collect()).collect()
}

#[test]
fn cli_writes_stores_truth_and_params() {
    use acsleuth::data::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let o = out.to_str().unwrap();
    let args = ["simulate", "--out", o, "--n-ref", "300", "--n-target", "500", "--n-genes", "200", "--seed", "3"];
    let run = acsleuth(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let config = SimConfig { n_ref: 300, n_target: 500, n_genes: 200, seed: 3, ..SimConfig::default() };
    let sim = Simulator::new(config.clone()).unwrap();
    for (file, kind) in [("reference.acs", SetKind::Reference), ("target.acs", SetKind::Target)] {
        let store = Store::open(&out.join(file)).unwrap();
        store.verify().unwrap();
        let on_disk = store.to_dataset().unwrap();
        let in_memory = simulate_dataset(&sim, kind).unwrap();
        assert_eq!(on_disk.x.to_csr(), in_memory.x.to_csr(), "{file}");
        assert_eq!(on_disk.cell_names, in_memory.cell_names);
        assert_eq!(on_disk.gene_names, in_memory.gene_names);
        assert_eq!(on_disk.obs, in_memory.obs);
    }

    let truth = read_truth(&out.join("truth.tsv"));
    assert_eq!(truth[0], ["cell", "cell_type", "is_anomaly", "anomaly_type", "batch"]);
    assert_eq!(truth.len(), 501);
    assert_eq!(truth.iter().filter(|r| r[2] == "true").count(), 50);
    assert!(truth[1..].iter().all(|r| (r[2] == "true") == (r[3] != "normal")));

    let params: SimConfig = serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    assert_eq!(params, config);

    // Replaying params.json with --force gives the same bytes.
    let store_bytes = |d: &std::path::Path| -> Vec<Vec<u8>> {
        ["matrix.bin", "cells.txt", "genes.txt", "obs.tsv", "obs.json"]
            .iter()
            .map(|f| std::fs::read(d.join("target.acs").join(f)).unwrap())
            .collect()
    };
    let before = store_bytes(&out);
    let params_copy = dir.path().join("params.json");
    std::fs::copy(out.join("params.json"), &params_copy).unwrap();
    let again = acsleuth(&["simulate", "--out", o, "--force", "--config", params_copy.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(store_bytes(&out), before);
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 2, "only the output and the copied params remain");
}

// ---- the condition shift and targets without anomalies ----

/// FNV-1a over the CSR arrays of both sets and their obs columns.
fn fingerprint(r: &Dataset, t: &Dataset) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| bytes.iter().for_each(|&b| h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    for ds in [r, t] {
        let m = csr(ds);
        m.indptr.iter().for_each(|v| eat(&v.to_le_bytes()));
        m.indices.iter().for_each(|v| eat(&v.to_le_bytes()));
        m.data.iter().for_each(|v| eat(&v.to_bits().to_le_bytes()));
        eat(format!("{:?}", ds.obs).as_bytes());
    }
    h
}

/// The condition shift is off by default and, off, draws nothing: the
/// counts are those of the simulator before the option existed (the
/// fingerprint was taken from that code; it depends on the platform's
/// `exp`/`ln`, hence the gate), and params.json does not mention it.
#[test]
fn condition_shift_off_leaves_the_output_unchanged() {
    let config = SimConfig { n_ref: 300, n_target: 400, n_genes: 150, seed: 11, ..SimConfig::default() };
    assert_eq!(config.condition_shift, 0.0);
    let (r, t) = both(config.clone());
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(fingerprint(&r, &t), 0x6f60_fd82_8df9_babe);
    }
    let sim = Simulator::new(config.clone()).unwrap();
    assert!(sim.condition_factors(0).is_none());
    assert_eq!(sim.set_profile(SetKind::Target, 2, 1), sim.profile(2, 1));
    assert!(!serde_json::to_string(&config).unwrap().contains("condition_shift"));

    // On, it changes the target only, deterministically, whatever the threads.
    let on = SimConfig { condition_shift: 0.5, ..config };
    assert!(serde_json::to_string(&on).unwrap().contains("\"condition_shift\":0.5"));
    let (r2, t2) = in_pool(2, on.clone());
    assert_eq!(r2, r);
    assert_ne!(csr(&t2).data, csr(&t).data);
    assert_eq!(t2.obs, t.obs, "the labels do not move");
    assert_eq!(in_pool(3, on), (r2, t2));
}

/// Mean over the cells selected of ln(1 + 10^4 · count / total), per gene.
fn mean_log_expression(m: &CsrMatrix, cells: &[usize]) -> Vec<f64> {
    let mut acc = vec![0.0; m.cols];
    for &i in cells {
        let (idx, val) = m.row(i);
        let total: f64 = val.iter().map(|&v| v as f64).sum::<f64>().max(1.0);
        for (&j, &v) in idx.iter().zip(val) {
            acc[j as usize] += (1e4 * v as f64 / total).ln_1p();
        }
    }
    acc.iter().map(|a| a / cells.len() as f64).collect()
}

/// Each normal type's target cells move away from its reference cells by
/// a gene-wise shift of its own: the shifts are large, follow the type's
/// true factors, and are nearly uncorrelated between types.
#[test]
fn condition_shift_moves_each_type_its_own_way() {
    let base =
        SimConfig { n_ref: 1500, n_target: 1500, n_genes: 1200, n_types: 3, n_batches: 1, anomaly_ratio: 0.0, ..small() };
    // (type, shift of target vs reference per gene) over well-expressed genes.
    let shifts = |config: SimConfig| -> (Simulator, Vec<usize>, Vec<Vec<f64>>) {
        let sim = Simulator::new(config).unwrap();
        let (r, t) = (simulate_dataset(&sim, SetKind::Reference).unwrap(), simulate_dataset(&sim, SetKind::Target).unwrap());
        let (rt, tt) = (codes(&r, "cell_type").1, codes(&t, "cell_type").1);
        let genes: Vec<usize> = (0..1200).filter(|&j| (0..3).all(|k| sim.profile(k, 0)[j] * 3000.0 > 2.0)).collect();
        let d = (0..3)
            .map(|k| {
                let rc: Vec<usize> = (0..r.n_cells()).filter(|&i| rt[i] == k).collect();
                let tc: Vec<usize> = (0..t.n_cells()).filter(|&i| tt[i] == k).collect();
                let (mr, mt) = (mean_log_expression(csr(&r), &rc), mean_log_expression(csr(&t), &tc));
                genes.iter().map(|&j| mt[j] - mr[j]).collect()
            })
            .collect();
        (sim, genes, d)
    };
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();

    let (_, genes, flat) = shifts(base.clone());
    assert!(genes.len() >= 120, "{} well-expressed genes", genes.len());
    for (k, d) in flat.iter().enumerate() {
        assert!(rms(d) < 0.1, "type {k} moves {} without a condition shift", rms(d));
    }

    let (sim, genes, moved) = shifts(SimConfig { condition_shift: 0.5, ..base });
    for (k, d) in moved.iter().enumerate() {
        assert!(rms(d) > 0.25, "type {k} moves only {}", rms(d));
        let truth: Vec<f64> = genes.iter().map(|&j| sim.condition_factors(k).unwrap()[j].ln()).collect();
        let c = correlation(d, &truth);
        assert!(c > 0.8, "type {k}: shift vs its log factors, correlation {c}");
    }
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let c = correlation(&moved[a], &moved[b]);
        assert!(c.abs() < 0.3, "types {a} and {b} shift alike: correlation {c}");
    }
    // Anomaly types draw their own factors too.
    let (f0, fa) = (sim.condition_factors(0).unwrap(), sim.condition_factors(3).unwrap());
    assert_eq!(fa.len(), 1200);
    assert_ne!(f0, fa);
}

/// A target without anomalies: by ratio 0, or by no anomaly type at all.
#[test]
fn targets_without_anomalies() {
    for config in [
        SimConfig { anomaly_ratio: 0.0, ..small() },
        SimConfig { n_anomaly_types: 0, ..small() },
        SimConfig { n_anomaly_types: 0, anomaly_ratio: 0.0, condition_shift: 0.3, ..small() },
    ] {
        let (r, t) = both(config.clone());
        t.validate().unwrap();
        assert_eq!((config.n_anomalies(), t.n_cells(), r.n_cells()), (0, 1100, 700));
        let Some(ObsColumn::Bool(is_anom)) = t.obs_column("is_anomaly") else { panic!("is_anomaly") };
        assert!(is_anom.iter().all(|&a| !a), "{config:?}");
        assert!(codes(&t, "cell_type").1.iter().all(|&c| c < 5));
        assert!(codes(&t, "anomaly_type").1.iter().all(|&c| c == 0));
        assert_eq!(codes(&t, "cell_type").1.iter().filter(|&&c| c == 0).count(), 220, "normal types balanced");
    }
    let (_, t) = both(SimConfig { n_anomaly_types: 0, ..small() });
    assert_eq!(codes(&t, "anomaly_type").0, ["normal"]);

    // And from the command line, with the condition shift on.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let o = out.to_str().unwrap();
    let args = ["simulate", "--out", o, "--n-ref", "100", "--n-target", "120", "--n-genes", "50", "--anomaly-ratio", "0"];
    let run = acsleuth(&[&args[..], &["--condition-shift", "0.5"]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let truth = read_truth(&out.join("truth.tsv"));
    assert_eq!(truth.len(), 121);
    assert!(truth[1..].iter().all(|r| r[2] == "false" && r[3] == "normal"));
    let params: SimConfig = serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    assert_eq!((params.anomaly_ratio, params.condition_shift), (0.0, 0.5));
    let help = String::from_utf8_lossy(&acsleuth(&["simulate", "--help"]).stdout).to_string();
    assert!(["--condition-shift", "stimulation", "negative"].iter().all(|w| help.contains(w)), "{help}");
}

/// `condition_genes` moves a per-type random subset of genes of about that
/// size; the rest keep factor 1. Out-of-range fractions are refused.
#[test]
fn condition_genes_moves_a_subset_per_type() {
    let cfg = SimConfig { condition_shift: 1.0, condition_genes: 0.1, ..small() };
    let sim = Simulator::new(cfg.clone()).unwrap();
    let moved = |t: usize| -> Vec<bool> { sim.condition_factors(t).unwrap().iter().map(|&f| f != 1.0).collect() };
    let (a, b) = (moved(0), moved(1));
    let frac = a.iter().filter(|&&m| m).count() as f64 / a.len() as f64;
    assert!((0.05..0.15).contains(&frac), "moved fraction {frac}");
    assert_ne!(a, b, "each type moves its own genes");
    for g in [0.0, 1.5, f64::NAN] {
        assert!(Simulator::new(SimConfig { condition_genes: g, ..cfg.clone() }).is_err(), "{g}");
    }
}
