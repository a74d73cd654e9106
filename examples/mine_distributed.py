"""Exact hard-negative mining over several processes or machines, launched with torchrun.

Every rank reads all queries and positives and only its own contiguous slice of the corpus: the
corpus ``.npy`` is memory-mapped and the rank touches only its rows (or, when ``--corpus`` holds
``{rank}``, each rank opens its own shard file, shards in rank order). The ranks exchange only
candidates (``hardneg.distributed.mine``); rank 0 writes the result, identical to a single-process
``hardneg.mine`` over the whole corpus, as one Parquet file.

One machine, two processes::

    torchrun --standalone --nproc-per-node 2 examples/mine_distributed.py \\
        --queries queries.npy --corpus corpus.npy --positives positives.npy --out mined.parquet

Two machines (run on each, with ``--node-rank 0`` on the first and ``1`` on the second)::

    torchrun --nnodes 2 --nproc-per-node 1 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 \\
        examples/mine_distributed.py --queries queries.npy --corpus corpus.npy --positives positives.npy \\
        --out mined.parquet
"""

from __future__ import annotations

import argparse
import datetime

import numpy as np
import torch.distributed as dist

import hardneg.distributed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", required=True, help="query embeddings .npy [Q, d], on every rank")
    p.add_argument("--corpus", required=True, help="corpus .npy [N, d] (each rank maps its slice), or a per-rank "
                   "shard path containing {rank}")
    p.add_argument("--positives", required=True, help="positive corpus ids .npy [Q] or [Q, P] padded with -1")
    p.add_argument("--exclude", help="more excluded ids .npy [Q, m] padded with -1")
    p.add_argument("--out", required=True, help="Parquet file written by rank 0")
    p.add_argument("--num-negatives", type=int, default=8)
    p.add_argument("--metric", choices=["cosine", "dot", "ip"], default="cosine", help="'ip' = 'dot'")
    p.add_argument("--range-max", type=int, default=None)
    p.add_argument("--relative-margin", type=float, default=None)
    p.add_argument("--sampling", default="top", help="top, random or simans")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="search threads per rank (default: every core)")
    p.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (GPU)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a silent rank")
    args = p.parse_args()

    dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    if "{rank}" in args.corpus:
        shard, row_offset = np.load(args.corpus.replace("{rank}", str(rank)), mmap_mode="r"), None
    else:
        corpus = np.load(args.corpus, mmap_mode="r")
        lo, hi = len(corpus) * rank // world, len(corpus) * (rank + 1) // world
        shard, row_offset = corpus[lo:hi], lo
    mined = hardneg.distributed.mine(
        args.queries, shard, args.positives, row_offset=row_offset, exclude=args.exclude,
        num_negatives=args.num_negatives, metric=args.metric, range_max=args.range_max,
        relative_margin=args.relative_margin, sampling=args.sampling, seed=args.seed, threads=args.threads,
        dst=0, timeout=args.timeout)
    if mined is not None:
        import pyarrow.parquet as pq

        pq.write_table(mined.to_arrow(), args.out)
        print(mined.summary())
        info = mined.stats["distributed"]
        print(f"{world} ranks; rank 0 sent {info['bytes_sent']:,} and received {info['bytes_received']:,} bytes")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
