#!/usr/bin/env python3
"""Make the small .h5ad fixtures under fixtures/h5ad/ and expected.json.

Development tool only (cargo test reads the committed outputs). Run with the
project venv:  /work/pyenv/bin/python scripts/make_h5ad_fixtures.py

Fixtures:
  dense.h5ad       dense float32 X with negative values; obs with categorical
                   (with a missing value), float, int, bool, string, pandas
                   nullable Int64 and boolean columns (anndata >= 0.8 layout)
  csc.h5ad         float64 CSC X
  int_csr.h5ad     int64 CSR X with int64 indices, one row with unsorted
                   column indices and a duplicate (scipy sums duplicates)
  old_v07.h5ad     anndata 0.7 layout written with h5py: no encoding-type on
                   X's arrays, categoricals as codes + obs/__categories/<col>
  no_x.h5ad        obs and var but no X (anndata writes no X when X is None)
  not_hdf5.h5ad    a text file with an .h5ad name

expected.json holds, per fixture, the shape, the dense X (as Python sees it
after scipy's canonicalisation), the names and the obs columns.
"""
import json
import os
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "h5ad")


def obs_json(obs):
    cols = {}
    for name in obs.columns:
        s = obs[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols[name] = {
                "kind": "categorical",
                "categories": [str(c) for c in s.cat.categories],
                "codes": [int(c) for c in s.cat.codes],
            }
        elif s.dtype == bool:
            cols[name] = {"kind": "bool", "values": [bool(v) for v in s]}
        elif isinstance(s.dtype, pd.BooleanDtype):
            cols[name] = {"kind": "nullable_bool",
                          "values": [None if pd.isna(v) else bool(v) for v in s]}
        elif pd.api.types.is_numeric_dtype(s.dtype):
            cols[name] = {"kind": "numeric",
                          "values": [None if pd.isna(v) else float(v) for v in s]}
        else:
            cols[name] = {"kind": "text", "values": [str(v) for v in s]}
    return cols


def describe(a):
    x = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    return {
        "shape": list(a.shape),
        "x": x.astype(np.float64).tolist(),
        "obs_names": list(map(str, a.obs_names)),
        "var_names": list(map(str, a.var_names)),
        "obs": obs_json(a.obs),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    expected = {}

    # dense.h5ad
    n, g = 6, 4
    x = rng.normal(size=(n, g)).astype(np.float32)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n)])
    obs["group"] = pd.Categorical(["a", "b", None, "a", "c", "b"], categories=["a", "b", "c"])
    obs["score"] = np.array([0.5, -1.25, 3.0, np.nan, 2.0, 0.0])
    obs["n_genes"] = np.arange(n, dtype=np.int64) * 10
    obs["is_x"] = np.array([True, False, True, True, False, False])
    obs["note"] = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
    obs["maybe_count"] = pd.array([1, None, 3, 4, None, 6], dtype="Int64")
    obs["maybe_flag"] = pd.array([True, False, None, True, True, False], dtype="boolean")
    var = pd.DataFrame(index=[f"gene{j}" for j in range(g)])
    a = ad.AnnData(X=x, obs=obs, var=var)
    a.obsm["X_pca"] = rng.normal(size=(n, 2)).astype(np.float32)
    a.write_h5ad(os.path.join(OUT, "dense.h5ad"))
    expected["dense"] = describe(a)

    # csc.h5ad
    d = np.zeros((5, 7))
    d[0, 1], d[0, 5], d[2, 0], d[3, 6], d[4, 2], d[4, 3] = 1.5, 2.0, 7.0, 0.25, 9.0, 11.0
    a = ad.AnnData(X=sp.csc_matrix(d), obs=pd.DataFrame(index=[f"c{i}" for i in range(5)]),
                   var=pd.DataFrame(index=[f"g{j}" for j in range(7)]))
    a.write_h5ad(os.path.join(OUT, "csc.h5ad"))
    expected["csc"] = describe(a)

    # int_csr.h5ad: row 1 has indices [3, 0, 3] (unsorted, duplicate).
    data = np.array([5, 1, 2, 4, 8, 3], dtype=np.int64)
    indices = np.array([2, 3, 0, 3, 1, 4], dtype=np.int64)
    indptr = np.array([0, 1, 4, 4, 6], dtype=np.int64)
    m = sp.csr_matrix((data, indices, indptr), shape=(4, 5))
    a = ad.AnnData(X=m, obs=pd.DataFrame(index=[f"c{i}" for i in range(4)]),
                   var=pd.DataFrame(index=[f"g{j}" for j in range(5)]))
    path = os.path.join(OUT, "int_csr.h5ad")
    a.write_h5ad(path)
    with h5py.File(path, "r+") as f:  # make sure the stored arrays are as built
        for k, v in (("data", data), ("indices", indices), ("indptr", indptr)):
            del f["X"][k]
            f["X"].create_dataset(k, data=v)
    e = describe(a)
    e["x"] = m.toarray().astype(np.float64).tolist()  # duplicates summed
    expected["int_csr"] = e

    # old_v07.h5ad: the anndata 0.7 layout, by hand.
    path = os.path.join(OUT, "old_v07.h5ad")
    xs = sp.csr_matrix(np.array([[0, 1, 0], [2, 0, 3], [0, 0, 4.5]], dtype=np.float32))
    str_t = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        gx = f.create_group("X")
        gx.attrs["encoding-type"] = "csr_matrix"
        gx.attrs["encoding-version"] = "0.1.0"
        gx.attrs["shape"] = np.array([3, 3])
        gx["data"], gx["indices"], gx["indptr"] = xs.data, xs.indices, xs.indptr
        o = f.create_group("obs")
        o.attrs["_index"] = "cell_id"
        o.attrs["column-order"] = np.array(["kind", "depth"], dtype=object)
        o.attrs["encoding-type"] = "dataframe"
        o.attrs["encoding-version"] = "0.1.0"
        o.create_dataset("cell_id", data=np.array(["x1", "x2", "x3"], dtype=object), dtype=str_t)
        cats = o.create_group("__categories")
        cats.create_dataset("kind", data=np.array(["tumour", "normal"], dtype=object), dtype=str_t)
        codes = o.create_dataset("kind", data=np.array([1, 0, 0], dtype=np.int8))
        codes.attrs["categories"] = cats["kind"].ref
        o["depth"] = np.array([10.0, 20.5, 30.0])
        v = f.create_group("var")
        v.attrs["_index"] = "gene_symbol"
        v.attrs["column-order"] = np.array([], dtype=np.float64)
        v.attrs["encoding-type"] = "dataframe"
        v.attrs["encoding-version"] = "0.1.0"
        v.create_dataset("gene_symbol", data=np.array(["A", "B", "C"], dtype=object), dtype=str_t)
    a = ad.read_h5ad(path)
    expected["old_v07"] = describe(a)

    # no_x.h5ad
    a = ad.AnnData(obs=pd.DataFrame(index=["c0", "c1"]), var=pd.DataFrame(index=["g0"]))
    a.write_h5ad(os.path.join(OUT, "no_x.h5ad"))

    with open(os.path.join(OUT, "not_hdf5.h5ad"), "w") as f:
        f.write("cell,gene,count\nc0,g0,1\n")

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, allow_nan=False)
    print("wrote", sorted(os.listdir(OUT)), file=sys.stderr)


if __name__ == "__main__":
    main()
