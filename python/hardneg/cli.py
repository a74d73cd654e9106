"""The ``hardneg`` command line.

Examples
--------
>>> from hardneg.cli import build_parser
>>> build_parser().parse_args(["demo", "--n", "1000"]).n
1000
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="hardneg", description="Hard-negative mining and top-k search.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on an embedded default data set")
    demo.add_argument("--n", type=int, default=100_000, help="corpus rows of the generated top-k speed check")
    demo.add_argument("--dim", type=int, default=384, help="embedding dimension of the generated top-k speed check")
    demo.add_argument("--queries", type=int, default=512, help="queries of the generated top-k speed check")
    demo.add_argument("--k", type=int, default=10)
    demo.add_argument("--pairs", type=int, default=400, help="standard-library docstring pairs to mine (0: all)")
    demo.add_argument("--num-negatives", type=int, default=4)
    demo.add_argument("--relative-margin", type=float, default=0.05)
    demo.add_argument("--no-model", action="store_true", help="use generated embeddings even if the model is installed")
    demo.add_argument("--no-topk", action="store_true", help="skip the top-k speed line against FAISS")
    demo.set_defaults(run=_run_demo)
    from .mining_job import add_mine_parser

    add_mine_parser(sub)
    info = sub.add_parser("info", help="version, the kernel this CPU will use, threads, optional dependencies found")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(run=_run_info)
    return parser


def _run_info(args: argparse.Namespace) -> int:
    from .info import run_info_command

    return run_info_command(args)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import mining_demo, topk_demo

    mining_demo(args.pairs or None, num_negatives=args.num_negatives, relative_margin=args.relative_margin,
                use_model=not args.no_model)
    if not args.no_topk:
        print()
        topk_demo(n=args.n, dim=args.dim, queries=args.queries, k=args.k)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hardneg`` script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ImportError as e:
        from ._optional import OPTIONAL

        if e.name not in OPTIONAL:  # not a missing optional dependency: a real bug, keep the traceback
            raise
        print(f"hardneg {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
