"""AnnData in all its forms, numpy and scipy matrices, gene alignment by
name, and bad input raising the right exception with the CLI's message."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import acsleuth
from conftest import N_HVG

KW = dict(n_hvg=N_HVG, device="cpu", progress=False)


@pytest.fixture
def baseline(ref, tgt):
    return acsleuth.detect(ref, tgt, copy=True, **KW).obs


def _same(obs, baseline):
    np.testing.assert_array_equal(obs["acsleuth_score"].to_numpy(), baseline["acsleuth_score"].to_numpy())
    np.testing.assert_array_equal(obs["acsleuth_anomaly"].to_numpy(), baseline["acsleuth_anomaly"].to_numpy())


@pytest.mark.parametrize(
    "form",
    ["dense", "csc", "csr_float64", "csr_int64_indices", "csr_unsorted_indices", "layer", "raw"],
)
def test_every_form_of_anndata_gives_the_same_scores(ref, tgt, baseline, form):
    for a in (ref, tgt):
        X = a.X.tocsr()
        if form == "dense":
            a.X = X.toarray()
        elif form == "csc":
            a.X = X.tocsc()
        elif form == "csr_float64":
            a.X = X.astype(np.float64)
        elif form == "csr_int64_indices":
            a.X = sp.csr_matrix((X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)), shape=X.shape)
        elif form == "csr_unsorted_indices":
            Y = X.copy()
            for i in range(Y.shape[0]):
                s, e = Y.indptr[i], Y.indptr[i + 1]
                Y.indices[s:e] = Y.indices[s:e][::-1]
                Y.data[s:e] = Y.data[s:e][::-1]
            Y.has_sorted_indices = False
            a.X = Y
        elif form in ("layer", "raw"):
            a.layers["counts"] = X.copy()
            a.raw = a.copy() if form == "raw" else None
            a.X = sp.random(a.n_obs, a.n_vars, density=0.1, format="csr", dtype=np.float32, random_state=0)
    opts = {"layer": "counts"} if form == "layer" else {"use_raw": True} if form == "raw" else {}
    _same(acsleuth.detect(ref, tgt, copy=True, **opts, **KW).obs, baseline)


def test_backed_h5ad_read_into_memory(sim, ref, baseline):
    import anndata as ad

    backed = ad.read_h5ad(sim / "target.h5ad", backed="r")
    _same(acsleuth.detect(ref, backed.to_memory(), copy=True, **KW).obs, baseline)
    # A backed AnnData itself: its matrix is read into memory.
    res = acsleuth.detect(ref, (backed.X, backed.var_names, backed.obs_names), **KW)
    np.testing.assert_array_equal(res["score"].astype(np.float64), baseline["acsleuth_score"].to_numpy())


def test_matrices_with_gene_names_return_a_dict(ref, tgt, baseline):
    res = acsleuth.detect((ref.X, ref.var_names), (tgt.X.toarray(), list(tgt.var_names), list(tgt.obs_names)), **KW)
    assert set(res) >= {"score", "anomaly", "pvalue", "qvalue", "embedding", "report"}
    np.testing.assert_array_equal(res["score"].astype(np.float64), baseline["acsleuth_score"].to_numpy())
    assert res["report"]["n_called"] == int(baseline["acsleuth_anomaly"].sum())


def test_target_genes_are_aligned_by_name(ref, tgt, baseline):
    order = np.random.default_rng(0).permutation(tgt.n_vars)
    _same(acsleuth.detect(ref, tgt[:, order].copy(), copy=True, **KW).obs, baseline)


def test_missing_target_genes_are_zero_with_a_warning(ref, tgt):
    with pytest.warns(UserWarning, match="absent from the target and were set to zero"):
        acsleuth.detect(ref, tgt[:, 50:].copy(), **KW)


def test_copy_leaves_the_input_unchanged(ref, tgt):
    before = tgt.obs.copy()
    out = acsleuth.detect(ref, tgt, copy=True, **KW)
    assert list(tgt.obs.columns) == list(before.columns) and "acsleuth" not in tgt.uns
    assert "acsleuth_score" in out.obs and out.obsm["X_acsleuth"].shape[0] == tgt.n_obs
    assert acsleuth.report(out)["n_called"] == int(out.obs["acsleuth_anomaly"].sum())


def _raises(exc, match, ref, tgt, **kw):
    with pytest.raises(exc, match=match):
        acsleuth.detect(ref, tgt, **{**KW, **kw})


def test_bad_values_raise_value_error_with_the_cli_message(ref, tgt):
    tgt.X = tgt.X.toarray()
    tgt.X[3, 5] = np.nan
    _raises(ValueError, r"invalid input: cell '.*', gene '.*' has value NaN: expression must be finite and non-negative", ref, tgt)


def test_duplicated_genes_raise_value_error(ref, tgt):
    tgt.var_names = ["g"] * tgt.n_vars
    _raises(ValueError, "duplicated gene name 'g'", ref, tgt)


def test_no_shared_gene_raises_value_error(ref, tgt):
    tgt.var_names = [f"other{i}" for i in range(tgt.n_vars)]
    _raises(ValueError, "shares no gene with the reference", ref, tgt)


def test_bad_settings_raise_value_error(ref, tgt):
    _raises(ValueError, r"fdr must be in \(0, 1\)", ref, tgt, fdr=2.0)
    _raises(ValueError, "unknown setting 'n_hgv'", ref, tgt, n_hgv=10)
    _raises(ValueError, "unknown setting 'novelty.k'", ref, tgt, novelty={"k": 3})
    _raises(ValueError, "threads must be at least 1", ref, tgt, threads=0)
    with pytest.raises(ValueError, match="n_subtypes must be a positive integer or 'auto'"):
        acsleuth.run(ref, tgt, n_subtypes=0, **KW)


def test_bad_inputs_raise(ref, tgt):
    _raises(ValueError, "no layer 'nope'", ref, tgt, layer="nope")
    _raises(ValueError, "use_raw=True but the AnnData has no .raw", ref, tgt, use_raw=True)
    _raises(ValueError, "batch_key donor: the target has no such obs column", ref, tgt, batch_key="donor")
    with pytest.raises(ValueError, match="needs its gene names"):
        acsleuth.detect(ref, tgt.X, **KW)
    with pytest.raises(TypeError, match="expected an AnnData"):
        acsleuth.detect(ref, [[1, 2]], **KW)


def test_device_errors(ref, tgt):
    _raises(ValueError, "--device", ref, tgt, device="tpu")
    try:
        acsleuth.detect(ref, tgt, **{**KW, "device": "cuda:7"})
    except RuntimeError as e:  # no such GPU here (or anywhere near)
        assert "--device cuda:7" in str(e)


def test_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        acsleuth.Detector.load(tmp_path / "nope.safetensors")


def test_damaged_checkpoint_raises_value_error(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a safetensors file"):
        acsleuth.Detector.load(p)


def test_unfitted_detector_raises(tgt):
    with pytest.raises(ValueError, match="not fitted"):
        acsleuth.Detector().score(tgt)


def test_n_hvg_follows_the_command_line_on_log_normalized_input(sim, cli, ref, tgt, tmp_path):
    """Log-normalized input is used as it is unless ``n_hvg`` is given,
    which then selects that many genes: the rule of the CLI's --n-hvg."""
    import scanpy as sc

    for a in (ref, tgt):
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
    r, t = ref.copy(), tgt.copy()
    acsleuth.detect(r, t, device="cpu", progress=False)
    assert acsleuth.report(t)["genes"]["genes_used"] == ref.n_vars
    r.write_h5ad(tmp_path / "r.h5ad")
    t2 = tgt.copy()
    t2.write_h5ad(tmp_path / "t.h5ad")
    acsleuth.detect(r, t2, n_hvg=100, device="cpu", progress=False)
    assert acsleuth.report(t2)["genes"]["genes_used"] == 100
    cli("detect", "--reference", tmp_path / "r.h5ad", "--target", tmp_path / "t.h5ad", "--out", tmp_path / "o",
        "--n-hvg", 100, "--device", "cpu")
    import pandas as pd

    tsv = pd.read_csv(tmp_path / "o" / "scores.tsv", sep="\t", index_col=0, float_precision="round_trip")
    np.testing.assert_array_equal(tsv["score"].to_numpy(np.float32), t2.obs["acsleuth_score"].to_numpy(np.float32))
    with pytest.raises(ValueError, match="preprocess='never' turns off"):
        acsleuth.detect(r, tgt.copy(), n_hvg=100, preprocess="never", progress=False)


def test_import_leaves_the_environment_alone():
    """Regression (#14): importing the package set ACSLEUTH_QUIET in
    os.environ, so every acsleuth command a notebook started afterwards ran
    without its progress bars. The engine's bars are now turned off inside
    the extension only."""
    import os
    import subprocess
    import sys

    code = "import os, acsleuth; print('ACSLEUTH_QUIET' in os.environ)"
    env = {k: v for k, v in os.environ.items() if k != "ACSLEUTH_QUIET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _lognorm(a):
    import scanpy as sc

    a = a.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.X = a.X.astype(np.float32)
    return a


@pytest.mark.parametrize("values", ["counts", "lognorm"])
def test_the_callers_matrix_is_read_in_place_and_never_written(ref, tgt, values):
    # float32 CSR with int32 indices is borrowed, not copied: the engine must
    # never write to it (normalize_total and log1p work on their own copy).
    if values == "lognorm":
        ref, tgt = _lognorm(ref), _lognorm(tgt)
    snap = [(a.X.data.copy(), a.X.indices.copy(), a.X.indptr.copy()) for a in (ref, tgt)]
    assert ref.X.data.dtype == np.float32 and ref.X.indices.dtype == np.int32
    acsleuth.detect(ref, tgt, **KW)
    acsleuth.detect(ref, tgt, preprocess="never", device="cpu", progress=False)
    acsleuth.Detector(n_hvg=N_HVG, device="cpu", progress=False).fit(ref).score(tgt)
    for a, (d, i, p) in zip((ref, tgt), snap):
        np.testing.assert_array_equal(a.X.data, d)
        np.testing.assert_array_equal(a.X.indices, i)
        np.testing.assert_array_equal(a.X.indptr, p)


def test_a_fitted_detector_keeps_its_own_copy_of_the_reference(ref, tgt):
    # Values used as they are (no preprocessing chain, so no new matrix):
    # the fitted detector must hold its own copy, not the caller's arrays,
    # or a later in-place change to the AnnData would change its scores.
    ref, tgt = _lognorm(ref), _lognorm(tgt)
    kw = dict(preprocess="never", device="cpu", progress=False)
    expected = acsleuth.Detector(**kw).fit(ref.copy()).score(tgt, copy=True)
    det = acsleuth.Detector(**kw).fit(ref)
    ref.X.data[:] = 0.5  # the caller reuses its matrix in place
    _same(det.score(tgt, copy=True).obs, expected.obs)


def test_negative_column_indices_raise_value_error(ref, tgt):
    X = tgt.X.tocsr()
    bad = sp.csr_matrix(X.shape, dtype=np.float32)
    bad.data, bad.indices, bad.indptr = X.data, X.indices.copy(), X.indptr
    bad.indices[0] = -1
    with pytest.raises(ValueError, match=r"indices holds a negative value \(-1\)"):
        acsleuth.detect(ref, (bad, tgt.var_names), **KW)


def test_a_read_only_memory_mapped_matrix_is_read_in_place(ref, tgt, baseline, tmp_path):
    # Arrays mapped read-only from disk (PROT_READ): reading them in place
    # works, and a write by the engine would be a crash, not a silent change.
    def mapped(a, name):
        X = a.X.tocsr()
        parts = {}
        for k in ("data", "indices", "indptr"):
            np.save(tmp_path / f"{name}_{k}.npy", getattr(X, k))
            parts[k] = np.load(tmp_path / f"{name}_{k}.npy", mmap_mode="r")
        m = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=X.shape, copy=False)
        assert np.shares_memory(m.data, parts["data"]) and not m.data.flags.writeable
        a.X = m

    mapped(ref, "ref")
    mapped(tgt, "tgt")
    _same(acsleuth.detect(ref, tgt, copy=True, **KW).obs, baseline)
