"""Hard-negative mining: hardneg vs sentence-transformers' ``mine_hard_negatives``, same embeddings, one run.

Variants, each in a fresh subprocess (so each peak RSS, from ``resource.getrusage``, is its own):

* ``hardneg``        : ``hardneg.mine(queries, corpus, positives)`` (ids and scores out);
* ``hardneg_st``     : ``hardneg.integrations.sentence_transformers.mine_hard_negatives``, the
                       drop-in, building the same triplet ``datasets.Dataset`` as sentence-transformers;
* ``st``             : ``sentence_transformers.util.mine_hard_negatives`` default search (``use_faiss=False``);
* ``st_faiss``       : the same with ``use_faiss=True`` (FAISS ``IndexFlatIP`` on CPU).

Settings of the issue: ``relative_margin=0.05``, 8 negatives, ``sampling="top"``, triplet output,
one positive per query (query ``i``'s positive is corpus row ``i``). The sentence-transformers
variants get a model whose ``encode_query`` / ``encode_document`` return the precomputed
embeddings (rows picked by the text's number), so only mining is timed. The embeddings are
generated (topic clusters, queries near their positive: margins matter), normalised float32,
stored once as ``.npy`` in ``--data-dir`` and loaded by every variant.

Before running sentence-transformers' default path the script computes the size of its score
matrix (``min(faiss_batch_size, Q) x N`` float32, plus the ``torch.topk`` copies) and refuses to
run it when ``MemAvailable`` cannot hold it with 3 GiB to spare; it then prints the size instead.

    .venv/bin/python benches/bench_mine.py                      # 20,000 x 200,000 x 384 (the README numbers)
    .venv/bin/python benches/bench_mine.py --queries 2000 --corpus 20000   # smoke run
    .venv/bin/python benches/bench_mine.py --large              # 100,000 x 1,000,000 x 384
    .venv/bin/python benches/bench_mine.py --out-of-core        # 1,000 x 8,000,000 x 768 memmapped (24.6 GB file)
    .venv/bin/python benches/bench_mine.py --large --plan       # predicted memory only, nothing run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

GiB = 1024**3
VARIANTS = ("hardneg", "hardneg_st", "st", "st_faiss")


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes.

    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` would be the obvious call, but Linux carries the
    parent's high-water mark into a child across fork/exec, so a small child of a large parent
    reports the parent's peak. ``VmHWM`` of ``/proc/self/status`` belongs to the process's own
    address space; it is used when available, and both are recorded.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def st_default_bytes(q: int, n: int, batch: int = 16384) -> int:
    """Score matrix of one chunk of sentence-transformers' default path, plus the normalised corpus copy."""
    rows = min(batch, q)
    return rows * n * 4


def predicted_bytes(variant: str, q: int, n: int, d: int, st_batch: int = 16384) -> int:
    """A variant's predicted peak memory (embeddings it holds + its largest temporary)."""
    emb = (q + n) * d * 4
    return {
        "hardneg": q * d * 4 + 64 * 1024**2,  # the corpus is memory-mapped, results are Q x 8
        "hardneg_st": 2 * emb,  # queries + corpus in RAM, the encode copy of the stand-in model
        "st": 2 * emb + st_default_bytes(q, n, st_batch) + n * d * 4,  # + cos_sim's normalised corpus copy
        "st_faiss": 3 * emb,  # + the FlatIP index's own copy
    }[variant]


def generate(path: str, q: int, n: int, d: int, seed: int = 0, chunk: int = 200_000) -> None:
    """queries.npy [q, d] and corpus.npy [n, d] (memmapped writes, normalised rows)."""
    os.makedirs(path, exist_ok=True)
    meta = os.path.join(path, "meta.json")
    want = {"q": q, "n": n, "d": d, "seed": seed}
    if os.path.exists(meta) and json.load(open(meta)) == want:
        return
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(n // 50, 1), d)).astype(np.float32)
    corpus = np.lib.format.open_memmap(os.path.join(path, "corpus.npy"), mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        r = np.random.default_rng([seed, s])
        block = topics[r.integers(0, len(topics), e - s)] + 0.8 * r.standard_normal((e - s, d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        corpus[s:e] = block
    corpus.flush()
    r = np.random.default_rng([seed, -1 % (1 << 32)])
    queries = np.asarray(corpus[:q]) + 0.9 * r.standard_normal((q, d), dtype=np.float32) / np.sqrt(d) * 8
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.save(os.path.join(path, "queries.npy"), queries.astype(np.float32))
    del corpus
    json.dump(want, open(meta, "w"))


class PrecomputedModel:
    """Just enough of a SentenceTransformer for mine_hard_negatives: encode = look the rows up."""

    similarity_fn_name = "cosine"

    def __init__(self, queries: np.ndarray, corpus: np.ndarray):
        import torch
        from sentence_transformers.util import cos_sim, pairwise_cos_sim

        self.queries, self.corpus = queries, corpus
        self.device = torch.device("cpu")
        self.similarity = cos_sim
        self.similarity_pairwise = pairwise_cos_sim

    def get_embedding_dimension(self) -> int:
        return self.corpus.shape[1]

    @staticmethod
    def _rows(texts) -> np.ndarray:
        return np.fromiter((int(t[1:]) for t in texts), dtype=np.int64, count=len(texts))

    def encode_query(self, texts, **kw):
        return self.queries[self._rows(texts)]

    def encode_document(self, texts, **kw):
        return self.corpus[self._rows(texts)]


def worker(variant: str, path: str, threads: int | None, st_batch: int = 16384) -> dict:
    mmap = "r" if variant.startswith("hardneg") else None
    queries = np.load(os.path.join(path, "queries.npy"), mmap_mode=None)
    corpus = np.load(os.path.join(path, "corpus.npy"), mmap_mode=mmap)
    q, n = len(queries), len(corpus)
    import hardneg  # noqa: F401 - libraries are imported before the baseline is taken

    if variant != "hardneg":
        import datasets  # noqa: F401
        import sentence_transformers  # noqa: F401
    base_rss = peak_rss()
    res: dict = {"variant": variant, "queries": q, "corpus": n, "dim": corpus.shape[1]}
    if variant == "hardneg":
        t = time.perf_counter()
        mined = hardneg.mine(queries, corpus, np.arange(q), num_negatives=8, relative_margin=0.05, threads=threads)
        res["seconds"] = time.perf_counter() - t
        res["negatives_found"] = int((mined.negatives >= 0).sum())
        res["first_row"] = mined.negatives[0].tolist()
    else:
        from datasets import Dataset

        ds = Dataset.from_dict({"query": [f"q{i}" for i in range(q)], "answer": [f"d{i}" for i in range(q)]})
        extra = [f"d{i}" for i in range(q, n)]
        model = PrecomputedModel(queries, corpus)
        kw = dict(corpus=extra, relative_margin=0.05, num_negatives=8, verbose=False)
        if variant == "hardneg_st":
            from hardneg.integrations.sentence_transformers import mine_hard_negatives

            kw["threads"] = threads
        else:
            from sentence_transformers.util import mine_hard_negatives

            kw["use_faiss"] = variant == "st_faiss"
            kw["faiss_batch_size"] = st_batch
        t = time.perf_counter()
        out = mine_hard_negatives(ds, model, **kw)
        res["seconds"] = time.perf_counter() - t
        res["negatives_found"] = len(out)
        first = [int(x[1:]) for x in out.filter(lambda r: r["query"] == "q0")["negative"]]
        res["first_row"] = first
    res["peak_rss"] = peak_rss()
    res["baseline_rss"] = base_rss
    res["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return res


def fmt_bytes(b: float) -> str:
    return f"{b / GiB:6.2f} GiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--corpus", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--large", action="store_true", help="100,000 queries x 1,000,000 x 384")
    ap.add_argument("--out-of-core", action="store_true",
                    help="1,000 queries x 8,000,000 x 768 memory-mapped (24.6 GB file; hardneg only)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--data-dir", default=None, help="where the .npy embeddings go (default /tmp/hardneg_bench_QxNxD)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--headroom-gib", type=float, default=3.0, help="RAM to leave free when predicting a variant's need")
    ap.add_argument("--st-batch", type=int, default=16384,
                    help="faiss_batch_size of the sentence-transformers variants (its default: 16384)")
    ap.add_argument("--plan", action="store_true", help="print each variant's predicted memory and exit")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "generate":
        generate(args.data_dir, args.queries, args.corpus, args.dim)
        return 0
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.data_dir, args.threads, args.st_batch)))
        return 0

    variants = [v for v in args.variants.split(",") if v]
    if args.large:
        args.queries, args.corpus, args.dim = 100_000, 1_000_000, 384
    if args.out_of_core:
        args.queries, args.corpus, args.dim = 1_000, 8_000_000, 768
        variants = [v for v in variants if v == "hardneg"]
    q, n, d = args.queries, args.corpus, args.dim
    if args.plan:
        print(f"plan for {q:,} queries x {n:,} x {d} (MemAvailable now {fmt_bytes(mem_available())}):")
        for v in variants:
            print(f"  {v:<11} predicted peak {fmt_bytes(predicted_bytes(v, q, n, d, args.st_batch))}")
        print(f"  st's default path scores {min(args.st_batch, q):,} x {n:,} float32 per query chunk = "
              f"{fmt_bytes(st_default_bytes(q, n, args.st_batch))}")
        return 0
    path = args.data_dir or f"/tmp/hardneg_bench_{q}x{n}x{d}"
    print(f"mining benchmark: {q:,} queries x {n:,} x {d} corpus, relative_margin=0.05, 8 negatives, "
          f"{os.cpu_count()} cores; data in {path}")
    file_bytes = (q + n) * d * 4
    if file_bytes > 0.5 * (os.statvfs(os.path.dirname(path.rstrip("/")) or "/").f_bavail * os.statvfs("/").f_frsize):
        print(f"not enough free disk for {fmt_bytes(file_bytes)} of embeddings")
        return 1
    t = time.perf_counter()
    # in a subprocess, so that this parent stays small (children inherit its peak RSS counter)
    subprocess.run([sys.executable, __file__, "--worker", "generate", "--data-dir", path, "--queries", str(q),
                    "--corpus", str(n), "--dim", str(d)], check=True)
    print(f"embeddings ready ({fmt_bytes(file_bytes)} on disk) in {time.perf_counter() - t:.1f} s")

    results: dict[str, dict] = {}
    for v in variants:
        need = predicted_bytes(v, q, n, d, args.st_batch)
        avail = mem_available()
        if v == "st":
            print(f"  st: the default path scores {min(args.st_batch, q):,} x {n:,} float32 per chunk = "
                  f"{fmt_bytes(st_default_bytes(q, n, args.st_batch))} (faiss_batch_size={args.st_batch})")
        if need + args.headroom_gib * GiB > avail:
            print(f"  {v:<11} NOT RUN: predicted peak {fmt_bytes(need)} but only {fmt_bytes(avail)} available "
                  f"(keeping {args.headroom_gib} GiB free for the other users of this machine)")
            results[v] = {"variant": v, "not_run": True, "predicted_bytes": need}
            continue
        cmd = [sys.executable, __file__, "--worker", v, "--data-dir", path, "--st-batch", str(args.st_batch)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"  {v:<11} FAILED (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            results[v] = {"variant": v, "failed": proc.returncode}
            continue
        r = json.loads(line[0][7:])
        results[v] = r
        print(f"  {v:<11} {r['seconds']:8.2f} s   peak RSS {fmt_bytes(r['peak_rss'])} "
              f"(of which {fmt_bytes(r['peak_rss'] - r['baseline_rss'])} above the loaded inputs)   "
              f"negatives/rows {r['negatives_found']:,}")

    hn = results.get("hardneg", {})
    if "seconds" in hn:
        print("\nratios (sentence-transformers / hardneg.mine):")
        for v in ("hardneg_st", "st", "st_faiss"):
            r = results.get(v, {})
            if "seconds" in r:
                print(f"  {v:<11} time x{r['seconds'] / hn['seconds']:6.2f}   peak memory x{r['peak_rss'] / hn['peak_rss']:6.2f}")
        same = [v for v in ("hardneg_st", "st", "st_faiss") if results.get(v, {}).get("first_row") == hn["first_row"]]
        print(f"  query 0 gets the same negatives in: hardneg, {', '.join(same) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
