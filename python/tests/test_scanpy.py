"""Every AnnData the package annotates, and every .h5ad the command line
writes, passes scanpy's everyday calls: PCA, neighbours (also on the
acsleuth embedding), UMAP, rank_genes_groups on the call / subtype column,
and a write_h5ad + read_h5ad round trip that keeps the annotations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import acsleuth
from conftest import N_HVG

sc = pytest.importorskip("scanpy")

KW = dict(n_hvg=N_HVG, device="cpu", progress=False)
RUN = dict(KW, prepare_epochs=2, train_epochs=1, anomaly_ratio=0.25)


def everyday(adata, groupby, tmp_path, rep=None):
    a = adata.copy()
    X = a.X.data if hasattr(a.X, "data") else np.asarray(a.X)
    if np.all(X == np.round(X)):  # counts: normalized as an analyst would
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=10)
    sc.pp.neighbors(a, n_neighbors=10)
    if rep is not None:
        sc.pp.neighbors(a, n_neighbors=10, use_rep=rep, key_added="acsleuth")
    sc.tl.umap(a)
    assert a.obsm["X_umap"].shape == (a.n_obs, 2) and np.isfinite(a.obsm["X_umap"]).all()
    if a.obs[groupby].dtype != "category":
        a.obs[groupby] = a.obs[groupby].astype(str).astype("category")
    sizes = a.obs[groupby].value_counts()
    groups = [str(g) for g, n in sizes.items() if n >= 2]
    assert groups, f"{groupby}: no group with two cells"
    sc.tl.rank_genes_groups(a, groupby, groups=groups, method="t-test")
    assert set(a.uns["rank_genes_groups"]["names"].dtype.names) == set(groups)
    path = tmp_path / "roundtrip.h5ad"
    adata.write_h5ad(path)
    b = sc.read_h5ad(path)
    pd.testing.assert_frame_equal(b.obs, adata.obs)
    assert set(b.obsm) == set(adata.obsm) and set(b.layers) == set(adata.layers)
    for k in adata.obsm:
        np.testing.assert_array_equal(np.asarray(b.obsm[k]), np.asarray(adata.obsm[k]))
    if "acsleuth" in adata.uns:
        assert dict(b.uns["acsleuth"]) == dict(adata.uns["acsleuth"])
        assert json.loads(b.uns["acsleuth"]["report"])["n_called"] == int(adata.obs["acsleuth_anomaly"].sum())


def test_detect_annotations(ref, tgt, tmp_path):
    acsleuth.detect(ref, tgt, **KW)
    everyday(tgt, "acsleuth_anomaly", tmp_path, rep="X_acsleuth")


def test_detector_annotations(ref, tgt, tmp_path):
    acsleuth.Detector(**KW).fit(ref).score(tgt)
    everyday(tgt, "acsleuth_anomaly", tmp_path, rep="X_acsleuth")


@pytest.mark.parametrize("keep_corrected", [False, True])
def test_run_annotations(ref, tgt, tmp_path, keep_corrected):
    acsleuth.run(ref, tgt, keep_corrected=keep_corrected, **RUN)
    sub = tgt.obs["acsleuth_subtype"]
    assert sub.dtype == "category" and (sub.value_counts() > 0).all(), "only non-empty subtype categories"
    assert sub.notna().sum() == tgt.obs["acsleuth_anomaly"].sum()
    assert tgt.obsm["X_acsleuth_fused"].shape[0] == tgt.n_obs
    assert tgt.var["acsleuth_used"].sum() == acsleuth.report(tgt)["genes"]["genes_used"]
    if keep_corrected:
        c = tgt.layers["acsleuth_corrected"]
        assert c.shape == tgt.shape and c[:, ~tgt.var["acsleuth_used"].to_numpy()].nnz == 0
    everyday(tgt, "acsleuth_subtype", tmp_path, rep="X_acsleuth")


# --- .h5ad files the command line writes ------------------------------------

def test_simulate_h5ad(sim, tmp_path):
    everyday(sc.read_h5ad(sim / "target.h5ad"), "cell_type", tmp_path)


def test_convert_h5ad(sim, cli, tmp_path):
    out = tmp_path / "converted.h5ad"
    cli("convert", sim / "target.acs", out)
    everyday(sc.read_h5ad(out), "cell_type", tmp_path)


def test_run_target_h5ad(sim, cli, tmp_path):
    out = tmp_path / "run"
    cli("run", "--reference", sim / "reference.h5ad", "--target", sim / "target.h5ad", "--out", out,
        "--n-hvg", N_HVG, "--device", "cpu", "--epochs-prepare", 2, "--epochs-train", 1,
        "--anomaly-ratio", 0.25, "--keep-corrected")
    everyday(sc.read_h5ad(out / "target.h5ad"), "acsleuth_subtype", tmp_path, rep="X_acsleuth")
