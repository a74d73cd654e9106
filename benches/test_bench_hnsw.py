"""bench_hnsw.py in small: the equal-recall interpolation and one run of the whole script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench_hnsw import qps_at_recall


def test_qps_at_recall_interpolates_between_the_points_around_it():
    curve = [(0.7, 8000.0), (0.8, 5000.0), (0.9, 2500.0)]
    assert qps_at_recall(curve, 0.8) == pytest.approx(5000.0)
    assert qps_at_recall(curve, 0.85) == pytest.approx((5000.0 * 2500.0) ** 0.5)  # log-linear midpoint
    assert qps_at_recall(curve, 0.5) == 8000.0  # every setting passes: the fastest
    assert qps_at_recall(curve, 0.95) is None  # never reached
    assert qps_at_recall([], 0.5) is None


def test_the_script_runs_every_index_and_reports_recall(tmp_path: Path):
    out = tmp_path / "run.json"
    env = {**os.environ, "HARDNEG_BENCH_DATA": str(tmp_path)}
    args = ["--n", "3000", "--queries", "50", "--threads", "1", "--ef", "16", "64", "--mine-queries", "200", "--json", str(out)]
    run = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_hnsw.py")), *args], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [r["name"].split()[0] for r in res["rows"]] == ["hardneg", "FAISS", "usearch"]
    for r in res["rows"]:
        assert r["build_s"] > 0
        assert {(s["ef"], s["k"]) for s in r["search"]} == {(16, 10), (64, 10)}
        assert all(0.0 <= s["recall"] <= 1.0 for s in r["search"])
    # on 3,000 rows the graph search at ef=64 finds most of the exact top 10
    assert next(s for s in res["rows"][0]["search"] if s["ef"] == 64)["recall"] >= 0.8
    assert 0.5 <= res["mine"]["overlap"] <= 1.0
    assert "at equal recall" in run.stdout


def test_the_script_reads_embeddings_from_npy_files(tmp_path: Path):
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((1500, 24)).astype("float32")
    np.save(tmp_path / "a.npy", rows[:1000])
    np.save(tmp_path / "b.npy", rows[1000:])
    out = tmp_path / "run.json"
    args = ["--corpus-file", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--queries", "40", "--threads", "1",
            "--ef", "32", "--skip", "faiss", "usearch", "--json", str(out)]
    run = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_hnsw.py")), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    assert (res["data"], res["n"], res["d"], res["queries"]) == ("files", 1500, 24, 40)
    assert set(res["recall_default"]) == {"10", "100"}
