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
    demo.add_argument("--n", type=int, default=200_000, help="corpus rows of the generated data")
    demo.add_argument("--dim", type=int, default=384, help="embedding dimension of the generated data")
    demo.add_argument("--queries", type=int, default=1024, help="queries of the generated data")
    demo.add_argument("--k", type=int, default=10)
    demo.set_defaults(run=_run_demo)
    from .mining_job import add_mine_parser

    add_mine_parser(sub)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import topk_demo

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
