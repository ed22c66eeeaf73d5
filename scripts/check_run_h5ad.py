#!/usr/bin/env python3
"""Check that the run-output .h5ad written by acsleuth (write_h5ad_with:
input X and obs, new obs columns, obsm embeddings, a `corrected` layer)
opens in Python anndata and holds what was written.

Development tool only. Usage:
  ACSLEUTH_REPORT_EXPORT=/tmp/report_out cargo test --release --test report run_h5ad
  /work/pyenv/bin/python scripts/check_run_h5ad.py /tmp/report_out

Reads run_output.h5ad with anndata.read_h5ad and compares it with
run_output.json written beside it by tests/report.rs. Checks in particular
that `subtype` is a pandas categorical whose normal cells are NaN, `score`
is float, `anomaly` is bool. Exits non-zero on any mismatch.
"""
import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def main(folder):
    folder = Path(folder)
    want = json.loads((folder / "run_output.json").read_text())
    a = ad.read_h5ad(folder / "run_output.h5ad")
    n, g = len(want["obs_names"]), len(want["var_names"])
    assert a.shape == (n, g), f"shape {a.shape}"
    assert list(a.obs_names) == want["obs_names"], "obs names"
    assert list(a.var_names) == want["var_names"], "var names"
    assert sp.issparse(a.X) and a.X.format == "csr", f"X is {type(a.X)}"
    assert np.array_equal(a.X.toarray(), np.array(want["x"], dtype=np.float32)), "X values"
    assert list(a.obs.columns) == ["cell_type", "score", "anomaly", "subtype"], list(a.obs.columns)

    ct = a.obs["cell_type"]
    assert isinstance(ct.dtype, pd.CategoricalDtype), f"cell_type dtype {ct.dtype}"
    assert list(ct.astype(str)) == want["cell_type"], "cell_type values"

    score = a.obs["score"]
    assert np.issubdtype(score.dtype, np.floating), f"score dtype {score.dtype}"
    assert np.allclose(score.to_numpy(), want["score"], rtol=0, atol=0), "score values"

    anomaly = a.obs["anomaly"]
    assert anomaly.dtype == bool, f"anomaly dtype {anomaly.dtype}"
    assert list(anomaly) == want["anomaly"], "anomaly values"

    sub = a.obs["subtype"]
    assert isinstance(sub.dtype, pd.CategoricalDtype), f"subtype dtype {sub.dtype}"
    expect = [np.nan if v is None else v for v in want["subtype"]]
    missing = sub.isna().to_numpy()
    assert list(missing) == [v is None for v in want["subtype"]], "subtype NaN where normal"
    assert all(s == e for s, e, m in zip(sub, expect, missing) if not m), "subtype values"
    assert list(sub.cat.categories) == sorted({v for v in want["subtype"] if v is not None}), "subtype categories"
    assert np.array_equal(missing, ~anomaly.to_numpy()), "subtype missing exactly for normal cells"

    assert sorted(a.obsm.keys()) == sorted(want["obsm"]), f"obsm keys {list(a.obsm.keys())}"
    for k, v in want["obsm"].items():
        m = np.asarray(a.obsm[k])
        assert m.dtype == np.float32, f"obsm {k} dtype {m.dtype}"
        assert np.array_equal(m, np.array(v, dtype=np.float32)), f"obsm {k} values"

    assert list(a.layers.keys()) == ["corrected"], f"layers {list(a.layers.keys())}"
    c = a.layers["corrected"]
    c = c.toarray() if sp.issparse(c) else np.asarray(c)
    assert np.array_equal(c, np.array(want["layers"]["corrected"], dtype=np.float32)), "corrected layer"

    print(f"ok: {folder / 'run_output.h5ad'} ({n} cells × {g} genes) opens in anndata "
          f"{ad.__version__ if hasattr(ad, '__version__') else ''}; "
          f"obs {list(a.obs.columns)}, subtype NaN for {int(missing.sum())} normal cells, "
          f"obsm {sorted(a.obsm.keys())}, layers {list(a.layers.keys())}")
    print(a)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/report_out")
