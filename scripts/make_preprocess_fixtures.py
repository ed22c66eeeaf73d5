#!/usr/bin/env python3
"""Writes fixtures/preprocess/: a seeded subsample of the Kang IFN-beta PBMC
counts and scanpy's outputs on it, for tests/preprocess.rs.

Run from the repository root:
    PYTHONPATH=<dir with scikit-misc> /work/pyenv/bin/python scripts/make_preprocess_fixtures.py
(scanpy's seurat_v3 flavour needs scikit-misc: `pip install --target DIR scikit-misc`.)

Files (all plain text / JSON, gene indices are 0-based columns of counts.json):
- counts.json: {"rows","cols","genes","cells","indptr","indices","data"} raw
  UMI counts, CSR (cells x genes).
- expected.json: scanpy 1.11.5 results:
  - "kept": genes kept by the name rule (drop MT-* / ERCC-* spike-ins) and
    sc.pp.filter_genes(min_cells=3), as indices into counts.json's genes.
- lognorm.f32: little-endian f32 values of normalize_total() + log1p() on the
  filtered counts, in the CSR order of the filtered counts (same sparsity).
  - "target_sum": the median total used by normalize_total.
  - "seurat_v3": per filtered gene "means", "variances", "variances_norm";
    "selected_200" / "selected_500": selected filtered-gene indices;
    "rank_500": highly_variable_rank for n_top_genes=500 (null = not ranked).
  - "seurat": on the log data: "means", "dispersions", "dispersions_norm"
    (null where NaN), "selected_200", "selected_500".
"""
import json
from pathlib import Path
import os

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

SRC = str(Path(__file__).resolve().parents[2] / "shared/data/kang_ifnb_pbmc/kang_ifnb_counts.h5ad")
OUT = "fixtures/preprocess"
N_CELLS, N_GENES, SEED = 500, 2000, 2


def nan_to_none(a):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def drop_by_name(name):
    u = name.upper()
    return u.startswith("MT-") or u.startswith("ERCC-")


def main():
    a = ad.read_h5ad(SRC)
    rng = np.random.default_rng(SEED)
    cells = np.sort(rng.choice(a.n_obs, N_CELLS, replace=False))
    x = a.X[cells].tocsc()
    ncell = np.diff(x.indptr)
    # Mostly expressed genes (so that skmisc's loess is not singular), plus a
    # few rare ones (filtered by min_cells) and the ERCC DNA-repair genes
    # (real genes, which the name rule must keep).
    names = np.asarray(a.var_names)
    ercc = np.flatnonzero([n.startswith("ERCC") for n in names])
    common = rng.choice(np.flatnonzero(ncell >= 10), N_GENES - 60 - len(ercc), replace=False)
    rare = rng.choice(np.flatnonzero((ncell >= 1) & (ncell < 3)), 60, replace=False)
    genes = np.sort(np.unique(np.concatenate([common, rare, ercc])))
    x = sp.csr_matrix(x[:, genes], dtype=np.float32)
    x.sort_indices()
    sub = ad.AnnData(x, obs={"_": np.zeros(len(cells))})
    sub.obs_names = np.asarray(a.obs_names)[cells]
    sub.var_names = names[genes]

    counts = {
        "rows": int(x.shape[0]), "cols": int(x.shape[1]),
        "genes": list(sub.var_names), "cells": list(sub.obs_names),
        "indptr": x.indptr.tolist(), "indices": x.indices.tolist(),
        "data": [int(v) for v in x.data],
    }

    name_ok = np.array([not drop_by_name(n) for n in sub.var_names])
    f = sub[:, name_ok].copy()
    sc.pp.filter_genes(f, min_cells=3)
    kept = [int(i) for i in np.flatnonzero(np.isin(sub.var_names, f.var_names))]

    v3 = {}
    for n in (200, 500):
        df = sc.pp.highly_variable_genes(f, flavor="seurat_v3", n_top_genes=n, inplace=False)
        v3[f"selected_{n}"] = [int(i) for i in np.flatnonzero(df["highly_variable"].to_numpy())]
        if n == 500:
            v3["means"] = nan_to_none(df["means"])
            v3["variances"] = nan_to_none(df["variances"])
            v3["variances_norm"] = nan_to_none(df["variances_norm"])
            v3["rank_500"] = nan_to_none(df["highly_variable_rank"])
            vn = df["variances_norm"].to_numpy()
            s = np.sort(vn)[::-1]
            assert s[199] != s[200] and s[499] != s[500], "tie at the HVG cutoff: pick another SEED"

    totals = np.asarray(f.X.sum(axis=1)).ravel()
    assert (totals > 0).all()
    lg = f.copy()
    sc.pp.normalize_total(lg)
    sc.pp.log1p(lg)
    target_sum = float(np.median(totals))
    lx = sp.csr_matrix(lg.X)
    lx.sort_indices()
    fx = sp.csr_matrix(f.X)
    fx.sort_indices()
    assert (lx.indptr == fx.indptr).all() and (lx.indices == fx.indices).all()

    seurat = {}
    for n in (200, 500):
        df = sc.pp.highly_variable_genes(lg, flavor="seurat", n_top_genes=n, inplace=False)
        seurat[f"selected_{n}"] = [int(i) for i in np.flatnonzero(df["highly_variable"].to_numpy())]
        if n == 500:
            seurat["means"] = nan_to_none(df["means"])
            seurat["dispersions"] = nan_to_none(df["dispersions"])
            seurat["dispersions_norm"] = nan_to_none(df["dispersions_norm"])

    expected = {
        "kept": kept,
        "target_sum": target_sum,
        "seurat_v3": v3,
        "seurat": seurat,
    }
    os.makedirs(OUT, exist_ok=True)
    with open(f"{OUT}/counts.json", "w") as fh:
        json.dump(counts, fh, separators=(",", ":"))
    with open(f"{OUT}/expected.json", "w") as fh:
        json.dump(expected, fh, separators=(",", ":"))
    lx.data.astype("<f4").tofile(f"{OUT}/lognorm.f32")
    print(f"{x.shape} nnz={x.nnz} kept={len(kept)} target_sum={target_sum}")


if __name__ == "__main__":
    main()
