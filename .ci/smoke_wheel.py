"""Smoke test of an installed hardneg in a fresh virtual environment (run by .ci/check_dist).

Phase ``bare`` (the environment has hardneg with numpy and tqdm only, no torch, no FAISS, no
pyarrow): import, search, mine, cluster, plan sampler epochs, ``hardneg info`` / ``python -m
hardneg``, and one clear ImportError line for what needs a missing package. Phase ``parquet``
(pyarrow added): ``hardneg mine`` end to end and ``load_mined``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"smoke test failed: {what}")
    print(f"ok  {what}")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)


def bare() -> None:
    for absent in ("torch", "faiss", "pyarrow", "sentence_transformers"):
        check(importlib.util.find_spec(absent) is None, f"{absent} is not installed")
    import hardneg

    check(hardneg.__file__.startswith(sys.prefix), f"hardneg {hardneg.__version__} imported from this venv")
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((2000, 32), dtype=np.float32)
    queries = corpus[:50] + 0.1 * rng.standard_normal((50, 32), dtype=np.float32)
    scores, ids = hardneg.FlatIndex(corpus, metric="cosine").search(queries, k=5)
    sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (corpus / np.linalg.norm(corpus, axis=1, keepdims=True)).T
    check(bool((ids[:, 0] == np.arange(50)).all()) and np.allclose(scores[:, 0], sims.max(axis=1), atol=1e-5),
          "exact search finds each query's own row")
    mined = hardneg.mine(queries, corpus, np.arange(50), num_negatives=4, relative_margin=0.05, progress=False)
    check(mined.negatives.shape == (50, 4) and not (mined.negatives == np.arange(50)[:, None]).any(), "mine")
    labels = hardneg.cluster(corpus, cluster_size=100)
    check(sorted(np.bincount(labels).tolist()) == [100] * 20, "balanced clustering: 20 clusters of 100")
    sampler = hardneg.ClusterBatchSampler(corpus, batch_size=128, cluster_size=16, seed=0)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        epochs.append([list(b) for b in sampler])
    rows = sorted(i for b in epochs[0] for i in b)
    check(len(epochs[0]) == len(sampler) == 16 and rows == list(range(2000)) and epochs[0] != epochs[1],
          "sampler plans epochs without torch")
    check("torch" not in sys.modules, "nothing imported torch")
    for cmd in (["-m", "hardneg"], ["-m", "hardneg", "info"]):
        out = run(*cmd)
        check(out.returncode == 0 and out.stdout.startswith(f"hardneg {hardneg.__version__}")
              and "torch" in out.stdout and "not installed" in out.stdout, f"python {' '.join(cmd)}")
    print(run("-m", "hardneg").stdout)
    out = run("-c", "import hardneg; hardneg.InfoNCE")
    last = out.stderr.strip().splitlines()[-1]
    check(last.startswith("ImportError: hardneg.InfoNCE needs torch, which is not installed: pip install"),
          f"a torch-only feature says what to install: {last!r}")
    frames = [line for line in out.stderr.splitlines() if line.startswith('  File "')]
    check(len(frames) <= 3, f"... in a short traceback ({len(frames)} frames)")
    with tempfile.TemporaryDirectory() as tmp:
        _save(tmp, corpus, queries)
        out = _mine_cli(tmp)
        check(out.returncode == 2 and "needs pyarrow, which is not installed" in out.stderr
              and "Traceback" not in out.stderr, "hardneg mine without pyarrow says what to install")


def _save(tmp: str, corpus: np.ndarray, queries: np.ndarray) -> None:
    np.save(os.path.join(tmp, "c.npy"), corpus)
    np.save(os.path.join(tmp, "q.npy"), queries)
    np.save(os.path.join(tmp, "p.npy"), np.arange(len(queries)))


def _mine_cli(tmp: str) -> subprocess.CompletedProcess[str]:
    bindir = os.path.dirname(sys.executable)
    return subprocess.run([os.path.join(bindir, "hardneg"), "mine", "--queries", os.path.join(tmp, "q.npy"),
                           "--corpus", os.path.join(tmp, "c.npy"), "--positives", os.path.join(tmp, "p.npy"),
                           "--num-negatives", "4", "--shard-size", "16", "--out", os.path.join(tmp, "mined")],
                          capture_output=True, text=True, timeout=600)


def parquet() -> None:
    import hardneg
    import pyarrow.dataset as pads

    rng = np.random.default_rng(1)
    corpus = rng.standard_normal((1000, 16), dtype=np.float32)
    queries = corpus[:40]
    with tempfile.TemporaryDirectory() as tmp:
        _save(tmp, corpus, queries)
        out = _mine_cli(tmp)
        check(out.returncode == 0 and "Wrote 40 queries" in out.stdout, "hardneg mine writes Parquet shards")
        mined = hardneg.load_mined(os.path.join(tmp, "mined"))
        check(np.array_equal(mined.negatives, hardneg.mine(queries, corpus, np.arange(40), num_negatives=4,
                                                           progress=False).negatives), "load_mined = mine")
        check(pads.dataset(os.path.join(tmp, "mined")).count_rows() == 40, "pyarrow reads the directory as one table")


if __name__ == "__main__":
    {"bare": bare, "parquet": parquet}[sys.argv[1] if len(sys.argv) > 1 else "bare"]()
