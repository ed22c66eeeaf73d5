#!/usr/bin/env python3
"""Make fixtures/h5ad/full.h5ad: a small anndata >= 0.8 file with every
part h5ad -> h5ad `convert` carries or reports (var columns, obsm, layers,
.raw, an integer obs column, uns, obsp, varm).

Development tool only (cargo test reads the committed file):
  /work/pyenv/bin/python scripts/make_full_h5ad_fixture.py
"""
import os

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "h5ad", "full.h5ad")

rng = np.random.default_rng(11)
n, g, graw = 40, 12, 15
counts = sp.random(n, graw, density=0.4, random_state=1, format="csr", dtype=np.float32)
counts.data = np.round(counts.data * 20) + 1
obs = pd.DataFrame(index=[f"cell{i}" for i in range(n)])
obs["group"] = pd.Categorical(rng.choice(["a", "b", "c"], size=n))
obs["n_genes"] = rng.integers(100, 1000, size=n).astype(np.int64)
obs["small_int"] = rng.integers(0, 5, size=n).astype(np.int32)
var = pd.DataFrame(index=[f"gene{j}" for j in range(g)])
var["means"] = rng.normal(size=g)
var["highly_variable"] = rng.random(g) > 0.5
var["n_cells"] = rng.integers(0, n, size=g).astype(np.int64)
raw = ad.AnnData(X=counts, var=pd.DataFrame(index=[f"gene{j}" for j in range(graw)]))
raw.var["feature_type"] = pd.Categorical(["Gene Expression"] * graw)
a = ad.AnnData(X=sp.csr_matrix(np.log1p(counts[:, :g].toarray())), obs=obs, var=var)
a.raw = raw
a.layers["counts"] = sp.csr_matrix(counts[:, :g])
a.layers["dense"] = counts[:, :g].toarray()
a.obsm["X_pca"] = rng.normal(size=(n, 3)).astype(np.float32)
a.obsm["X_umap"] = rng.normal(size=(n, 2))
a.varm["PCs"] = rng.normal(size=(g, 3))
a.obsp["distances"] = sp.random(n, n, density=0.1, random_state=2, format="csr")
a.uns["note"] = "uns is not carried"
a.uns["group_colors"] = np.array(["#ff0000", "#00ff00", "#0000ff"], dtype=object)
a.write_h5ad(OUT)
print(a)
