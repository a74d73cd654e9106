"""search_partial / merge_topk: shards merged equal the whole-corpus search, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hardneg
from hardneg import IdOutOfRangeError, NonFiniteError, ParameterError, ShapeError


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, np.float32).view(np.int32)


def _assert_same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(_bits(got[0]), _bits(want[0]))


def _reference_merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every part's entries, drop padding, sort by (score desc, id asc), keep k."""
    rows = parts[0][0].shape[0]
    scores = np.full((rows, k), np.nan, np.float32)
    ids = np.full((rows, k), -1, np.int64)
    for q in range(rows):
        s = np.concatenate([p[0][q] for p in parts])
        i = np.concatenate([p[1][q] for p in parts])
        keep = i != -1
        s, i = s[keep], i[keep]
        order = np.lexsort((i, -s))[:k]
        scores[q, : len(order)], ids[q, : len(order)] = s[order], i[order]
    return scores, ids


def _shards(corpus: np.ndarray, cuts: list[int]) -> list[tuple[int, np.ndarray]]:
    return [(a, corpus[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


@given(
    n=st.integers(1, 90),
    nq=st.integers(1, 6),
    d=st.integers(1, 9),
    k=st.integers(1, 40),
    n_cuts=st.integers(0, 4),
    seed=st.integers(0, 2**16),
    metric=st.sampled_from(["ip", "cosine"]),
    ties=st.booleans(),
    n_excl=st.integers(0, 5),
)
def test_merged_shards_equal_the_whole_corpus(n, nq, d, k, n_cuts, seed, metric, ties, n_excl):
    rng = np.random.default_rng(seed)
    if ties:  # small integers: many exact ties, some straddling the cuts
        corpus = rng.integers(-2, 3, (n, d)).astype(np.float32)
        queries = rng.integers(-2, 3, (nq, d)).astype(np.float32)
    else:
        corpus = rng.standard_normal((n, d), dtype=np.float32)
        queries = rng.standard_normal((nq, d), dtype=np.float32)
    exclude = rng.integers(-1, n, (nq, n_excl))
    cuts = sorted({0, n, *rng.integers(0, n + 1, n_cuts).tolist()})
    # The whole-corpus answer: the index's exact search, with the rows it cannot fill padded.
    cap = n - np.array([len(set(r.tolist()) - {-1}) for r in exclude])
    index = hardneg.FlatIndex(corpus, metric=metric)
    want_s = np.full((nq, k), np.nan, np.float32)
    want_i = np.full((nq, k), -1, np.int64)
    for q in range(nq):
        kk = min(k, int(cap[q]))
        if kk:
            s, i = index.search(queries[q : q + 1], kk, exclude=exclude[q : q + 1])
            want_s[q, :kk], want_i[q, :kk] = s[0], i[0]
    parts = [hardneg.search_partial(queries, shard, k, row_offset=a, exclude=exclude, total_rows=n, metric=metric)
             for a, shard in _shards(corpus, cuts)]
    _assert_same(hardneg.merge_topk(parts, k), (want_s, want_i))
    _assert_same(hardneg.merge_topk(parts[::-1], k, threads=2), (want_s, want_i))
    # Associative: merging merged halves gives the same rows.
    if len(parts) > 2:
        left = hardneg.merge_topk(parts[:2], k)
        _assert_same(hardneg.merge_topk([left, *parts[2:]], k), (want_s, want_i))


@given(
    rows=st.integers(0, 5),
    widths=st.lists(st.integers(0, 6), min_size=1, max_size=4),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_merge_matches_a_plain_sort(rows, widths, k, seed):
    rng = np.random.default_rng(seed)
    pool = rng.permutation(100)
    parts, used = [], 0
    for w in widths:
        ids = np.full((rows, w), -1, np.int64)
        scores = np.full((rows, w), np.nan, np.float32)
        for q in range(rows):
            live = int(rng.integers(0, w + 1))
            i = pool[used : used + live]
            s = rng.integers(0, 4, live).astype(np.float32)  # coarse scores: ties across parts
            order = np.lexsort((i, -s))
            ids[q, :live], scores[q, :live] = i[order], s[order]
        used += w
        parts.append((scores, ids))
    _assert_same(hardneg.merge_topk(parts, k), _reference_merge(parts, k))


def test_short_and_empty_shards_pad():
    corpus = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    q = np.array([[1, 2]], np.float32)
    empty = hardneg.search_partial(q, corpus[:0], 2, row_offset=0)
    assert empty[1].tolist() == [[-1, -1]] and np.isnan(empty[0]).all()
    s, i = hardneg.search_partial(q, corpus, 5, row_offset=10, exclude=[[11]])
    assert i.tolist() == [[12, 10, -1, -1, -1]] and s[0, :2].tolist() == [3.0, 1.0] and np.isnan(s[0, 2:]).all()
    merged = hardneg.merge_topk([empty, (s, i)], 3)
    assert merged[1].tolist() == [[12, 10, -1]]
    index = hardneg.FlatIndex(corpus, metric="cosine")
    via_index = hardneg.search_partial(q, index, 2, row_offset=3)
    assert via_index[1].tolist() == [[5, 4]]


def test_bad_partials_raise_typed_errors():
    a = (np.array([[0.9, 0.5]], np.float32), np.array([[7, 1]]))
    with pytest.raises(ParameterError, match="not ordered"):
        hardneg.merge_topk([(a[0][:, ::-1], a[1])], 2)
    with pytest.raises(ParameterError, match="overlap"):
        hardneg.merge_topk([a, a], 3)
    with pytest.raises(ParameterError, match="follows padding"):
        hardneg.merge_topk([(a[0], np.array([[-1, 1]]))], 2)
    with pytest.raises(NonFiniteError):
        hardneg.merge_topk([(np.array([[np.nan]], np.float32), np.array([[3]]))], 1)
    with pytest.raises(IdOutOfRangeError):
        hardneg.merge_topk([(np.array([[1.0]], np.float32), np.array([[-4]]))], 1)
    with pytest.raises(ShapeError):
        hardneg.merge_topk([a, (a[0][:0], a[1][:0])], 1)
    with pytest.raises(ShapeError):
        hardneg.merge_topk([(a[0], a[1][:, :1])], 1)
    with pytest.raises(ParameterError, match="list"):
        hardneg.merge_topk(a, 1)
    with pytest.raises(ParameterError):
        hardneg.merge_topk([], 1)
    with pytest.raises(ParameterError):
        hardneg.merge_topk([a], 0)
    corpus = np.eye(3, dtype=np.float32)
    q = np.ones((1, 3), np.float32)
    with pytest.raises(ParameterError, match="row_offset"):
        hardneg.search_partial(q, corpus, 1, row_offset=2, total_rows=4)
    with pytest.raises(IdOutOfRangeError):
        hardneg.search_partial(q, corpus, 1, exclude=[[9]], total_rows=5)
    with pytest.raises(IdOutOfRangeError):
        hardneg.search_partial(q, corpus, 1, exclude=[[-3]])
    with pytest.raises(IdOutOfRangeError):
        hardneg.search_partial(q, corpus[:0], 1, exclude=[[9]], total_rows=5)
    with pytest.raises(ShapeError):
        hardneg.search_partial(np.ones((1, 2), np.float32), corpus, 1)
    with pytest.raises(ShapeError):
        hardneg.search_partial(np.ones((1, 2), np.float32), corpus[:0], 1)
    with pytest.raises(ParameterError):
        hardneg.search_partial(q, corpus, 1, row_offset=-1)


def test_the_engine_over_shards_equals_the_engine_over_the_corpus():
    """_hardneg.ShardIndex + Miner.candidates per shard, merge_topk, Miner.select == Miner.mine."""
    from hardneg import _hardneg

    rng = np.random.default_rng(5)
    n, nq, d, k = 90, 12, 6, 20
    corpus = rng.integers(-2, 3, (n, d)).astype(np.float32)  # many exact ties
    queries = rng.integers(-2, 3, (nq, d)).astype(np.float32)
    po, pi = np.arange(nq + 1, dtype=np.int64) * 2, rng.integers(0, n, 2 * nq)
    opts = dict(num_negatives=5, positive_width=2, range_max=k, sampling="random", seed=3, relative_margin=0.1)
    whole = hardneg.FlatIndex(corpus, metric="ip")
    want = _hardneg.Miner(whole._inner, **opts).mine(queries, po, pi, query_offset=4)
    parts = []
    for a, b in [(0, 40), (40, 40), (40, 47), (47, n)]:
        inner = hardneg.FlatIndex(corpus[a:b], metric="ip")._inner if b > a else None
        shard = _hardneg.ShardIndex(inner, row_offset=a, total_rows=n, dim=d, metric="dot")
        assert len(shard) == n
        parts.append(_hardneg.Miner(shard, **opts).candidates(queries, po, pi, query_offset=4))
    ms, mi = hardneg.merge_topk([(p[0], p[1]) for p in parts], k)
    pscore = np.fmax.reduce([p[3] for p in parts])
    assert (np.isnan(np.stack([p[3] for p in parts])).sum(axis=0) == len(parts) - 1).all()  # one owner each
    neg, sc, stats = _hardneg.Miner(whole._inner, **opts).select(ms, mi, pscore, query_offset=4)
    np.testing.assert_array_equal(neg, want[0])
    np.testing.assert_array_equal(_bits(sc), _bits(want[1]))
    np.testing.assert_array_equal(_bits(pscore), _bits(want[3]))
    assert stats == want[4]
    miner = _hardneg.Miner(whole._inner, **opts)
    with pytest.raises(ParameterError, match="20 candidates"):
        miner.select(np.ascontiguousarray(ms[:, :5]), np.ascontiguousarray(mi[:, :5]), pscore)
    with pytest.raises(ShapeError):
        miner.select(ms, mi[:3], pscore)
    with pytest.raises(ParameterError, match="row_offset"):
        _hardneg.ShardIndex(whole._inner, row_offset=1, total_rows=n, dim=d, metric="dot")
    with pytest.raises(ParameterError, match="metric"):
        _hardneg.ShardIndex(whole._inner, row_offset=0, total_rows=n, dim=d, metric="cosine")
