"""Slow, obvious reference implementations the fast paths are tested against."""

from __future__ import annotations

import numpy as np


def ref_scores(queries: np.ndarray, corpus: np.ndarray, metric: str = "ip") -> np.ndarray:
    q = queries.astype(np.float64)
    c = corpus.astype(np.float64)
    if metric == "cosine":
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        cn = np.linalg.norm(c, axis=1, keepdims=True)
        q = np.divide(q, qn, out=np.zeros_like(q), where=qn > 0)
        c = np.divide(c, cn, out=np.zeros_like(c), where=cn > 0)
    return q @ c.T


def ref_topk(queries, corpus, k, *, metric="ip", exclude=None):
    """Top-k by (score desc, id asc) from the full float64 score matrix, exclusions masked."""
    s = ref_scores(queries, corpus, metric)
    if exclude is not None:
        for i, row in enumerate(exclude):
            row = [x for x in row if x != -1]
            s[i, row] = -np.inf
    ids = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    order = np.lexsort((ids, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), order.astype(np.int64)


def assert_valid_topk(scores, ids, queries, corpus, k, *, metric="ip", exclude=None, tol=None):
    """For float data, where rounding can reorder near-ties: checks the result is *a* correct top-k.

    * each row is sorted by descending score and has k distinct ids;
    * returned scores equal the float64 scores of the returned ids (to rounding);
    * every returned id scores at least the true k-th score (minus rounding), and every id that
      scores clearly above the true k-th score is returned.
    """
    full = ref_scores(queries, corpus, metric)
    if exclude is not None:
        for i, row in enumerate(exclude):
            full[i, [x for x in row if x != -1]] = -np.inf
    d = corpus.shape[1]
    scale = np.abs(queries).max() * np.abs(corpus).max() if metric == "ip" else 1.0
    tol = tol if tol is not None else 1e-5 * d * max(scale, 1e-3) + 1e-6
    assert scores.shape == ids.shape == (queries.shape[0], k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert np.all(np.diff(scores, axis=1) <= 0)
    for i in range(queries.shape[0]):
        assert len(set(ids[i].tolist())) == k
        mine = full[i, ids[i]]
        assert np.all(np.isfinite(mine)), "returned an excluded id"
        np.testing.assert_allclose(scores[i], mine, atol=tol)
        kth = np.sort(full[i])[::-1][k - 1]
        assert np.all(mine >= kth - tol)
        must = np.flatnonzero(full[i] > kth + tol)
        assert set(must.tolist()) <= set(ids[i].tolist())
