"""hardneg.cluster: exact balanced sizes, determinism, objective, k-means fixed point, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardneg


def reference_objective(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine of each row to the normalised mean of its cluster, by explicit numpy."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    xn = np.divide(x, norms, out=np.zeros(x.shape, np.float64), where=norms > 0)
    total = 0.0
    for c in np.unique(labels):
        total += np.linalg.norm(xn[labels == c].sum(axis=0))
    return total / len(x)


def blobs(n: int, d: int, centers: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d))
    return (c[rng.integers(0, centers, n)] + noise * rng.standard_normal((n, d))).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    d=st.integers(1, 9),
    size=st.integers(1, 320),
    seed=st.integers(0, 2**32),
)
def test_balanced_sizes_are_exact(n: int, d: int, size: int, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    res = hardneg.cluster(x, cluster_size=size, seed=seed, return_objective=True)
    k = -(-n // size)
    counts = np.bincount(res.labels, minlength=k)
    assert res.labels.dtype == np.int64 and res.labels.shape == (n,)
    assert len(counts) == k
    assert counts.min() == n // k and counts.max() - counts.min() <= 1
    assert res.objective == pytest.approx(reference_objective(x, res.labels), abs=1e-5)


def test_n_clusters_and_duplicates_and_zero_rows() -> None:
    x = np.zeros((50, 4), np.float32)
    x[:25] = [1, 0, 0, 0]  # 25 identical rows, 25 zero rows
    labels = hardneg.cluster(x, n_clusters=7)
    assert sorted(np.bincount(labels).tolist()) == [7, 7, 7, 7, 7, 7, 8]


def test_recovers_separated_groups() -> None:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((8, 32)) * 5
    truth = np.repeat(np.arange(8), 50)
    x = (centers[truth] + 0.1 * rng.standard_normal((400, 32))).astype(np.float32)
    perm = rng.permutation(400)
    labels = hardneg.cluster(x[perm], cluster_size=50)
    # Every found cluster is exactly one true group.
    pairs = set(zip(labels.tolist(), truth[perm].tolist()))
    assert len(pairs) == 8


@pytest.mark.parametrize("method", ["balanced", "kmeans"])
def test_deterministic_whatever_the_thread_count(method: str) -> None:
    x = blobs(40_000, 24, 300, 0.8, 1)
    a = hardneg.cluster(x, cluster_size=100, method=method, threads=1, seed=3, return_objective=True)
    for t in (2, 3):
        b = hardneg.cluster(x, cluster_size=100, method=method, threads=t, seed=3, return_objective=True)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.objective == b.objective
    c = hardneg.cluster(x, cluster_size=100, method=method, threads=2, seed=4)
    assert not np.array_equal(a.labels, c)


def test_objective_close_to_faiss_kmeans() -> None:
    faiss = pytest.importorskip("faiss")
    x = blobs(6000, 32, 150, 0.7, 2)
    k = -(-6000 // 64)
    ours = hardneg.cluster(x, cluster_size=64, iters=10, return_objective=True)
    km = faiss.Kmeans(32, k, niter=10, spherical=True, seed=1)
    km.train(x)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    _, assign = km.index.search(xn, 1)
    theirs = reference_objective(x, assign.ravel())
    # Balanced clusters can only be looser than unconstrained k-means, but not by much.
    assert ours.objective > 0.93 * theirs
    assert np.bincount(ours.labels).max() - np.bincount(ours.labels).min() <= 1


def test_objective_close_to_faiss_kmeans_on_structureless_groups() -> None:
    # Groups of ~50 rows with independent centres and clusters of 64: a balanced partition must
    # cut groups, and top-down splits alone reach only ~80 % of k-means' objective here. The
    # balanced k-means refinement (auction assignment) brings it to ~98 %.
    faiss = pytest.importorskip("faiss")
    n, d = 20_000, 64
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((n // 50, d)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32) + centers[rng.integers(0, n // 50, n)]
    k = -(-n // 64)
    ours = hardneg.cluster(x, cluster_size=64, iters=10, return_objective=True)
    km = faiss.Kmeans(d, k, niter=10, spherical=True, seed=1)
    km.train(x)
    _, assign = km.index.search(x / np.linalg.norm(x, axis=1, keepdims=True), 1)
    theirs = reference_objective(x, assign.ravel())
    assert ours.objective == pytest.approx(reference_objective(x, ours.labels), abs=1e-6)
    assert ours.objective > 0.96 * theirs
    counts = np.bincount(ours.labels, minlength=k)
    assert counts.min() == n // k and counts.max() - counts.min() <= 1


def test_kmeans_reaches_a_lloyd_fixed_point() -> None:
    x = blobs(3000, 16, 20, 0.5, 3)
    res = hardneg.cluster(x, n_clusters=20, method="kmeans", iters=200, tol=0.0, return_objective=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    present = np.unique(res.labels)
    cents = np.stack([xn[res.labels == c].sum(axis=0) for c in present])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    reassigned = present[np.argmax(xn @ cents.T, axis=1)]
    np.testing.assert_array_equal(reassigned, res.labels)
    assert res.objective == pytest.approx(reference_objective(x, res.labels), abs=1e-6)


def test_bad_input_gets_typed_errors() -> None:
    x = np.ones((10, 3), np.float32)
    with pytest.raises(hardneg.ParameterError, match="exactly one"):
        hardneg.cluster(x)
    with pytest.raises(hardneg.ParameterError, match="exactly one"):
        hardneg.cluster(x, cluster_size=2, n_clusters=2)
    with pytest.raises(hardneg.ParameterError, match="n_clusters"):
        hardneg.cluster(x, n_clusters=11)
    with pytest.raises(hardneg.ParameterError):
        hardneg.cluster(x, cluster_size=0)
    with pytest.raises(hardneg.ParameterError, match="method"):
        hardneg.cluster(x, cluster_size=2, method="ward")  # type: ignore[arg-type]
    with pytest.raises(hardneg.ParameterError):
        hardneg.cluster(x, cluster_size=2, iters=0)
    with pytest.raises(hardneg.ShapeError):
        hardneg.cluster(np.ones(5, np.float32), cluster_size=2)
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(hardneg.NonFiniteError, match="row 7"):
        hardneg.cluster(bad, cluster_size=2)


def test_import_does_not_import_torch() -> None:
    code = "import sys, hardneg; hardneg.ClusterBatchSampler; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
