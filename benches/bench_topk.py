"""Side-by-side exact top-k: hardneg.FlatIndex.search vs FAISS IndexFlatIP, torch and numpy.

Same data, same run. Prints time, GFLOP/s (2*Q*N*d / t), the ratio to FAISS, the share of the
machine's FP32 peak (32 FLOP/cycle/core by default, as the project brief defines it), and whether
the ids agree with FAISS.

    .venv/bin/python benches/bench_topk.py            # the full grid of the foundation issue
    .venv/bin/python benches/bench_topk.py --quick    # a small grid for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import hardneg


def best_of(fn, repeats, budget_s=60.0):
    """Best wall time of `repeats` runs (fewer if one run exceeds the budget)."""
    best, out = float("inf"), None
    t_total = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = min(best, dt)
        t_total += dt
        if t_total > budget_s:
            break
    return best, out


def torch_topk(torch, q, c, k, chunk=65536):
    qt = torch.from_numpy(q)
    ct = torch.from_numpy(c)
    best_s = best_i = None
    for s in range(0, c.shape[0], chunk):
        sc = qt @ ct[s : s + chunk].T
        vs, ix = torch.topk(sc, min(k, sc.shape[1]), dim=1)
        ix = ix + s
        if best_s is None:
            best_s, best_i = vs, ix
        else:
            vs = torch.cat([best_s, vs], 1)
            ix = torch.cat([best_i, ix], 1)
            best_s, pos = torch.topk(vs, k, dim=1)
            best_i = torch.gather(ix, 1, pos)
    return best_s.numpy(), best_i.numpy()


def numpy_topk(q, c, k, chunk=65536):
    best_s = best_i = None
    for s in range(0, c.shape[0], chunk):
        sc = q @ c[s : s + chunk].T
        kk = min(k, sc.shape[1])
        part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
        vs = np.take_along_axis(sc, part, 1)
        ix = part + s
        if best_s is not None:
            vs = np.concatenate([best_s, vs], 1)
            ix = np.concatenate([best_i, ix], 1)
        p = np.argpartition(-vs, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(vs, p, 1), np.take_along_axis(ix, p, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--flop-per-cycle", type=float, default=32.0, help="FP32 FLOP/cycle/core for the peak share")
    ap.add_argument("--ghz", type=float, default=3.65, help="core clock for the peak share")
    ap.add_argument("--skip", default="", help="comma list of anchors to skip: faiss,torch,numpy")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--q", default="", help="comma list: only these query counts (default: the whole grid)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cores = os.cpu_count() or 1
    peak = args.flop_per_cycle * args.ghz * 1e9 * cores
    if args.quick:
        grid = [(100_000, 256, [10], [1, 64, 1024])]
    else:
        grid = [(1_000_000, 768, [10, 100], [1, 64, 4096]), (500_000, 384, [100], [4096])]
    import faiss
    import torch

    torch.set_num_threads(cores)
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, hardneg kernels: {hardneg._hardneg.isa()}")
    print(f"faiss {faiss.__version__} (IndexFlatIP, defaults), torch {torch.__version__}, numpy {np.__version__}")
    print(f"peak = {args.flop_per_cycle:g} FLOP/cycle/core x {args.ghz} GHz x {cores} cores = {peak / 1e9:.0f} GFLOP/s\n")
    only_q = {int(x) for x in args.q.split(",") if x}
    if only_q:
        grid = [(n, d, ks, [q for q in qs if q in only_q]) for n, d, ks, qs in grid]
        grid = [g for g in grid if g[3]]
    rows = []
    hdr = f"{'N':>9} {'d':>4} {'Q':>5} {'k':>4} | {'engine':<8} {'time':>10} {'GFLOP/s':>8} {'vs faiss':>9} {'% peak':>7} {'ids = faiss':>11}"
    print(hdr)
    print("-" * len(hdr))
    rng = np.random.default_rng(0)
    for n, d, ks, qs in grid:
        corpus = rng.standard_normal((n, d), dtype=np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        index = hardneg.FlatIndex(corpus)
        fi = faiss.IndexFlatIP(d)
        fi.add(corpus)
        for nq in qs:
            q = rng.standard_normal((nq, d), dtype=np.float32)
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            flop = 2.0 * nq * n * d
            repeats = 5 if nq <= 64 else 2
            for k in ks:
                res = {}
                res["hardneg"] = best_of(lambda: index.search(q, k), repeats)
                if "faiss" not in skip:
                    res["faiss"] = best_of(lambda: fi.search(q, k), repeats)
                if "torch" not in skip:
                    res["torch"] = best_of(lambda: torch_topk(torch, q, corpus, k), repeats)
                if "numpy" not in skip:
                    res["numpy"] = best_of(lambda: numpy_topk(q, corpus, k), repeats)
                ft = res["faiss"][0] if "faiss" in res else float("nan")
                fids = res["faiss"][1][1] if "faiss" in res else None
                for name, (t, out) in res.items():
                    same = "" if fids is None else f"{(out[1] == fids).mean() * 100:.2f}%"
                    g = flop / t / 1e9
                    print(f"{n:>9} {d:>4} {nq:>5} {k:>4} | {name:<8} {t * 1e3:>8.1f}ms {g:>8.1f} {ft / t:>8.2f}x {g * 1e9 / peak * 100:>6.1f}% {same:>11}")
                    rows.append(dict(n=n, d=d, q=nq, k=k, engine=name, seconds=t, gflops=g, vs_faiss=ft / t, ids_equal_faiss=same))
                print()
        del index, fi, corpus
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
