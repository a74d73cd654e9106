"""Balanced and k-means clustering of embeddings: :func:`cluster`."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_matrix, as_threads
from .errors import ParameterError

__all__ = ["cluster", "ClusterResult"]

Method = Literal["balanced", "kmeans"]


class ClusterResult(NamedTuple):
    """What :func:`cluster` returns with ``return_objective=True``."""

    labels: np.ndarray
    """int64 cluster id per row."""
    objective: float
    """Mean cosine of each row to the normalised mean of its cluster (higher is tighter)."""


def n_clusters_for(rows: int, cluster_size: int | None, n_clusters: int | None) -> int:
    """Resolves ``cluster_size`` / ``n_clusters`` (exactly one given) to a cluster count."""
    if (cluster_size is None) == (n_clusters is None):
        raise ParameterError("give exactly one of cluster_size (rows per cluster) or n_clusters")
    if cluster_size is not None:
        size = as_count(cluster_size, "cluster_size")
        return -(-rows // size)
    k = as_count(n_clusters, "n_clusters")
    if k > rows:
        raise ParameterError(f"n_clusters={k} is larger than the number of rows ({rows}); lower it")
    return k


def cluster(
    embeddings: Any,
    *,
    cluster_size: int | None = None,
    n_clusters: int | None = None,
    method: Method = "balanced",
    iters: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    threads: int | None = None,
    return_objective: bool = False,
) -> np.ndarray | ClusterResult:
    """Clusters embeddings by cosine similarity.

    Parameters
    ----------
    embeddings : array_like, shape (N, d)
        Rows to cluster (any float dtype; float32 C-contiguous arrays are not copied). Rows are
        compared by cosine; a zero row has cosine 0 to everything. NaN/Inf raise
        :class:`~hardneg.NonFiniteError`.
    cluster_size, n_clusters : int
        Give exactly one: ``cluster_size`` makes ``ceil(N / cluster_size)`` clusters.
    method : {"balanced", "kmeans"}
        ``"balanced"``: recursive balanced spherical 2-means (NGAME-style, but any cluster
        count), then balanced spherical k-means over all clusters (each assignment step is a
        capacitated assignment solved by auction over each row's 8 most similar centroids):
        every cluster has ``floor(N/K)`` or ``ceil(N/K)`` rows. Cluster ids follow the split
        tree depth-first, so nearby ids are mostly similar clusters.
        ``"kmeans"``: spherical k-means (TAS-B-style, unbalanced; clusters may be empty), whose
        assignment step runs on hardneg's exact fused top-k engine.
    iters : int, default 20
        Maximum iterations (for ``"balanced"``: of each split, and of the k-means refinement).
    tol : float, default 1e-4
        Stop (a split, the refinement, k-means) once the mean cosine improves by less than this.
    seed : int, default 0
        Seed; the result is the same for a seed whatever ``threads`` is.
    threads : int, optional
        Worker threads (default: every core). Threads are scoped to the call (no pool survives
        it), so the function is safe in forked DataLoader workers.
    return_objective : bool, default False
        Also return the objective: the mean cosine of each row to the normalised mean of its
        cluster.

    Returns
    -------
    numpy.ndarray or ClusterResult
        int64 labels ``[N]``, or ``ClusterResult(labels, objective)``.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> x = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    >>> labels = hardneg.cluster(x, cluster_size=64)
    >>> labels.dtype, int(labels.max()) + 1, sorted(set(np.bincount(labels).tolist()))
    (dtype('int64'), 16, [62, 63])
    >>> res = hardneg.cluster(x, n_clusters=4, method="kmeans", return_objective=True)
    >>> 0.0 < res.objective <= 1.0
    True
    """
    if method not in ("balanced", "kmeans"):
        raise ParameterError(f"method must be 'balanced' or 'kmeans', got {method!r}")
    arr = as_matrix(embeddings, "embeddings")
    k = n_clusters_for(arr.shape[0], cluster_size, n_clusters)
    iters = as_count(iters, "iters")
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise ParameterError(f"tol must be a number, got {tol!r}") from None
    if not tol >= 0.0:
        raise ParameterError(f"tol must be >= 0, got {tol}")
    seed = as_count(seed, "seed", minimum=0)
    labels, objective = _hardneg.cluster(
        arr, k, method=method, iters=iters, tol=tol, seed=seed % 2**64, threads=as_threads(threads)
    )
    if return_objective:
        return ClusterResult(labels, float(objective))
    return labels
