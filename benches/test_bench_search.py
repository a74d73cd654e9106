"""Exact top-k search: hardneg.FlatIndex against FAISS IndexFlatIP, torch, numpy and usearch (exact)."""

from __future__ import annotations

import numpy as np
import pytest

import hardneg
from _common import overlap, run_once, topic_embeddings

# (N, d, Q, k): a single query, a small batch and a large batch, at two k
SMALL = [(20_000, 128, 1, 10), (20_000, 128, 64, 10), (20_000, 128, 512, 100)]
FULL = [(1_000_000, 384, 1, 10), (1_000_000, 384, 64, 100), (200_000, 384, 4096, 100)]
ENGINES = ["hardneg", "faiss", "torch", "numpy", "usearch"]


def _chunks(n: int, rows: int = 65536):
    return range(0, n, rows)


def torch_topk(q: np.ndarray, c: np.ndarray, k: int):
    import torch

    qt, ct = torch.from_numpy(q), torch.from_numpy(c)
    best_s = best_i = None
    for s in _chunks(len(c)):
        vs, ix = torch.topk(qt @ ct[s : s + 65536].T, min(k, len(c) - s), dim=1)
        ix = ix + s
        if best_s is not None:
            vs, ix = torch.cat([best_s, vs], 1), torch.cat([best_i, ix], 1)
        best_s, pos = torch.topk(vs, k, dim=1)
        best_i = torch.gather(ix, 1, pos)
    return best_s.numpy(), best_i.numpy()


def numpy_topk(q: np.ndarray, c: np.ndarray, k: int):
    best_s = best_i = None
    for s in _chunks(len(c)):
        sc = q @ c[s : s + 65536].T
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        vs, ix = np.take_along_axis(sc, part, 1), part + s
        if best_s is not None:
            vs, ix = np.concatenate([best_s, vs], 1), np.concatenate([best_i, ix], 1)
        p = np.argpartition(-vs, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(vs, p, 1), np.take_along_axis(ix, p, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def _engine(name: str, corpus: np.ndarray):
    """``search(queries, k) -> ids`` for each engine; index building is not timed."""
    if name == "hardneg":
        index = hardneg.FlatIndex(corpus)
        return lambda q, k: index.search(q, k)[1]
    if name == "faiss":
        faiss = pytest.importorskip("faiss")
        index = faiss.IndexFlatIP(corpus.shape[1])
        index.add(corpus)
        return lambda q, k: index.search(q, k)[1]
    if name == "torch":
        pytest.importorskip("torch")
        return lambda q, k: torch_topk(q, corpus, k)[1]
    if name == "numpy":
        return lambda q, k: numpy_topk(q, corpus, k)[1]
    usearch = pytest.importorskip("usearch.index")
    return lambda q, k: usearch.search(corpus, q, k, usearch.MetricKind.IP, exact=True).keys.reshape(len(q), k)


@pytest.fixture(scope="module")
def data(full):
    shapes = FULL if full else SMALL
    n = max(s[0] for s in shapes)
    d_all = sorted({s[1] for s in shapes})
    return {d: topic_embeddings(n, d, seed=d) for d in d_all}, shapes


@pytest.mark.parametrize("shape", range(3), ids=["q1", "q64", "big-batch"])
@pytest.mark.parametrize("engine", ENGINES)
def test_search(benchmark, data, shape, engine):
    corpora, shapes = data
    n, d, q, k = shapes[shape]
    corpus = corpora[d][:n]
    queries = corpus[:q][::-1].copy()  # rows of the corpus itself: each query has an exact match
    benchmark.group = f"search {n:,} x {d}, Q={q}, k={k}"
    search = _engine(engine, corpus)
    ids = run_once(benchmark, search, queries, k) if q * n * d > 1e10 else benchmark(search, queries, k)
    want = hardneg.FlatIndex(corpus).search(queries, k)[1]
    assert overlap(np.asarray(ids), want) >= 0.99
