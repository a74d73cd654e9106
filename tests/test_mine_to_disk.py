"""mine_to_disk / hardneg mine: Parquet shards, resume after interruption (real SIGKILL), bad directories."""

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
from hardneg.selection import STAT_NAMES


def same(a: hardneg.Mined, b: hardneg.Mined) -> None:
    np.testing.assert_array_equal(a.negatives, b.negatives)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.positives, b.positives)
    np.testing.assert_array_equal(a.positive_scores, b.positive_scores)
    assert {k: a.stats[k] for k in STAT_NAMES} == {k: b.stats[k] for k in STAT_NAMES}
    assert a.params == b.params


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((2000, 16), dtype=np.float32)
    q = c[:230] + 0.2 * rng.standard_normal((230, 16), dtype=np.float32)
    pos = np.stack([np.arange(230), rng.integers(0, 2000, 230)], axis=1)
    pos[::4, 1] = -1
    return q, c, pos


KW = dict(num_negatives=4, relative_margin=0.05, sampling="random", seed=4, range_min=1)


def test_same_result_as_mine(tmp_path, data):
    q, c, pos = data
    want = hardneg.mine(q, c, pos, progress=False, **KW)
    got = hardneg.mine_to_disk(q, c, pos, tmp_path / "out", shard_size=64, chunk_size=17, progress=False, **KW)
    same(want, got)
    files = sorted(f for f in os.listdir(tmp_path / "out") if f.endswith(".parquet"))
    assert files == [f"part-{i:05d}.parquet" for i in range(4)]
    manifest = json.loads((tmp_path / "out" / ".manifest.json").read_text())
    assert manifest["complete"] and manifest["stats"]["queries"] == 230
    same(got, hardneg.load_mined(tmp_path / "out"))
    assert got.summary() == want.summary()


class Stop(Exception):
    pass


def test_resume_after_an_interruption_in_process(tmp_path, data):
    q, c, pos = data
    want = hardneg.mine(q, c, pos, progress=False, **KW)
    out = tmp_path / "out"

    def stop_after(limit):
        def cb(done, total):
            if done >= limit:
                raise Stop
        return cb

    for limit in (30, 100, 170):  # three interrupted runs, each getting further
        with pytest.raises(Stop):
            hardneg.mine_to_disk(q, c, pos, out, shard_size=40, chunk_size=10, progress=stop_after(limit), **KW)
        with pytest.raises(hardneg.OutputDirError, match="not finished"):
            hardneg.load_mined(out)
    # Leftover temporary files (as after a kill during a write) are cleaned up.
    (out / ".part-00005.parquet.tmp").write_bytes(b"garbage")
    (out / "part-00004.parquet.tmp").write_bytes(b"garbage")  # the old layout's name
    seen = []
    got = hardneg.mine_to_disk(q, c, pos, out, shard_size=40, chunk_size=10, progress=lambda d, t: seen.append(d), **KW)
    assert seen[0] >= 160  # the finished shards were not recomputed
    same(want, got)
    assert not any(f.endswith(".tmp") for f in os.listdir(out))


def _cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "hardneg.cli", "mine", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _shards_done(out):
    try:
        m = json.loads((out / ".manifest.json").read_text())
    except (OSError, ValueError):
        return -1, False
    return len(m["shards"]), m["complete"]


def test_sigkill_then_rerun_gives_the_uninterrupted_output(tmp_path):
    rng = np.random.default_rng(1)
    c = rng.standard_normal((30_000, 48), dtype=np.float32)
    pos = rng.integers(0, 30_000, (3_000, 2))
    pos[rng.random(3_000) < 0.75, 1] = -1
    q = c[pos[:, 0]] + 0.8 * rng.standard_normal((3_000, 48), dtype=np.float32)
    for name, arr in (("q", q), ("c", c), ("p", pos)):
        np.save(tmp_path / f"{name}.npy", arr)
    common = ["--queries", str(tmp_path / "q.npy"), "--corpus", str(tmp_path / "c.npy"), "--positives",
              str(tmp_path / "p.npy"), "--num-negatives", "6", "--absolute-margin", "0.01", "--sampling", "simans",
              "--seed", "3", "--shard-size", "60", "--chunk-size", "30", "--threads", "1"]
    ref_dir, out = tmp_path / "ref", tmp_path / "out"
    done = _cli([*common, "--out", str(ref_dir)])
    stdout, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr
    assert "Positive" in stdout and "Wrote 3,000 queries" in stdout
    assert "query/s" not in stderr  # no progress bar when stderr is not a terminal

    kills = 0
    for wait_for in (0, 3, 12, 25):  # kill before anything, then after some shards (also mid-write)
        proc = _cli([*common, "--out", str(out), "--threads", "2", "--chunk-size", "7"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _shards_done(out)[0] >= wait_for:
                break
            time.sleep(0.005)
        if wait_for:
            time.sleep(0.02 * wait_for % 0.07)  # land at varying points of a shard
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
        assert not _shards_done(out)[1], "the job finished before it could be killed; make it longer"
    assert kills == 4
    final = _cli([*common, "--out", str(out)])
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    a, b = hardneg.load_mined(ref_dir), hardneg.load_mined(out)
    same(a, b)
    assert len(a) == 3000 and 0 < (a.negatives == -1).sum() < a.negatives.size / 2
    # The shards are the same files: nothing lost, nothing duplicated.
    import pyarrow.parquet as pq

    queries = np.concatenate([pq.read_table(out / f).column("query").to_numpy()
                              for f in sorted(os.listdir(out)) if f.endswith(".parquet")])
    np.testing.assert_array_equal(queries, np.arange(3000))


def test_different_arguments_on_an_existing_directory(tmp_path, data):
    q, c, pos = data
    out = tmp_path / "out"
    hardneg.mine_to_disk(q, c, pos, out, shard_size=100, progress=False, **KW)
    changes = [
        (dict(KW, num_negatives=3), "num_negatives: 4 in the directory, 3 now"),
        (dict(KW, seed=5), "seed"),
        (dict(KW, relative_margin=None), "relative_margin"),
        (dict(KW, sampling="top"), "sampling"),
    ]
    for kw, text in changes:
        with pytest.raises(hardneg.OutputDirError, match=text):
            hardneg.mine_to_disk(q, c, pos, out, shard_size=100, progress=False, **kw)
    with pytest.raises(hardneg.OutputDirError, match="shard_size"):
        hardneg.mine_to_disk(q, c, pos, out, shard_size=50, progress=False, **KW)
    q2 = q.copy()
    q2[100, 3] += 1.0
    with pytest.raises(hardneg.OutputDirError, match="queries"):
        hardneg.mine_to_disk(q2, c, pos, out, shard_size=100, progress=False, **KW)
    pos2 = pos.copy()
    pos2[7, 0] = 1999
    with pytest.raises(hardneg.OutputDirError, match="positives"):
        hardneg.mine_to_disk(q, c, pos2, out, shard_size=100, progress=False, **KW)
    with pytest.raises(ValueError):  # also a builtin
        hardneg.mine_to_disk(q, c, pos, out, shard_size=100, progress=False, **dict(KW, seed=9))
    # threads / chunk size / progress do not change the output: same job, just loaded.
    same(hardneg.load_mined(out), hardneg.mine_to_disk(q, c, pos, out, shard_size=100, chunk_size=3, threads=1,
                                                       progress=False, **KW))


def test_unrelated_directory_and_file(tmp_path, data):
    q, c, pos = data
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(hardneg.OutputDirError, match="not empty"):
        hardneg.mine_to_disk(q, c, pos, tmp_path / "d", progress=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(hardneg.OutputDirError, match="not a directory"):
        hardneg.mine_to_disk(q, c, pos, tmp_path / "f", progress=False)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(hardneg.OutputDirError, match="did not write"):
        hardneg.mine_to_disk(q, c, pos, tmp_path / "m", progress=False)


def test_cli_errors_are_reported_not_raised(tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "c.npy", rng.standard_normal((100, 8), dtype=np.float32))
    np.save(tmp_path / "q.npy", rng.standard_normal((10, 8), dtype=np.float32))
    np.save(tmp_path / "p.npy", np.arange(10) + 95)  # 100..104 are out of range
    from hardneg.cli import main

    base = ["mine", "--queries", str(tmp_path / "q.npy"), "--corpus", str(tmp_path / "c.npy"), "--out", str(tmp_path / "o")]
    assert main([*base, "--positives", str(tmp_path / "p.npy")]) == 2
    assert main([*base, "--positives", str(tmp_path / "missing.npy")]) == 2
    np.save(tmp_path / "p.npy", np.arange(10))
    with pytest.raises(SystemExit) as stop:  # argparse's own check of the choices
        main([*base, "--positives", str(tmp_path / "p.npy"), "--sampling", "best"])
    assert stop.value.code == 2
    assert main([*base, "--positives", str(tmp_path / "p.npy"), "--num-negatives", "3", "--range-max", "2"]) == 2
    assert main([*base, "--positives", str(tmp_path / "p.npy"), "--num-negatives", "3", "--no-progress"]) == 0
    assert main([*base, "--positives", str(tmp_path / "p.npy"), "--num-negatives", "2"]) == 2  # other job in o


def test_progress_bar_shows_throughput(tmp_path, data, capsys):
    q, c, pos = data
    hardneg.mine_to_disk(q, c, pos, tmp_path / "o", progress=True, shard_size=100, **KW)
    err = capsys.readouterr().err
    assert "query/s" in err and "100%" in err


def test_a_second_writer_is_refused(tmp_path, data):
    import fcntl

    q, c, pos = data
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(hardneg.OutputDirError, match="another hardneg mine job"):
            hardneg.mine_to_disk(q, c, pos, out, progress=False, **KW)
    got = hardneg.mine_to_disk(q, c, pos, out, progress=False, **KW)  # lock released: fine
    assert len(got) == len(q)


def test_cli_shows_the_progress_bar_on_a_terminal(tmp_path):
    import pty

    rng = np.random.default_rng(3)
    np.save(tmp_path / "c.npy", rng.standard_normal((500, 8), dtype=np.float32))
    np.save(tmp_path / "q.npy", rng.standard_normal((40, 8), dtype=np.float32))
    np.save(tmp_path / "p.npy", np.arange(40))
    main_fd, sub_fd = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(sub_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "hardneg.cli", "mine", "--queries", str(tmp_path / "q.npy"), "--corpus",
         str(tmp_path / "c.npy"), "--positives", str(tmp_path / "p.npy"), "--num-negatives", "3", "--out",
         str(tmp_path / "o")],
        stdout=subprocess.PIPE, stderr=sub_fd, text=True)
    os.close(sub_fd)
    stdout, _ = proc.communicate(timeout=120)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "100%" in err and "query/s" in err  # tqdm bar with throughput on a terminal
    assert "Wrote 40 queries" in stdout


def _as_table(mined: hardneg.Mined) -> dict[str, np.ndarray]:
    return {"negatives": mined.negatives, "scores": mined.scores, "positives": mined.positives,
            "positive_scores": mined.positive_scores}


def _check_rows(queries, columns, mined: hardneg.Mined) -> None:
    """Rows read by another library, in any order: the same values as ``mined`` once sorted by query."""
    order = np.argsort(np.asarray(queries))
    np.testing.assert_array_equal(np.asarray(queries)[order], np.arange(len(mined)))
    for name, want in _as_table(mined).items():
        got = np.stack([np.asarray(v, dtype=want.dtype) for v in columns[name]])[order]
        np.testing.assert_array_equal(got, want)


def test_every_parquet_reader_opens_the_directory(tmp_path, data):
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as pads
    from datasets import load_dataset

    q, c, pos = data
    out = tmp_path / "mined"
    mined = hardneg.mine_to_disk(q, c, pos, out, shard_size=64, progress=False, **KW)
    assert {f for f in os.listdir(out) if not f.endswith(".parquet")} == {".lock", ".manifest.json"}

    df = pd.read_parquet(out)
    _check_rows(df["query"], df, mined)
    table = pads.dataset(out).to_table()
    _check_rows(table["query"].to_numpy(), table.to_pydict(), mined)
    lf = pl.scan_parquet(f"{out}/*.parquet").collect()
    _check_rows(lf["query"].to_numpy(), {k: lf[k].to_list() for k in lf.columns}, mined)
    ds = load_dataset("parquet", data_dir=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    _check_rows(ds["query"], ds.to_dict(), mined)


def test_readers_see_only_finished_shards_of_a_running_job(tmp_path, data):
    import pandas as pd

    q, c, pos = data
    out = tmp_path / "mined"

    def stop_at_100(done, total):
        if done >= 100:
            raise Stop

    with pytest.raises(Stop):
        hardneg.mine_to_disk(q, c, pos, out, shard_size=40, chunk_size=20, progress=stop_at_100, **KW)
    (out / ".part-00003.parquet.tmp").write_bytes(b"half a shard")  # as if killed mid-write
    df = pd.read_parquet(out)
    assert sorted(df["query"]) == list(range(80))  # the two finished shards


def test_old_layout_is_read_and_converted(tmp_path, data):
    import pandas as pd

    q, c, pos = data
    out = tmp_path / "mined"
    want = hardneg.mine_to_disk(q, c, pos, out, shard_size=64, progress=False, **KW)
    os.replace(out / ".manifest.json", out / "manifest.json")  # the layout of earlier versions
    with pytest.warns(UserWarning, match=r"old hardneg layout.*Rename it to \.manifest\.json"):
        same(want, hardneg.load_mined(out))
    with pytest.raises(Exception, match="manifest.json"):  # why the layout changed
        pd.read_parquet(out)
    # the same job run again converts the directory in place (nothing recomputed)
    same(want, hardneg.mine_to_disk(q, c, pos, out, shard_size=64, progress=lambda d, t: pytest.fail("recomputed"), **KW))
    assert not (out / "manifest.json").exists()
    assert len(pd.read_parquet(out)) == len(q)
