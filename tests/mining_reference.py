"""Slow, obvious references for the mining tests: explicit Python loops, no hardneg code.

The random stream (SplitMix64 seeded by ``mix64(mix64(seed) ^ query)``) is re-implemented here so
the sampled outputs can be compared exactly.
"""

from __future__ import annotations

import math

import numpy as np

M64 = (1 << 64) - 1


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Rng:
    def __init__(self, seed: int, query: int) -> None:
        self.state = mix64(mix64(seed) ^ query)

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        return mix64(self.state)

    def open01(self) -> float:
        return ((self.next() >> 11) + 0.5) * 2.0**-53

    def below(self, n: int) -> int:
        threshold = ((1 << 64) - n) % n
        while True:
            m = self.next() * n
            if (m & M64) >= threshold:
                return m >> 64


def select_row(scores, ids, p, q_global, *, num_negatives, range_min=0, range_max=None, min_score=None,
               max_score=None, absolute_margin=None, relative_margin=None, sampling="top", seed=0,
               simans_a=0.5, simans_b=0.0):
    """One query, step by step. Returns (ids, scores, counters dict)."""
    f32 = np.float32
    c = {"candidates": 0, "skipped_absolute_margin": 0, "skipped_relative_margin": 0, "skipped_max_score": 0,
         "skipped_min_score": 0, "skipped_range_min": 0, "skipped_range_max": 0, "window": 0}
    cols = [j for j in range(len(ids)) if ids[j] != -1]
    c["candidates"] = len(cols)
    cols.sort(key=lambda j: (-float(scores[j]), j))
    survivors = []
    for j in cols:
        s = f32(scores[j])
        if absolute_margin is not None and s + f32(absolute_margin) > f32(p):
            c["skipped_absolute_margin"] += 1
        elif relative_margin is not None and s > f32(p) - f32(abs(f32(p))) * f32(relative_margin):
            c["skipped_relative_margin"] += 1
        elif max_score is not None and s > f32(max_score):
            c["skipped_max_score"] += 1
        elif min_score is not None and s < f32(min_score):
            c["skipped_min_score"] += 1
        else:
            survivors.append(j)
    window = []
    for rank, j in enumerate(survivors):
        if rank < range_min:
            c["skipped_range_min"] += 1
        elif range_max is not None and rank >= range_max:
            c["skipped_range_max"] += 1
        else:
            window.append(j)
    c["window"] = len(window)
    m, n = len(window), num_negatives
    if m <= n:
        picks = list(range(m))
    elif sampling == "top":
        picks = list(range(n))
    elif sampling == "random":
        rng = Rng(seed, q_global)
        pos = list(range(m))
        for i in range(n):
            k = i + rng.below(m - i)
            pos[i], pos[k] = pos[k], pos[i]
        picks = sorted(pos[:n])
    elif sampling == "simans":
        rng = Rng(seed, q_global)
        keys = []
        for i, j in enumerate(window):
            d = float(f32(scores[j])) - float(f32(p)) - simans_b
            keys.append((-simans_a * d * d + -math.log(-math.log(rng.open01())), i))
        keys.sort(key=lambda t: (-t[0], t[1]))
        picks = sorted(i for _, i in keys[:n])
    else:
        raise AssertionError(sampling)
    out_ids = [int(ids[window[i]]) for i in picks] + [-1] * (n - len(picks))
    out_scores = [float(f32(scores[window[i]])) for i in picks] + [float("nan")] * (n - len(picks))
    c["short_queries"] = int(len(picks) < n)
    c["empty_queries"] = int(len(picks) == 0)
    c["missing_negatives"] = n - len(picks)
    return out_ids, out_scores, c


def select(scores, ids, pos_rows, query_offset=0, **opts):
    """All queries; ``pos_rows`` is a list of per-query positive score lists (NaN = padding)."""
    n = opts["num_negatives"]
    q = len(ids)
    out_ids = np.full((q, n), -1, np.int64)
    out_scores = np.full((q, n), np.nan, np.float32)
    total: dict[str, int] = {"queries": q}
    for r in range(q):
        vals = [float(v) for v in (pos_rows[r] if pos_rows is not None else []) if not math.isnan(v)]
        p = min(vals) if vals else float("nan")
        i, s, c = select_row(scores[r], ids[r], p, query_offset + r, **opts)
        out_ids[r] = i
        out_scores[r] = s
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return out_ids, out_scores, total


def default_range_max(range_min, num_negatives, max_positives, filtered):
    """sentence-transformers' derivation (no cross-encoder)."""
    return range_min + (10 if filtered else 1) * num_negatives + max_positives


def mine(queries, corpus, positives, *, metric="cosine", exclude=None, range_max=None, num_negatives=8,
         range_min=0, **opts):
    """Brute-force mining: full score matrix with explicit fma dot products in float32 order."""
    q = np.asarray(queries, np.float32)
    c = np.asarray(corpus, np.float32)
    inv = None
    if metric == "cosine":  # queries normalised; corpus rows scaled by their inverse norm after the dot product
        q = normalize(q)
        inv = inverse_norms(c)
    pos_rows = [list(p) for p in positives]
    filtered = any(opts.get(k) is not None for k in ("absolute_margin", "relative_margin", "max_score"))
    if range_max is None:
        range_max = default_range_max(range_min, num_negatives, max(len(p) for p in pos_rows), filtered)
    nq, n = len(q), len(c)
    all_ids, all_scores, pos_scores = [], [], []
    for r in range(nq):
        excluded = set(int(x) for x in pos_rows[r] if x != -1) | set(int(x) for x in (exclude[r] if exclude is not None else []) if x != -1)
        all_s = fma_scores(q[r], c)
        if inv is not None:
            all_s = (all_s * inv).astype(np.float32)
        scored = [(float(all_s[j]), j) for j in range(n) if j not in excluded]
        scored.sort(key=lambda t: (-t[0], t[1]))
        top = scored[:range_max]
        all_ids.append([j for _, j in top] + [-1] * (range_max - len(top)))
        all_scores.append([s for s, _ in top] + [0.0] * (range_max - len(top)))
        pos_scores.append([float(all_s[int(x)]) if x != -1 else float("nan") for x in pos_rows[r]])
    ids, scores, stats = select(np.array(all_scores, np.float32), np.array(all_ids, np.int64), pos_scores,
                                num_negatives=num_negatives, range_min=range_min, range_max=range_max, **opts)
    return ids, scores, pos_scores, stats


def fma_scores(qrow: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Scores of one query against every corpus row as the kernels compute them: the sequential
    chain ``acc = fma(q[t], c[t], acc)`` in float32 with a single rounding per step. Emulated in
    float64 (products of two float32 are exact) with TwoSum to round correctly to float32."""
    c = np.asarray(corpus, np.float32).astype(np.float64)
    acc = np.zeros(len(c), np.float32)
    for t in range(c.shape[1]):
        p = float(np.float32(qrow[t])) * c[:, t]
        a = acc.astype(np.float64)
        s = p + a
        bb = s - p
        err = (p - (s - bb)) + (a - bb)
        r = s.astype(np.float32)
        toward = np.nextafter(r, np.where(err > 0, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32))
        tie = (r.astype(np.float64) + toward.astype(np.float64)) / 2 == s
        acc = np.where((err != 0) & tie, toward, r).astype(np.float32)
    return acc


def inverse_norms(x: np.ndarray) -> np.ndarray:
    """float32(1 / norm) per row with the norm summed in float64 in order; 0 for zero rows."""
    out = np.zeros(len(x), np.float32)
    for i in range(len(x)):
        norm = math.sqrt(sum(float(v) * float(v) for v in x[i].astype(np.float64)))
        out[i] = np.float32(1.0 / norm) if norm > 0 else 0.0
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    """Row normalisation as hardneg does it: norm in float64, multiply by the float32 inverse."""
    out = x.astype(np.float32).copy()
    for i in range(len(out)):
        norm = math.sqrt(sum(float(v) * float(v) for v in out[i].astype(np.float64)))
        if norm > 0:
            inv = np.float32(1.0 / norm)
            out[i] = out[i] * inv
    return out
