#!/usr/bin/env python3
"""Writes fixtures/mixing/cases.json: small embeddings with labels and the
values of the batch-mixing metrics, for tests/mixing.rs. Run from the
repository root:
    /work/pyenv/bin/python scripts/make_mixing_fixtures.py

Each case: "x" (rows of float32-representable values, so Rust reads the
same numbers), "labels" (non-negative ints), "k", and
- "silhouette": sklearn.metrics.silhouette_score(x, labels) (Euclidean);
- "knn_mixing": mean over cells of the inverse Simpson index 1/sum_l p_l^2
  of the label frequencies p_l among the k nearest neighbours (the cell
  itself excluded), neighbours from sklearn NearestNeighbors (brute force);
- "knn_label_accuracy": fraction of cells whose kNN majority label is their
  own (ties between labels go to the label whose nearest member is closest).
The data are continuous random values, so there are no distance ties.
"""
import json
import os

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

OUT = "fixtures/mixing"


def knn_metrics(x, labels, k):
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
    _, idx = nn.kneighbors(x)
    simpson, correct = [], 0
    for i in range(len(x)):
        nb = [j for j in idx[i] if j != i][:k]
        lab = labels[nb]
        vals, counts = np.unique(lab, return_counts=True)
        p = counts / k
        simpson.append(1.0 / np.sum(p * p))
        best = counts.max()
        tied = set(vals[counts == best].tolist())
        # The nearest neighbour whose label is among the tied ones decides.
        winner = next(l for l in lab if l in tied)
        correct += int(winner == labels[i])
    return float(np.mean(simpson)), correct / len(x)


def case(x, labels, k):
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    mix, acc = knn_metrics(x, labels, k)
    return {
        "x": x.tolist(),
        "labels": labels.tolist(),
        "k": k,
        "silhouette": float(silhouette_score(x, labels, metric="euclidean")),
        "knn_mixing": mix,
        "knn_label_accuracy": acc,
    }


def main():
    rng = np.random.default_rng(20240601)
    cases = []
    # Three separated blobs, labels = blob.
    x, y = make_blobs(n_samples=150, n_features=5, centers=3, cluster_std=1.5, random_state=1)
    cases.append(case(x, y, 10))
    # The same blobs with random labels (well mixed): silhouette near 0.
    cases.append(case(x, rng.integers(0, 2, size=150), 15))
    # Overlapping blobs, 4 labels with gaps in their values, one singleton.
    x, y = make_blobs(n_samples=240, n_features=20, centers=4, cluster_std=4.0, random_state=7)
    lab = np.array([10, 3, 7, 42])[y]
    lab[5] = 99
    cases.append(case(x, lab, 7))
    # Uniform noise, 5 labels.
    x = rng.uniform(-1, 1, size=(120, 3))
    cases.append(case(x, rng.integers(0, 5, size=120), 5))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"sklearn": __import__("sklearn").__version__, "cases": cases}, f)


if __name__ == "__main__":
    main()
