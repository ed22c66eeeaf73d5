#!/usr/bin/env python3
"""Writes fixtures/metrics/cases.json: random cases with scikit-learn's values,
for tests/metrics.rs. Run from the repository root:
    /work/pyenv/bin/python scripts/make_metric_fixtures.py

Each case: "truth" (0/1), "scores" (some rounded so that ties occur),
"calls" (0/1), "labels_true" / "labels_pred" (cluster ids) and the expected
values: auroc, ap (average_precision_score), f1_top_k (authors' rule: k =
round(fraction of positives * N); the cells with score >= the k-th highest
score are called, so ties at the threshold are all called), f1_calls,
precision_calls, recall_calls, nmi (arithmetic), ari, roc (fpr, tpr,
thresholds of roc_curve(drop_intermediate=False), the first threshold +inf
written as null), pr (precision, recall, thresholds of precision_recall_curve).
"error_cases": inputs on which sklearn raises (a single class), expected as
typed errors in Rust (sklearn warns and returns NaN).
"""
import json
import warnings
import os

import numpy as np
from sklearn import metrics as M

OUT = "fixtures/metrics"


def top_k_calls(truth, scores):
    n = len(truth)
    k = int(round(truth.mean() * n))
    if k == 0:
        return np.zeros(n, dtype=int)
    thr = np.sort(scores)[::-1][k - 1]
    return (scores >= thr).astype(int)


def fl(a):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def case(rng, n, frac, tie_decimals, n_true, n_pred):
    truth = (rng.random(n) < frac).astype(int)
    if truth.sum() == 0:
        truth[0] = 1
    if truth.sum() == n:
        truth[0] = 0
    scores = rng.normal(size=n) + 1.2 * truth
    if tie_decimals is not None:
        scores = np.round(scores, tie_decimals)
    calls = (scores > np.quantile(scores, 0.8)).astype(int)
    lt = rng.integers(0, n_true, size=n)
    lp = np.where(rng.random(n) < 0.6, lt, rng.integers(0, n_pred, size=n))
    fpr, tpr, thr = M.roc_curve(truth, scores, drop_intermediate=False)
    p, r, pt = M.precision_recall_curve(truth, scores)
    topk = top_k_calls(truth, scores)
    return {
        "truth": truth.tolist(), "scores": scores.tolist(), "calls": calls.tolist(),
        "labels_true": lt.tolist(), "labels_pred": lp.tolist(),
        "auroc": M.roc_auc_score(truth, scores),
        "ap": M.average_precision_score(truth, scores),
        "f1_top_k": M.f1_score(truth, topk),
        "n_called_top_k": int(topk.sum()),
        "f1_calls": M.f1_score(truth, calls, zero_division=0.0),
        "precision_calls": M.precision_score(truth, calls, zero_division=0.0),
        "recall_calls": M.recall_score(truth, calls, zero_division=0.0),
        "nmi": M.normalized_mutual_info_score(lt, lp),
        "ari": M.adjusted_rand_score(lt, lp),
        "roc": {"fpr": fl(fpr), "tpr": fl(tpr), "thresholds": fl(thr)},
        "pr": {"precision": fl(p), "recall": fl(r), "thresholds": fl(pt)},
    }


def main():
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(20240)
    cases = []
    for n, frac, dec, nt, npred in [
        (10, 0.3, 1, 2, 2), (50, 0.1, 1, 3, 4), (200, 0.15, 2, 5, 5),
        (200, 0.5, None, 4, 6), (1000, 0.05, 1, 8, 8), (1000, 0.3, 0, 2, 3),
        (37, 0.2, None, 1, 3), (500, 0.02, 2, 6, 1), (3000, 0.148, 3, 10, 12),
    ]:
        cases.append(case(rng, n, frac, dec, nt, npred))
    # Identical scores everywhere: AUROC 0.5, AP = positive fraction.
    c = case(rng, 20, 0.25, None, 2, 2)
    c["scores"] = [0.5] * 20
    t = np.array(c["truth"])
    s = np.array(c["scores"])
    c["auroc"] = M.roc_auc_score(t, s)
    c["ap"] = M.average_precision_score(t, s)
    tk = top_k_calls(t, s)
    c["f1_top_k"] = M.f1_score(t, tk)
    c["n_called_top_k"] = int(tk.sum())
    fpr, tpr, thr = M.roc_curve(t, s, drop_intermediate=False)
    p, r, pt = M.precision_recall_curve(t, s)
    c["roc"] = {"fpr": fl(fpr), "tpr": fl(tpr), "thresholds": fl(thr)}
    c["pr"] = {"precision": fl(p), "recall": fl(r), "thresholds": fl(pt)}
    cases.append(c)

    error_cases = []
    for truth in ([0, 0, 0, 0], [1, 1, 1]):
        # sklearn 1.9 warns and returns NaN (older versions raise ValueError).
        try:
            undefined = np.isnan(M.roc_auc_score(truth, np.arange(len(truth), dtype=float)))
        except ValueError:
            undefined = True
        assert undefined
        error_cases.append({"truth": truth, "scores": list(np.arange(len(truth), dtype=float))})
    # Clustering edge cases sklearn defines (perfect or single-cluster).
    cluster_edges = []
    for lt, lp in ([[0, 0, 0], [1, 1, 1]], [[0, 1, 2], [5, 6, 7]], [[0, 0, 1, 1], [0, 1, 2, 3]],
                   [[0, 0, 0, 0], [0, 1, 0, 1]]):
        cluster_edges.append({"labels_true": lt, "labels_pred": lp,
                              "nmi": M.normalized_mutual_info_score(lt, lp),
                              "ari": M.adjusted_rand_score(lt, lp)})
    os.makedirs(OUT, exist_ok=True)
    with open(f"{OUT}/cases.json", "w") as fh:
        json.dump({"cases": cases, "error_cases": error_cases, "cluster_edges": cluster_edges}, fh)
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
