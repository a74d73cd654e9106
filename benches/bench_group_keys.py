"""Time and peak memory of ``ClusterBatchSampler`` with text ``group_keys``.

Builds 53,000 keys (Debian package descriptions from ``apt-cache dumpavail`` when available,
else generated sentences) with one key of 80,000 characters, as a long real document would be,
and 53,000 random 384-d embeddings. Each variant runs in a fresh subprocess; peak memory is the
process's ``VmHWM`` (its own peak RSS).

    flock /work/locks/bench.lock .venv/bin/python benches/bench_group_keys.py

Variants: no keys; the text keys; the text keys' dense ids alone (``_dense_group_keys``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

N, LONG, DIM = 53_000, 80_000, 384


def keys(n: int = N, long: int = LONG) -> list[str]:
    """``n`` distinct-ish texts, the last one ``long`` characters long."""
    texts: list[str] = []
    try:
        out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
        texts = list(dict.fromkeys(line[13:].strip() for line in out.splitlines() if line.startswith("Description:")))
    except (OSError, subprocess.CalledProcessError):
        pass
    i = 0
    while len(texts) < n - 1:  # top up (or replace) with generated sentences
        texts.append(f"generated description number {i} of a package that does something useful")
        i += 1
    texts = texts[: n - 1]
    filler = " ".join(texts)
    texts.append((filler * (long // max(len(filler), 1) + 1))[:long])
    return texts


def vm_hwm_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def child(variant: str) -> None:
    import numpy as np

    import hardneg
    from hardneg.sampler import _dense_group_keys

    texts = keys()
    emb = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    base = vm_hwm_gib()
    t = time.perf_counter()
    if variant == "no keys":
        hardneg.ClusterBatchSampler(emb, 64, cluster_size=64)
    elif variant == "text keys":
        hardneg.ClusterBatchSampler(emb, 64, cluster_size=64, group_keys=texts)
    else:
        _dense_group_keys(texts, N)
    dt = time.perf_counter() - t
    print(json.dumps({"variant": variant, "seconds": dt, "peak_gib": vm_hwm_gib(), "before_gib": base,
                      "longest_key": max(map(len, texts))}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--variants", default="no keys,text keys,dense ids only")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"{N:,} keys (longest {LONG:,} chars), {N:,} x {DIM} embeddings, batches of 64, clusters of 64")
    print(f"{'variant':<18}{'time s':>9}{'peak RSS GiB':>14}{'RSS before GiB':>16}")
    for v in args.variants.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", v], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{v:<18} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{v:<18}{r['seconds']:>9.2f}{r['peak_gib']:>14.2f}{r['before_gib']:>16.2f}")


if __name__ == "__main__":
    main()
