"""HnswIndex: recall against FlatIndex on real and random embeddings, FlatIndex's output semantics
(exclusions, padding, exact scores), files, threads, and bad input."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hardneg
from gil import ticks_while
from reference import ref_scores, ref_topk


def tie_recall(got_scores, got_ids, want_scores):
    """Fraction of the exact top-k found, counting ties at the k-th score as hits."""
    kth = want_scores[:, -1:]
    return float(((got_ids >= 0) & (got_scores >= kth)).sum() / want_scores.size)


def unit_rows(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng, n, d, centres=50, spread=0.35):
    """Unit rows around random centres: closer to real embeddings than isotropic noise."""
    c = rng.standard_normal((centres, d))
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d))
    return unit_rows(x)


@pytest.fixture
def minilm_texts(minilm_stdlib):
    return minilm_stdlib  # tests/conftest.py: embedded once per run, shared with test_amx.py


def test_recall_on_real_minilm_embeddings_at_default_settings(minilm_texts):
    corpus, queries = minilm_texts
    assert corpus.shape[1] == 384 and corpus.shape[0] > 1500
    index = hardneg.HnswIndex(corpus, progress=False)
    flat = hardneg.FlatIndex(corpus)
    for k in (10, 100):
        s, i = index.search(queries, k)
        fs, fi = flat.search(queries, k)
        assert tie_recall(s, i, fs) >= 0.99, k
        # rescored scores are FlatIndex's, bit for bit
        np.testing.assert_array_equal(s, flat.score(queries, i))
    assert index.recall(k=10, sample=500) >= 0.99
    assert index.recall(k=10, queries=queries) >= 0.99


def test_recall_on_random_data_at_default_settings(rng):
    corpus = rng.standard_normal((6000, 48)).astype(np.float32)
    queries = rng.standard_normal((300, 48)).astype(np.float32)
    index = hardneg.HnswIndex(corpus, metric="cosine", progress=False)
    s, i = index.search(queries, 10)
    fs, _ = hardneg.FlatIndex(corpus, metric="cosine").search(queries, 10)
    assert tie_recall(s, i, fs) >= 0.95
    assert index.orphans["remaining"] == 0


@pytest.mark.parametrize("storage", ["float32", "bfloat16", "int8"])
def test_exclusions_never_returned_and_rows_stay_full(rng, storage):
    corpus = clustered(rng, 3000, 32)
    queries = corpus[:60] + 0.05 * rng.standard_normal((60, 32)).astype(np.float32)
    # each query excludes its 25 exact nearest rows (and some random ones), as mining excludes positives
    _, near = ref_topk(queries, corpus, 25)
    exclude = [list(near[j]) + list(rng.choice(3000, 5)) for j in range(60)]
    index = hardneg.HnswIndex(corpus, storage=storage, progress=False)
    s, i = index.search(queries, 30, exclude=exclude)
    assert (i >= 0).all() and np.isfinite(s).all()
    for j in range(60):
        assert not set(i[j]) & set(exclude[j])
        assert len(set(i[j])) == 30
    fs, _ = hardneg.FlatIndex(corpus).search(queries, 30, exclude=exclude)
    assert tie_recall(s, i, fs) >= 0.95
    np.testing.assert_array_equal(s, hardneg.FlatIndex(corpus).score(queries, i))
    # padded-array exclusions mean the same as lists
    width = max(len(e) for e in exclude)
    padded = np.full((60, width), -1, np.int64)
    for j, e in enumerate(exclude):
        padded[j, : len(e)] = e
    s2, i2 = index.search(queries, 30, exclude=padded)
    np.testing.assert_array_equal(i2, i)


def test_short_rows_are_padded_with_minus_one_never_a_valid_id():
    corpus = np.eye(6, dtype=np.float32)
    index = hardneg.HnswIndex(corpus, expansion_search=10, progress=False)
    s, i = index.search(np.ones((2, 6), np.float32), 8, exclude=[[0, 1, 2], []])
    assert sorted(i[0, :3].tolist()) == [3, 4, 5]
    assert i[0, 3:].tolist() == [-1] * 5 and np.isnan(s[0, 3:]).all()
    assert sorted(i[1, :6].tolist()) == list(range(6)) and i[1, 6:].tolist() == [-1, -1]
    assert s.dtype == np.float32 and i.dtype == np.int64


@given(
    n=st.integers(1, 40),
    d=st.integers(1, 6),
    nq=st.integers(1, 5),
    k=st.integers(1, 12),
    n_ex=st.integers(0, 8),
    metric=st.sampled_from(["ip", "cosine"]),
    storage=st.sampled_from(["float32", "bfloat16"]),
    seed=st.integers(0, 2**32),
)
def test_output_invariants_over_shapes_and_exclusions(n, d, nq, k, n_ex, metric, storage, seed):
    rng = np.random.default_rng(seed)
    corpus = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    queries = rng.integers(-3, 4, size=(nq, d)).astype(np.float32)
    exclude = [rng.choice(n, size=min(n_ex, n), replace=False).tolist() for _ in range(nq)]
    index = hardneg.HnswIndex(corpus, metric=metric, storage=storage, expansion_search=max(12, n), progress=False, deterministic=True)
    s, i = index.search(queries, k, exclude=exclude)
    exact = ref_scores(queries, corpus, metric)
    for j in range(nq):
        valid = i[j] >= 0
        got = i[j][valid]
        left = n - len(exclude[j])
        # ids unique, never excluded; full rows while candidates are left, then -1 / NaN
        assert len(set(got.tolist())) == len(got) and not set(got.tolist()) & set(exclude[j])
        assert valid.tolist() == [True] * len(got) + [False] * (k - len(got))
        assert len(got) == min(k, left)
        assert np.isnan(s[j][~valid]).all()
        # scores are the exact scores of the ids, sorted descending with ties by the lower id
        np.testing.assert_allclose(s[j][valid], exact[j, got], rtol=1e-5, atol=1e-5)
        pairs = list(zip(-s[j][valid], got))
        assert pairs == sorted(pairs)


@pytest.mark.parametrize("storage", ["float32", "bfloat16", "int8"])
def test_save_load_and_mmap_round_trips(tmp_path, rng, storage):
    corpus = clustered(rng, 2000, 24)
    queries = corpus[:40]
    index = hardneg.HnswIndex(corpus, metric="cosine", storage=storage, connectivity=12, seed=3, progress=False)
    path = tmp_path / "corpus.hnsw"
    index.save(path)
    want = index.search(queries, 10, exclude=[[j] for j in range(40)])
    for mmap in (True, False):
        back = hardneg.HnswIndex.load(path, corpus=corpus, mmap=mmap)
        assert back.is_view is mmap
        assert (len(back), back.dim, back.metric, back.storage) == (2000, 24, "cosine", storage)
        assert (back.connectivity, back.expansion_add, back.expansion_search, back.seed) == (12, 128, 128, 3)
        assert back.orphans == index.orphans
        got = back.search(queries, 10, exclude=[[j] for j in range(40)])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
        bare = hardneg.HnswIndex.load(str(path), mmap=mmap)
        assert bare.vectors is None
        raw = bare.search(queries, 10, rescore=False)
        np.testing.assert_array_equal(raw[1], index.search(queries, 10, rescore=False)[1])
        if storage == "float32":
            # the stored vectors rescore: same ids, scores equal to within rounding for cosine
            s, i = bare.search(queries, 10)
            np.testing.assert_array_equal(i, index.search(queries, 10)[1])
            np.testing.assert_allclose(s, index.search(queries, 10)[0], atol=1e-6)
        else:
            with pytest.raises(hardneg.ParameterError, match="corpus="):
                bare.search(queries, 10)
        with pytest.raises(hardneg.ParameterError, match="corpus="):
            bare.recall(sample=10)


def test_deterministic_builds_are_byte_identical(tmp_path, rng):
    corpus = clustered(rng, 1500, 16)
    paths = []
    for name in "ab":
        hardneg.HnswIndex(corpus, deterministic=True, seed=11, progress=False).save(tmp_path / name)
        paths.append((tmp_path / name).read_bytes())
    assert paths[0] == paths[1]
    hardneg.HnswIndex(corpus, deterministic=True, seed=12, progress=False).save(tmp_path / "c")
    assert (tmp_path / "c").read_bytes() != paths[0]


def test_damaged_foreign_and_other_version_files_raise_input_file_error(tmp_path, rng):
    corpus = clustered(rng, 500, 8)
    path = tmp_path / "x.hnsw"
    hardneg.HnswIndex(corpus, progress=False).save(path)
    good = path.read_bytes()
    bad = tmp_path / "bad.hnsw"

    def load(data):
        bad.write_bytes(data)
        return hardneg.HnswIndex.load(bad)

    flipped = bytearray(good)
    flipped[-5] ^= 0x10
    with pytest.raises(hardneg.InputFileError, match="checksum"):
        load(bytes(flipped))
    with pytest.raises(hardneg.InputFileError, match="truncated"):
        load(good[:-64])
    newer = bytearray(good)
    newer[16] = 2  # file format version
    with pytest.raises(hardneg.InputFileError, match="format 2"):
        load(bytes(newer))
    other_usearch = bytearray(good)
    other_usearch[22] = 27  # usearch minor version
    with pytest.raises(hardneg.InputFileError, match="usearch 2.27"):
        load(bytes(other_usearch))
    np.save(tmp_path / "emb.npy", corpus)
    with pytest.raises(hardneg.InputFileError, match="not a hardneg HnswIndex"):
        hardneg.HnswIndex.load(tmp_path / "emb.npy")
    # a raw usearch file (the Python wheel's) is not ours either
    usearch = pytest.importorskip("usearch.index")
    raw = usearch.Index(ndim=8, metric="ip", dtype="f32")
    raw.add(np.arange(500), corpus)
    raw.save(str(tmp_path / "raw.usearch"))
    with pytest.raises(hardneg.InputFileError, match="not a hardneg HnswIndex"):
        hardneg.HnswIndex.load(tmp_path / "raw.usearch")
    with pytest.raises(hardneg.InputFileError):
        hardneg.HnswIndex.load(tmp_path / "missing.hnsw")
    with pytest.raises(hardneg.ShapeError):
        hardneg.HnswIndex.load(path, corpus=corpus[:, :4])


def test_files_open_in_the_usearch_wheel_after_the_header(tmp_path, rng):
    """The graph part is plain usearch: the Python wheel views it at our 4096-byte offset."""
    usearch = pytest.importorskip("usearch.index")
    corpus = clustered(rng, 800, 16)
    index = hardneg.HnswIndex(corpus, progress=False)
    path = tmp_path / "x.hnsw"
    index.save(path)
    (tmp_path / "raw.usearch").write_bytes(path.read_bytes()[4096:])
    other = usearch.Index.restore(str(tmp_path / "raw.usearch"), view=True)
    assert len(other) == 800
    m = other.search(corpus[:20], 5)
    _, ids = index.search(corpus[:20], 5, rescore=False)
    np.testing.assert_array_equal(np.asarray(m.keys, np.int64), ids)


def test_concurrent_searches_from_python_threads(rng):
    corpus = clustered(rng, 3000, 32)
    queries = clustered(rng, 200, 32)
    index = hardneg.HnswIndex(corpus, progress=False)
    want = index.search(queries, 10)
    # more callers x workers than the index has usearch thread slots: calls wait, none fails
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda t: index.search(queries, 10, threads=t % 3 + 1), range(24)))
    for s, i in results:
        np.testing.assert_array_equal(i, want[1])
        np.testing.assert_array_equal(s, want[0])


def test_gil_is_released_while_building_and_searching(rng):
    corpus = clustered(rng, 20000, 32)

    def work():
        hardneg.HnswIndex(corpus, progress=False).search(corpus[:2000], 10)

    ticks, elapsed = ticks_while(work)
    assert elapsed > 0.05 and ticks >= 5


def test_bad_input_gets_typed_errors(tmp_path, rng):
    corpus = clustered(rng, 300, 8)
    index = hardneg.HnswIndex(corpus, expansion_search=20, progress=False)
    q = corpus[:3]
    with pytest.raises(hardneg.ShapeError, match="dimension"):
        index.search(q[:, :5], 3)
    with pytest.raises(hardneg.ParameterError, match="expansion_search=20 is below k=21"):
        index.search(q, 21)
    assert index.search(q, 21, expansion_search=21)[1].shape == (3, 21)
    with pytest.raises(hardneg.ParameterError):
        index.search(q, 0)
    with pytest.raises(hardneg.ParameterError):
        index.search(q, 3, expansion_search=0)
    bad = q.copy()
    bad[1, 2] = np.nan
    with pytest.raises(hardneg.NonFiniteError, match="row 1"):
        index.search(bad, 3)
    with pytest.raises(hardneg.IdOutOfRangeError):
        index.search(q, 3, exclude=[[1], [300], []])
    with pytest.raises(hardneg.ShapeError):
        index.search(q, 3, exclude=[[1]])
    with pytest.raises(hardneg.IdOutOfRangeError):
        index.score(q, np.array([[0], [1], [300]]))
    with pytest.raises(hardneg.DTypeError):
        index.search(np.array([["a"] * 8]), 3)
    with pytest.raises(hardneg.ParameterError, match="metric"):
        hardneg.HnswIndex(corpus, metric="l2", progress=False)
    with pytest.raises(hardneg.ParameterError, match="storage"):
        hardneg.HnswIndex(corpus, storage="float16", progress=False)
    with pytest.raises(hardneg.ParameterError, match="connectivity"):
        hardneg.HnswIndex(corpus, connectivity=1, progress=False)
    nan_corpus = corpus.copy()
    nan_corpus[7, 0] = np.inf
    with pytest.raises(hardneg.NonFiniteError, match="row 7"):
        hardneg.HnswIndex(nan_corpus, progress=False)
    lengths = corpus * rng.uniform(0.5, 2.0, (300, 1)).astype(np.float32)
    with pytest.raises(hardneg.ParameterError, match="int8 storage keeps only the direction"):
        hardneg.HnswIndex(lengths, storage="int8", progress=False)
    assert len(hardneg.HnswIndex(lengths, storage="int8", metric="cosine", progress=False)) == 300
    with pytest.raises(hardneg.ShapeError):
        hardneg.HnswIndex(np.zeros((0, 8), np.float32), progress=False)
    with pytest.raises(hardneg.OutputDirError):
        index.save(tmp_path / "no" / "such" / "dir.hnsw")
    assert not os.listdir(tmp_path)  # no temporary file left behind


def test_repr_and_properties(rng):
    corpus = clustered(rng, 200, 8)
    index = hardneg.HnswIndex(corpus, metric="cosine", storage="bfloat16", progress=False)
    assert "HnswIndex(n=200, dim=8, metric='cosine', storage='bfloat16'" in repr(index)
    assert index.vectors is corpus
    assert index.memory_usage > 200 * 8 * 2
    assert set(index.orphans) == {"found", "remaining"}


def test_mining_over_an_hnsw_index_agrees_with_flat_mining(rng):
    """Approximate mining: most negatives agree with exact mining, and agreeing ones score the same."""
    corpus = clustered(rng, 4000, 32)
    queries = corpus[:300] + 0.02 * rng.standard_normal((300, 32)).astype(np.float32)
    positives = np.arange(300)
    kw = dict(num_negatives=5, range_max=40, relative_margin=0.05, seed=1, progress=False)
    hn = hardneg.mine(queries, positives=positives, index=hardneg.HnswIndex(corpus, progress=False), **kw)
    fl = hardneg.mine(queries, positives=positives, index=hardneg.FlatIndex(corpus), **kw)
    assert (hn.negatives != positives[:, None]).all()
    same = sum(len(set(a) & set(b)) for a, b in zip(hn.negatives.tolist(), fl.negatives.tolist()))
    assert same / fl.negatives.size >= 0.97
    # where the negatives agree, so do their exact scores (rescored like FlatIndex), and the
    # positives are scored exactly by both
    agree = hn.negatives == fl.negatives
    np.testing.assert_array_equal(hn.scores[agree], fl.scores[agree])
    np.testing.assert_array_equal(hn.positive_scores, fl.positive_scores)
    with pytest.raises(hardneg.ParameterError, match="expansion_search"):
        hardneg.mine(queries, positives=positives, index=hardneg.HnswIndex(corpus, expansion_search=20, progress=False), **kw)


@pytest.mark.parametrize("sampling", ["top", "random", "simans"])
@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_mining_equals_flat_mining_where_the_search_is_exact(sampling, metric):
    """Where the graph walk finds the exact candidate lists (checked first: recall 1), mining an
    HnswIndex gives FlatIndex's output exactly: negatives, scores, positives and counters."""
    rng = np.random.default_rng(11)  # a fixed, well-connected set (a seeded one-thread build)
    corpus = clustered(rng, 600, 16, spread=1.0)
    if metric == "cosine":  # rows of several lengths, which cosine must not see
        corpus = corpus * rng.uniform(0.5, 2.0, (600, 1)).astype(np.float32)
    queries = corpus[:80] + 0.05 * rng.standard_normal((80, 16)).astype(np.float32)
    positives = [list(range(i, i + 1 + i % 3)) for i in range(80)]
    hn_index = hardneg.HnswIndex(corpus, metric=metric, expansion_search=600, deterministic=True, progress=False)
    fl_index = hardneg.FlatIndex(corpus, metric=metric)
    # the precondition: the rescored search equals exact search on the candidate lists mining uses
    flat_s, flat_i = fl_index.search(queries, 30, exclude=positives)
    hn_s, hn_i = hn_index.search(queries, 30, exclude=positives)
    np.testing.assert_array_equal(hn_i, flat_i)
    np.testing.assert_array_equal(hn_s, flat_s)
    kw = dict(positives=positives, num_negatives=6, range_min=2, range_max=30, absolute_margin=0.01,
              sampling=sampling, seed=4, progress=False, chunk_size=32)
    hn = hardneg.mine(queries, index=hn_index, **kw)
    fl = hardneg.mine(queries, index=fl_index, **kw)
    for name in ("negatives", "scores", "positives", "positive_scores"):
        np.testing.assert_array_equal(getattr(hn, name), getattr(fl, name), err_msg=name)
    assert hn.stats == fl.stats and hn.params == fl.params


def test_metric_vocabulary_dot_cosine_and_ip(rng):
    corpus = clustered(rng, 300, 8)
    for name, want in (("dot", "dot"), ("ip", "dot"), ("cosine", "cosine")):
        index = hardneg.HnswIndex(corpus, metric=name, progress=False)
        assert index.metric == want
        assert f"metric={want!r}" in repr(index)
    dot = hardneg.HnswIndex(corpus, metric="ip", progress=False)
    a = hardneg.mine(corpus[:20], positives=np.arange(20), index=dot, metric="ip", num_negatives=3, progress=False)
    b = hardneg.mine(corpus[:20], positives=np.arange(20), index=dot, num_negatives=3, progress=False)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    assert a.params["metric"] == "dot"
    with pytest.raises(hardneg.ParameterError, match="metric='dot' but metric='cosine'"):
        hardneg.mine(corpus[:20], positives=np.arange(20), index=dot, metric="cosine", progress=False)
    with pytest.raises(hardneg.ParameterError, match="metric"):
        hardneg.HnswIndex(corpus, metric="l2", progress=False)


def test_saved_index_mines_by_path_in_python_and_the_cli(tmp_path, rng):
    import subprocess
    import sys

    corpus = clustered(rng, 500, 8)
    queries, positives = corpus[:40], np.arange(40)
    index = hardneg.HnswIndex(corpus, progress=False)
    path = tmp_path / "corpus.hnsw"
    index.save(path)
    loaded = hardneg.load_index(path)
    assert isinstance(loaded, hardneg.HnswIndex) and loaded.is_view
    assert not hardneg.load_index(path, mmap=False).is_view
    want = hardneg.mine(queries, positives=positives, index=index, num_negatives=4, progress=False)
    got = hardneg.mine(queries, positives=positives, index=str(path), num_negatives=4, progress=False)
    np.testing.assert_array_equal(got.negatives, want.negatives)
    np.testing.assert_array_equal(got.scores, want.scores)
    # a bfloat16 file cannot rescore without its corpus: mining it by path says what to do
    hardneg.HnswIndex(corpus, storage="bfloat16", progress=False).save(tmp_path / "bf16.hnsw")
    with pytest.raises(hardneg.ParameterError, match=r"HnswIndex.load\(path, corpus="):
        hardneg.mine(queries, positives=positives, index=tmp_path / "bf16.hnsw", num_negatives=4, progress=False)
    bf16 = hardneg.HnswIndex.load(tmp_path / "bf16.hnsw", corpus=corpus)
    assert hardneg.mine(queries, positives=positives, index=bf16, num_negatives=4, progress=False).negatives.shape == (40, 4)
    # a file of another format version is named as such by load_index too
    raw = bytearray(path.read_bytes())
    raw[16] = 9
    (tmp_path / "v9.hnsw").write_bytes(bytes(raw))
    with pytest.raises(hardneg.InputFileError, match="format 9"):
        hardneg.load_index(tmp_path / "v9.hnsw")
    np.save(tmp_path / "q.npy", queries)
    np.save(tmp_path / "p.npy", positives)
    cmd = [sys.executable, "-m", "hardneg.cli", "mine", "--queries", str(tmp_path / "q.npy"), "--positives",
           str(tmp_path / "p.npy"), "--index", str(path), "--num-negatives", "4", "--out", str(tmp_path / "out"),
           "--no-progress"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(hardneg.load_mined(tmp_path / "out").negatives, want.negatives)


def test_a_mining_job_resumes_only_over_the_same_graph(tmp_path, rng):
    """The job fingerprint names the index: its kind, parameters and graph digest. The saved
    file of the index resumes the job; another graph (another seed) or a FlatIndex is refused."""
    corpus = clustered(rng, 500, 8)
    queries, positives = corpus[:60], np.arange(60)
    index = hardneg.HnswIndex(corpus, deterministic=True, seed=1, progress=False)
    path = tmp_path / "a.hnsw"
    index.save(path)
    out = tmp_path / "job"
    kw = dict(num_negatives=3, shard_size=16, progress=False)
    first = hardneg.mine_to_disk(queries, None, positives, out, index=index, **kw)
    again = hardneg.mine_to_disk(queries, None, positives, out, index=str(path), **kw)  # same graph, from its file
    np.testing.assert_array_equal(again.negatives, first.negatives)
    assert hardneg.HnswIndex.load(path)._job_identity() == index._job_identity()
    other = hardneg.HnswIndex(corpus, deterministic=True, seed=2, progress=False)
    for wrong in (other, hardneg.FlatIndex(corpus)):
        with pytest.raises(hardneg.OutputDirError, match="different mining job"):
            hardneg.mine_to_disk(queries, None, positives, out, index=wrong, **kw)
