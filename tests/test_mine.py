"""hardneg.mine against a brute-force reference (explicit fma dot products, explicit loops)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardneg
import mining_reference as ref
from hardneg.mining import default_range_max
from hardneg.selection import STAT_NAMES


def padded(rows, fill=-1):
    width = max(1, max(len(r) for r in rows))
    out = np.full((len(rows), width), fill, np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@st.composite
def mining_problems(draw):
    nq = draw(st.integers(1, 7))
    n = draw(st.integers(3, 60))
    d = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    ints = draw(st.booleans())  # integer embeddings: many exact ties
    q = rng.integers(-3, 4, (nq, d)).astype(np.float32) if ints else rng.standard_normal((nq, d), dtype=np.float32)
    c = rng.integers(-3, 4, (n, d)).astype(np.float32) if ints else rng.standard_normal((n, d), dtype=np.float32)
    pos_rows = [list(rng.choice(n, size=draw(st.integers(1, 3)), replace=False)) for _ in range(nq)]
    layout = draw(st.sampled_from(["list", "padded", "1d"]))
    if layout == "1d":
        pos_rows = [r[:1] for r in pos_rows]
        positives = np.array([r[0] for r in pos_rows])
    elif layout == "padded":
        positives = padded(pos_rows)
    else:
        positives = [list(map(int, r)) for r in pos_rows]
    exclude = None
    if draw(st.booleans()):
        exclude = [list(map(int, rng.choice(n, size=draw(st.integers(0, min(4, n - 3))), replace=False))) for _ in range(nq)]
    npos = max(len(r) for r in pos_rows)
    opts = dict(metric=draw(st.sampled_from(["ip", "cosine"])), range_min=draw(st.integers(0, 2)),
                sampling=draw(st.sampled_from(["top", "random", "simans"])), seed=draw(st.integers(0, 2**64 - 1)))
    for name in ("absolute_margin", "relative_margin", "max_score", "min_score"):
        if draw(st.booleans()):
            opts[name] = draw(st.sampled_from([-0.5, 0.0, 0.05, 0.3, 2.0]))
    if opts.get("min_score") is not None and opts.get("max_score") is not None and opts["min_score"] > opts["max_score"]:
        opts["min_score"], opts["max_score"] = opts["max_score"], opts["min_score"]
    if draw(st.booleans()):
        opts["range_max"] = draw(st.integers(opts["range_min"] + 1, opts["range_min"] + 70))
    window = opts.get("range_max", 10**9) - opts["range_min"]
    opts["num_negatives"] = draw(st.integers(1, max(1, min(window, 6))))
    if opts["sampling"] == "simans":
        opts["simans_a"] = draw(st.sampled_from([0.5, 5.0]))
    del npos
    return q, c, positives, pos_rows, exclude, opts


@pytest.mark.filterwarnings("ignore:relative_margin=2 keeps only")
@settings(max_examples=150, deadline=None)
@given(mining_problems(), st.sampled_from([None, 1, 2, 5]), st.sampled_from([1, 2]))
def test_mine_matches_brute_force(problem, chunk_size, threads):
    q, c, positives, pos_rows, exclude, opts = problem
    try:
        got = hardneg.mine(q, c, positives, exclude=exclude, chunk_size=chunk_size, threads=threads, progress=False, **opts)
    except hardneg.ParameterError as e:  # only when no query could get num_negatives candidates
        assert "cannot be found" in str(e)
        excluded = [set(map(int, pos_rows[r])) | set(exclude[r] if exclude else []) for r in range(len(q))]
        most = len(c) - min(map(len, excluded))
        filtered = any(k in opts for k in ("absolute_margin", "relative_margin", "max_score"))
        range_max = opts.get("range_max") or default_range_max(opts["range_min"], opts["num_negatives"],
                                                               max(len(set(map(int, r))) for r in pos_rows), filtered)
        assert opts["num_negatives"] > min(range_max, most) - opts["range_min"]
        return
    r_opts = {k: v for k, v in opts.items()}
    want_ids, want_scores, want_pos, want_stats = ref.mine(q, c, pos_rows, exclude=exclude, **r_opts)
    np.testing.assert_array_equal(got.negatives, want_ids)
    np.testing.assert_array_equal(got.scores, want_scores)
    for r, row in enumerate(want_pos):
        np.testing.assert_array_equal(got.positive_scores[r, : len(row)], np.array(row, np.float32))
    for k, v in want_stats.items():
        assert got.stats[k] == v, k
    # Properties: never a positive or an excluded id, no duplicates, padding only at the end.
    for r in range(len(q)):
        chosen = [int(x) for x in got.negatives[r] if x != -1]
        assert len(chosen) == len(set(chosen))
        assert not set(chosen) & set(map(int, pos_rows[r]))
        if exclude is not None:
            assert not set(chosen) & set(exclude[r])
        assert (got.negatives[r, len(chosen):] == -1).all()


def test_chunks_threads_and_layouts_give_identical_output():
    rng = np.random.default_rng(3)
    c = rng.standard_normal((3000, 24), dtype=np.float32)
    q = c[:300] + 0.3 * rng.standard_normal((300, 24), dtype=np.float32)
    pos = np.arange(300)
    kw = dict(num_negatives=5, relative_margin=0.02, sampling="random", seed=9, range_min=2, progress=False)
    base = hardneg.mine(q, c, pos, **kw)
    for chunk_size, threads in [(1, 1), (7, 2), (64, 2), (10_000, 1)]:
        other = hardneg.mine(q, c, [[int(p)] for p in pos], chunk_size=chunk_size, threads=threads, **kw)
        np.testing.assert_array_equal(base.negatives, other.negatives)
        np.testing.assert_array_equal(base.scores, other.scores)
        np.testing.assert_array_equal(base.positive_scores, other.positive_scores)
        assert {k: base.stats[k] for k in STAT_NAMES} == {k: other.stats[k] for k in STAT_NAMES}
    assert (base.negatives != -1).sum() > 1000  # the job found negatives at all


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_positive_scores_equal_the_search_scores_bit_for_bit(metric):
    rng = np.random.default_rng(5)
    c = rng.standard_normal((700, 33), dtype=np.float32) * 3
    q = rng.standard_normal((40, 33), dtype=np.float32)
    pos = rng.integers(0, 700, 40)
    mined = hardneg.mine(q, c, pos, num_negatives=2, metric=metric, progress=False)
    scores, ids = hardneg.topk(q, c, k=700, metric=metric)
    for r in range(40):
        assert mined.positive_scores[r, 0] == scores[r][ids[r] == pos[r]][0]


def test_memmapped_inputs_and_npy_paths(tmp_path):
    rng = np.random.default_rng(1)
    c = rng.standard_normal((2000, 16), dtype=np.float32)
    q = rng.standard_normal((50, 16), dtype=np.float32)
    np.save(tmp_path / "c.npy", c)
    np.save(tmp_path / "q.npy", q)
    pos = rng.integers(0, 2000, (50, 2))
    pos[::3, 1] = -1
    kw = dict(num_negatives=4, metric="ip", sampling="simans", relative_margin=0.1, progress=False)
    want = hardneg.mine(q, c, pos, **kw)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    via_paths = hardneg.mine(str(tmp_path / "q.npy"), tmp_path / "c.npy", pos, **kw)
    via_memmap = hardneg.mine(np.load(tmp_path / "q.npy", mmap_mode="r"), mm, pos, **kw)
    index = hardneg.FlatIndex(mm)
    assert np.shares_memory(index.vectors, mm)  # the memory-mapped corpus is borrowed, not copied
    assert np.shares_memory(hardneg.FlatIndex(mm, metric="cosine").vectors, mm)  # cosine too
    via_index = hardneg.mine(q, index, pos, **kw)
    for other in (via_paths, via_memmap, via_index):
        np.testing.assert_array_equal(want.negatives, other.negatives)
        np.testing.assert_array_equal(want.scores, other.scores)


def test_small_corpus_pool_holds_everything_not_excluded():
    # range_max larger than what some queries can get: those get every non-excluded row.
    c = np.eye(6, dtype=np.float32)
    q = np.ones((3, 6), np.float32)
    got = hardneg.mine(q, c, [[0], [0, 1, 2], [5]], num_negatives=3, range_max=5, metric="ip", progress=False,
                       exclude=[[], [3], [4]])
    assert got.negatives.tolist() == [[1, 2, 3], [4, 5, -1], [0, 1, 2]]
    assert got.stats["candidates"] == 5 + 2 + 4
    assert got.stats["short_queries"] == 1


def test_arrow_pandas_and_summary():
    rng = np.random.default_rng(2)
    c = rng.standard_normal((300, 8), dtype=np.float32)
    q = c[:10] + 0.01
    mined = hardneg.mine(q, c, np.arange(10), num_negatives=3, max_score=0.95, progress=False)
    table = mined.to_arrow()
    assert table.column_names == ["query", "negatives", "scores", "positives", "positive_scores"]
    assert table.num_rows == 10
    np.testing.assert_array_equal(np.array(table["negatives"].to_pylist()), mined.negatives)
    np.testing.assert_array_equal(np.array(table["scores"].to_pylist(), np.float32), mined.scores)
    df = mined.to_pandas()
    assert list(df["query"]) == list(range(10))
    np.testing.assert_array_equal(np.stack(df["positives"].to_numpy()), mined.positives)
    text = mined.summary()
    assert "Positive" in text and "max_score=0.95" in text
    dist = mined.stats["score_distribution"]
    assert dist["positive"]["count"] == 10
    assert dist["negative"]["count"] == int((mined.negatives != -1).sum())
    assert dist["negative"]["max"] <= 0.95
    np.testing.assert_allclose(dist["positive"]["mean"], mined.positive_scores.mean(), rtol=1e-5)


def test_progress_callback():
    calls = []
    rng = np.random.default_rng(2)
    c = rng.standard_normal((100, 4), dtype=np.float32)
    hardneg.mine(c[:25], c, np.arange(25), num_negatives=2, chunk_size=10, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(10, 25), (20, 25), (25, 25)]


def test_default_range_max_follows_sentence_transformers():
    c = np.random.default_rng(0).standard_normal((500, 4), dtype=np.float32)
    assert hardneg.mine(c[:3], c, [[0], [1, 2], [3]], num_negatives=3, progress=False).params["range_max"] == 3 + 2
    m = hardneg.mine(c[:3], c, [[0], [1, 2], [3]], num_negatives=3, range_min=4, absolute_margin=0.0, progress=False)
    assert m.params["range_max"] == 4 + 30 + 2
    # min_score alone does not widen the pool (sentence-transformers does the same).
    assert hardneg.mine(c[:3], c, [0, 1, 2], num_negatives=3, min_score=0.0, progress=False).params["range_max"] == 4


# --- bad input -------------------------------------------------------------------------------

C = np.random.default_rng(0).standard_normal((50, 4), dtype=np.float32)
Q = C[:5].copy()
P = np.arange(5)


@pytest.mark.parametrize(
    "args, kwargs, exc, text",
    [
        ((Q, C, np.array([0, 1, 2, 3, 50])), {}, hardneg.IdOutOfRangeError, "query 4 holds id 50"),
        ((Q, C, [[0], [1], [-3], [3], [4]]), {}, hardneg.IdOutOfRangeError, "query 2"),
        ((Q, C, P), dict(exclude=[[], [], [], [], [99]]), hardneg.IdOutOfRangeError, "exclude"),
        ((Q, C, [[0], [1], [], [3], [4]]), dict(relative_margin=0.05), hardneg.ParameterError, "query 2 has no positive"),
        ((Q, C, [[0], [1], [-1], [3], [4]]), dict(sampling="simans"), hardneg.ParameterError, "query 2 has no positive"),
        ((Q, C, P), dict(num_negatives=5, range_max=4), hardneg.ParameterError, "larger than the window"),
        ((Q, C, P), dict(range_min=6, range_max=6), hardneg.ParameterError, "range_min"),
        ((Q, C, P), dict(sampling="hard"), hardneg.ParameterError, "sampling"),
        ((Q, C, P), dict(metric="l2"), hardneg.ParameterError, "metric"),
        ((Q, C[:, :3], P), {}, hardneg.ShapeError, "dimension"),
        ((Q[:, :, None], C, P), {}, hardneg.ShapeError, "2-D"),
        ((Q, C, P[:4]), {}, hardneg.ShapeError, "rows"),
        ((Q, C, P.astype(float)), {}, hardneg.DTypeError, "integer"),
        ((Q, C, P), dict(num_negatives=0), hardneg.ParameterError, "num_negatives"),
        ((Q, C, P), dict(chunk_size=0), hardneg.ParameterError, "chunk_size"),
        ((Q, hardneg.FlatIndex(C), P), dict(metric="cosine"), hardneg.ParameterError, "metric"),
    ],
)
def test_bad_input(args, kwargs, exc, text):
    with pytest.raises(exc, match=text):
        hardneg.mine(*args, progress=False, **kwargs)


def test_non_finite_embeddings():
    bad_q = Q.copy()
    bad_q[3, 1] = np.nan
    with pytest.raises(hardneg.NonFiniteError, match="row 3"):
        hardneg.mine(bad_q, C, P, chunk_size=2, progress=False)
    bad_c = C.copy()
    bad_c[17, 0] = np.inf
    for metric in ("ip", "cosine"):
        with pytest.raises(hardneg.NonFiniteError, match="row 17"):
            hardneg.mine(Q, bad_c, P, metric=metric, progress=False)


def test_missing_and_malformed_npy(tmp_path):
    with pytest.raises(hardneg.InputFileError, match="does not exist"):
        hardneg.mine(tmp_path / "nope.npy", C, P)
    (tmp_path / "bad.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(hardneg.InputFileError, match="not a readable"):
        hardneg.mine(Q, tmp_path / "bad.npy", P)
    np.save(tmp_path / "trunc.npy", C)
    data = (tmp_path / "trunc.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(hardneg.InputFileError):
        hardneg.mine(Q, tmp_path / "trunc.npy", P)
    np.savez(tmp_path / "arch.npz", c=C)
    with pytest.raises(hardneg.InputFileError):
        hardneg.mine(Q, tmp_path / "arch.npz", P)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(hardneg.InputFileError):
        hardneg.mine(Q, tmp_path / "obj.npy", P)
    with pytest.raises(ValueError):  # also a builtin
        hardneg.mine(tmp_path / "nope.npy", C, P)


def test_queries_without_positive_are_fine_when_no_rule_needs_one():
    rng = np.random.default_rng(4)
    c = rng.standard_normal((200, 8), dtype=np.float32)
    got = hardneg.mine(c[:3], c, [[0], [], [-1]], num_negatives=3, max_score=0.99, progress=False)
    assert (got.negatives != -1).all()
    assert got.negatives[0].tolist() != [0] and np.isnan(got.positive_scores[1:]).all()
    assert got.stats["score_distribution"]["positive"]["count"] == 1
    # Query 1 and 2 have no positive to exclude: their own row (score 1) is removed by max_score only.
    assert got.stats["skipped_max_score"] == 2


def test_exclude_layouts_agree():
    rng = np.random.default_rng(6)
    c = rng.standard_normal((300, 8), dtype=np.float32)
    q = c[:20] + 0.05
    ex_lists = [list(map(int, rng.choice(300, size=i % 4, replace=False))) for i in range(20)]
    a = hardneg.mine(q, c, np.arange(20), exclude=ex_lists, num_negatives=5, progress=False)
    b = hardneg.mine(q, c, np.arange(20), exclude=padded(ex_lists), num_negatives=5, progress=False)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    for r, row in enumerate(ex_lists):
        assert not set(a.negatives[r].tolist()) & set(row)
    unexcluded = hardneg.mine(q, c, np.arange(20), num_negatives=5, progress=False)
    assert (a.negatives != unexcluded.negatives).any()  # the exclusions changed something


def test_memory_is_bounded_by_the_chunks_not_by_q_times_n(tmp_path):
    """20,000 x 20,000 queries x corpus: a score matrix would be 1.6 GB; the job stays far below."""
    import subprocess
    import sys

    script = f"""
import resource, numpy as np, hardneg
rng = np.random.default_rng(0)
c = rng.standard_normal((20_000, 8), dtype=np.float32)
np.save({str(tmp_path / 'c.npy')!r}, c)
pos = rng.integers(0, 20_000, 20_000)
q = c[pos] + 0.1 * rng.standard_normal((20_000, 8), dtype=np.float32)
hardneg.mine(q[:10], {str(tmp_path / 'c.npy')!r}, pos[:10], num_negatives=2, progress=False)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = hardneg.mine(q, {str(tmp_path / 'c.npy')!r}, pos, num_negatives=8, relative_margin=0.05, chunk_size=1024,
                 progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert (m.negatives != -1).sum() > 100_000
print((after - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    grew_mb = int(out.stdout.strip())
    assert grew_mb < 120, f"peak RSS grew by {grew_mb} MB"


def test_one_query_excluding_very_many_ids():
    rng = np.random.default_rng(8)
    c = rng.standard_normal((3000, 8), dtype=np.float32)
    ex = [[] for _ in range(50)]
    ex[7] = list(range(0, 3000, 2)) + [1, 3]  # half the corpus and more
    got = hardneg.mine(c[:50], c, np.arange(50), exclude=ex, num_negatives=6, metric="ip", progress=False)
    want_ids, _, _, _ = ref.mine(c[:50], c, [[i] for i in range(50)], exclude=ex, num_negatives=6, metric="ip")
    np.testing.assert_array_equal(got.negatives, want_ids)
    assert all(x % 2 == 1 and x > 3 for x in got.negatives[7])


# --- seams between mining and its users -------------------------------------------------------


def test_torch_tensors_are_accepted_like_numpy_and_other_devices_are_refused():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    c = rng.standard_normal((300, 12), dtype=np.float32)
    q = c[:20] + 0.1 * rng.standard_normal((20, 12), dtype=np.float32)
    want = hardneg.mine(q, c, np.arange(20), num_negatives=4, relative_margin=0.05, progress=False)
    tq, tc = torch.from_numpy(q).requires_grad_(), torch.from_numpy(c)
    for args in ((tq, tc, torch.arange(20)), (tq, c, np.arange(20)), (q, tc, torch.arange(20)[:, None])):
        got = hardneg.mine(*args, num_negatives=4, relative_margin=0.05, progress=False)
        np.testing.assert_array_equal(got.negatives, want.negatives)
        np.testing.assert_array_equal(got.scores, want.scores)
    bf = hardneg.mine(tq.bfloat16(), tc.bfloat16(), np.arange(20), num_negatives=4, progress=False)
    assert bf.negatives.shape == (20, 4)
    meta = torch.empty((20, 12), device="meta")
    with pytest.raises(hardneg.DeviceError, match=r"queries is a torch tensor a meta tensor.*queries\.cpu\(\)"):
        hardneg.mine(meta, c, np.arange(20), progress=False)
    with pytest.raises(hardneg.DeviceError, match="corpus"):
        hardneg.mine(q, torch.empty((300, 12), device="meta"), np.arange(20), progress=False)
    with pytest.raises(hardneg.DeviceError, match="positives"):
        hardneg.mine(q, c, torch.empty(20, dtype=torch.long, device="meta"), progress=False)
    for fn in (lambda x: hardneg.topk(x, c, k=2), lambda x: hardneg.FlatIndex(x), lambda x: hardneg.cluster(x, n_clusters=2),
               lambda x: hardneg.select_negatives(x, np.zeros((20, 12), np.int64))):
        with pytest.raises(hardneg.DeviceError, match="meta tensor"):
            fn(meta)


def test_num_negatives_beyond_the_corpus_is_an_error_with_the_numbers():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((5000, 8), dtype=np.float32)
    with pytest.raises(hardneg.ParameterError, match=r"num_negatives=1,000,000 cannot be found: the corpus has 5,000 rows.*"
                                                     r"at most 4,999 candidates.*lower num_negatives to at most 4,999"):
        hardneg.mine(c[:100], c, np.arange(100), num_negatives=1_000_000, progress=False)
    with pytest.raises(hardneg.ParameterError, match="at most 4,989"):
        hardneg.mine(c[:100], c, np.arange(100), num_negatives=4990, range_min=10, range_max=6000, progress=False)
    # the most any query can get is allowed; queries with more exclusions come out short, as before
    got = hardneg.mine(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32), [[0], [1, 2], [2], [3]],
                       num_negatives=3, progress=False)
    assert (got.negatives != -1).sum(axis=1).tolist() == [3, 2, 3, 3]


def test_exclude_self_mines_a_corpus_against_itself():
    rng = np.random.default_rng(4)
    c = rng.standard_normal((400, 16), dtype=np.float32)
    pos = rng.integers(0, 400, 400)
    by_hand = hardneg.mine(c, c, pos, num_negatives=5, exclude=[[i] for i in range(400)], progress=False)
    got = hardneg.mine(c, c, pos, num_negatives=5, exclude_self=True, progress=False)
    np.testing.assert_array_equal(got.negatives, by_hand.negatives)
    assert not (got.negatives == np.arange(400)[:, None]).any()
    plain = hardneg.mine(c, c, pos, num_negatives=5, progress=False)
    assert (plain.negatives[:, 0] == np.arange(400)).mean() > 0.9  # without it a row is its own hardest negative
    none = hardneg.mine(c, c, None, num_negatives=5, exclude_self=True, progress=False)  # no positives at all
    assert none.positives.shape == (400, 0) and not (none.negatives == np.arange(400)[:, None]).any()
    with pytest.raises(hardneg.ParameterError, match="exclude_self=True.*401 queries for 400 corpus rows"):
        hardneg.mine(np.vstack([c, c[:1]]), c, None, exclude_self=True, progress=False)
    with pytest.raises(hardneg.ParameterError, match="exclude_self must be True or False"):
        hardneg.mine(c, c, None, exclude_self="yes", progress=False)


def test_one_vocabulary_for_similarities_with_ip_as_an_alias():
    rng = np.random.default_rng(6)
    c = rng.standard_normal((200, 8), dtype=np.float32)
    a = hardneg.mine(c[:10], c, np.arange(10), num_negatives=3, metric="dot", progress=False)
    b = hardneg.mine(c[:10], c, np.arange(10), num_negatives=3, metric="ip", progress=False)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    assert a.params["metric"] == b.params["metric"] == "dot"
    assert hardneg.FlatIndex(c, metric="ip").metric == hardneg.FlatIndex(c).metric == "dot"
    hardneg.mine(c[:10], hardneg.FlatIndex(c, metric="ip"), np.arange(10), metric="dot", progress=False)
    with pytest.raises(hardneg.ParameterError, match="'cosine' or 'dot'"):
        hardneg.FlatIndex(c, metric="euclidean")


def test_relative_margin_above_one_warns_with_the_likely_value():
    rng = np.random.default_rng(7)
    c = rng.standard_normal((200, 8), dtype=np.float32)
    with pytest.warns(UserWarning, match=r"did you mean relative_margin=0\.05 \(5 %\)") as rec:
        got = hardneg.mine(c[:10], c, np.arange(10), num_negatives=3, relative_margin=5, progress=False)
    assert rec[0].filename == __file__  # points at the caller's line
    assert got.stats["empty_queries"] == 10  # what the warning is about
    with pytest.warns(UserWarning, match=r"relative_margin=0\.1 "):
        hardneg.select_negatives(np.ones((1, 3), np.float32), np.arange(3)[None], [2.0], num_negatives=1, relative_margin=10)


def test_repr_is_short_with_shape_parameters_and_counts():
    rng = np.random.default_rng(8)
    c = rng.standard_normal((2000, 8), dtype=np.float32)
    m = hardneg.mine(c[:500], c, np.arange(500), num_negatives=8, relative_margin=0.05, progress=False)
    text = repr(m)
    assert len(text) < 300 and "\n" not in text
    assert text.startswith("Mined(queries=500, num_negatives=8, found=4,000 of 4,000, short_queries=0, empty_queries=0")
    assert "relative_margin=0.05" in text and "range_max=81" in text and "array" not in text


def test_text_where_embeddings_are_expected_points_to_the_embedding_step():
    texts = np.array(["cats", "dogs", "birds"])
    for call in (lambda: hardneg.mine(texts, C, [0, 1, 2], progress=False), lambda: hardneg.mine(Q, list(texts), P),
                 lambda: hardneg.topk(["a", "b"], C, k=1), lambda: hardneg.FlatIndex(texts.astype(object))):
        with pytest.raises(hardneg.DTypeError, match=r"holds text \(dtype .*model\.encode.*mine_hard_negatives"):
            call()
