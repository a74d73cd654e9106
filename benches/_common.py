"""Data and helpers shared by the pytest-benchmark files (``benches/test_bench_*.py``)."""

from __future__ import annotations

import numpy as np


def topic_embeddings(n: int, d: int, seed: int = 0, topics: int | None = None) -> np.ndarray:
    """Unit-norm float32 rows around ``topics`` random directions (text embeddings cluster too)."""
    rng = np.random.default_rng(seed)
    t = topics or max(n // 50, 1)
    centers = rng.standard_normal((t, d), dtype=np.float32)
    x = centers[rng.integers(0, t, n)] + 0.6 * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Share of each row's ids that both results hold (ties can swap the last ids)."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def run_once(benchmark, fn, *args, rounds: int = 3, **kwargs):
    """A slow case: a few rounds of one call each (pytest-benchmark's calibration would repeat it)."""
    return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, iterations=1, warmup_rounds=0)
