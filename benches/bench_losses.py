"""ChunkedInfoNCE vs InfoNCE (and sentence-transformers MNRL) on the CPU: peak memory and forward+backward time.

Each variant runs in a fresh subprocess. The worker builds the inputs (queries [B, d], positives
[B, d], mined negatives [B, n, d], float32, requiring grad), resets the kernel's RSS high-water mark
(``echo 5 > /proc/self/clear_refs``), runs one forward + backward and reads ``VmHWM`` from
``/proc/self/status``: the peak resident memory, which sees every torch CPU allocation. "extra" is
that peak minus the resident memory just before the forward (inputs already allocated).

The dense loss holds several [B, B*(1+n)] float32 matrices; a variant whose estimated peak does not
fit in ``--mem-fraction`` of the available memory is skipped (printed as such) rather than run into
the OOM killer.

    python benches/bench_losses.py                         # B=32768, d=768, n=7 (the issue's setting)
    python benches/bench_losses.py --batch 4096 --batch 8192   # sizes where the dense loss fits
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(variant: str, B: int, d: int, n: int, chunk: int | None, seed: int) -> dict:
    import torch

    from hardneg.losses import ChunkedInfoNCE, InfoNCE

    torch.manual_seed(seed)
    # warm up the kernels on a tiny problem so one-time allocations are not counted
    wq, wp, wn = torch.randn(64, d, requires_grad=True), torch.randn(64, d), torch.randn(64, n, d)
    InfoNCE()(wq, wp, wn).backward()
    ChunkedInfoNCE()(wq, wp, wn).backward()
    del wq, wp, wn

    q = torch.randn(B, d, requires_grad=True)
    p = torch.randn(B, d, requires_grad=True)
    neg = torch.randn(B, n, d, requires_grad=True)
    if variant == "chunked":
        loss_fn = ChunkedInfoNCE(temperature=0.05, chunk_size=chunk)

        def run():
            return loss_fn(q, p, neg)
    elif variant == "dense":
        loss_fn = InfoNCE(temperature=0.05)

        def run():
            return loss_fn(q, p, neg)
    elif variant == "st":
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        st_loss = MultipleNegativesRankingLoss(torch.nn.Identity(), scale=20.0)

        def run():
            return st_loss.compute_loss_from_embeddings([q, p] + [neg[:, k] for k in range(n)], labels=None)
    else:
        raise SystemExit(f"unknown variant {variant}")

    base = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    loss = run()
    loss.backward()
    elapsed = time.perf_counter() - t0
    peak = _status("VmHWM")
    return dict(variant=variant, B=B, d=d, n=n, loss=float(loss.detach()), seconds=elapsed, peak_bytes=peak,
                extra_bytes=peak - base, base_bytes=base, hwm_reset=reset, threads=torch.get_num_threads(),
                grad_norm=float(q.grad.norm()))


def estimate(variant: str, B: int, d: int, n: int) -> int:
    inputs = 4 * B * d * (2 + n) * 4  # inputs, their grads, normalised copies, candidate matrix
    if variant == "chunked":
        return inputs + 3 * (1 << 24) * 4
    return inputs + 5 * B * B * (1 + n) * 4  # several [B, N] float32 matrices live at the peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, action="append", help="batch size B (repeatable; default 32768)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--negatives", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=None, help="ChunkedInfoNCE rows per block (default: auto)")
    ap.add_argument("--variants", default="chunked,dense,st")
    ap.add_argument("--mem-fraction", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    batches = args.batch or [32768]
    if args.worker:
        print(json.dumps(worker(args.worker, batches[0], args.dim, args.negatives, args.chunk, args.seed)))
        return

    gb = 1 << 30
    print(f"ChunkedInfoNCE vs InfoNCE, d={args.dim}, n={args.negatives} mined negatives/query, in-batch, CPU, "
          f"torch threads={os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'variant':>8} {'B':>6} {'peak GB':>8} {'extra GB':>9} {'time s':>8}  loss")
    for B in batches:
        res = {}
        for v in args.variants.split(","):
            need = estimate(v, B, args.dim, args.negatives)
            if need > args.mem_fraction * _available():
                print(f"{v:>8} {B:>6}  skipped: needs ~{need / gb:.1f} GB, {_available() / gb:.1f} GB available")
                continue
            cmd = [sys.executable, __file__, "--worker", v, "--batch", str(B), "--dim", str(args.dim),
                   "--negatives", str(args.negatives), "--seed", str(args.seed)]
            if args.chunk:
                cmd += ["--chunk", str(args.chunk)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{v:>8} {B:>6}  failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res[v] = r
            print(f"{v:>8} {B:>6} {r['peak_bytes'] / gb:8.2f} {r['extra_bytes'] / gb:9.2f} {r['seconds']:8.1f}  {r['loss']:.5f}")
        if "chunked" in res:
            c = res["chunked"]
            for other in ("dense", "st"):
                if other in res:
                    o = res[other]
                    print(f"   B={B}: {other}/chunked peak memory {o['peak_bytes'] / c['peak_bytes']:.1f}x, "
                          f"extra memory {o['extra_bytes'] / max(c['extra_bytes'], 1):.1f}x, "
                          f"time chunked/{other} {c['seconds'] / o['seconds']:.2f}x, "
                          f"|loss diff| {abs(o['loss'] - c['loss']):.2e}")


if __name__ == "__main__":
    main()
