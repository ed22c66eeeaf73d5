#!/usr/bin/env python3
"""Fixture for tests/subtype.rs: sklearn's k-means inertia on a small data
set of four overlapping Gaussian clusters (so the optimum is not trivial).

    /work/pyenv/bin/python scripts/make_subtype_fixtures.py

Writes fixtures/subtype/kmeans.json: the points (n × d, row-major), and for
each k the inertia of sklearn.cluster.KMeans(init="k-means++", n_init=50,
algorithm="lloyd", tol=0, max_iter=1000) — the best of 50 restarts, which
the Rust k-means with 20 restarts must match within 1e-4 relative. Only
values of k where best-of-20 is reproducible are kept: the script checks
that sklearn with n_init=20 and 10 different seeds agrees with best-of-50
(at k ≥ 5 on this set it does not, so a Rust failure there would say
nothing about the implementation).
"""
import json
import os

import numpy as np
import sklearn
from sklearn.cluster import KMeans

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "subtype")


def main():
    rng = np.random.default_rng(7)
    n, d = 150, 5
    centres = rng.normal(0.0, 3.0, size=(4, d))
    lab = rng.integers(0, 4, size=n)
    x = (centres[lab] + rng.normal(0.0, 1.0, size=(n, d))).astype(np.float32)
    res = {}
    x64 = x.astype(np.float64)
    for k in (2, 3, 4):
        km = KMeans(n_clusters=k, init="k-means++", n_init=50, algorithm="lloyd", tol=0.0, max_iter=1000, random_state=0)
        km.fit(x64)
        res[str(k)] = float(km.inertia_)
        for seed in range(10):
            r = KMeans(n_clusters=k, n_init=20, algorithm="lloyd", tol=0.0, max_iter=1000, random_state=seed).fit(x64)
            assert abs(r.inertia_ - km.inertia_) <= 1e-9 * km.inertia_, (k, seed, r.inertia_, km.inertia_)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "kmeans.json"), "w") as f:
        json.dump({"sklearn": sklearn.__version__, "n": n, "d": d, "x": [float(v) for v in x.ravel()], "inertia": res}, f)
    print(res)


if __name__ == "__main__":
    main()
