"""Clustering into clusters of 64 rows, 10 iterations: hardneg.cluster against faiss.Kmeans (spherical)."""

from __future__ import annotations

import numpy as np
import pytest

import hardneg
from _common import run_once, topic_embeddings

SMALL = (20_000, 64)
FULL = (100_000, 384)
SIZE, ITERS = 64, 10


def objective(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine of each row to its cluster's normalised mean."""
    sums = np.zeros((labels.max() + 1, x.shape[1]))
    np.add.at(sums, labels, x)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return float(np.einsum("ij,ij->i", x, sums[labels]).mean())


@pytest.fixture(scope="module")
def data(full):
    n, d = FULL if full else SMALL
    return topic_embeddings(n, d, seed=3, topics=n // 400)


def faiss_kmeans(x: np.ndarray, k: int) -> np.ndarray:
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=ITERS, spherical=True, seed=1)
    km.train(x)
    return km.index.search(x, 1)[1].ravel()


@pytest.mark.parametrize("engine", ["hardneg", "faiss"])
def test_cluster(benchmark, data, engine):
    n, d = data.shape
    k = -(-n // SIZE)
    benchmark.group = f"cluster {n:,} x {d} into {k:,} clusters of {SIZE}, {ITERS} iterations"
    if engine == "hardneg":
        labels = run_once(benchmark, hardneg.cluster, data, cluster_size=SIZE, iters=ITERS)
        sizes = np.bincount(labels, minlength=k)
        assert sizes.min() >= n // k and sizes.max() <= -(-n // k)  # balanced
    else:
        pytest.importorskip("faiss")
        labels = run_once(benchmark, faiss_kmeans, data, k)
    benchmark.extra_info["objective"] = objective(data, labels)
    want = objective(data, hardneg.cluster(data, cluster_size=SIZE, iters=ITERS))
    assert benchmark.extra_info["objective"] > 0.9 * want  # the two solve the same problem comparably well
