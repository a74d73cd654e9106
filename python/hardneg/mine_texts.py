"""``hardneg mine-texts``: hard negatives from a file of text pairs, written as texts.

Reads (anchor, positive) pairs (JSON lines, CSV/TSV or Parquet), embeds them with a
sentence-transformers model, mines with
:func:`hardneg.integrations.sentence_transformers.mine_hard_negatives` (sentence-transformers'
arguments and output layout) and writes the resulting dataset (JSON lines, CSV, Parquet, or a
``datasets`` directory): no numpy needed on the user's side.

Examples
--------
>>> from hardneg.cli import build_parser
>>> args = build_parser().parse_args(["mine-texts", "--pairs", "p.jsonl", "--model", "m", "--out", "o.jsonl"])
>>> args.num_negatives, args.format, args.sampling
(3, 'triplet', 'top')
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any

from .errors import HardnegError, InputFileError, OutputDirError

__all__ = ["add_mine_texts_parser", "read_records", "run_mine_texts_command"]

_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")


def read_records(path: str) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl``/``.json`` (JSON lines, or one JSON list), ``.csv``/``.tsv`` or
    ``.parquet`` file as dicts; raises :class:`InputFileError` with the line for bad input."""
    if not os.path.isfile(path):
        raise InputFileError(f"{path!r} does not exist; pass a .jsonl, .csv, .tsv or .parquet file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if ext in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ","))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise InputFileError(f"{path!r} is not valid JSON ({e})") from e
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise InputFileError(f"{path!r} line {i} is not a JSON object ({e}); write one object per line, "
                                         'e.g. {"anchor": "...", "positive": "..."}') from e
    if any(not isinstance(r, dict) for r in rows):
        raise InputFileError(f"{path!r} must hold one JSON object per row, e.g. {{\"anchor\": \"...\", \"positive\": \"...\"}}")
    return rows


def _column(rows: list[dict[str, Any]], name: str | None, position: int, path: str, flag: str) -> str:
    if not rows:
        raise InputFileError(f"{path!r} holds no rows")
    keys = list(rows[0])
    if name is None:
        if len(keys) <= position:
            raise InputFileError(f"{path!r} rows have the columns {keys}; {flag} needs at least {position + 1}")
        return keys[position]
    if name not in keys:
        raise InputFileError(f"{path!r} has no column {name!r} (columns: {keys}); fix {flag}")
    return name


def add_mine_texts_parser(sub: Any) -> None:
    """Adds the ``mine-texts`` subcommand to the ``hardneg`` parser."""
    from .cli import HelpFormatter, add_selection_options

    p = sub.add_parser(
        "mine-texts",
        help="mine hard negatives for text pairs with a sentence-transformers model; writes texts",
        description="Embed (anchor, positive) text pairs with a sentence-transformers model, mine hard negatives "
        "(sentence-transformers' mine_hard_negatives arguments, hardneg's exact search) and write the training "
        "dataset as texts in sentence-transformers' layout.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--pairs", required=True, help="text pairs: .jsonl (one JSON object per line), .csv, .tsv or .parquet")
    p.add_argument("--model", required=True, help="sentence-transformers model: a local directory or a model name")
    p.add_argument("--out", required=True, help="output: .jsonl, .csv or .parquet file, or a directory (datasets.save_to_disk)")
    p.add_argument("--anchor-column", default=None, help="column of the anchors (default: the first column)")
    p.add_argument("--positive-column", default=None, help="column of the positives (default: the second column)")
    p.add_argument("--corpus", default=None, help="more candidate documents: .txt (one per line) or a pairs-like file")
    p.add_argument("--corpus-column", default=None, help="column of --corpus documents (default: the first column)")
    p.add_argument("--format", choices=_FORMATS, default="triplet", help="output layout (sentence-transformers')")
    p.add_argument("--output-scores", action="store_true", help="add the similarity scores")
    add_selection_options(p, num_negatives=3)  # sentence-transformers' default
    p.add_argument("--batch-size", type=int, default=32, help="texts per encode batch")
    p.add_argument("--device", default=None, help="device of the model, e.g. cpu or cuda (default: the model's choice)")
    p.add_argument("--query-prompt", default=None, help="prompt prepended to the anchors when embedding")
    p.add_argument("--corpus-prompt", default=None, help="prompt prepended to the documents when embedding")
    p.add_argument("--cache-folder", default=None, help="directory caching the embeddings between runs")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars or statistics")
    p.set_defaults(run=run_mine_texts_command)


def _check_out(out: str, overwrite: bool) -> str:
    ext = os.path.splitext(out)[1].lower()
    kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(ext, "dir")
    if os.path.exists(out) and not overwrite and (kind != "dir" or os.listdir(out)):
        raise OutputDirError(f"{out!r} exists; choose another --out or pass --overwrite")
    return kind


def run_mine_texts_command(args: argparse.Namespace) -> int:
    """Runs ``hardneg mine-texts``; returns the exit status (2 on bad input)."""
    try:
        kind = _check_out(args.out, args.overwrite)
        rows = read_records(args.pairs)
        acol = _column(rows, args.anchor_column, 0, args.pairs, "--anchor-column")
        pcol = _column(rows, args.positive_column, 1, args.pairs, "--positive-column")
        corpus = None
        if args.corpus:
            if args.corpus.lower().endswith(".txt"):
                with open(args.corpus, encoding="utf-8") as f:
                    corpus = [line.rstrip("\n") for line in f if line.strip()]
            else:
                docs = read_records(args.corpus)
                ccol = _column(docs, args.corpus_column, 0, args.corpus, "--corpus-column")
                corpus = [str(r[ccol]) for r in docs]
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer

        from .integrations.sentence_transformers import mine_hard_negatives

        pairs = Dataset.from_dict({acol: [str(r[acol]) for r in rows], pcol: [str(r[pcol]) for r in rows]})
        try:
            model = SentenceTransformer(args.model, device=args.device)
        except Exception as e:  # noqa: BLE001 - any load failure: say which model and why
            raise InputFileError(f"could not load the sentence-transformers model {args.model!r} "
                                 f"({type(e).__name__}: {e}); pass a model directory or an available name") from e
        ds = mine_hard_negatives(
            pairs, model, anchor_column_name=acol, positive_column_name=pcol, corpus=corpus,
            range_min=args.range_min, range_max=args.range_max, max_score=args.max_score, min_score=args.min_score,
            absolute_margin=args.absolute_margin, relative_margin=args.relative_margin,
            num_negatives=args.num_negatives, sampling_strategy=args.sampling, query_prompt=args.query_prompt,
            corpus_prompt=args.corpus_prompt, output_format=args.format, output_scores=args.output_scores,
            batch_size=args.batch_size, verbose=not args.quiet, cache_folder=args.cache_folder, seed=args.seed,
            threads=args.threads,
        )
    except HardnegError as e:
        print(f"hardneg mine-texts: error: {e}", file=sys.stderr)
        return 2
    if kind == "json":
        ds.to_json(args.out, force_ascii=False)
    elif kind == "csv":
        ds.to_csv(args.out, index=False)
    elif kind == "parquet":
        ds.to_parquet(args.out)
    else:
        ds.save_to_disk(args.out)
    print(f"Wrote {len(ds):,} {args.format} rows ({', '.join(ds.column_names)}) to {args.out}")
    return 0
