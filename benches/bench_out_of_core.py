"""Mining against a corpus larger than RAM: 1,000 queries x 8,000,000 x 768 memory-mapped float32.

Uses the files `benches/bench_mine.py --out-of-core` generates (22.9 GiB corpus.npy) and reports
the run time and peak memory split into anonymous memory (what the process owns) and file-backed
pages (the kernel's page cache of the mapped corpus, which it can drop under pressure; VmHWM
counts both, so VmHWM alone says little here).

    .venv/bin/python benches/bench_mine.py --out-of-core      # generates the data, then mines
    .venv/bin/python benches/bench_out_of_core.py             # the memory split
"""

from __future__ import annotations

import re
import sys
import threading
import time

import numpy as np

import hardneg

PATH = sys.argv[1] if len(sys.argv) > 1 else "/tmp/hardneg_bench_1000x8000000x768"


def status() -> dict[str, float]:
    text = open("/proc/self/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) / 1048576 for k in ("VmHWM", "RssAnon", "RssFile")}


def main() -> None:
    peak = {"RssAnon": 0.0, "RssFile": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            st = status()
            for k in peak:
                peak[k] = max(peak[k], st[k])
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    queries = np.load(f"{PATH}/queries.npy")
    corpus = np.load(f"{PATH}/corpus.npy", mmap_mode="r")
    t = time.perf_counter()
    mined = hardneg.mine(queries, corpus, np.arange(len(queries)), num_negatives=8, relative_margin=0.05)
    dt = time.perf_counter() - t
    done.set()
    th.join()
    gib = corpus.nbytes / 2**30
    print(f"{len(queries):,} x {corpus.shape[0]:,} x {corpus.shape[1]} ({gib:.1f} GiB memory-mapped) mined in {dt:.1f} s")
    print(f"peak anonymous memory {peak['RssAnon']:.2f} GiB; peak file-backed resident {peak['RssFile']:.2f} GiB; VmHWM {status()['VmHWM']:.2f} GiB")
    print(f"negatives found: {int((mined.negatives >= 0).sum()):,}")


if __name__ == "__main__":
    main()
