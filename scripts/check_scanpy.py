#!/usr/bin/env python3
"""Check that .h5ad files written by acsleuth work in scanpy's everyday
calls: read, pca, neighbors, umap, rank_genes_groups, write + read back.

Called by tests/scanpy.rs (skipped where Python or scanpy is missing):
  python scripts/check_scanpy.py FILE.h5ad [FILE.h5ad ...]
Exits non-zero, naming the file and the call, on the first failure.
"""
import sys
import tempfile
import os

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp


def groups_column(a):
    """A categorical obs column with at least two groups of two cells."""
    cols = ["acsleuth_subtype"] + [c for c in a.obs.columns if c != "acsleuth_subtype"]
    for c in cols:
        if c in a.obs and isinstance(a.obs[c].dtype, pd.CategoricalDtype):
            counts = a.obs[c].value_counts()
            if (counts >= 2).sum() >= 2 and (counts == 0).sum() == 0:
                return c
    return None


def check(path):
    a = sc.read_h5ad(path)
    for name, m in [("X", a.X)] + [(f"layers/{k}", v) for k, v in a.layers.items()]:
        if sp.issparse(m):
            assert m.indptr.dtype == np.int32 and m.indices.dtype == np.int32, \
                f"{name}: indptr {m.indptr.dtype}, indices {m.indices.dtype}"
    if "acsleuth_subtype" in a.obs:
        counts = a.obs["acsleuth_subtype"].value_counts()
        assert (counts > 0).all(), f"empty subtype categories: {dict(counts)}"
        cats = list(a.obs["acsleuth_subtype"].cat.categories)
        assert cats == [f"S{i + 1}" for i in range(len(cats))], f"subtype categories {cats}"
    b = a.copy()
    n_comps = max(1, min(5, b.n_obs - 1, b.n_vars - 1))
    sc.pp.pca(b, n_comps=n_comps, mask_var=None)
    sc.pp.neighbors(b, n_neighbors=min(10, b.n_obs - 1))
    sc.tl.umap(b)
    g = groups_column(a)
    if g is not None:
        sc.tl.rank_genes_groups(b, g, method="t-test")
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "round.h5ad")
        b.write_h5ad(p)
        c = ad.read_h5ad(p)
        assert c.shape == a.shape, f"round trip shape {c.shape} != {a.shape}"
    print(f"ok {path}: {a.n_obs}x{a.n_vars}, grouped by {g}")


def main():
    for path in sys.argv[1:]:
        try:
            check(path)
        except Exception as e:  # name the file, then fail
            print(f"FAIL {path}: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
