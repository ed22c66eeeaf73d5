"""The Harmony peer of the accuracy benchmark (issue #13), in Python with
scanpy + harmonypy, on the same splits as `examples/accuracy.rs`:

    python3 -m venv .venv-peers && .venv-peers/bin/pip install scanpy harmonypy scikit-learn
    .venv-peers/bin/python scripts/peers_harmony.py [--only pbmc,kang]

Per benchmark: genes z-scored over reference + target together (clipped at
10, as `sc.pp.scale(max_value=10)`), PCA(50) of both, Harmony (harmonypy
defaults, batch = reference vs target), score = mean Euclidean distance of
a target cell to its 15 nearest reference cells; also the same without
Harmony. Metrics: AUROC, AP, F1 at the true anomaly fraction. The pbmc68k
split uses `.raw.X` as it is; Kang is normalize_total + log1p per set and
3000 HVGs (scanpy's default flavour) chosen on the reference, as the
shared README's numbers were made.
"""
import argparse
import os

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def pbmc():
    import anndata as ad
    import scipy.sparse as sp
    a = ad.read_h5ad(os.path.join(DATA, "pbmc68k_reduced", "10x_pbmc68k_reduced.h5ad"))
    x = a.raw.X
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    s = pd.read_csv(os.path.join(DATA, "pbmc68k_reduced", "split_b_nk.tsv"), sep="\t")
    idx = {c: i for i, c in enumerate(a.obs_names)}
    r = [idx[c] for c in s.cell[s.role == "reference"]]
    t = [idx[c] for c in s.cell[s.role == "target"]]
    y = s.anomaly[s.role == "target"].values.astype(bool)
    return x[r], x[t], y


def kang():
    import anndata as ad
    import scanpy as sc
    a = ad.read_h5ad(os.path.join(DATA, "kang_ifnb_pbmc", "kang_ifnb_counts.h5ad"))
    an = a.obs.is_anomaly_B_NK.astype(str).isin(["True", "true", "1"]).values
    st = a.obs.stim.astype(str).values
    r, t = a[(st == "CTRL") & ~an].copy(), a[st == "STIM"].copy()
    for x in (r, t):
        sc.pp.normalize_total(x)
        sc.pp.log1p(x)
    sc.pp.highly_variable_genes(r, n_top_genes=3000)
    g = r.var_names[r.var.highly_variable]
    return r[:, g].X.toarray(), t[:, g].X.toarray(), an[st == "STIM"]


def f1_top(y, s):
    k = int(y.sum())
    top = np.argsort(-s, kind="stable")[:k]
    return 2 * y[top].sum() / (2 * k)


def main():
    import harmonypy
    from sklearn.decomposition import PCA
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="pbmc,kang")
    args = p.parse_args()
    print("| data | method | AUROC | AP | F1 at true fraction |")
    print("|---|---|---|---|---|")
    for name in args.only.split(","):
        R, T, y = {"pbmc": pbmc, "kang": kang}[name]()
        X = np.vstack([R, T]).astype(np.float64)
        sd = X.std(0)
        sd[sd == 0] = 1
        Z = np.clip((X - X.mean(0)) / sd, -10, 10)
        P = PCA(50, random_state=0).fit_transform(Z)
        meta = pd.DataFrame({"b": ["reference"] * len(R) + ["target"] * len(T)})
        H = np.asarray(harmonypy.run_harmony(P, meta, "b", verbose=False).Z_corr)
        if H.shape[0] != P.shape[0]:
            H = H.T
        for label, E in (("joint PCA(50) kNN, scanpy + sklearn", P), ("joint PCA(50) + Harmony (harmonypy) kNN", H)):
            nn = NearestNeighbors(n_neighbors=15).fit(E[: len(R)])
            s = nn.kneighbors(E[len(R):])[0].mean(1)
            print(f"| {name} | {label} | {roc_auc_score(y, s):.3f} | {average_precision_score(y, s):.3f} | {f1_top(y, s):.3f} |")


if __name__ == "__main__":
    main()
