"""The table of ``examples/train_retriever.py`` runs: means over seeds with confidence intervals.

    python examples/retriever_table.py RESULTS/*.json [--baseline in-batch|base] [--level strict] [--deltas all]

For every arm (and batch size / step count): each metric's mean over seeds with a 95 % t-interval
over seeds, and the paired difference to the baseline arm: per query, the metric of the arm minus
the metric of the baseline run with the same seed, averaged over the seeds both have; its 95 %
interval comes from a bootstrap over queries (10,000 resamples). The base model's row is the
``before`` evaluation every run shares; ``--baseline base`` takes the differences against it.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from typing import Any

import numpy as np

METRICS = ("recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10")
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def per_query(ranks: Any) -> dict[str, np.ndarray]:
    """Each query's value of every metric from its 0-based rank (-1 = not in the top 100)."""
    r = np.asarray(ranks, dtype=np.int64)
    found = r >= 0
    rf = np.where(found, r, 10**9).astype(np.float64)
    out = {f"recall@{c}": (found & (r < c)).astype(np.float64) for c in (1, 10, 100)}
    top10 = found & (r < 10)
    out["mrr@10"] = np.where(top10, 1.0 / (rf + 1), 0.0)
    out["ndcg@10"] = np.where(top10, 1.0 / np.log2(rf + 2), 0.0)
    return out


def t_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval); half-width NaN for one value."""
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2:
        return float(a.mean()), math.nan
    return float(a.mean()), T95.get(a.size - 1, 1.96) * float(a.std(ddof=1)) / math.sqrt(a.size)


def bootstrap(diff: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``diff`` over queries."""
    rng = np.random.default_rng(seed)
    n = diff.size
    means = np.empty(resamples)
    for a in range(0, resamples, 500):
        b = min(a + 500, resamples)
        idx = rng.integers(0, n, size=(b - a, n))
        means[a:b] = diff[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def fmt(x: float, hw: float | None = None, pct: bool = True) -> str:
    s = 100.0 if pct else 1.0
    if hw is None or math.isnan(hw):
        return f"{x * s:.2f}"
    return f"{x * s:.2f} ± {hw * s:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="result JSON files of train_retriever.py")
    ap.add_argument("--baseline", default="in-batch", help="arm the differences are taken against ('base': the base model)")
    ap.add_argument("--deltas", default="recall@10,ndcg@10", help="metrics with a difference column ('all': every one)")
    ap.add_argument("--level", choices=["strict", "lenient"], default="strict")
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    key_ranks = "ranks" if args.level == "strict" else "ranks_lenient"
    runs = []
    for path in args.results:
        if path.endswith(".log.jsonl"):
            continue
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    if not runs:
        raise SystemExit("no results")
    groups: dict[tuple[str, int, int], dict[int, Any]] = defaultdict(dict)
    for r in runs:
        groups[(r["arm"], r["batch_size"], r["steps"])][r["seed"]] = r
    base = per_query(runs[0]["before"][key_ranks])
    delta_metrics = METRICS if args.deltas == "all" else tuple(args.deltas.split(","))
    if not set(delta_metrics) <= set(METRICS):
        raise SystemExit(f"--deltas takes 'all' or a comma-separated subset of {', '.join(METRICS)}")
    rows = []
    head = ("| arm | batch | steps | seeds | " + " | ".join(METRICS) +
            "".join(f" | Δ {m} vs {args.baseline} [95 % CI]" for m in delta_metrics) + " | min/run |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    print("| base model | - | - | - | " + " | ".join(fmt(float(base[m].mean())) for m in METRICS) +
          " |" * (len(delta_metrics) + 1) + " |")
    order = {"in-batch": 0, "mined": 1, "mined+cluster": 2, "mined+cluster+refresh": 3}
    for (arm, bs, steps), seeds in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1:])):
        vals = {m: [] for m in METRICS}
        for s, r in sorted(seeds.items()):
            pq = per_query(r["after"][key_ranks])
            for m in METRICS:
                vals[m].append(float(pq[m].mean()))
        cells = [fmt(*t_interval(vals[m])) for m in METRICS]
        deltas = []
        bl = groups.get((args.baseline, bs, steps)) or groups.get((args.baseline, 32, steps)) or {}
        for m in delta_metrics:
            common = sorted(seeds) if args.baseline == "base" else sorted(set(seeds) & set(bl))
            if arm == args.baseline or not common:
                deltas.append("")
                continue
            ref = (lambda s: base[m]) if args.baseline == "base" else (lambda s: per_query(bl[s]["after"][key_ranks])[m])
            d = np.mean([per_query(seeds[s]["after"][key_ranks])[m] - ref(s) for s in common], axis=0)
            lo, hi = bootstrap(d)
            deltas.append(f"{d.mean() * 100:+.2f} [{lo * 100:+.2f}, {hi * 100:+.2f}] ({len(common)} seeds)")
        minutes = np.mean([(r.get("train_seconds", 0) + r.get("eval_seconds", 0)) / 60 for r in seeds.values()])
        print(f"| {arm} | {bs} | {steps} | {len(seeds)} | " + " | ".join(cells) + " | " + " | ".join(deltas) +
              f" | {minutes:.0f} |")
        rows.append({"arm": arm, "batch_size": bs, "steps": steps, "seeds": sorted(seeds), "metrics": vals,
                     "deltas": deltas})
    print(f"\nMetrics in %, {args.level} relevance; mean ± half-width of the 95 % t-interval over seeds. "
          f"{runs[0]['eval_queries']} queries against {runs[0]['eval_documents']} held-out documents.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"base": {m: float(base[m].mean()) for m in METRICS}, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
