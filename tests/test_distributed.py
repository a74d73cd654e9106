"""hardneg.distributed.mine in real gloo process groups (file rendezvous) against single-process mine.

The worlds (2 and 3 ranks for the results and the bad inputs, two more of 2 ranks for a dead and a
stalled rank) run at the same time, forked from one forkserver that has imported torch once. Each
rank writes what it got (arrays or the error it raised) to a pickle; the tests compare every rank's
arrays with ``hardneg.mine`` on the whole corpus, bit for bit.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import hardneg  # noqa: E402

N, NQ, D = 151, 41, 6
K = 12  # range_max of most configurations: rank 0 of the 2-rank world holds fewer rows


def _data(seed: int = 0):
    """Integer embeddings (exact ties everywhere), each shard boundary straddled by equal rows."""
    rng = np.random.default_rng(seed)
    corpus = rng.integers(-1, 2, (N, D)).astype(np.float32)
    for cut in (7, 60, 100, 103):
        corpus[cut] = corpus[cut - 1]
    positives = rng.integers(0, N, (NQ, 3))
    positives[::2, 2] = -1
    positives[::5, 1:] = -1
    positives[1::5, 1] = -1
    # each query near its first positive, so margins keep some candidates
    queries = (2 * corpus[positives[:, 0]] + rng.integers(-1, 2, (NQ, D))).astype(np.float32)
    exclude = rng.integers(0, N, (NQ, 2))
    exclude[::3, 1] = -1
    return queries, corpus, positives, exclude


# (name, {world: cuts or (rank order of shards, cuts)}, kwargs)
CONFIGS = [
    ("top_ip", {"metric": "ip", "sampling": "top", "chunk_size": 16}),
    ("random_absolute_margin", {"metric": "ip", "sampling": "random", "seed": 5, "absolute_margin": 0.5,
                                "range_min": 1, "num_negatives": 4, "range_max": K, "chunk_size": 16,
                                "exclude_self": True}),
    ("simans_relative_margin", {"metric": "cosine", "sampling": "simans", "seed": 9, "relative_margin": 0.05,
                                "num_negatives": 3, "range_max": 40}),
    ("top_cosine_max_score_tiny_chunks", {"metric": "cosine", "max_score": 0.9, "num_negatives": 2,
                                          "range_max": K, "chunk_size": 2}),
]
# Shards per world: (global row range of each rank).
SHARDS = {
    2: [(0, 7), (7, N)],  # rank 0 holds fewer rows than range_max
    3: [(103, N), (0, 100), (100, 103)],  # offsets not in rank order; rank 2 holds 3 rows
}
EMPTY_SHARDS = [(0, 60), (60, 60), (60, N)]  # rank 1 holds nothing


def _mine_kwargs(kw):
    return {"num_negatives": 3, **kw}


def _result(m):
    if m is None:
        return None
    return {"negatives": m.negatives, "scores": m.scores, "positives": m.positives,
            "positive_scores": m.positive_scores, "params": m.params,
            "stats": {k: v for k, v in m.stats.items() if k != "distributed"},
            "distributed": m.stats["distributed"]}


def _attempt(fn):
    t0 = time.perf_counter()
    try:
        return {"value": fn(), "seconds": time.perf_counter() - t0}
    except Exception as e:  # noqa: BLE001 - the test checks which class every rank raised
        return {"error": type(e).__name__, "message": str(e), "seconds": time.perf_counter() - t0}


def _bad_cases(rank, world, q, c, pos, excl, shard, lo):
    """(name, call) pairs where ranks disagree or one rank's input is bad."""
    import hardneg.distributed as hd

    base = dict(row_offset=lo, exclude=excl, range_max=K, metric="ip")
    last = world - 1

    def run(queries=q, corpus=shard, positives=pos, **kw):
        return lambda: hd.mine(queries, corpus, positives, **{**base, **kw})

    nan_shard = shard.copy()
    nan_shard[0, 0] = np.nan
    other_q = q.copy()
    other_q[0, 0] += 1
    return [
        ("dim", run(queries=q[:, :-1], corpus=shard[:, :-1]) if rank == last else run()),
        ("query_count", run(queries=q[:-1], positives=pos[:-1], exclude=excl[:-1]) if rank == last else run()),
        ("k", run(range_max=K + 1) if rank == last else run()),
        ("seed", run(seed=1) if rank == last else run()),
        ("sampling", run(sampling="random") if rank == 0 else run()),
        ("overlap", run(row_offset=lo - 1) if lo > 0 else run()),
        ("gap", run(row_offset=lo + 1) if lo > 0 else run()),
        ("offset_on_some_ranks", run(row_offset=None) if rank == last else run()),
        ("nan_in_one_shard", run(corpus=nan_shard) if rank == last else run()),
        ("other_queries", run(queries=other_q) if rank == last else run()),
        ("positive_out_of_range", run(positives=np.where(np.arange(NQ)[:, None] == 3, N + 5, pos))),
        ("bad_dst", run(dst=world)),
    ]


def _fault_mid_run(rank, world, q, shard, pos, lo):
    """The last rank's search fails in the second chunk (an injected fault, e.g. a disk error)."""
    import hardneg.distributed as hd

    real = hd._Run._search
    calls = []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("injected read error")
        return real(self, *args)

    if rank == world - 1:
        hd._Run._search = failing
    try:
        return hd.mine(q, shard, pos, row_offset=lo, range_max=K, metric="ip", chunk_size=16)
    finally:
        hd._Run._search = real


def _worker(rank, world, init_file, out_dir, scenario, tmp):
    import torch.distributed as dist

    import hardneg.distributed as hd

    out = {}
    try:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
        q, c, pos, excl = _data()
        if scenario == "dies":
            if rank == 1:
                os._exit(0)
            out["dies"] = _attempt(lambda: hd.mine(q, c, pos, split="queries", timeout=20))
        elif scenario == "stalls":
            if rank == 1:
                time.sleep(8)
                os._exit(0)
            out["stalls"] = _attempt(lambda: hd.mine(q, c, pos, split="queries", timeout=1.0))
        else:
            shards = EMPTY_SHARDS if scenario == "empty" else SHARDS[world]
            lo, hi = shards[rank]
            shard = c[lo:hi]
            if scenario == "main":
                for name, call in _bad_cases(rank, world, q, c, pos, excl, shard, lo):
                    out[f"bad:{name}"] = _attempt(call)
                out["bad:fault_mid_run"] = _attempt(lambda: _fault_mid_run(rank, world, q, shard, pos, lo))
                for name, kw in CONFIGS:
                    out[name] = _attempt(lambda: _result(hd.mine(q, shard, pos, row_offset=lo, exclude=excl,
                                                                 **_mine_kwargs(kw))))
                if world == 2:
                    path = os.path.join(tmp, "corpus.npy")
                    mm = np.load(path, mmap_mode="r")[lo:hi]  # a memory-mapped shard, not copied
                    out["memmap_rank_order"] = _attempt(lambda: _result(hd.mine(
                        q, mm, pos, exclude=excl, num_negatives=3, range_max=K, metric="cosine", dst=1)))
                out["queries_split"] = _attempt(lambda: _result(hd.mine(
                    q, c, pos, split="queries", exclude=excl, sampling="random", seed=3, chunk_size=10,
                    dst=None if world == 3 else 1)))
            else:  # "empty": rank 1 has no rows
                out["empty_shard"] = _attempt(lambda: _result(hd.mine(
                    q, shard, pos, row_offset=lo, exclude=excl, num_negatives=3, range_max=K, metric="ip",
                    sampling="random", seed=2, chunk_size=7)))
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the test
        out["crash"] = traceback.format_exc()
    with open(os.path.join(out_dir, f"{scenario}-{world}-{rank}.pkl"), "wb") as f:
        pickle.dump(out, f)


def _launch(worlds, tmp):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "torch", "torch.distributed", "hardneg"])
    procs = []
    for scenario, world in worlds:
        init = os.path.join(tmp, f"pg-{scenario}-{world}")
        for rank in range(world):
            p = ctx.Process(target=_worker, args=(rank, world, init, tmp, scenario, tmp))
            p.start()
            procs.append(p)
    deadline = time.monotonic() + 240
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("a rank hung")
    codes = [p.exitcode for p in procs]
    results = {}
    for scenario, world in worlds:
        for rank in range(world):
            path = os.path.join(tmp, f"{scenario}-{world}-{rank}.pkl")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    results[scenario, world, rank] = pickle.load(f)
            elif not (scenario in ("dies", "stalls") and rank == 1):  # those exit on purpose
                results[scenario, world, rank] = {"crash": f"no result; exit codes {codes}"}
    return results


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("distributed"))
    np.save(os.path.join(tmp, "corpus.npy"), _data()[1])
    results = _launch([("main", 2), ("main", 3), ("empty", 3), ("dies", 2), ("stalls", 2)], tmp)
    for key, out in results.items():
        assert "crash" not in out, f"{key}: {out['crash']}"
    return results


def _assert_equal_to_single_process(got, **kw):
    q, c, pos, excl = _data()
    want = hardneg.mine(q, c, pos, **kw)
    np.testing.assert_array_equal(got["negatives"], want.negatives)
    np.testing.assert_array_equal(got["scores"].view(np.int32), want.scores.view(np.int32))
    np.testing.assert_array_equal(got["positives"], want.positives)
    np.testing.assert_array_equal(got["positive_scores"].view(np.int32), want.positive_scores.view(np.int32))
    assert got["stats"] == want.stats
    assert got["params"] == want.params


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", [name for name, _ in CONFIGS])
def test_corpus_split_equals_single_process(worlds, world, name):
    kw = dict(CONFIGS)[name]
    for rank in range(world):
        got = worlds["main", world, rank][name]
        assert "error" not in got, got
        _assert_equal_to_single_process(got["value"], exclude=_data()[3], **_mine_kwargs(kw))
        assert got["value"]["distributed"]["world_size"] == world
    # the case is not vacuous: most slots are filled, from every shard that is not tiny
    negs = worlds["main", world, 0][name]["value"]["negatives"]
    assert (negs != -1).mean() > 0.2
    for lo, hi in SHARDS[world]:
        assert ((negs >= lo) & (negs < hi)).any() or hi - lo < 5


def test_memmap_shards_in_rank_order_and_dst(worlds):
    assert worlds["main", 2, 0]["memmap_rank_order"]["value"] is None
    got = worlds["main", 2, 1]["memmap_rank_order"]["value"]
    _assert_equal_to_single_process(got, exclude=_data()[3], num_negatives=3, range_max=K, metric="cosine")


def test_an_empty_shard_only_pads(worlds):
    for rank in range(3):
        got = worlds["empty", 3, rank]["empty_shard"]["value"]
        _assert_equal_to_single_process(got, exclude=_data()[3], num_negatives=3, range_max=K, metric="ip",
                                        sampling="random", seed=2)


@pytest.mark.parametrize("world", [2, 3])
def test_query_split_equals_single_process(worlds, world):
    kw = dict(exclude=_data()[3], sampling="random", seed=3)
    receivers = range(world) if world == 3 else [1]
    for rank in range(world):
        got = worlds["main", world, rank]["queries_split"]["value"]
        if rank not in receivers:
            assert got is None
            continue
        _assert_equal_to_single_process(got, **kw)
        assert got["distributed"]["split"] == "queries"


BAD = {
    "dim": ("ShapeError", "embedding dimension"),
    "query_count": ("ShapeError", "number of queries"),
    "k": ("ParameterError", "range_max"),
    "seed": ("ParameterError", "seed"),
    "sampling": ("ParameterError", "sampling"),
    "overlap": ("ParameterError", "overlap"),
    "gap": ("ParameterError", "on no rank"),
    "offset_on_some_ranks": ("ParameterError", "row_offset was given"),
    "nan_in_one_shard": ("NonFiniteError", "non-finite"),
    "other_queries": ("ParameterError", "the queries"),
    "positive_out_of_range": ("IdOutOfRangeError", "positives"),
    "bad_dst": ("ParameterError", "dst"),
    "fault_mid_run": ("DistributedError", "injected read error"),
}


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("case", sorted(BAD))
def test_disagreeing_ranks_fail_on_every_rank(worlds, world, case):
    cls, text = BAD[case]
    for rank in range(world):
        got = worlds["main", world, rank][f"bad:{case}"]
        if case == "fault_mid_run" and rank == world - 1:  # the failing rank raises its own error
            assert got.get("error") == "OSError", got
            continue
        assert got.get("error") == cls, (rank, got)
        assert text in got["message"], (rank, got["message"])
    if case == "nan_in_one_shard":  # the healthy ranks name the rank whose input was bad
        assert f"rank {world - 1} could not load its inputs" in worlds["main", world, 0][f"bad:{case}"]["message"]


def test_a_dead_or_stalled_rank_stops_the_others_within_the_timeout(worlds):
    dies = worlds["dies", 2, 0]["dies"]
    assert dies.get("error") == "DistributedError" and dies["seconds"] < 20 + 5, dies
    stalls = worlds["stalls", 2, 0]["stalls"]
    assert stalls.get("error") == "DistributedError" and "1 s" in stalls["message"], stalls
    assert stalls["seconds"] < 1.0 + 5, stalls


def test_torchrun_runs_the_readme_example(tmp_path):
    q, c, pos, excl = _data()
    for name, arr in (("queries", q), ("corpus", c), ("positives", pos)):
        np.save(tmp_path / f"{name}.npy", arr)
    script = Path(__file__).resolve().parents[1] / "examples" / "mine_distributed.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "--queries", str(tmp_path / "queries.npy"), "--corpus", str(tmp_path / "corpus.npy"),
           "--positives", str(tmp_path / "positives.npy"), "--out", str(tmp_path / "mined.parquet"),
           "--num-negatives", "3", "--metric", "ip", "--threads", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "mined.parquet")
    want = hardneg.mine(q, c, pos, num_negatives=3, metric="ip")
    got = np.stack(table["negatives"].to_pylist())
    np.testing.assert_array_equal(got, want.negatives)
