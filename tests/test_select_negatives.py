"""hardneg.select_negatives against the explicit-loop reference, plus properties and bad inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardneg
import mining_reference as ref
from hardneg.selection import STAT_NAMES


def assert_same(got, want_ids, want_scores, want_stats):
    np.testing.assert_array_equal(got.negatives, want_ids)
    np.testing.assert_array_equal(got.scores, want_scores)  # NaN == NaN here
    for k, v in want_stats.items():
        assert got.stats[k] == v, (k, got.stats, want_stats)
    assert set(got.stats) == set(STAT_NAMES)


@st.composite
def problems(draw):
    q = draw(st.integers(1, 6))
    c = draw(st.integers(1, 24))
    # Scores on a coarse grid force ties; masks and unsorted rows are common.
    grid = draw(st.sampled_from([4, 16, 1024]))
    scores = np.array(draw(st.lists(st.integers(-grid, grid), min_size=q * c, max_size=q * c)), np.float32).reshape(q, c) / grid
    ids = np.random.default_rng(draw(st.integers(0, 2**32))).permutation(1000)[: q * c].astype(np.int64).reshape(q, c)
    mask = np.array(draw(st.lists(st.booleans(), min_size=q * c, max_size=q * c)), dtype=bool).reshape(q, c)
    if draw(st.booleans()):
        ids[mask & (np.arange(c) % 3 == 0)] = -1
    if draw(st.booleans()):  # sorted like a search result
        order = np.argsort(-scores, axis=1, kind="stable")
        scores = np.take_along_axis(scores, order, 1)
        ids = np.take_along_axis(ids, order, 1)
    npos = draw(st.integers(1, 3))
    pos = np.array(draw(st.lists(st.integers(-grid, grid), min_size=q * npos, max_size=q * npos)), np.float32).reshape(q, npos) / grid
    pos[:, 1:][np.array(draw(st.lists(st.booleans(), min_size=q * (npos - 1), max_size=q * (npos - 1))), dtype=bool).reshape(q, npos - 1)] = np.nan
    range_min = draw(st.integers(0, 3))
    range_max = draw(st.one_of(st.none(), st.integers(range_min + 1, range_min + 12)))
    end = c if range_max is None else min(range_max, c)
    if end - range_min < 1:
        range_min, range_max = 0, None
        end = c
    opts = dict(
        num_negatives=draw(st.integers(1, end - range_min)),
        range_min=range_min,
        range_max=range_max,
        sampling=draw(st.sampled_from(["top", "random", "simans"])),
        seed=draw(st.integers(0, 2**64 - 1)),
    )
    for name in ("absolute_margin", "relative_margin", "max_score", "min_score"):
        if draw(st.booleans()):
            opts[name] = draw(st.sampled_from([-0.25, 0.0, 0.05, 0.1, 0.5]))
    if opts.get("min_score") is not None and opts.get("max_score") is not None and opts["min_score"] > opts["max_score"]:
        opts["min_score"], opts["max_score"] = opts["max_score"], opts["min_score"]
    if opts["sampling"] == "simans":
        opts["simans_a"] = draw(st.sampled_from([0.5, 3.0, 40.0]))
        opts["simans_b"] = draw(st.sampled_from([0.0, -0.1, 0.2]))
    return scores, ids, pos, opts


@settings(max_examples=250, deadline=None)
@given(problems(), st.integers(0, 10**6))
def test_matches_reference(problem, offset):
    scores, ids, pos, opts = problem
    want = ref.select(scores, ids, [list(r) for r in pos], query_offset=offset, **opts)
    got = hardneg.select_negatives(scores, ids, pos, query_offset=offset, **opts)
    assert_same(got, *want)


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(1, 5), st.sampled_from([1, 2, 3]))
def test_chunks_and_threads_do_not_change_the_result(problem, cut, threads):
    scores, ids, pos, opts = problem
    # Many rows so the thread split is really used.
    scores, ids, pos = (np.tile(a, (400, 1)) for a in (scores, ids, pos))
    whole = hardneg.select_negatives(scores, ids, pos, threads=threads, **opts)
    one = hardneg.select_negatives(scores, ids, pos, threads=1, **opts)
    np.testing.assert_array_equal(whole.negatives, one.negatives)
    cut = min(cut * 37, len(ids) - 1)
    a = hardneg.select_negatives(scores[:cut], ids[:cut], pos[:cut], threads=threads, **opts)
    b = hardneg.select_negatives(scores[cut:], ids[cut:], pos[cut:], query_offset=cut, threads=threads, **opts)
    np.testing.assert_array_equal(np.concatenate([a.negatives, b.negatives]), whole.negatives)
    np.testing.assert_array_equal(np.concatenate([a.scores, b.scores]), whole.scores)
    assert {k: a.stats[k] + b.stats[k] for k in STAT_NAMES} == whole.stats


@settings(max_examples=120, deadline=None)
@given(problems())
def test_properties(problem):
    scores, ids, pos, opts = problem
    got = hardneg.select_negatives(scores, ids, pos, **opts)
    pmin = np.fmin.reduce(pos, axis=1)
    for r in range(len(ids)):
        chosen = [x for x in got.negatives[r] if x != -1]
        assert len(set(chosen)) == len(chosen)
        k = len(chosen)
        assert (got.negatives[r, k:] == -1).all() and np.isnan(got.scores[r, k:]).all()
        assert (np.diff(got.scores[r, :k]) <= 0).all()  # rank order
        valid = {int(i): float(s) for i, s in zip(ids[r], scores[r]) if i != -1}
        for x, s in zip(got.negatives[r, :k], got.scores[r, :k]):
            assert valid[int(x)] == s
            if opts.get("max_score") is not None:
                assert s <= np.float32(opts["max_score"])
            if opts.get("min_score") is not None:
                assert s >= np.float32(opts["min_score"])
            if opts.get("absolute_margin") is not None:
                assert np.float32(s) + np.float32(opts["absolute_margin"]) <= pmin[r]
            if opts.get("relative_margin") is not None:
                assert s <= pmin[r] - abs(pmin[r]) * np.float32(opts["relative_margin"])
    st_ = got.stats
    removed = sum(st_[f"skipped_{k}"] for k in ("absolute_margin", "relative_margin", "max_score", "min_score"))
    assert st_["candidates"] == removed + st_["skipped_range_min"] + st_["skipped_range_max"] + st_["window"]
    assert st_["missing_negatives"] == int((got.negatives == -1).sum())
    if opts["sampling"] == "top":
        # "top" is the prefix of the window; so the first pick is the best surviving window member.
        assert st_["short_queries"] == int((got.negatives[:, -1] == -1).sum())


def test_random_is_uniform_without_replacement():
    m, n, rows = 6, 2, 30_000
    scores = np.tile(np.linspace(0.9, 0.4, m, dtype=np.float32), (rows, 1))
    ids = np.tile(np.arange(m), (rows, 1))
    got = hardneg.select_negatives(scores, ids, num_negatives=n, sampling="random", seed=11).negatives
    assert (got[:, 0] != got[:, 1]).all()
    freq = np.bincount(got.ravel(), minlength=m) / rows
    np.testing.assert_allclose(freq, n / m, atol=0.012)
    pairs = np.bincount(got[:, 0] * m + got[:, 1], minlength=m * m)
    assert np.count_nonzero(pairs) == m * (m - 1) // 2  # every unordered pair appears, in rank order
    # Another seed gives other draws; same seed the same draws.
    again = hardneg.select_negatives(scores, ids, num_negatives=n, sampling="random", seed=11).negatives
    other = hardneg.select_negatives(scores, ids, num_negatives=n, sampling="random", seed=12).negatives
    np.testing.assert_array_equal(got, again)
    assert (got != other).any()


def test_simans_follows_successive_weighted_draws():
    """Subset frequencies match the exact law of drawing without replacement with weights exp(-a (s - p - b)^2)."""
    s = np.array([0.9, 0.7, 0.55, 0.3, 0.1], np.float32)
    p, a, b, n, rows = 0.6, 8.0, -0.05, 2, 40_000
    w = np.exp(-a * (s.astype(np.float64) - np.float64(np.float32(p)) - b) ** 2)
    exact = {}
    for i, j in itertools.permutations(range(len(s)), 2):
        pr = w[i] / w.sum() * w[j] / (w.sum() - w[i])
        exact[tuple(sorted((i, j)))] = exact.get(tuple(sorted((i, j))), 0.0) + pr
    scores = np.tile(s, (rows, 1))
    ids = np.tile(np.arange(len(s)), (rows, 1))
    got = hardneg.select_negatives(scores, ids, np.full(rows, p), num_negatives=n, sampling="simans",
                                   simans_a=a, simans_b=b, seed=5).negatives
    counts = {}
    for i, j in got.tolist():
        counts[(i, j)] = counts.get((i, j), 0) + 1
    for pair, pr in exact.items():
        sd = math.sqrt(pr * (1 - pr) / rows)
        assert abs(counts.get(pair, 0) / rows - pr) < 5 * sd + 1e-4, (pair, counts.get(pair, 0) / rows, pr)


def test_simans_mode_follows_b():
    s = np.linspace(1.0, -1.0, 41, dtype=np.float32)
    rows = 2000
    scores, ids = np.tile(s, (rows, 1)), np.tile(np.arange(41), (rows, 1))
    for b in (-0.5, 0.0, 0.3):
        got = hardneg.select_negatives(scores, ids, np.full(rows, 0.2), num_negatives=1, sampling="simans",
                                       simans_a=200.0, simans_b=b)
        assert abs(float(np.median(got.scores)) - (0.2 + b)) < 0.051


def test_positive_score_layouts_agree():
    rng = np.random.default_rng(0)
    scores = rng.random((4, 10), dtype=np.float32)
    ids = np.arange(40).reshape(4, 10)
    rows = [[0.5], [0.9, 0.7], [0.6, np.nan, 0.8], [0.95]]
    padded = np.full((4, 3), np.nan, np.float32)
    for r, v in enumerate(rows):
        padded[r, : len(v)] = v
    mins = np.array([0.5, 0.7, 0.6, 0.95], np.float32)
    kw = dict(num_negatives=2, relative_margin=0.05)
    a = hardneg.select_negatives(scores, ids, rows, **kw)
    b = hardneg.select_negatives(scores, ids, padded, **kw)
    c = hardneg.select_negatives(scores, ids, mins, **kw)
    for x in (b, c):
        np.testing.assert_array_equal(a.negatives, x.negatives)


def test_stats_example_and_tuple_unpacking():
    neg, sc, stats = hardneg.select_negatives(
        np.array([[0.9, 0.5, 0.45, 0.2, 0.1]]), np.array([[1, 2, 3, 4, 5]]), [0.5],
        num_negatives=2, absolute_margin=0.02, min_score=0.15, range_min=1,
    )
    # 0.9 and 0.5 fail the margin, 0.1 fails min_score; survivors 0.45, 0.2; range_min skips 0.45.
    assert neg.tolist() == [[4, -1]]
    assert stats["skipped_absolute_margin"] == 2 and stats["skipped_min_score"] == 1
    assert stats["skipped_range_min"] == 1 and stats["short_queries"] == 1 and stats["missing_negatives"] == 1
    assert sc.dtype == np.float32 and neg.dtype == np.int64


S = np.array([[0.9, 0.8, 0.7]], np.float32)
I = np.array([[1, 2, 3]])


@pytest.mark.parametrize(
    "kwargs, exc, text",
    [
        (dict(num_negatives=4), hardneg.ParameterError, "larger than the window"),
        (dict(num_negatives=2, range_min=2, range_max=3), hardneg.ParameterError, "larger than the window"),
        (dict(num_negatives=1, range_min=3, range_max=3), hardneg.ParameterError, "range_min"),
        (dict(num_negatives=0), hardneg.ParameterError, "num_negatives"),
        (dict(num_negatives=1, sampling="hardest"), hardneg.ParameterError, "sampling"),
        (dict(num_negatives=1, sampling="simans", simans_a=0.0), hardneg.ParameterError, "simans_a"),
        (dict(num_negatives=1, min_score=0.5, max_score=0.1), hardneg.ParameterError, "min_score"),
        (dict(num_negatives=1, relative_margin=float("nan")), hardneg.ParameterError, "relative_margin"),
        (dict(num_negatives=1, absolute_margin="0.1"), hardneg.ParameterError, "absolute_margin"),
        (dict(num_negatives=1, seed=-1), hardneg.ParameterError, "seed"),
        (dict(num_negatives=1, absolute_margin=0.1), hardneg.ParameterError, "no positive"),
        (dict(num_negatives=1, sampling="simans"), hardneg.ParameterError, "no positive"),
    ],
)
def test_bad_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        hardneg.select_negatives(S, I, **kwargs)


def test_bad_arrays():
    with pytest.raises(hardneg.ShapeError):
        hardneg.select_negatives(S, I[:, :2], num_negatives=1)
    with pytest.raises(hardneg.ShapeError):
        hardneg.select_negatives(S[0], I[0], num_negatives=1)
    with pytest.raises(hardneg.DTypeError):
        hardneg.select_negatives(S, I.astype(np.float32), num_negatives=1)
    with pytest.raises(hardneg.IdOutOfRangeError, match="-1 for a masked"):
        hardneg.select_negatives(S, np.array([[1, -2, 3]]), num_negatives=1)
    with pytest.raises(hardneg.NonFiniteError):
        hardneg.select_negatives(np.array([[0.9, np.nan, 0.7]]), I, num_negatives=1)
    with pytest.raises(hardneg.NonFiniteError):
        hardneg.select_negatives(S, I, [np.inf], num_negatives=1)
    with pytest.raises(hardneg.ShapeError, match="rows"):
        hardneg.select_negatives(S, I, [0.5, 0.6], num_negatives=1)
    with pytest.raises(hardneg.DTypeError):
        hardneg.select_negatives(S, I, "0.5", num_negatives=1)
    # Errors are also the builtin types users catch.
    with pytest.raises(ValueError):
        hardneg.select_negatives(S, I, num_negatives=9)
