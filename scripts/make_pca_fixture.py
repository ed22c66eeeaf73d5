"""Fixture for the PCA baseline (tests/pca.rs): scikit-learn PCA fitted on a
reference matrix, and the squared reconstruction errors of a target matrix.

Run: /work/pyenv/bin/python scripts/make_pca_fixture.py
Writes fixtures/pca/pca_fixture.json. The matrices are rounded to f32 before
fitting, so the Rust side reads exactly the values scikit-learn saw.
"""
import json
import os

import numpy as np
import sklearn
from sklearn.decomposition import PCA

rng = np.random.default_rng(20240601)
n_ref, n_tgt, genes, k = 200, 50, 60, 5

# Low-rank structure with distinct axis scales plus noise, non-zero mean.
basis = rng.normal(size=(8, genes))
scales = np.array([6.0, 4.5, 3.5, 2.5, 2.0, 1.2, 1.0, 0.8])
ref = (rng.normal(size=(n_ref, 8)) * scales) @ basis + rng.normal(scale=0.5, size=(n_ref, genes)) + 3.0
# Target: same structure, a few rows shifted off the reference subspace.
tgt = (rng.normal(size=(n_tgt, 8)) * scales) @ basis + rng.normal(scale=0.5, size=(n_tgt, genes)) + 3.0
tgt[:5] += rng.normal(scale=3.0, size=(5, genes))
ref = ref.astype(np.float32)
tgt = tgt.astype(np.float32)

pca = PCA(n_components=k, svd_solver="full").fit(ref.astype(np.float64))
t64 = tgt.astype(np.float64)
recon = pca.inverse_transform(pca.transform(t64))
err = ((t64 - recon) ** 2).sum(axis=1)

out = {
    "sklearn_version": sklearn.__version__,
    "n_ref": n_ref,
    "n_tgt": n_tgt,
    "genes": genes,
    "k": k,
    "reference": ref.ravel().tolist(),
    "target": tgt.ravel().tolist(),
    "mean": pca.mean_.tolist(),
    "components": pca.components_.ravel().tolist(),
    "explained_variance": pca.explained_variance_.tolist(),
    "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
    "reconstruction_error": err.tolist(),
}
os.makedirs("fixtures/pca", exist_ok=True)
with open("fixtures/pca/pca_fixture.json", "w") as f:
    json.dump(out, f)
print("wrote fixtures/pca/pca_fixture.json", pca.explained_variance_)
