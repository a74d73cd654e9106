"""FlatIndex / topk against numpy references, FAISS, and across threads, chunks and kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hardneg
from hardneg import _hardneg
from reference import assert_valid_topk, ref_topk

N = 997  # prime: not a multiple of the 64-row block, the 6-query group or any chunk


def int_data(rng, rows, d, lo=-3, hi=3):
    """Small integers: every dot product is exact in float32, so results must match exactly, ties included."""
    return rng.integers(lo, hi + 1, size=(rows, d)).astype(np.float32)


@pytest.mark.parametrize("d", [1, 3, 17, 64, 384, 768])
@pytest.mark.parametrize("nq", [1, 2, 15, 64, 1000])
def test_exact_parity_with_numpy_reference(rng, d, nq):
    corpus = int_data(rng, N, d)
    queries = int_data(rng, nq, d)
    index = hardneg.FlatIndex(corpus)
    for k in (1, 10, 100, N):
        scores, ids = index.search(queries, k)
        want_s, want_i = ref_topk(queries, corpus, k)
        np.testing.assert_array_equal(ids, want_i)
        np.testing.assert_array_equal(scores, want_s.astype(np.float32))


@pytest.mark.parametrize("d", [3, 64, 384])
@pytest.mark.parametrize("nq", [1, 15, 64])
def test_float_data_is_a_correct_topk(rng, d, nq):
    corpus = rng.standard_normal((N, d), dtype=np.float32)
    queries = rng.standard_normal((nq, d), dtype=np.float32)
    for k in (1, 10, 100):
        scores, ids = hardneg.topk(queries, corpus, k)
        assert_valid_topk(scores, ids, queries, corpus, k)


def test_duplicate_rows_tie_break_by_lower_id(rng):
    base = int_data(rng, 50, 8)
    corpus = np.concatenate([base, base, base])  # rows i, i+50, i+100 are identical
    queries = int_data(rng, 20, 8)
    scores, ids = hardneg.topk(queries, corpus, 30)
    want_s, want_i = ref_topk(queries, corpus, 30)
    np.testing.assert_array_equal(ids, want_i)
    same = np.ones((1, 8), np.float32).repeat(200, 0)
    _, ids = hardneg.topk(np.ones((3, 8), np.float32), same, 7)
    assert ids.tolist() == [list(range(7))] * 3


@pytest.mark.parametrize("form", ["lists", "padded"])
def test_exclusions_never_returned_and_rows_stay_full(rng, form):
    corpus = int_data(rng, N, 16)
    queries = int_data(rng, 40, 16)
    rows = [rng.choice(N, size=rng.integers(0, 30), replace=False).tolist() for _ in range(40)]
    rows[3] = rows[3] + rows[3]  # duplicates in a row are fine
    if form == "padded":
        width = max(len(r) for r in rows)
        exclude = np.full((40, width), -1, np.int64)
        for i, r in enumerate(rows):
            exclude[i, : len(r)] = r
    else:
        exclude = rows
    # the best candidates of each query are excluded, so excluded ids would be returned otherwise
    _, best = ref_topk(queries, corpus, 5)
    for i in range(40):
        rows[i] = rows[i] + best[i].tolist()
        if form == "padded":
            exclude = np.full((40, max(len(r) for r in rows)), -1, np.int64)
    if form == "padded":
        for i, r in enumerate(rows):
            exclude[i, : len(r)] = r
    else:
        exclude = rows
    k = 60
    scores, ids = hardneg.topk(queries, corpus, k, exclude=exclude)
    want_s, want_i = ref_topk(queries, corpus, k, exclude=rows)
    np.testing.assert_array_equal(ids, want_i)
    for i in range(40):
        assert not set(ids[i].tolist()) & set(rows[i])


def test_k_equal_to_what_exclusions_leave(rng):
    corpus = int_data(rng, 30, 4)
    q = int_data(rng, 2, 4)
    scores, ids = hardneg.topk(q, corpus, 25, exclude=[[0, 1, 2, 3, 4], [29]])
    assert sorted(ids[0].tolist()) == list(range(5, 30))
    with pytest.raises(hardneg.ParameterError, match="query 0 can get only 25"):
        hardneg.topk(q, corpus, 26, exclude=[[0, 1, 2, 3, 4], [29]])


def test_cosine_matches_normalised_reference(rng):
    corpus = rng.standard_normal((N, 32), dtype=np.float32) * rng.uniform(0.1, 10, (N, 1)).astype(np.float32)
    corpus[5] = 0  # a zero row scores 0 against everything
    queries = rng.standard_normal((33, 32), dtype=np.float32) * 7
    index = hardneg.FlatIndex(corpus, metric="cosine")
    assert index.metric == "cosine" and np.shares_memory(index.vectors, corpus)
    scores, ids = index.search(queries, 50)
    assert_valid_topk(scores, ids, queries, corpus, 50, metric="cosine")
    assert np.all(scores <= 1.0 + 1e-5)
    # scale invariance: multiplying queries does not change the ranking
    s2, i2 = index.search(queries * 3, 50)
    np.testing.assert_array_equal(i2, ids)
    np.testing.assert_allclose(index.score(queries, ids), scores, rtol=0, atol=0)
    full = index.score(queries, np.full((33, 1), 5))
    np.testing.assert_array_equal(full, 0)


def test_memmap_corpus_is_borrowed_not_copied(tmp_path, rng):
    corpus = rng.standard_normal((N, 24), dtype=np.float32)
    path = tmp_path / "corpus.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=corpus.shape)
    mm[:] = corpus
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=corpus.shape)
    index = hardneg.FlatIndex(ro)
    assert np.shares_memory(index.vectors, ro)
    q = rng.standard_normal((9, 24), dtype=np.float32)
    a = index.search(q, 17)
    b = hardneg.topk(q, corpus, 17)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.save(tmp_path / "c.npy", corpus)
    loaded = np.load(tmp_path / "c.npy", mmap_mode="r")
    c = hardneg.topk(q, loaded, 17)
    np.testing.assert_array_equal(c[1], b[1])


def test_other_dtypes_and_layouts_are_converted(rng):
    corpus = int_data(rng, 200, 12)
    q = int_data(rng, 7, 12)
    want = hardneg.topk(q, corpus, 9)
    for c2, q2 in [
        (corpus.astype(np.float64), q.astype(np.float16)),
        (np.asfortranarray(corpus), q[:, ::1].copy(order="F")),
        (np.repeat(corpus, 2, axis=1)[:, ::2], q.astype(np.int32)),
        (corpus.tolist(), q.tolist()),
    ]:
        got = hardneg.topk(q2, c2, 9)
        np.testing.assert_array_equal(got[1], want[1])


def test_threads_chunks_and_kernels_give_identical_output(rng):
    corpus = rng.standard_normal((5000, 48), dtype=np.float32)
    q = rng.standard_normal((77, 48), dtype=np.float32)
    index = hardneg.FlatIndex(corpus)
    want = index.search(q, 25, threads=1)
    for threads in (2, 3):
        got = index.search(q, 25, threads=threads)
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    inner = _hardneg.FlatIndex(corpus)
    for isa in _hardneg.available_isas():
        for chunk, kc in ((64, None), (640, 7), (4096, 1), (128, 48)):
            s, i = inner.search(q, 25, kernel=isa, chunk_rows=chunk, dim_slice=kc, threads=2)
            assert s.tobytes() == want[0].tobytes() and i.tobytes() == want[1].tobytes(), (isa, chunk, kc)
    # one query at a time (the streaming path) gives the same rows as the batch
    for r in (0, 40, 76):
        s, i = index.search(q[r : r + 1], 25)
        assert s.tobytes() == want[0][r : r + 1].tobytes() and i.tobytes() == want[1][r : r + 1].tobytes()


def test_agrees_with_faiss(rng):
    faiss = pytest.importorskip("faiss")
    corpus = rng.standard_normal((3000, 64), dtype=np.float32)
    q = rng.standard_normal((50, 64), dtype=np.float32)
    fi = faiss.IndexFlatIP(64)
    fi.add(corpus)
    fs, fids = fi.search(q, 20)
    s, ids = hardneg.topk(q, corpus, 20)
    np.testing.assert_allclose(s, fs, rtol=1e-5, atol=1e-5)
    assert (ids == fids).mean() > 0.99  # near-ties may swap under different summation orders


@given(
    nq=st.integers(1, 20),
    n=st.integers(1, 300),
    d=st.integers(1, 40),
    data=st.data(),
)
def test_property_exact_on_integer_data(nq, n, d, data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    spread = data.draw(st.sampled_from([1, 3, 100]))  # spread 1: many ties
    corpus = int_data(rng, n, d, -spread, spread)
    queries = int_data(rng, nq, d, -spread, spread)
    nex = data.draw(st.integers(0, max(0, n - 1)))
    exclude = [rng.choice(n, size=rng.integers(0, nex + 1), replace=False).tolist() for _ in range(nq)]
    avail = n - max(len(e) for e in exclude)
    k = data.draw(st.integers(1, avail))
    threads = data.draw(st.sampled_from([None, 1, 2]))
    scores, ids = hardneg.topk(queries, corpus, k, exclude=exclude, threads=threads)
    want_s, want_i = ref_topk(queries, corpus, k, exclude=exclude)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(scores, want_s.astype(np.float32))


@given(nq=st.integers(1, 8), n=st.integers(1, 200), d=st.integers(1, 70), k=st.integers(1, 200), seed=st.integers(0, 10**6))
def test_property_float_data(nq, n, d, k, seed):
    rng = np.random.default_rng(seed)
    k = min(k, n)
    corpus = rng.standard_normal((n, d), dtype=np.float32)
    queries = rng.standard_normal((nq, d), dtype=np.float32)
    metric = "cosine" if seed % 2 else "ip"
    scores, ids = hardneg.topk(queries, corpus, k, metric=metric)
    assert_valid_topk(scores, ids, queries, corpus, k, metric=metric)
