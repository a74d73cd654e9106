"""The AMX scan, storage modes and saved indexes.

The AMX bf16 scan with certified rescoring must return the float32 kernel's ids and scores bit
for bit (forced with ``kernel=`` or ``HARDNEG_KERNEL``), on random, text-embedding-like and real
all-MiniLM-L6-v2 embeddings; int8 storage is approximate with a measured recall; saved indexes
round-trip and every damaged file raises ``InputFileError``. On a CPU without AMX tiles the tests
that need them check the clear error instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hardneg
from hardneg import _hardneg

AMX = "amx" in hardneg.kernels()["available"]
F32 = _hardneg.isa()
needs_amx = pytest.mark.skipif(not AMX, reason="this CPU (or OS) offers no AMX tiles; test_amx_refusal_is_clear covers it")


@pytest.fixture(autouse=True)
def _no_kernel_override(monkeypatch):
    """These tests choose kernels themselves; ``HARDNEG_KERNEL=x make test`` runs the rest of the suite on x."""
    monkeypatch.delenv("HARDNEG_KERNEL", raising=False)


def anisotropic(rng, n, d):
    """Text-embedding-like rows: a shared mean direction, a decaying spectrum, two outlier dimensions, unit norm."""
    mean = rng.standard_normal(d)
    basis = rng.standard_normal((32, d))
    w = rng.standard_normal((n, 32)) / np.arange(1, 33)
    x = 0.8 * mean + w @ basis + 0.3 * rng.standard_normal((n, d))
    x[:, [0, d // 2]] *= 6
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def same(a, b, what=""):
    assert a[1].tobytes() == b[1].tobytes(), f"{what}: ids differ"
    assert a[0].tobytes() == b[0].tobytes(), f"{what}: scores differ"


def counts():
    return dict(hardneg.kernels()["counts"])


def delta(before):
    now = counts()
    return {k: now[k] - before[k] for k in now}


@pytest.fixture
def minilm(minilm_stdlib):
    """Real embeddings (tests/conftest.py, shared with test_hnsw.py): 100 queries, 700 passages."""
    corpus, queries = minilm_stdlib
    return np.ascontiguousarray(queries[:100]), np.ascontiguousarray(corpus[:700])


@needs_amx
@pytest.mark.parametrize("data", ["random", "anisotropic"])
@pytest.mark.parametrize("d", [1, 31, 100, 384])
@pytest.mark.parametrize("nq", [1, 17, 40])
def test_amx_is_bit_identical_to_the_f32_kernel(rng, data, d, nq):
    n = 1000 + 17  # corpus tail off 32-row blocks
    c = anisotropic(rng, n, d) if data == "anisotropic" and d > 1 else rng.standard_normal((n, d), dtype=np.float32)
    q = anisotropic(rng, nq, d) if data == "anisotropic" and d > 1 else rng.standard_normal((nq, d), dtype=np.float32)
    for metric in ("ip", "cosine"):
        inner = _hardneg.FlatIndex(c, metric=metric)
        for k in (1, 10, 100):
            exclude = [rng.choice(n, size=i % 5, replace=False).tolist() for i in range(nq)]
            off = np.array([0] + np.cumsum([len(e) for e in exclude]).tolist(), np.int64)
            ids = np.array([i for e in exclude for i in e], np.int64)
            want = inner.search(q, k, exclude_offsets=off, exclude_ids=ids, kernel=F32)
            got = inner.search(q, k, exclude_offsets=off, exclude_ids=ids, kernel="amx")
            same(got, want, f"{data} d={d} nq={nq} {metric} k={k}")


@needs_amx
def test_real_minilm_embeddings_every_storage_and_kernel_agree(minilm):
    q, c = minilm
    for metric in ("cosine", "ip"):
        want = hardneg.FlatIndex(c, metric=metric)._inner.search(q, 50, kernel=F32)
        before = counts()
        for storage in ("float32", "bfloat16"):
            index = hardneg.FlatIndex(c, metric=metric, storage=storage)
            same(index.search(q, 50), want, f"{metric} {storage} auto")
            same(index._inner.search(q, 50, kernel="amx"), want, f"{metric} {storage} amx")
        d = delta(before)
        # the certificate, not the fallback, answered (real embeddings certify at 2k+16)
        assert d["amx_certified"] >= 0.99 * 4 * len(q), d


@needs_amx
def test_duplicates_ties_and_exclusions(rng):
    base = rng.integers(-2, 3, size=(200, 24)).astype(np.float32)
    c = np.concatenate([base, base, base])  # rows i, i+200, i+400 are identical
    q = rng.integers(-1, 2, size=(45, 24)).astype(np.float32)
    inner = _hardneg.FlatIndex(c)
    exclude = [[i, i + 200] for i in range(45)]
    off = np.arange(0, 91, 2, dtype=np.int64)
    ids = np.array(exclude, np.int64).ravel()
    for k in (1, 7, 64, 500):
        same(inner.search(q, k, kernel="amx"), inner.search(q, k, kernel=F32), f"k={k}")
        got = inner.search(q, k, exclude_offsets=off, exclude_ids=ids, kernel="amx")
        same(got, inner.search(q, k, exclude_offsets=off, exclude_ids=ids, kernel=F32), f"exclude k={k}")
        for i in range(45):
            assert not set(got[1][i]) & set(exclude[i])
    # every row identical: every score ties, ids ascend
    s, i = _hardneg.FlatIndex(np.ones((300, 8), np.float32)).search(np.ones((33, 8), np.float32), 5, kernel="amx")
    assert i.tolist() == [[0, 1, 2, 3, 4]] * 33


@needs_amx
def test_failed_certificates_fall_back_to_the_same_results(rng):
    c = rng.standard_normal((3000, 200), dtype=np.float32)  # isotropic: close scores
    q = rng.standard_normal((64, 200), dtype=np.float32)
    inner = _hardneg.FlatIndex(c)
    want = inner.search(q, 10, kernel=F32)
    # an injected bound a million times too large: no certificate holds, every query falls back
    before = counts()
    same(inner.search(q, 10, kernel="amx", bound_factor=1e6), want, "bound x 1e6")
    assert delta(before)["amx_fallback"] == 64
    # no over-fetch and an 8x bound: the retry with 4x candidates and the float32 kernel both run
    before = counts()
    same(inner.search(q, 10, kernel="amx", overfetch=10, bound_factor=8.0, threads=1), want, "overfetch=k")
    d = delta(before)
    assert d["amx_retried"] > 0 and d["amx_fallback"] > 0 and d["amx_certified"] + d["amx_retried"] + d["amx_fallback"] == 64, d
    with pytest.raises(hardneg.ParameterError, match="bound_factor"):
        inner.search(q, 10, kernel="amx", bound_factor=0.5)
    with pytest.raises(hardneg.ParameterError, match="overfetch"):
        inner.search(q, 10, kernel="amx", overfetch=5)


@needs_amx
def test_threads_and_chunk_sizes_do_not_change_results(rng):
    c = anisotropic(rng, 4000, 72)
    q = anisotropic(rng, 70, 72)
    inner = _hardneg.FlatIndex(c, metric="cosine")
    want = inner.search(q, 20, kernel=F32, threads=1)
    for threads in (1, 2, 3):
        for chunk, dims in ((None, None), (32, 32), (100, 64), (4096, 500)):
            same(inner.search(q, 20, kernel="amx", threads=threads, chunk_rows=chunk, dim_slice=dims), want, f"t={threads} {chunk} {dims}")


@needs_amx
def test_int8_is_approximate_with_float32_scores(minilm):
    q, c = minilm
    exact = hardneg.FlatIndex(c, metric="cosine").search(q, 10)
    index = hardneg.FlatIndex(c, metric="cosine", storage="int8")
    with pytest.raises(hardneg.ParameterError, match="exact=False"):
        index.search(q, 10)
    with pytest.raises(hardneg.ParameterError, match="True or False"):
        index.search(q, 10, exact="no")
    s, i = index.search(q, 10, exact=False)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, exact[1])])
    assert recall >= 0.95, recall
    # the scores are the exact float32 scores of the ids returned, rows sorted
    np.testing.assert_array_equal(s, index.score(q, i))
    assert np.all(np.diff(s, axis=1) <= 0)


def test_storage_and_exact_errors(rng):
    c = rng.standard_normal((50, 8), dtype=np.float32)
    with pytest.raises(hardneg.ParameterError, match="'float32', 'bfloat16' or 'int8'"):
        hardneg.FlatIndex(c, storage="fp16")
    for storage in ("float32", "bfloat16"):
        index = hardneg.FlatIndex(c, storage=storage)
        assert index.storage == storage
        same(index.search(c[:3], 4, exact=False), index.search(c[:3], 4))
    with pytest.raises(hardneg.ShapeError):
        hardneg.FlatIndex(c, storage="bfloat16").search(c[:, :4], 1)
    with pytest.raises(hardneg.NonFiniteError):
        hardneg.FlatIndex(np.full((4, 4), np.nan, np.float32), storage="int8")


@pytest.mark.parametrize("storage", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_save_load_round_trip(tmp_path, rng, storage, metric):
    c = anisotropic(rng, 700, 40)
    q = anisotropic(rng, 50, 40)
    index = hardneg.FlatIndex(c, metric=metric, storage=storage)
    exact = storage != "int8"
    want = index.search(q, 15, exact=exact)
    path = tmp_path / "corpus.hnidx"
    index.save(path)
    for mmap, verify in ((True, False), (True, True), (False, False)):
        back = hardneg.FlatIndex.load(path, mmap=mmap, verify=verify)
        assert (len(back), back.dim, back.metric, back.storage) == (700, 40, metric, storage)
        np.testing.assert_array_equal(back.vectors, c)
        assert not back.vectors.flags.writeable
        same(back.search(q, 15, exact=exact), want, f"mmap={mmap}")
        np.testing.assert_array_equal(back.score(q, want[1]), want[0])


def test_every_damaged_file_raises_input_file_error(tmp_path, rng):
    c = rng.standard_normal((64, 16), dtype=np.float32)
    path = tmp_path / "good.hnidx"
    hardneg.FlatIndex(c, metric="cosine", storage="bfloat16").save(str(path))
    good = path.read_bytes()
    header = int.from_bytes(good[12:16], "little")

    def bad(data: bytes, match: str, modes=((True, False), (True, True), (False, False))):
        p = tmp_path / "bad.hnidx"
        p.write_bytes(data)
        for mmap, verify in modes:
            with pytest.raises(hardneg.InputFileError, match=match):
                hardneg.FlatIndex.load(p, mmap=mmap, verify=verify)

    for cut in (0, 10, 30, header - 1, header + 64, len(good) // 2, len(good) - 1):
        bad(good[:cut], "truncated|too short")
    np.save(tmp_path / "foreign.npy", c)
    bad((tmp_path / "foreign.npy").read_bytes(), "not a hardneg FlatIndex file")
    bad(good[:8] + (2).to_bytes(4, "little") + good[12:], "version 2")
    for at in (16, 17, 26, 44, header - 9):
        flipped = bytearray(good)
        flipped[at] ^= 0x40
        bad(bytes(flipped), "checksum")
    flipped = bytearray(good)
    flipped[header + 3] ^= 1  # inside the float32 rows: found when read or verified
    bad(bytes(flipped), "corrupted", modes=((True, True), (False, False)))
    flipped = bytearray(good)
    flipped[-2] ^= 1  # inside the per-row norms: always checked
    bad(bytes(flipped), "corrupted")
    with pytest.raises(hardneg.InputFileError, match="No such file"):
        hardneg.FlatIndex.load(tmp_path / "missing.hnidx")
    with pytest.raises(hardneg.InputFileError):
        hardneg.FlatIndex.load(tmp_path)
    with pytest.raises(hardneg.OutputDirError, match="cannot write"):
        hardneg.FlatIndex(c).save(tmp_path / "no" / "dir" / "x.hnidx")
    with pytest.raises(hardneg.ParameterError, match="mmap"):
        hardneg.FlatIndex.load(path, mmap="yes")


def test_kernel_override_and_refused_permission_in_fresh_processes():
    code = (
        "import numpy as np, hardneg\n"
        "rng = np.random.default_rng(0)\n"
        "c = rng.standard_normal((3000, 64), dtype=np.float32); q = rng.standard_normal((40, 64), dtype=np.float32)\n"
        "k = hardneg.kernels()\n"
        "print(k['amx']); print(k['large_batches']); print(k['small_batches'])\n"
        "try:\n"
        "    s, i = hardneg.FlatIndex(c).search(q, 10)\n"
        "    np.save('out.npy', np.concatenate([s.view(np.int32), i.astype(np.int32)], 1))\n"
        "    print(hardneg.kernels()['counts'])\n"
        "except hardneg.ParameterError as e:\n"
        "    print('ParameterError:', e)\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for env in ({}, {"HARDNEG_KERNEL": "scalar"}, {"HARDNEG_KERNEL": "avx2"}, {"HARDNEG_AMX_PERMISSION": "refuse"}):
            r = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300, cwd=tmp)  # fmt: skip
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            results[tuple(env.items())] = (lines, np.load(os.path.join(tmp, "out.npy")))
        base_lines, base = results[()]
        for key, (lines, out) in results.items():
            np.testing.assert_array_equal(out, base, err_msg=str(key))  # identical bits whatever ran
        assert results[(("HARDNEG_KERNEL", "scalar"),)][0][1:3] == ["scalar", "scalar"]
        refused = results[(("HARDNEG_AMX_PERMISSION", "refuse"),)][0]
        if AMX:
            assert base_lines[1] == "amx" and "'amx_certified': 40" in base_lines[3]
            assert refused[0].startswith("permission refused") and refused[1] == F32
            assert "'f32_queries': 40" in refused[3]
        # forcing a kernel the process cannot run is a clear error, as is an unknown name
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HARDNEG_KERNEL": "amx", "HARDNEG_AMX_PERMISSION": "refuse"}, capture_output=True, text=True, timeout=300, cwd=tmp)
        assert "ParameterError: invalid kernel: HARDNEG_KERNEL=amx: the amx kernel cannot run here (permission refused" in r.stdout, r.stdout + r.stderr
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HARDNEG_KERNEL": "gpu"}, capture_output=True, text=True, timeout=300, cwd=tmp)
        assert "is not a kernel; use auto, amx, avx512, avx2 or scalar" in r.stdout, r.stdout + r.stderr


@needs_amx
def test_mine_and_cluster_give_identical_outputs_with_and_without_amx(rng, monkeypatch, tmp_path):
    c = anisotropic(rng, 3000, 48)
    q = c[:256] + 0.05 * anisotropic(rng, 256, 48)
    pos = [[i] for i in range(256)]
    runs = {}
    for kernel in ("", F32):
        monkeypatch.setenv("HARDNEG_KERNEL", kernel)
        before = counts()
        m = hardneg.mine(q, c, pos, num_negatives=5, range_max=40, sampling="random", seed=3, progress=False)
        labels, _ = _hardneg.cluster(c, 40, method="kmeans", seed=1)
        runs[kernel] = (m, labels, delta(before))
    (ma, la, da), (mb, lb, db) = runs[""], runs[F32]
    assert da["amx_certified"] > 0 and db["amx_certified"] == 0, (da, db)
    np.testing.assert_array_equal(ma.negatives, mb.negatives)
    np.testing.assert_array_equal(ma.scores, mb.scores)
    np.testing.assert_array_equal(la, lb)
    # the mining engine over a bfloat16 index, in memory and saved (opened by path), is the same
    monkeypatch.delenv("HARDNEG_KERNEL")
    bf = hardneg.FlatIndex(c, metric="cosine", storage="bfloat16")  # mine's default metric
    path = tmp_path / "corpus.hnidx"
    bf.save(path)
    for idx in (bf, str(path)):
        before = counts()
        m = hardneg.mine(q, positives=pos, index=idx, num_negatives=5, range_max=40, sampling="random", seed=3, progress=False)
        assert delta(before)["amx_certified"] > 0
        np.testing.assert_array_equal(m.negatives, mb.negatives)
        np.testing.assert_array_equal(m.scores, mb.scores)
    # int8 is approximate: mining refuses it and says which storage to use
    with pytest.raises(hardneg.ParameterError, match="storage='bfloat16'"):
        hardneg.mine(q, positives=pos, index=hardneg.FlatIndex(c, storage="int8"), num_negatives=5, progress=False)


@needs_amx
@given(nq=st.integers(1, 40), n=st.integers(1, 400), d=st.integers(1, 70), k=st.integers(1, 60), seed=st.integers(0, 2**32 - 1), ints=st.booleans())
def test_property_amx_equals_f32(nq, n, d, k, seed, ints):
    rng = np.random.default_rng(seed)
    if ints:  # exact small-integer scores: many ties
        c = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
        q = rng.integers(-2, 3, size=(nq, d)).astype(np.float32)
    else:
        c = rng.standard_normal((n, d), dtype=np.float32)
        q = rng.standard_normal((nq, d), dtype=np.float32)
    k = min(k, n)
    inner = _hardneg.FlatIndex(c, metric="cosine" if seed % 2 else "ip")
    same(inner.search(q, k, kernel="amx", threads=1 + seed % 2), inner.search(q, k, kernel=F32), f"{nq} {n} {d} {k}")


def test_amx_refusal_is_clear():
    """Wherever AMX cannot run, forcing it says why and what to use instead."""
    c = np.eye(4, dtype=np.float32)
    inner = _hardneg.FlatIndex(c)
    if AMX:
        assert inner.search(c, 1, kernel="amx")[1].ravel().tolist() == [0, 1, 2, 3]
    else:
        with pytest.raises(hardneg.ParameterError, match="the amx kernel cannot run here"):
            inner.search(c, 1, kernel="amx")


def test_auto_choice_follows_the_measured_crossover_per_storage(rng):
    """The AMX scan runs from amx_min_queries[storage] queries on, the float32 kernel below, and the
    queries are counted on the path that ran."""
    c = rng.standard_normal((300, 40), dtype=np.float32)
    mins = hardneg.kernels()["amx_min_queries"]
    for storage in ("float32", "bfloat16", "int8"):
        index = hardneg.FlatIndex(c, storage=storage)
        m = mins[storage]
        assert index.kernel_for(m) == ("amx" if AMX else F32), storage
        if m > 1:
            assert index.kernel_for(m - 1) == F32, storage
            before = counts()
            index.search(c[: m - 1], 5)
            assert delta(before)["f32_queries"] == m - 1
        if AMX:
            before = counts()
            index.search(c[:m], 5, exact=storage != "int8")
            d = delta(before)
            assert d["amx_certified"] + d["amx_retried"] + d["amx_fallback"] + d["approximate"] == m, (storage, d)
        assert index.kernel == index.kernel_for(max(mins.values()))
