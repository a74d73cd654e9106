"""Corpus-sharded mining on torch.distributed against one process on the same cores.

1 process x 2 threads (``hardneg.mine``) vs 2 processes x 1 thread (``hardneg.distributed.mine``,
gloo, file rendezvous, each rank memory-maps its half of the corpus) on 20,000 queries x
1,000,000 x 384 (cosine, 8 negatives, relative_margin 0.05, so range_max = 81). Every run is a fresh
process timed around the mining call (index construction included); the runs alternate and the
best of ``--repeats`` counts. Reports the time ratio, the bytes each rank exchanged per query, the
merge's and selection's share of the time, checks that both give the same negatives, and prints
an estimate for 8 and 64 machines built from the measured parts.

    flock /work/locks/bench.lock .venv/bin/python benches/bench_distributed.py
    .venv/bin/python benches/bench_distributed.py --queries 2000 --rows 100000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

KW = dict(num_negatives=8, relative_margin=0.05, metric="cosine")


def make_data(path: str, q: int, n: int, d: int) -> None:
    """Random unit-ish embeddings; each query near its positive. Written once, reused."""
    stamp = os.path.join(path, f"done-{q}-{n}-{d}")
    if os.path.exists(stamp):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(0)
    corpus = np.lib.format.open_memmap(os.path.join(path, "corpus.npy"), "w+", np.float32, (n, d))
    for a in range(0, n, 100_000):
        b = min(a + 100_000, n)
        corpus[a:b] = rng.standard_normal((b - a, d), dtype=np.float32)
    corpus.flush()
    positives = rng.integers(0, n, q)
    queries = corpus[positives] + 0.5 * rng.standard_normal((q, d), dtype=np.float32)
    np.save(os.path.join(path, "queries.npy"), queries)
    np.save(os.path.join(path, "positives.npy"), positives)
    del corpus
    open(stamp, "w").close()


def cpu_seconds() -> float:
    """CPU time of this process so far (all threads): less sensitive to other load than wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_single(path: str, threads: int, out: str) -> dict:
    import hardneg

    corpus = np.load(os.path.join(path, "corpus.npy"), mmap_mode="r")
    t, c = time.perf_counter(), cpu_seconds()
    mined = hardneg.mine(os.path.join(path, "queries.npy"), corpus, os.path.join(path, "positives.npy"),
                         threads=threads, progress=False, **KW)
    seconds, cpu = time.perf_counter() - t, cpu_seconds() - c
    np.save(out, mined.negatives)
    return {"seconds": seconds, "cpu": cpu}


def run_rank(path: str, rank: int, world: int, init: str, threads: int, out: str) -> dict:
    import torch
    import torch.distributed as dist

    import hardneg.distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    corpus = np.load(os.path.join(path, "corpus.npy"), mmap_mode="r")
    lo, hi = len(corpus) * rank // world, len(corpus) * (rank + 1) // world
    dist.barrier()
    t, c = time.perf_counter(), cpu_seconds()
    mined = hardneg.distributed.mine(os.path.join(path, "queries.npy"), corpus[lo:hi],
                                     os.path.join(path, "positives.npy"), row_offset=lo, threads=threads,
                                     progress=False, dst=0, **KW)
    seconds, cpu = time.perf_counter() - t, cpu_seconds() - c
    info = {"seconds": seconds, "cpu": cpu, "rank": rank}
    if mined is not None:
        np.save(out, mined.negatives)
        info.update(mined.stats["distributed"])
        info["range_max"] = mined.params["range_max"]
    dist.destroy_process_group()
    return info


def child(args: argparse.Namespace) -> None:
    if args.role == "single":
        info = run_single(args.data, args.threads, args.out)
    else:
        info = run_rank(args.data, args.rank, args.world, args.init, args.threads, args.out)
    print("RESULT " + json.dumps(info), flush=True)


def spawn(extra: list[str], threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, *extra], stdout=subprocess.PIPE, text=True, env=env)


def result(p: subprocess.Popen) -> dict:
    out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"a benchmark process failed (exit {p.returncode})")
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=20_000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data", default="/work/scratch/distributed/bench")
    p.add_argument("--role", choices=["single", "rank"], help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--init", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        return child(args)

    data = os.path.join(args.data, f"{args.queries}x{args.rows}x{args.dim}")
    make_data(data, args.queries, args.rows, args.dim)
    with open(os.path.join(data, "corpus.npy"), "rb") as f:  # warm the page cache for both runs
        while f.read(1 << 26):
            pass
    tmp = tempfile.mkdtemp()
    singles, dists = [], []
    for rep in range(args.repeats):
        single_out = os.path.join(tmp, "single.npy")
        singles.append(result(spawn(["--role", "single", "--threads", "2", "--data", data, "--out", single_out], 2)))
        init = f"file://{tmp}/pg-{rep}"
        dist_out = os.path.join(tmp, "dist.npy")
        procs = [spawn(["--role", "rank", "--rank", str(r), "--world", "2", "--init", init, "--threads", "1",
                        "--data", data, "--out", dist_out], 1) for r in range(2)]
        ranks = [result(pr) for pr in procs]
        dists.append(ranks)
        same = np.array_equal(np.load(single_out), np.load(dist_out))
        print(f"run {rep}: single {singles[-1]['seconds']:.1f} s ({singles[-1]['cpu']:.1f} CPU s), distributed "
              f"{max(r['seconds'] for r in ranks):.1f} s ({sum(r['cpu'] for r in ranks):.1f} CPU s over both ranks), "
              f"same negatives: {same}", flush=True)
        if not same:
            raise SystemExit("the distributed result differs from the single-process one")

    best_single = min(s["seconds"] for s in singles)
    best = min(dists, key=lambda rs: max(r["seconds"] for r in rs))
    wall = max(r["seconds"] for r in best)
    r0 = next(r for r in best if r["rank"] == 0)
    q = args.queries
    print(f"\n{q:,} queries x {args.rows:,} x {args.dim}, cosine, range_max {r0['range_max']}")
    cpu_single = min(s["cpu"] for s in singles)
    cpu_dist = min(sum(r["cpu"] for r in rs) for rs in dists)
    print(f"1 process x 2 threads : {best_single:8.2f} s  {cpu_single:8.1f} CPU s")
    print(f"2 processes x 1 thread: {wall:8.2f} s  {cpu_dist:8.1f} CPU s  ({wall / best_single:.2f}x the single "
          f"process's time, {cpu_dist / cpu_single:.2f}x its CPU time)")
    print(f"rank 0 exchanged {r0['bytes_sent'] / q:,.0f} bytes sent + {r0['bytes_received'] / q:,.0f} received per query")
    for part in ("search", "exchange", "merge", "select"):
        s = r0[f"seconds_{part}"]
        print(f"  {part:<9}{s:8.2f} s  {s / wall:6.1%} of the distributed time")
    estimate(best_single, r0, q, args.rows)


def estimate(single: float, r0: dict, q: int, n: int) -> None:
    """Time on W machines like this one (2 cores each, each machine one rank with 2 threads)
    from the measured parts: search scales with the rows per rank, merge and selection with the
    queries per rank (merge also with log2 of the ranks), the exchange with the bytes each rank
    sends at an assumed 1.25 GB/s (10 Gb/s) plus 1 ms per collective."""
    search_rate = q * n / single  # (query, row) pairs per second on 2 cores
    per_q_merge = r0["seconds_merge"] / (q / 2)  # per query merged (2 parts)
    per_q_select = r0["seconds_select"] / (q / 2)
    bytes_per_q = r0["bytes_sent"] / q  # per query, per rank, at 2 ranks
    chunks = -(-q // 8192)
    print(f"\nestimate for {q:,} queries on W machines like this one (corpus as measured, and grown with W):")
    for w in (8, 64):
        for rows in (n, n * w):
            search = q * rows / w / search_rate
            merge = per_q_merge * (q / w) * max(1.0, np.log2(w))
            select = per_q_select * (q / w)
            exchange = bytes_per_q * 2 * (w - 1) / w * q / 1.25e9 + 3 * chunks * 1e-3 * np.log2(w)
            total = search + merge + select + exchange
            print(f"  {w:>2} machines, {rows:>12,} rows: {total:7.2f} s (search {search:.2f}, exchange "
                  f"{exchange:.2f}, merge {merge:.3f}, select {select:.3f})")


if __name__ == "__main__":
    main()
