#!/usr/bin/env python3
"""Check that .h5ad files written by acsleuth open in Python anndata as they
are and hold the same values.

Development tool only. Usage:
  ACSLEUTH_H5AD_EXPORT=/tmp/h5ad_out cargo test --release --test h5ad
  /work/pyenv/bin/python scripts/check_h5ad_written.py /tmp/h5ad_out

For every NAME.h5ad with a NAME.json beside it (written by tests/h5ad.rs)
the file is read with anndata.read_h5ad and compared with the JSON: shape,
X values (and whether X is sparse), obs/var names, obs columns (kind,
categories, codes, values), obsm. rewrite_kang.h5ad, when present, is
compared in full with the shared original. Exits non-zero on any mismatch.
"""
import glob
import json
from pathlib import Path
import os
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

KANG = str(Path(__file__).resolve().parents[2] / "shared/data/kang_ifnb_pbmc/kang_ifnb_counts.h5ad")


def dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def check_column(name, s, want):
    kind = want["kind"]
    if kind == "categorical":
        assert isinstance(s.dtype, pd.CategoricalDtype), f"{name}: {s.dtype} is not categorical"
        assert list(s.cat.categories) == want["categories"], f"{name}: categories"
        assert list(s.cat.codes) == want["codes"], f"{name}: codes"
    elif kind == "numeric":
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        w = np.array([np.nan if x is None else x for x in want["values"]])
        assert np.array_equal(v, w, equal_nan=True), f"{name}: {v} != {w}"
    elif kind == "bool":
        assert s.dtype == bool, f"{name}: dtype {s.dtype}"
        assert list(s) == want["values"], f"{name}: values"
    elif kind == "text":
        assert list(map(str, s)) == want["values"], f"{name}: values"
    else:
        raise AssertionError(f"{name}: unknown kind {kind}")


def check(path, want):
    a = ad.read_h5ad(path)
    assert list(a.shape) == want["shape"], f"shape {a.shape}"
    assert sp.issparse(a.X) == want["sparse"], "sparse/dense X"
    x = dense(a.X)
    assert x.dtype == np.float32, f"X dtype {x.dtype}"
    assert np.array_equal(x, np.array(want["x"], dtype=np.float32)), "X values"
    assert list(a.obs_names) == want["obs_names"], "obs names"
    assert list(a.var_names) == want["var_names"], "var names"
    assert list(a.obs.columns) == want["obs_order"], f"obs columns {list(a.obs.columns)}"
    for name, w in want["obs"].items():
        check_column(name, a.obs[name], w)
    assert sorted(a.obsm.keys()) == sorted(want["obsm"]), "obsm keys"
    for k, v in want["obsm"].items():
        assert np.array_equal(np.asarray(a.obsm[k]), np.array(v, dtype=np.float32)), f"obsm {k}"
    # scanpy-style use: the file works in ordinary operations.
    _ = a[: min(2, a.n_obs)].copy()


def check_kang(path):
    a, b = ad.read_h5ad(KANG), ad.read_h5ad(path)
    assert a.shape == b.shape
    assert (a.X != b.X).nnz == 0, "X differs"
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    assert list(a.obs.columns) == list(b.obs.columns)
    for c in a.obs.columns:
        assert a.obs[c].equals(b.obs[c]) or (a.obs[c].astype(str) == b.obs[c].astype(str)).all(), c
    print(f"ok   {path}: {b.shape}, X {type(b.X).__name__}, obs columns identical")


def main(d):
    n = 0
    for js in sorted(glob.glob(os.path.join(d, "*.json"))):
        h5 = js[:-5] + ".h5ad"
        with open(js) as f:
            want = json.load(f)
        check(h5, want)
        print(f"ok   {h5}: {want['shape']}, {len(want['obs'])} obs columns, obsm {list(want['obsm'])}")
        n += 1
    kang = os.path.join(d, "rewrite_kang.h5ad")
    if os.path.exists(kang) and os.path.exists(KANG):
        check_kang(kang)
        n += 1
    if n == 0:
        sys.exit(f"nothing to check in {d}")
    print(f"all {n} files read back correctly with anndata {ad.__version__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/h5ad_out")
