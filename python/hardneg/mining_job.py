"""Resumable mining jobs: :func:`mine_to_disk`, :func:`load_mined` and ``hardneg mine``.

The output directory holds Parquet shards ``part-00000.parquet``, ... (one per ``shard_size``
queries, columns as :meth:`Mined.to_arrow`) and nothing else a Parquet reader would open: the
bookkeeping files start with a dot (``.manifest.json``, ``.lock``, temporary ``.part-*.tmp``), which
pandas, pyarrow, polars and Hugging Face datasets all skip, so each of them reads the directory as
one table. Each shard is written to a temporary file and atomically renamed, then the manifest
(also replaced atomically) records it.
Killed at any moment (SIGKILL included), the job run again with the same arguments recomputes
only the shards the manifest does not list; mining is deterministic, so the final output is
identical to an uninterrupted run, without a row lost or duplicated. The manifest stores a
fingerprint of the arguments and inputs: other arguments on an existing directory raise
:class:`OutputDirError` instead of mixing two jobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from typing import Any, Sequence

import numpy as np

from .errors import HardnegError, OutputDirError
from .mining import (
    Mined,
    Progress,
    _Plan,
    _progress_bar,
    _zero_stats,
    score_distribution,
    to_arrow_table,
)
from .selection import SIMANS_A, SIMANS_B, Sampling, add_stats

__all__ = ["mine_to_disk", "load_mined", "add_mine_parser", "DEFAULT_SHARD_SIZE"]

#: Queries per Parquet shard when ``shard_size`` is not given.
DEFAULT_SHARD_SIZE = 50_000
MANIFEST = ".manifest.json"
#: Where directories written by earlier versions keep their manifest: among the shards, where
#: Parquet readers try to open it as a shard.
OLD_MANIFEST = "manifest.json"
FORMAT = "hardneg-mine"
VERSION = 1
_SAMPLED_ROWS = 4096
_FULL_HASH_BYTES = 1 << 31


def _digest_rows(arr: Any, full: bool) -> str:
    """Digest of a 2-D array: every row (``full``) or 4096 evenly spaced rows (first and last included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype}{tuple(arr.shape)}".encode())
    rows = int(arr.shape[0])
    if full or rows <= _SAMPLED_ROWS:
        step = max(1, (64 << 20) // max(1, arr.strides[0] if hasattr(arr, "strides") else 1))
        for a in range(0, rows, step):
            h.update(np.ascontiguousarray(arr[a : a + step]).tobytes())
    else:
        idx = np.unique(np.linspace(0, rows - 1, _SAMPLED_ROWS).round().astype(np.int64))
        h.update(np.ascontiguousarray(np.asarray(arr[idx])).tobytes())
    return h.hexdigest()


def _describe_inputs(plan: _Plan) -> dict[str, Any]:
    q = plan.queries
    qbytes = int(np.prod(q.shape)) * np.dtype(q.dtype).itemsize
    index = plan.index
    corpus = {"index": type(index).__name__, "rows": len(index), "dim": index.dim}
    identity = getattr(index, "_job_identity", None)  # an approximate index: its parameters and graph
    vectors = getattr(index, "vectors", None)  # an index may not keep float32 rows
    if identity is not None:
        corpus.update(identity())  # stands for the rows too: the same whether loaded with them or not
    elif vectors is not None:
        corpus.update(dtype=str(vectors.dtype), digest=_digest_rows(vectors, False))
    csr = hashlib.blake2b(digest_size=16)
    for a in (*plan.pos, *(plan.exclude if plan.exclude is not None else ())):
        csr.update(np.ascontiguousarray(a).tobytes())
        csr.update(b"|")
    if plan.exclude_self:  # query i excludes corpus row i
        csr.update(b"exclude_self")
    return {
        "queries": {"shape": list(q.shape), "dtype": str(q.dtype), "digest": _digest_rows(q, qbytes <= _FULL_HASH_BYTES)},
        "corpus": corpus,
        "positives_and_exclude": csr.hexdigest(),
    }


def _fingerprint(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def _tmp_path(path: str) -> str:
    """The temporary name of ``path`` while it is written: a dotfile, so readers skip it."""
    head, name = os.path.split(path)
    return os.path.join(head, f"{name}.tmp" if name.startswith(".") else f".{name}.tmp")


def _write_atomic(path: str, data: bytes) -> None:
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} in the directory, {b!r} now")
    return out


class _Lock:
    """An exclusive advisory lock on ``DIR/.lock`` (released by the OS even on SIGKILL)."""

    def __init__(self, out_dir: str) -> None:
        self.path = os.path.join(out_dir, ".lock")
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise OutputDirError(f"another hardneg mine job is writing to {os.path.dirname(self.path)!r}; "
                                 "wait for it or choose another output directory") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _convert_old_layout(out_dir: str) -> None:
    """Moves an old-layout ``manifest.json`` of hardneg's to ``.manifest.json`` (atomic rename)."""
    old, new = os.path.join(out_dir, OLD_MANIFEST), os.path.join(out_dir, MANIFEST)
    if os.path.exists(new) or not os.path.exists(old):
        return
    try:
        with open(old, encoding="utf-8") as f:
            ours = json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        os.replace(old, new)
        _fsync_dir(out_dir)


def _open_dir(out_dir: str, job: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """Returns the manifest to continue from (a new one for a new directory)."""
    _convert_old_layout(out_dir)
    path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(os.path.join(out_dir, OLD_MANIFEST)) and not os.path.exists(path):
        raise OutputDirError(f"{out_dir!r} holds a manifest.json that hardneg did not write; choose another output directory")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise OutputDirError(f"{path!r} is not a readable hardneg manifest ({e}); choose another output directory") from e
        if manifest.get("format") != FORMAT:
            raise OutputDirError(f"{out_dir!r} holds a {MANIFEST} that hardneg did not write; choose another output directory")
        if manifest.get("fingerprint") != fingerprint:
            changes = _diff(manifest.get("job", {}), job)
            detail = "; ".join(changes) if changes else "the inputs differ"
            raise OutputDirError(
                f"{out_dir!r} holds the output of a different mining job ({detail}). Rerun with the same arguments "
                "to resume it, or choose another (or an empty) output directory"
            )
        return manifest
    ours = {".lock"}
    others = [e for e in os.listdir(out_dir) if e not in ours and not e.endswith(".tmp")]
    if others:
        raise OutputDirError(f"{out_dir!r} is not empty and holds no hardneg manifest (found {sorted(others)[:3]}); "
                             "choose a new or empty output directory")
    return {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint, "job": job, "shards": {}, "complete": False}


def mine_to_disk(
    queries: Any,
    corpus: Any,
    positives: Any,
    out_dir: str | os.PathLike[str],
    *,
    index: Any = None,
    num_negatives: int = 8,
    metric: str | None = None,
    range_min: int = 0,
    range_max: int | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: Sampling = "top",
    seed: int = 0,
    exclude: Any = None,
    exclude_self: bool = False,
    threads: int | None = None,
    progress: Progress = None,
    simans_a: float = SIMANS_A,
    simans_b: float = SIMANS_B,
    chunk_size: int | None = None,
    shard_size: int | None = None,
) -> Mined:
    """:func:`hardneg.mine` as a resumable job writing Parquet shards and a manifest to ``out_dir``.

    Arguments are those of :func:`hardneg.mine` (``corpus`` is ``None`` when ``index`` is given),
    plus ``out_dir`` and ``shard_size`` (queries per shard, default 50,000). Every ``shard_size``
    queries a shard ``part-NNNNN.parquet`` is written (temporary file, then atomic rename) and
    recorded in ``.manifest.json`` (replaced
    atomically). Run again with the same arguments after a crash or a kill, the job skips the
    recorded shards and recomputes the rest: the final output is identical to an uninterrupted
    run. A finished directory is just loaded (and one written by an older hardneg, with
    ``manifest.json`` among the shards, is converted to the current layout).

    Only the shards end in ``.parquet`` and every other file starts with a dot, so the directory
    reads as one table with ``pandas.read_parquet(out_dir)``, ``pyarrow.dataset.dataset(out_dir)``,
    ``polars.scan_parquet(f"{out_dir}/*.parquet")`` or
    ``datasets.load_dataset("parquet", data_dir=out_dir)`` (rows in query order after sorting by
    the ``query`` column).

    The manifest holds a fingerprint of every argument that changes the output (``threads``,
    ``chunk_size`` and ``progress`` do not) and of the inputs (shape, dtype and content digest:
    all query rows up to 2 GiB, 4096 evenly spaced corpus rows, all positive/exclude ids). For an
    :class:`HnswIndex` it holds the index's parameters and a digest of its graph instead of corpus rows, so
    resuming over another graph (a rebuild, another file) is refused; the saved file of the
    same index resumes.

    Returns
    -------
    Mined
        The whole result, read back from the shards.

    Raises
    ------
    OutputDirError
        ``out_dir`` holds another job's output (the message lists what differs), unrelated files,
        or another process is writing to it.

    Examples
    --------
    >>> import numpy as np, hardneg, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((400, 8), dtype=np.float32)
    >>> out = os.path.join(tempfile.mkdtemp(), "mined")
    >>> mined = hardneg.mine_to_disk(corpus[:30], corpus, np.arange(30), out, num_negatives=3, shard_size=8)
    >>> sorted(os.listdir(out)), mined.negatives.shape
    (['.lock', '.manifest.json', 'part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet', 'part-00003.parquet'], (30, 3))
    >>> again = hardneg.mine_to_disk(corpus[:30], corpus, np.arange(30), out, num_negatives=3, shard_size=8)
    >>> bool((again.negatives == mined.negatives).all())
    True
    >>> try:
    ...     hardneg.mine_to_disk(corpus[:30], corpus, np.arange(30), out, num_negatives=4, shard_size=8)
    ... except hardneg.OutputDirError as e:
    ...     print("num_negatives: 3 in the directory, 4 now" in str(e))
    True
    """
    from ._arrays import as_count
    from ._optional import require

    require("pyarrow", "mine_to_disk (Parquet output)")
    shard = DEFAULT_SHARD_SIZE if shard_size is None else as_count(shard_size, "shard_size")
    plan = _Plan(queries, corpus, positives, num_negatives=num_negatives, metric=metric, range_min=range_min,
                 range_max=range_max, min_score=min_score, max_score=max_score, absolute_margin=absolute_margin,
                 relative_margin=relative_margin, sampling=sampling, seed=seed, exclude=exclude, threads=threads,
                 simans_a=simans_a, simans_b=simans_b, chunk_size=chunk_size, exclude_self=exclude_self, index=index)
    out = os.fspath(out_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputDirError(f"{out!r} exists and is not a directory; choose a directory path")
    os.makedirs(out, exist_ok=True)
    job = {"params": plan.params(), "inputs": _describe_inputs(plan), "num_queries": plan.rows, "shard_size": shard,
           "positives_width": plan.pos_width}
    fingerprint = _fingerprint(job)
    with _Lock(out):
        manifest = _open_dir(out, job, fingerprint)
        for e in os.listdir(out):
            if e.endswith(".tmp"):  # a write cut short (old-layout names had no leading dot)
                os.remove(os.path.join(out, e))
        mpath = os.path.join(out, MANIFEST)
        if not os.path.exists(mpath):
            _write_atomic(mpath, json.dumps(manifest, indent=1, sort_keys=True).encode())
        if not manifest.get("complete"):
            plan.check_queries_finite()
            _run_shards(plan, out, manifest, shard, progress)
        return load_mined(out)


def _run_shards(plan: _Plan, out: str, manifest: dict[str, Any], shard: int, progress: Progress) -> None:
    import pyarrow.parquet as pq

    rows = plan.rows
    nshards = max(1, -(-rows // shard))
    done_rows = sum(int(v["end"]) - int(v["start"]) for k, v in manifest["shards"].items()
                    if os.path.exists(os.path.join(out, v["file"])))
    advance, close = _progress_bar(progress, rows, "mining")
    mpath = os.path.join(out, MANIFEST)
    try:
        if done_rows:
            advance(done_rows)
        for i in range(nshards):
            a, b = i * shard, min((i + 1) * shard, rows)
            entry = manifest["shards"].get(str(i))
            if entry is not None and os.path.exists(os.path.join(out, entry["file"])):
                continue
            parts = []
            stats = _zero_stats()
            for ca, cb in plan.chunks(a, b):
                neg, sc, pi, ps, st = plan.run(ca, cb)
                parts.append((neg, sc, pi, ps))
                add_stats(stats, st)
                advance(cb - ca)
            neg, sc, pi, ps = (np.concatenate([p[j] for p in parts]) for j in range(4))
            table = to_arrow_table(np.arange(a, b, dtype=np.int64), neg, sc, pi, ps)
            name = _shard_name(i)
            tmp = _tmp_path(os.path.join(out, name))
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(out, name))
            _fsync_dir(out)
            manifest["shards"][str(i)] = {"file": name, "start": a, "end": b, "stats": stats}
            _write_atomic(mpath, json.dumps(manifest, indent=1, sort_keys=True).encode())
        totals = _zero_stats()
        for v in manifest["shards"].values():
            add_stats(totals, v["stats"])
        manifest["stats"] = totals
        manifest["complete"] = True
        _write_atomic(mpath, json.dumps(manifest, indent=1, sort_keys=True).encode())
        _fsync_dir(out)
    finally:
        close()


def load_mined(out_dir: str | os.PathLike[str]) -> Mined:
    """Reads the result of a finished :func:`mine_to_disk` job (or ``hardneg mine --out DIR``).

    Raises :class:`OutputDirError` if ``out_dir`` holds no finished job. A directory written by
    an older hardneg (``manifest.json`` among the shards) is read too, with a warning that says
    how to convert it so other Parquet readers open it.

    Examples
    --------
    >>> import hardneg, tempfile
    >>> try:
    ...     hardneg.load_mined(tempfile.mkdtemp())
    ... except hardneg.OutputDirError as e:
    ...     print("no hardneg mining output" in str(e))
    True
    """
    from ._optional import require

    pa = require("pyarrow", "load_mined (Parquet input)")
    import pyarrow.parquet as pq

    out = os.fspath(out_dir)
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path) and os.path.exists(os.path.join(out, OLD_MANIFEST)):
        path = os.path.join(out, OLD_MANIFEST)
        warnings.warn(f"{out!r} has the old hardneg layout: its manifest.json sits among the shards, where pandas, "
                      f"pyarrow and datasets try to read it as Parquet. Rename it to {MANIFEST} (or rerun the same "
                      "hardneg mine command, which converts the directory)", UserWarning, stacklevel=2)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise OutputDirError(f"{out!r} holds no hardneg mining output (no readable {MANIFEST})") from e
    if manifest.get("format") != FORMAT:
        raise OutputDirError(f"{out!r} holds no hardneg mining output (unknown manifest format)")
    if not manifest.get("complete"):
        raise OutputDirError(f"the mining job in {out!r} has not finished; run it again with the same arguments to resume it")
    job = manifest["job"]
    shards = sorted(manifest["shards"].values(), key=lambda v: int(v["start"]))
    tables = [pq.read_table(os.path.join(out, v["file"])) for v in shards]
    table = pa.concat_tables(tables) if tables else None
    n = int(job["params"]["num_negatives"])
    width = int(job["positives_width"])
    rows = int(job["num_queries"])

    def column(name: str, dtype: Any, w: int) -> np.ndarray:
        if table is None or w == 0:
            return np.zeros((rows, w), dtype)
        flat = table[name].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(flat, dtype=dtype).reshape(rows, w)

    if table is not None and not np.array_equal(table["query"].to_numpy(), np.arange(rows)):
        raise OutputDirError(f"the shards in {out!r} do not cover the queries exactly once; remove the directory and rerun")
    negatives = column("negatives", np.int64, n)
    scores = column("scores", np.float32, n)
    pos = column("positives", np.int64, width)
    pos_scores = column("positive_scores", np.float32, width)
    stats: dict[str, Any] = dict(manifest["stats"])
    stats["score_distribution"] = score_distribution(pos_scores, negatives, scores)
    return Mined(negatives, scores, pos, pos_scores, stats, dict(job["params"]))


# --- command line ------------------------------------------------------------------------------


def add_mine_parser(sub: Any) -> None:
    """Adds the ``mine`` subcommand to the ``hardneg`` parser."""
    from .cli import HelpFormatter, add_selection_options

    p = sub.add_parser(
        "mine",
        help="mine hard negatives from .npy embeddings into resumable Parquet shards",
        description="Mine hard negatives: exact search, filters, rank window, sampling. Writes Parquet shards and a "
        "manifest to --out as it goes; rerun the same command after an interruption to resume. For texts, see "
        "`hardneg mine-texts`.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--queries", required=True, help="query embeddings, .npy [Q, d]")
    corpus = p.add_mutually_exclusive_group(required=True)
    corpus.add_argument("--corpus", help="corpus embeddings, .npy [N, d] (memory-mapped), searched exactly")
    corpus.add_argument("--index", help="a saved hardneg index (HnswIndex.save(); float32 storage) to search instead")
    p.add_argument("--positives", required=True, help="positive corpus ids, .npy int [Q] or [Q, P] padded with -1")
    p.add_argument("--exclude", help="more excluded ids, .npy int [Q, m] padded with -1")
    p.add_argument("--exclude-self", action="store_true", help="query i never gets corpus row i (queries = corpus)")
    p.add_argument("--out", required=True, help="output directory (created; resumed if it holds this job)")
    p.add_argument("--metric", choices=["cosine", "dot", "ip"], default=None,
                   help="similarity ('ip' = 'dot'); default: the index's, cosine for --corpus")
    add_selection_options(p, num_negatives=8)
    p.add_argument("--simans-a", type=float, default=SIMANS_A, help="SimANS weight exp(-a (s - p - b)^2): a")
    p.add_argument("--simans-b", type=float, default=SIMANS_B, help="SimANS weight: b")
    p.add_argument("--chunk-size", type=int, default=None, help="queries per engine call (default 8192)")
    p.add_argument("--shard-size", type=int, default=None, help=f"queries per Parquet shard (default {DEFAULT_SHARD_SIZE})")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    p.set_defaults(run=run_mine_command)


def run_mine_command(args: argparse.Namespace) -> int:
    """Runs ``hardneg mine``; prints the summary. Returns the exit status (2 on bad input)."""
    try:
        mined = mine_to_disk(
            args.queries, args.corpus, args.positives, args.out, index=args.index, num_negatives=args.num_negatives,
            metric=args.metric,
            range_min=args.range_min, range_max=args.range_max, min_score=args.min_score, max_score=args.max_score,
            absolute_margin=args.absolute_margin, relative_margin=args.relative_margin, sampling=args.sampling,
            seed=args.seed, exclude=args.exclude, exclude_self=args.exclude_self, threads=args.threads, progress=args.progress, simans_a=args.simans_a,
            simans_b=args.simans_b, chunk_size=args.chunk_size, shard_size=args.shard_size)
    except HardnegError as e:
        print(f"hardneg mine: error: {e}", file=sys.stderr)
        return 2
    print(mined.summary())
    print(f"Wrote {len(mined):,} queries x {mined.params['num_negatives']} negatives to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - thin wrapper used by tests via subprocess
    from .cli import main as cli_main

    return cli_main(["mine", *(argv or sys.argv[1:])])
