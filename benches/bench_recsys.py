"""Negative sampling for recommendation and knowledge graphs: hardneg vs numpy, torch, RecBole, PyKEEN.

    flock /work/locks/bench.lock nice .venv/bin/python benches/bench_recsys.py            # the full run
    .venv/bin/python benches/bench_recsys.py --users 100000 --triples 30000               # quick
    .venv/bin/python benches/bench_recsys.py --anchor-chunks 0                            # anchors on all data

1. **Recommendation**: ``--users`` (1,000,000) users x ``--items`` (100,000) items, power-law data
   (user activity ``min(600, 5 * Pareto(1.2))``: ~20 items on average, a few hundred for heavy
   users; item popularity Zipf(0.9)); ``--negatives`` (100) uniform negatives for every user, i.e.
   100,000,000 negatives, drawn in chunks of 100,000 users by every engine:

   * ``hardneg.InteractionSampler.sample`` (also popularity^0.75 and without replacement);
   * a vectorised numpy rejection sampler (draw, look the (user, item) keys up in the sorted
     positive keys with ``np.searchsorted``, redraw the hits);
   * ``torch.multinomial`` over the item distribution with the same rejection in torch
     (``torch.searchsorted``);
   * RecBole's ``Sampler.sample_by_user_ids`` (its own rejection loop over per-user Python sets).
2. **Knowledge graph at FB15k-237 scale**: ``--entities`` (15,000) entities, 237 relations,
   ``--triples`` (300,000) triples (power-law entity degrees), ``--corruptions`` (256) per triple,
   in batches of 16,384 triples: ``hardneg.TripleCorruptor`` (uniform and Bernoulli, filtered) vs
   PyKEEN's ``BasicNegativeSampler`` and ``BernoulliNegativeSampler`` with ``filtered=True`` (its
   default Bloom filter, and the exact Python-set filter). PyKEEN marks filtered corruptions in a
   mask instead of replacing them; its rate counts every corruption it returns, and the table
   shows the share it keeps.

RecBole and PyKEEN cost minutes per pass here, so by default they run on the first
``--anchor-chunks`` (2) chunks of users or batches of triples only (200,000 users, 32,768 triples:
the same generated distribution, users and triples in random order), and their rates are per
negative they returned; ``--anchor-chunks 0`` runs them on everything.

For every engine the returned negatives are checked against the positives (every (user, item)
pair; every known triple) outside the timed part, and the count is printed: it must be 0.

RecBole and PyKEEN are installed for the benchmark only: ``pip install pykeen`` installs cleanly;
RecBole 1.2.1 pins ``colorlog==4.7.2``, ``colorama==0.4.4`` and ``ray<=2.6.3``, but its sampler
needs only numpy and torch: ``pip install --no-deps recbole``. RecBole's ``Sampler`` reads
``uid_field``, ``iid_field``, ``user_num``, ``item_num`` and ``inter_feat[field].numpy()`` of its
datasets; a small holder of those five attributes stands in for a full RecBole ``Dataset`` (which
would re-read the same pairs from an atomic file). RecBole reserves item 0 for padding, so items
are shifted by one for it.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from types import SimpleNamespace

import numpy as np
import torch

import hardneg

CHUNK_USERS = 100_000


KG_BATCH = 16_384


def cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def power_law_interactions(num_users: int, num_items: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = np.minimum((rng.pareto(1.2, num_users) + 1) * 5, 600).astype(np.int64)
    p = 1.0 / np.arange(1, num_items + 1) ** 0.9
    users = np.repeat(np.arange(num_users, dtype=np.int64), counts)
    items = rng.permutation(num_items)[rng.choice(num_items, size=int(counts.sum()), p=p / p.sum())]
    keys = np.unique(users * num_items + items)  # distinct (user, item) pairs
    return np.stack([keys // num_items, keys % num_items], 1)


def count_positives(keys: np.ndarray, first: np.ndarray, second: np.ndarray, width: int) -> int:
    """How many (first, second) pairs are in the sorted ``keys = first * width + second``."""
    k = (first.astype(np.int64) * width + second.astype(np.int64)).ravel()
    pos = np.searchsorted(keys, k)
    pos[pos == len(keys)] = 0
    return int((keys[pos] == k).sum())


def numpy_rejection(users: np.ndarray, m: int, num_items: int, keys: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    out = gen.integers(0, num_items, size=(len(users), m))
    base = np.repeat(users * num_items, m)
    todo = np.arange(out.size)
    while todo.size:
        k = base[todo] + out.flat[todo]
        pos = np.searchsorted(keys, k)
        pos[pos == keys.size] = 0
        todo = todo[keys[pos] == k]
        out.flat[todo] = gen.integers(0, num_items, size=todo.size)
    return out


def torch_multinomial(users: torch.Tensor, m: int, weights: torch.Tensor, keys: torch.Tensor, num_items: int) -> torch.Tensor:
    out = torch.multinomial(weights, len(users) * m, replacement=True).view(len(users), m)
    base = (users * num_items).repeat_interleave(m)
    flat = out.view(-1)
    todo = torch.arange(flat.numel())
    while todo.numel():
        k = base[todo] + flat[todo]
        pos = torch.searchsorted(keys, k).clamp(max=keys.numel() - 1)
        todo = todo[keys[pos] == k]
        if todo.numel():
            flat[todo] = torch.multinomial(weights, todo.numel(), replacement=True)
    return out


def bench_recsys(args: argparse.Namespace) -> list[dict]:
    U, I, M = args.users, args.items, args.negatives
    t = time.perf_counter()
    pairs = power_law_interactions(U, I)
    keys = pairs[:, 0] * I + pairs[:, 1]  # sorted: pairs come from np.unique of these keys
    per_user = np.bincount(pairs[:, 0], minlength=U)
    print(f"interactions: {len(pairs):,} distinct pairs, items per user mean {per_user.mean():.1f}, "
          f"max {per_user.max()} ({time.perf_counter() - t:.1f} s to generate)")
    users = np.arange(U, dtype=np.int64)
    chunks = [(s, users[s:s + CHUNK_USERS]) for s in range(0, U, CHUNK_USERS)]
    rows = []

    def run(name, fn, limit=0, versus=""):
        gc.collect()
        bad = done = 0
        t0 = time.perf_counter()
        elapsed = cpu = 0.0
        for start, u in chunks[:limit or len(chunks)]:
            t1, c1 = time.perf_counter(), cpu_seconds()
            out = fn(start, u)
            elapsed += time.perf_counter() - t1
            cpu += cpu_seconds() - c1
            out = np.asarray(out)
            bad += count_positives(keys, np.repeat(u, M).reshape(len(u), M), out.reshape(len(u), M), I)
            done += len(u) * M
            del out
        rows.append(dict(engine=name, seconds=elapsed, rate=done / elapsed, cpu_rate=done / cpu, positives=bad, versus=versus))
        print(f"  {name:<44} {done / 1e6:6.0f}M in {elapsed:7.2f} s  {done / elapsed / 1e6:8.2f} M/s  CPU {cpu:8.2f} s  "
              f"{done / cpu / 1e6:8.2f} M per CPU-s  positives returned: {bad}  ({time.perf_counter() - t0:.0f} s with checks)",
              flush=True)

    t = time.perf_counter()
    uniform = hardneg.InteractionSampler(pairs, I, seed=0, num_users=U)
    popular = hardneg.InteractionSampler(pairs, I, strategy="popularity", alpha=0.75, seed=0, num_users=U)
    print(f"hardneg samplers built in {time.perf_counter() - t:.1f} s")
    run("hardneg uniform", lambda s, u: uniform.sample(u, M, offset=s))
    run("hardneg uniform, without replacement", lambda s, u: uniform.sample(u, M, offset=s, replace=False))
    run("hardneg popularity^0.75", lambda s, u: popular.sample(u, M, offset=s))
    run("hardneg popularity^0.75, without replacement", lambda s, u: popular.sample(u, M, offset=s, replace=False))
    gen = np.random.default_rng(0)
    run("numpy rejection (searchsorted)", lambda s, u: numpy_rejection(u, M, I, keys, gen), versus="hardneg uniform")
    tkeys, weights = torch.from_numpy(keys), torch.ones(I, dtype=torch.float64)
    torch.manual_seed(0)
    run(f"torch.multinomial + rejection ({torch.get_num_threads()} threads)",
        lambda s, u: torch_multinomial(torch.from_numpy(u), M, weights, tkeys, I).numpy(), versus="hardneg uniform")
    if not args.skip_recbole:
        from recbole.sampler import Sampler

        class Feat(dict):
            pass

        class Column:
            def __init__(self, a):
                self.a = a

            def numpy(self):
                return self.a

        inter = Feat(user_id=Column(pairs[:, 0]), item_id=Column(pairs[:, 1] + 1))
        dataset = SimpleNamespace(uid_field="user_id", iid_field="item_id", user_num=U, item_num=I + 1, inter_feat=inter)
        t = time.perf_counter()
        recbole = Sampler(["train"], [dataset], distribution="uniform").set_phase("train")
        print(f"RecBole sampler built in {time.perf_counter() - t:.1f} s (per-user Python sets)")
        np.random.seed(0)

        def recbole_chunk(s, u):
            # RecBole returns negatives[k * len(u) + row]: one column per negative
            neg = recbole.sample_by_user_ids(u, None, M).numpy().reshape(M, len(u)).T - 1
            return np.ascontiguousarray(neg)

        run("RecBole Sampler.sample_by_user_ids", recbole_chunk, args.anchor_chunks, "hardneg uniform")
    return rows


def power_law_triples(num_entities: int, num_relations: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, num_entities + 1) ** 0.8
    pr = 1.0 / np.arange(1, num_relations + 1) ** 1.1
    out = np.empty((0, 3), np.int64)
    while len(out) < n:
        k = int((n - len(out)) * 1.3) + 1000
        t = np.stack([rng.choice(num_entities, k, p=p / p.sum()), rng.choice(num_relations, k, p=pr / pr.sum()),
                      rng.choice(num_entities, k, p=p / p.sum())], 1)
        t = t[t[:, 0] != t[:, 2]]
        out = np.unique(np.concatenate([out, t]), axis=0)
    return out[rng.permutation(len(out))[:n]]


def bench_kg(args: argparse.Namespace) -> list[dict]:
    E, R, N, C = args.entities, 237, args.triples, args.corruptions
    triples = power_law_triples(E, R, N)
    keys = np.sort((triples[:, 0] * R + triples[:, 1]) * E + triples[:, 2])
    print(f"KG: {E:,} entities, {R} relations, {len(triples):,} triples, {C} corruptions each "
          f"= {len(triples) * C / 1e6:.1f}M corruptions per pass")
    batches = [(s, triples[s:s + KG_BATCH]) for s in range(0, N, KG_BATCH)]
    rows = []

    def run(name, fn, limit=0, versus=""):
        gc.collect()
        elapsed, cpu, bad, kept, total = 0.0, 0.0, 0, 0, 0
        for s, b in batches[:limit or len(batches)]:
            t1, c1 = time.perf_counter(), cpu_seconds()
            neg, mask = fn(s, b)
            elapsed += time.perf_counter() - t1
            cpu += cpu_seconds() - c1
            neg = np.asarray(neg).reshape(-1, 3)
            if mask is not None:
                neg = neg[np.asarray(mask).reshape(-1)]
            total += len(b) * C
            kept += len(neg)
            bad += count_positives(keys, neg[:, 0] * R + neg[:, 1], neg[:, 2], E)
        rows.append(dict(engine=name, seconds=elapsed, rate=total / elapsed, cpu_rate=total / cpu, positives=bad, kept=kept / total, versus=versus))
        print(f"  {name:<52} {total / 1e6:6.1f}M in {elapsed:7.2f} s  {total / elapsed / 1e6:8.2f} M/s  CPU {cpu:8.2f} s  "
              f"{total / cpu / 1e6:8.2f} M per CPU-s  kept {kept / total:6.1%}  positives returned: {bad}", flush=True)

    for strategy in ("uniform", "bernoulli"):
        c = hardneg.TripleCorruptor(triples, E, R, strategy=strategy, seed=0)
        run(f"hardneg TripleCorruptor {strategy}, filtered", lambda s, b: (c.corrupt(b, C, offset=s), None))
    if not args.skip_pykeen:
        from pykeen.sampling import BasicNegativeSampler, BernoulliNegativeSampler

        mapped = torch.from_numpy(triples)
        torch.manual_seed(0)
        for cls, versus in ((BasicNegativeSampler, "uniform"), (BernoulliNegativeSampler, "bernoulli")):
            for filterer in ("bloom", "python-set"):
                sampler = cls(mapped_triples=mapped, num_entities=E, num_relations=R, num_negs_per_pos=C,
                              filtered=True, filterer=filterer)
                run(f"PyKEEN {cls.__name__}, filterer={filterer}",
                    lambda s, b: tuple(x.numpy() if x is not None else None for x in sampler.sample(torch.from_numpy(b))),
                    args.anchor_chunks, f"hardneg TripleCorruptor {versus}, filtered")
    return rows


def ratios(rows: list[dict]) -> None:
    """A markdown table: each engine's rates and, for an anchor, the speed-up of the hardneg row it
    is compared with (the same distribution: uniform vs uniform, Bernoulli vs Bernoulli)."""
    by_name = {r["engine"]: r for r in rows}
    print("\n| engine | M/s | M per CPU-s | hardneg speed-up: wall | CPU | positives returned |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ref = by_name.get(r.get("versus", ""))
        x = f"{ref['rate'] / r['rate']:.1f}x | {ref['cpu_rate'] / r['cpu_rate']:.1f}x" if ref else " | "
        print(f"| {r['engine']} | {r['rate'] / 1e6:.2f} | {r['cpu_rate'] / 1e6:.2f} | {x} | {r['positives']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--entities", type=int, default=15_000)
    ap.add_argument("--triples", type=int, default=300_000)
    ap.add_argument("--corruptions", type=int, default=256)
    ap.add_argument("--anchor-chunks", type=int, default=2,
                    help="RecBole and PyKEEN run on this many chunks of users / batches of triples (0: all)")
    ap.add_argument("--skip-recbole", action="store_true")
    ap.add_argument("--skip-pykeen", action="store_true")
    ap.add_argument("--only", choices=["recsys", "kg"])
    args = ap.parse_args()
    print(f"hardneg {hardneg.__version__}, isa {hardneg._hardneg.isa()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}")
    if args.only != "kg":
        print(f"\n== recommendation: {args.users:,} users x {args.items:,} items x {args.negatives} negatives ==")
        rows = bench_recsys(args)
        ratios(rows)
    if args.only != "recsys":
        print(f"\n== knowledge graph: FB15k-237 scale ==")
        rows = bench_kg(args)
        ratios(rows)


if __name__ == "__main__":
    main()
