"""The mining engine (``_hardneg.Miner``) against the explicit-loop reference, and mining over an
index object (``hardneg.mine(index=...)``, ``hardneg mine --index``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardneg
import mining_reference as ref
from hardneg import _hardneg
from hardneg.selection import STAT_NAMES


def csr(rows):
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    ids = np.array([x for r in rows for x in r], np.int64)
    return offsets, ids


def reference(q, c, metric, pos_rows, ex_rows, mode, k, query_offset, **opts):
    """Plain mining of every query: all scores by the fma reference, positives dropped ("exclude"),
    masked after ranking ("mask") or kept ("keep"), excluded ids dropped, the k best (score desc,
    id asc), -1 padding, then the reference selection against the lowest positive score."""
    q = np.asarray(q, np.float32)
    inv = None
    if metric == "cosine":
        q = ref.normalize(q)
        inv = ref.inverse_norms(c)
    width = max([len(r) for r in pos_rows] + [0])
    out = {"ids": [], "scores": [], "pos": np.full((len(q), width), np.nan, np.float32)}
    cand_ids, cand_scores = [], []
    for r in range(len(q)):
        s = ref.fma_scores(q[r], c)
        if inv is not None:
            s = (s * inv).astype(np.float32)
        positives = {int(x) for x in pos_rows[r] if x != -1}
        dropped = {int(x) for x in ex_rows[r] if x != -1} | (positives if mode == "exclude" else set())
        ranked = sorted(((float(s[j]), j) for j in range(len(c)) if j not in dropped), key=lambda t: (-t[0], t[1]))[:k]
        ids = [-1 if (mode == "mask" and j in positives) else j for _, j in ranked] + [-1] * (k - len(ranked))
        cand_ids.append(ids)
        cand_scores.append([v for v, _ in ranked] + [np.nan] * (k - len(ranked)))
        for i, x in enumerate(pos_rows[r]):
            out["pos"][r, i] = s[int(x)] if x != -1 else np.nan
    ids, scores, stats = ref.select(np.array(cand_scores, np.float32), np.array(cand_ids, np.int64),
                                    [list(row) for row in out["pos"]], query_offset=query_offset, **opts)
    return ids, scores, out["pos"], stats, (np.array(cand_scores, np.float32), np.array(cand_ids, np.int64))


@st.composite
def engine_problems(draw):
    nq = draw(st.integers(1, 9))
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    ints = draw(st.booleans())  # small integers: many exact ties
    q = rng.integers(-2, 3, (nq, d)).astype(np.float32) if ints else rng.standard_normal((nq, d), dtype=np.float32)
    c = rng.integers(-2, 3, (n, d)).astype(np.float32) if ints else rng.standard_normal((n, d), dtype=np.float32)
    # positives with -1 padding and duplicates; exclusions up to the whole corpus (short rows)
    pos_rows = [[int(x) if x < n else -1 for x in rng.integers(0, n + 2, draw(st.integers(0, 3)))] for _ in range(nq)]
    ex_rows = [list(map(int, rng.integers(0, n, draw(st.integers(0, n + 2))))) for _ in range(nq)]
    mode = draw(st.sampled_from(["exclude", "mask", "keep"]))
    range_min = draw(st.integers(0, 2))
    range_max = range_min + draw(st.integers(1, n + 4))  # often larger than what a query has left
    opts = dict(num_negatives=draw(st.integers(1, range_max - range_min)), range_min=range_min, range_max=range_max,
                sampling=draw(st.sampled_from(["top", "random", "simans"])), seed=draw(st.integers(0, 2**64 - 1)))
    for name in ("absolute_margin", "relative_margin", "max_score", "min_score"):
        if draw(st.booleans()):
            opts[name] = draw(st.sampled_from([-0.5, 0.0, 0.05, 1.0]))
    if opts.get("min_score") is not None and opts.get("max_score") is not None and opts["min_score"] > opts["max_score"]:
        opts["min_score"], opts["max_score"] = opts["max_score"], opts["min_score"]
    needs = opts["sampling"] == "simans" or opts.get("absolute_margin") is not None or opts.get("relative_margin") is not None
    if needs:  # these rules measure from the lowest positive: every query gets one
        pos_rows = [r if any(x != -1 for x in r) else r + [int(rng.integers(0, n))] for r in pos_rows]
    candidates = draw(st.one_of(st.none(), st.integers(range_max, range_max + 3)))
    # exclude_self: query i (global index offset + i) never gets corpus row offset + i
    exclude_self = nq <= n and draw(st.booleans())
    offset = draw(st.integers(0, n - nq)) if exclude_self else draw(st.integers(0, 2**40))
    return q, c, pos_rows, ex_rows, mode, candidates, opts, exclude_self, offset


@settings(max_examples=120, deadline=None)
@given(engine_problems(), st.sampled_from(["ip", "cosine"]), st.integers(1, 9), st.sampled_from([1, 2, 3]))
def test_engine_matches_the_reference(problem, metric, chunk, threads):
    q, c, pos_rows, ex_rows, mode, candidates, opts, exclude_self, offset = problem
    k = candidates or opts["range_max"]
    ref_ex = [row + [offset + i] if exclude_self else row for i, row in enumerate(ex_rows)]
    want_ids, want_scores, want_pos, want_stats, want_cands = reference(q, c, metric, pos_rows, ref_ex, mode, k,
                                                                        offset, **opts)
    index = hardneg.FlatIndex(c, metric=metric)
    width = want_pos.shape[1]
    miner = _hardneg.Miner(index._inner, positive_width=width, candidates=candidates, positives=mode,
                           exclude_self=exclude_self, threads=threads, **opts)
    po, pi = csr(pos_rows)
    eo, ei = csr(ex_rows)
    got_ids, got_scores, got_pos = [], [], []
    totals = {name: 0 for name in STAT_NAMES}
    for a in range(0, len(q), chunk):  # offsets of a chunk index the whole id arrays, as mine() passes them
        b = min(a + chunk, len(q))
        neg, sc, pid, ps, stats = miner.mine(q[a:b], po[a : b + 1], pi, eo[a : b + 1], ei, query_offset=offset + a)
        got_ids.append(neg)
        got_scores.append(sc)
        got_pos.append(ps)
        for name in STAT_NAMES:
            totals[name] += stats[name]
        want_padded = np.full((b - a, width), -1, np.int64)
        for r, row in enumerate(pos_rows[a:b]):
            want_padded[r, : len(row)] = row
        np.testing.assert_array_equal(pid, want_padded)
    np.testing.assert_array_equal(np.concatenate(got_ids), want_ids)
    np.testing.assert_array_equal(np.concatenate(got_scores), want_scores)
    np.testing.assert_array_equal(np.concatenate(got_pos), want_pos)
    assert {k: totals[k] for k in want_stats} == want_stats
    # The candidate lists before selection: the reference's, padded with -1 / NaN, masked
    # positives -1 with their score.
    scores, ids, _, _ = miner.candidates(q, po, pi, eo, ei, query_offset=offset)
    np.testing.assert_array_equal(ids, want_cands[1])
    np.testing.assert_array_equal(scores, want_cands[0])


def test_engine_rejects_bad_arrays_with_typed_errors():
    c = np.eye(4, dtype=np.float32)
    index = hardneg.FlatIndex(c)
    miner = _hardneg.Miner(index._inner, num_negatives=1, positive_width=1, range_max=2)
    q = np.ones((2, 4), np.float32)
    ok = (np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(hardneg.ShapeError, match="positives has 1 rows but there are 2 queries"):
        miner.mine(q, np.array([0, 1]), np.array([0]))
    with pytest.raises(hardneg.ParameterError, match="non-decreasing"):
        miner.mine(q, np.array([0, 2, 1]), np.array([0, 1]))
    with pytest.raises(hardneg.IdOutOfRangeError, match="exclude for query 1 holds id 9"):
        miner.mine(q, *ok, np.array([0, 0, 1]), np.array([9]))
    with pytest.raises(hardneg.ParameterError, match="more than the width 1"):
        miner.mine(q, np.array([0, 2, 2]), np.array([0, 1]))
    with pytest.raises(hardneg.ParameterError, match="both exclude_offsets and exclude_ids"):
        miner.mine(q, *ok, np.array([0, 0, 0]))
    with pytest.raises(hardneg.ShapeError, match="dimension"):
        miner.mine(np.ones((2, 3), np.float32), *ok)
    with pytest.raises(hardneg.NonFiniteError, match="row 1"):
        miner.mine(np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32), *ok)
    with pytest.raises(hardneg.ParameterError, match="num_negatives"):
        _hardneg.Miner(index._inner, num_negatives=3, positive_width=1, range_max=2)
    with pytest.raises(hardneg.ParameterError, match="positives must be"):
        _hardneg.Miner(index._inner, num_negatives=1, positive_width=1, range_max=2, positives="drop")
    with pytest.raises(hardneg.ParameterError, match="expected a hardneg index"):
        _hardneg.Miner(c, num_negatives=1, positive_width=1, range_max=2)


# --- mine(index=...) and hardneg mine --index ------------------------------------------------

C = np.random.default_rng(7).standard_normal((300, 12), dtype=np.float32)
Q = C[:40] + 0.1 * np.random.default_rng(8).standard_normal((40, 12), dtype=np.float32)
P = np.arange(40)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_mining_an_index_equals_mining_its_corpus(metric):
    kw = dict(num_negatives=4, relative_margin=0.05, sampling="random", seed=3, progress=False)
    want = hardneg.mine(Q, C, P, metric=metric, **kw)
    index = hardneg.FlatIndex(C, metric=metric)
    for got in (hardneg.mine(Q, positives=P, index=index, **kw),  # the metric comes from the index
                hardneg.mine(Q, index, P, **kw),  # an index as the corpus argument
                hardneg.mine(Q, positives=P, index=index, metric=metric, **kw)):
        np.testing.assert_array_equal(got.negatives, want.negatives)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.positive_scores, want.positive_scores)
        assert got.params == want.params


def test_index_argument_errors(tmp_path):
    index = hardneg.FlatIndex(C)
    with pytest.raises(hardneg.ParameterError, match="exactly one"):
        hardneg.mine(Q, C, P, index=index, progress=False)
    with pytest.raises(hardneg.ParameterError, match="exactly one"):
        hardneg.mine(Q, positives=P, progress=False)
    with pytest.raises(hardneg.ParameterError, match="metric='dot' but metric='cosine'"):
        hardneg.mine(Q, positives=P, index=index, metric="cosine", progress=False)
    with pytest.raises(hardneg.ParameterError, match="index must be a hardneg index"):
        hardneg.mine(Q, positives=P, index=C, progress=False)
    with pytest.raises(hardneg.InputFileError, match="does not exist"):
        hardneg.mine(Q, positives=P, index=tmp_path / "none.idx", progress=False)
    np.save(tmp_path / "c.npy", C)
    with pytest.raises(hardneg.InputFileError, match="not a saved hardneg index"):
        hardneg.mine(Q, positives=P, index=tmp_path / "c.npy", progress=False)


def test_mine_to_disk_over_an_index(tmp_path):
    index = hardneg.FlatIndex(C, metric="cosine")
    a = hardneg.mine_to_disk(Q, None, P, tmp_path / "a", index=index, num_negatives=3, shard_size=16, progress=False)
    b = hardneg.mine(Q, C, P, num_negatives=3, progress=False)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_cli_index_option(tmp_path):
    np.save(tmp_path / "q.npy", Q)
    np.save(tmp_path / "c.npy", C)
    np.save(tmp_path / "p.npy", P)
    base = [sys.executable, "-m", "hardneg.cli", "mine", "--queries", str(tmp_path / "q.npy"), "--positives",
            str(tmp_path / "p.npy"), "--out", str(tmp_path / "out"), "--no-progress"]
    bad = subprocess.run(base + ["--index", str(tmp_path / "c.npy")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a saved hardneg index" in bad.stderr
    both = subprocess.run(base + ["--index", "x", "--corpus", "y"], capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_exclude_self_is_part_of_a_job_fingerprint(tmp_path):
    c = C[:60]
    hardneg.mine_to_disk(c, c, None, tmp_path / "j", num_negatives=3, exclude_self=True, progress=False)
    with pytest.raises(hardneg.OutputDirError, match="different mining job"):
        hardneg.mine_to_disk(c, c, None, tmp_path / "j", num_negatives=3, progress=False)
