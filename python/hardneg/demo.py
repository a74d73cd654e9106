"""The demo behind ``make demo`` / ``hardneg demo``.

Examples
--------
>>> from hardneg.demo import topk_demo
>>> report = topk_demo(n=2000, dim=16, queries=8, k=5, verbose=False)
>>> report["identical_to_faiss"] in (True, None)
True
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .index import FlatIndex

__all__ = ["topk_demo"]


def topk_demo(n: int = 200_000, dim: int = 384, queries: int = 1024, k: int = 10, *, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    """Searches generated normalised embeddings with hardneg and, when installed, FAISS.

    Returns a dict with timings, GFLOP/s and whether both returned the same ids.
    """
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((n, dim), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    flops = 2.0 * n * dim * queries
    index = FlatIndex(corpus)
    index.search(q[:1], k)  # warm up
    t = time.perf_counter()
    scores, ids = index.search(q, k)
    hn = time.perf_counter() - t
    report: dict[str, Any] = {"hardneg_s": hn, "hardneg_gflops": flops / hn / 1e9, "identical_to_faiss": None}
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        fi = faiss.IndexFlatIP(dim)
        fi.add(corpus)
        t = time.perf_counter()
        _, fids = fi.search(q, k)
        fs = time.perf_counter() - t
        report.update(faiss_s=fs, faiss_gflops=flops / fs / 1e9, identical_to_faiss=bool((fids == ids).mean() > 0.999))
    if verbose:
        print(f"exact top-{k}: {queries} queries x {n} x {dim} corpus (generated), {os.cpu_count()} cores")
        print(f"  hardneg  {hn * 1e3:9.1f} ms  {report['hardneg_gflops']:7.1f} GFLOP/s")
        if faiss is not None:
            print(f"  faiss    {report['faiss_s'] * 1e3:9.1f} ms  {report['faiss_gflops']:7.1f} GFLOP/s  (IndexFlatIP)")
            print(f"  speed-up {report['faiss_s'] / hn:.2f}x, same ids: {report['identical_to_faiss']}")
        print(f"  first query's top ids: {ids[0].tolist()}")
    return report
