//! Metrics against scikit-learn 1.9 on fixtures/metrics/cases.json
//! (written by scripts/make_metric_fixtures.py).

use acsleuth::metrics;
use acsleuth::Error;
use serde_json::Value;

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/metrics/cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::INFINITY)).collect()
}
fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() != 0).collect()
}
fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: {a} vs sklearn {b}");
}
fn close_all(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if x.is_infinite() && y.is_infinite() {
            continue;
        }
        close(x, y, &format!("{what}[{i}]"));
    }
}

#[test]
fn detection_metrics_match_sklearn() {
    let fx = load();
    for (ci, c) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let t = bools(&c["truth"]);
        let s = f64s(&c["scores"]);
        let calls = bools(&c["calls"]);
        let w = |m: &str| format!("case {ci}: {m}");
        close(metrics::auroc(&t, &s).unwrap(), c["auroc"].as_f64().unwrap(), &w("auroc"));
        close(metrics::average_precision(&t, &s).unwrap(), c["ap"].as_f64().unwrap(), &w("ap"));
        let top = metrics::f1_top_k(&t, &s).unwrap();
        close(top.f1, c["f1_top_k"].as_f64().unwrap(), &w("f1_top_k"));
        assert_eq!(top.n_called as u64, c["n_called_top_k"].as_u64().unwrap(), "{}", w("n called"));
        let b = metrics::binary_scores(&t, &calls).unwrap();
        close(b.f1, c["f1_calls"].as_f64().unwrap(), &w("f1_calls"));
        close(b.precision, c["precision_calls"].as_f64().unwrap(), &w("precision"));
        close(b.recall, c["recall_calls"].as_f64().unwrap(), &w("recall"));
        let roc = metrics::roc_curve(&t, &s).unwrap();
        close_all(&roc.fpr, &f64s(&c["roc"]["fpr"]), &w("roc fpr"));
        close_all(&roc.tpr, &f64s(&c["roc"]["tpr"]), &w("roc tpr"));
        close_all(&roc.thresholds, &f64s(&c["roc"]["thresholds"]), &w("roc thresholds"));
        let pr = metrics::pr_curve(&t, &s).unwrap();
        close_all(&pr.precision, &f64s(&c["pr"]["precision"]), &w("pr precision"));
        close_all(&pr.recall, &f64s(&c["pr"]["recall"]), &w("pr recall"));
        close_all(&pr.thresholds, &f64s(&c["pr"]["thresholds"]), &w("pr thresholds"));
    }
}

#[test]
fn clustering_metrics_match_sklearn() {
    let fx = load();
    let all = fx["cases"].as_array().unwrap().iter().chain(fx["cluster_edges"].as_array().unwrap());
    for (ci, c) in all.enumerate() {
        let lt = ints(&c["labels_true"]);
        let lp = ints(&c["labels_pred"]);
        close(metrics::nmi(&lt, &lp).unwrap(), c["nmi"].as_f64().unwrap(), &format!("case {ci}: nmi"));
        close(metrics::ari(&lt, &lp).unwrap(), c["ari"].as_f64().unwrap(), &format!("case {ci}: ari"));
    }
}

#[test]
fn one_class_truth_is_a_typed_error() {
    let fx = load();
    for c in fx["error_cases"].as_array().unwrap() {
        let t = bools(&c["truth"]);
        let s = f64s(&c["scores"]);
        assert!(matches!(metrics::auroc(&t, &s), Err(Error::Invalid(_))));
        assert!(matches!(metrics::average_precision(&t, &s), Err(Error::Invalid(_))));
        assert!(matches!(metrics::roc_curve(&t, &s), Err(Error::Invalid(_))));
        assert!(matches!(metrics::f1_top_k(&t, &s), Err(Error::Invalid(_))));
    }
    assert!(matches!(metrics::nmi::<i64, i64>(&[], &[]), Err(Error::Invalid(_))));
    assert!(matches!(metrics::ari(&[1, 2], &[1]), Err(Error::Invalid(_))));
}

#[test]
fn string_labels_work() {
    let a = ["B", "B", "NK", "NK"];
    let b = ["x", "x", "y", "y"];
    assert_eq!(metrics::ari(&a, &b).unwrap(), 1.0);
    assert!((metrics::nmi(&a, &b).unwrap() - 1.0).abs() < 1e-12);
}

// ---- acsleuth evaluate, with the built binary on tiny generated files ----
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_acsleuth"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn evaluate_prints_metrics_and_json() {
    let d = tempfile::tempdir().unwrap();
    let scores = write(
        d.path(),
        "scores.tsv",
        "cell\tscore\tanomaly\tsubtype\nc1\t0.9\t1\tA\nc2\t0.8\t1\tB\nc3\t0.3\t0\t\nc4\t0.2\t0\t\nc5\t0.7\t1\tA\n",
    );
    let truth = write(
        d.path(),
        "truth.csv",
        ",is_anomaly,celltype\nc1,True,B\nc2,True,NK\nc3,False,T\nc4,False,T\nc5,False,Mono\nc6,False,T\n",
    );
    let out = bin()
        .args(["evaluate", "--scores", &scores, "--truth", &truth, "--truth-subtype-col", "celltype", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_cells"], 5);
    assert_eq!(v["n_true_anomalies"], 2);
    assert_eq!(v["auroc"], 1.0);
    assert_eq!(v["f1_at_true_fraction"]["f1"], 1.0);
    assert!((v["own_calls"]["f1"].as_f64().unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(v["subtyping"]["n_cells"], 2);

    let out = bin().args(["evaluate", "--scores", &scores, "--truth", &truth]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("AUROC") && text.contains("F1 (calls)"), "{text}");
}

/// Issue 16: with one true anomaly called with a subtype, `evaluate`
/// failed while `run --truth-key` reported NMI = ARI = 0. Both use one
/// Evaluation now: the detection metrics, and NMI/ARI undefined with why.
#[test]
fn evaluate_with_one_subtyped_anomaly_reports_nmi_undefined() {
    let d = tempfile::tempdir().unwrap();
    let scores = write(d.path(), "s.tsv", "cell\tscore\tanomaly\tsubtype\nc1\t0.9\t1\tS1\nc2\t0.2\t0\t\nc3\t0.1\t0\t\n");
    let truth = write(d.path(), "t.tsv", "cell\tanomaly\ttype\nc1\t1\tB\nc2\t1\tNK\nc3\t0\tT\n");
    let args = ["evaluate", "--scores", &scores, "--truth", &truth, "--truth-subtype-col", "type"];
    let out = bin().args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auroc"], 1.0);
    assert_eq!(v["subtyping"]["n_cells"], 1);
    assert!(v["subtyping"]["nmi"].is_null() && v["subtyping"]["ari"].is_null());
    assert!(v["subtyping"]["note"].as_str().unwrap().contains("undefined"));
    let out = bin().args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("NMI, ARI     undefined (1 true anomalies called with a subtype"), "{text}");
}

#[test]
fn evaluate_reports_missing_cells_and_bad_values() {
    let d = tempfile::tempdir().unwrap();
    let scores = write(d.path(), "s.tsv", "cell\tscore\tanomaly\nc1\t0.9\t1\nzz\t0.1\t0\n");
    let truth = write(d.path(), "t.tsv", "cell\tanomaly\nc1\t1\nc2\t0\n");
    let out = bin().args(["evaluate", "--scores", &scores, "--truth", &truth]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zz"), "{err}");

    let truth = write(d.path(), "t2.tsv", "cell\tanomaly\nc1\tmaybe\nzz\t0\n");
    let out = bin().args(["evaluate", "--scores", &scores, "--truth", &truth]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("maybe"));

    let help = bin().args(["evaluate", "--help"]).output().unwrap();
    let h = String::from_utf8_lossy(&help.stdout);
    assert!(h.contains("average precision") && h.contains("adjusted Rand") && h.contains("F1xNMI"), "{h}");
}
