"""hardneg mine --part I/N: parts in any order (and at the same time) give the whole job's directory;
a killed part (real SIGKILL) resumes; wrong parts and mixed jobs are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import hardneg
from hardneg.mining_job import MANIFEST

pytest.importorskip("pyarrow")

KW = dict(num_negatives=4, relative_margin=0.05, sampling="random", seed=11, metric="cosine")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    c = rng.standard_normal((3000, 24), dtype=np.float32)
    pos = rng.integers(0, 3000, (205, 2))
    pos[::3, 1] = -1
    q = c[pos[:, 0]] + 0.7 * rng.standard_normal((205, 24), dtype=np.float32)
    return q, c, pos


def same(a, b):
    np.testing.assert_array_equal(a.negatives, b.negatives)
    np.testing.assert_array_equal(a.scores.view(np.int32), b.scores.view(np.int32))
    np.testing.assert_array_equal(a.positives, b.positives)
    np.testing.assert_array_equal(a.positive_scores.view(np.int32), b.positive_scores.view(np.int32))
    assert {k: v for k, v in a.stats.items() if k != "score_distribution"} == \
        {k: v for k, v in b.stats.items() if k != "score_distribution"}


def _shard_files(out):
    return sorted(f for f in os.listdir(out) if f.endswith(".parquet"))


def test_parts_in_any_order_equal_one_run(tmp_path, data):
    q, c, pos = data
    whole = hardneg.mine_to_disk(q, c, pos, tmp_path / "whole", shard_size=20, progress=False, **KW)
    same(whole, hardneg.mine(q, c, pos, **KW))
    out = tmp_path / "parts"
    got = [hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part=p, **KW)
           for p in ("2/4", (0, 4), "3/4")]
    assert got == [None, None, None]
    with pytest.raises(hardneg.OutputDirError, match=r"8 of 11 shards written.*part\(s\) 1/4"):
        hardneg.load_mined(out)
    last = hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="1/4", **KW)
    same(last, whole)
    same(hardneg.load_mined(out), whole)
    # The same shard files as the whole run, and the Parquet shards read as one table.
    assert _shard_files(out) == _shard_files(tmp_path / "whole")
    import pyarrow.parquet as pq

    table = pq.read_table([str(out / f) for f in _shard_files(out)])
    np.testing.assert_array_equal(table["query"].to_numpy(), np.arange(len(q)))
    np.testing.assert_array_equal(np.stack(table["negatives"].to_numpy(zero_copy_only=False)), whole.negatives)
    # A rerun of a finished part, or of the whole job, just reads the result.
    same(hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="0/4", **KW), whole)
    same(hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, **KW), whole)


def test_more_parts_than_shards_and_a_whole_run_finishing_parts(tmp_path, data):
    q, c, pos = data
    ref = hardneg.mine(q, c, pos, **KW)
    out = tmp_path / "many"
    for i in range(5):  # 3 shards, 5 parts: two parts have nothing to do
        got = hardneg.mine_to_disk(q, c, pos, out, shard_size=80, progress=False, part=(i, 5), **KW)
    same(got, ref)
    out = tmp_path / "mixed"
    assert hardneg.mine_to_disk(q, c, pos, out, shard_size=80, progress=False, part="1/3", **KW) is None
    written = os.stat(out / "part-00001.parquet").st_mtime_ns
    same(hardneg.mine_to_disk(q, c, pos, out, shard_size=80, progress=False, **KW), ref)  # skips shard 1
    assert os.stat(out / "part-00001.parquet").st_mtime_ns == written
    index = hardneg.FlatIndex(c, metric="cosine")  # parts of a job over an index (index=, --index)
    out = tmp_path / "index"
    for p in ("1/2", "0/2"):
        got = hardneg.mine_to_disk(q, None, pos, out, index=index, shard_size=80, progress=False, part=p, **KW)
    same(got, ref)


def test_bad_parts_are_refused(tmp_path, data):
    q, c, pos = data
    for bad in ("4/4", "-1/4", "1", "a/b", (1, 0), (1, 2, 3)):
        with pytest.raises(hardneg.ParameterError, match="part"):
            hardneg.mine_to_disk(q, c, pos, tmp_path / "bad", shard_size=20, part=bad, **KW)
    out = tmp_path / "o"
    hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="0/3", **KW)
    with pytest.raises(hardneg.OutputDirError, match="3 parts"):
        hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="0/2", **KW)
    with pytest.raises(hardneg.OutputDirError, match="num_negatives"):
        hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="1/3", **{**KW, "num_negatives": 3})
    import fcntl

    with open(out / ".lock.part-00001-of-00003", "w") as f:  # part 1/3 is running elsewhere
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(hardneg.OutputDirError, match="part 1/3 is already running"):
            hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="1/3", **KW)
    with open(out / ".lock", "w") as f:  # a whole run is writing
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(hardneg.OutputDirError, match="whole hardneg mine job"):
            hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, part="1/3", **KW)
    with open(out / ".lock", "w") as f:  # parts are running: a whole run waits
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        with pytest.raises(hardneg.OutputDirError, match="or a part of one"):
            hardneg.mine_to_disk(q, c, pos, out, shard_size=20, progress=False, **KW)


def _cli(args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "hardneg.cli", "mine", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _part_shards(out, name):
    try:
        return len(json.loads((out / name).read_text())["shards"])
    except (OSError, ValueError):
        return -1


def test_cli_parts_run_at_once_and_a_killed_part_resumes(tmp_path):
    rng = np.random.default_rng(2)
    c = rng.standard_normal((20_000, 48), dtype=np.float32)
    pos = rng.integers(0, 20_000, 1500)
    q = c[pos] + 0.8 * rng.standard_normal((1500, 48), dtype=np.float32)
    for name, arr in (("q", q), ("c", c), ("p", pos)):
        np.save(tmp_path / f"{name}.npy", arr)
    common = ["--queries", str(tmp_path / "q.npy"), "--corpus", str(tmp_path / "c.npy"), "--positives",
              str(tmp_path / "p.npy"), "--num-negatives", "5", "--sampling", "simans", "--seed", "3",
              "--relative-margin", "0.02", "--shard-size", "50", "--chunk-size", "25", "--threads", "1"]
    ref = hardneg.mine(q, c, pos, num_negatives=5, sampling="simans", seed=3, relative_margin=0.02)
    out = tmp_path / "out"
    # Part 1 is killed after it wrote a few shards (or mid-write), while part 0 runs to the end.
    p0 = _cli([*common, "--out", str(out), "--part", "0/2"])
    p1 = _cli([*common, "--out", str(out), "--part", "1/2"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p1.poll() is None and _part_shards(out, ".manifest.part-00001-of-00002.json") < 3:
        time.sleep(0.005)
    assert p1.poll() is None, "part 1 finished before it could be killed; make it longer"
    os.kill(p1.pid, signal.SIGKILL)
    p1.communicate()
    stdout, stderr = p0.communicate(timeout=300)
    assert p0.returncode == 0, stderr
    assert "Part 0/2 done" in stdout
    with pytest.raises(hardneg.OutputDirError, match="part\\(s\\) 1/2"):
        hardneg.load_mined(out)
    again = _cli([*common, "--out", str(out), "--part", "1/2"])
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert "Wrote 1,500 queries" in stdout  # the last part prints the whole job's summary
    same(hardneg.load_mined(out), ref)
    import pyarrow.parquet as pq

    queries = np.concatenate([pq.read_table(out / f).column("query").to_numpy() for f in _shard_files(out)])
    np.testing.assert_array_equal(queries, np.arange(1500))
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    assert (out / MANIFEST).exists()
    bad = _cli([*common, "--out", str(out), "--part", "2/2"])
    _, stderr = bad.communicate(timeout=300)
    assert bad.returncode == 2 and "0 to N-1" in stderr
