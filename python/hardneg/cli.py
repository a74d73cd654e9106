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

__all__ = ["build_parser", "main", "HelpFormatter", "add_selection_options"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except ``None`` and ``False`` (unset values and flags)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def add_selection_options(p: argparse.ArgumentParser, *, num_negatives: int) -> None:
    """The options of the negative selection, shared by ``hardneg mine`` and ``hardneg mine-texts``."""
    p.add_argument("--num-negatives", type=int, default=num_negatives, help="negatives per query")
    p.add_argument("--range-min", type=int, default=0, help="skip this many of the best surviving candidates")
    p.add_argument("--range-max", type=int, default=None,
                   help="candidate pool per query (default: as sentence-transformers derives it)")
    p.add_argument("--min-score", type=float, default=None, help="drop candidates scoring below this")
    p.add_argument("--max-score", type=float, default=None, help="drop candidates scoring above this")
    p.add_argument("--absolute-margin", type=float, default=None, help="a negative scores at least this much below the positive")
    p.add_argument("--relative-margin", type=float, default=None,
                   help="0.05 = a negative scores at most 95%% of the positive (NV-Retriever's TopK-PercPos)")
    p.add_argument("--sampling", choices=["top", "random", "simans"], default="top", help="how negatives are picked from the window")
    p.add_argument("--seed", type=int, default=0, help="seed of random and simans sampling")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: every core)")


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hardneg", description="Hard-negative mining, exact top-k search and contrastive-training helpers. "
        "Run `hardneg COMMAND --help` for a command's options and defaults.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="mine hard negatives for real text with no download, then time top-k against FAISS",
        description="Mine hard negatives for (first sentence, rest) pairs of Python standard-library docstrings, "
        "embedded with the packaged all-MiniLM-L6-v2 (generated embeddings if it is not installed), print the "
        "score table and example triplets, then time an exact top-k search against FAISS on generated data.",
        formatter_class=HelpFormatter)
    demo.add_argument("--pairs", type=int, default=400, help="standard-library docstring pairs to mine (0: all)")
    demo.add_argument("--num-negatives", type=int, default=4, help="negatives per query")
    demo.add_argument("--relative-margin", type=float, default=0.05, help="a negative scores at most 95%% of the positive")
    demo.add_argument("--no-model", action="store_true", help="use generated embeddings even if the model is installed")
    demo.add_argument("--n", type=int, default=100_000, help="corpus rows of the generated top-k speed check")
    demo.add_argument("--dim", type=int, default=384, help="embedding dimension of the generated top-k speed check")
    demo.add_argument("--queries", type=int, default=512, help="queries of the generated top-k speed check")
    demo.add_argument("--k", type=int, default=10, help="results per query of the top-k speed check")
    demo.add_argument("--no-topk", action="store_true", help="skip the top-k speed check against FAISS")
    demo.set_defaults(run=_run_demo)
    from .mine_texts import add_mine_texts_parser
    from .mining_job import add_mine_parser

    add_mine_parser(sub)
    add_mine_texts_parser(sub)
    info = sub.add_parser("info", help="version, the kernel this CPU will use, threads, optional dependencies found",
                          description="What this installation will use on this machine: version, the top-k kernel "
                          "this CPU gets, the default thread count, which optional packages are installed.",
                          formatter_class=HelpFormatter)
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
