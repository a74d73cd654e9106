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
import contextlib
import hashlib
import json
import operator
import os
import re
import sys
import warnings
from typing import Any, Sequence

import numpy as np

from .errors import HardnegError, OutputDirError, ParameterError
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
    """An advisory lock on ``DIR/.lock`` (released by the OS even on SIGKILL): exclusive for a
    whole job, shared by the parts of a job (``part=``), which also lock their own ``DIR/name``."""

    def __init__(self, out_dir: str, name: str = ".lock", shared: bool = False, busy: str | None = None) -> None:
        self.path = os.path.join(out_dir, name)
        self.shared = shared
        self.busy = busy or (f"another hardneg mine job is writing to {out_dir!r}; wait for it or choose another "
                             "output directory")
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise OutputDirError(self.busy) from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)


_PART_MANIFEST = re.compile(r"\.manifest\.part-(\d{5})-of-(\d{5})\.json")


def _is_bookkeeping(name: str) -> bool:
    """Locks, part manifests and temporary files: what a directory of a job may hold besides the
    manifest and the shards."""
    return name == ".lock" or name.startswith(".lock.part-") or bool(_PART_MANIFEST.fullmatch(name)) or name.endswith(".tmp")


def parse_part(part: Any) -> tuple[int, int] | None:
    """``"I/N"`` or ``(I, N)`` with ``0 <= I < N`` as ``(I, N)``; None stays None."""
    if part is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", part) if isinstance(part, str) else None
    if isinstance(part, str) and m is None:
        raise ParameterError(f"part must be 'I/N' (part I of N, counted from 0), e.g. '0/4', got {part!r}")
    try:
        i, n = (int(m[1]), int(m[2])) if m else (operator.index(part[0]), operator.index(part[1]))
        if not isinstance(part, str) and len(part) != 2:
            raise TypeError
    except (TypeError, IndexError):
        raise ParameterError(f"part must be 'I/N' or a pair (I, N), got {part!r}") from None
    if not 0 <= i < n:
        raise ParameterError(f"part {i}/{n} does not exist: parts are numbered 0 to N-1 (here 0/{n} .. {max(n - 1, 0)}/{n})")
    return i, n


def _part_shards(part: tuple[int, int], nshards: int) -> range:
    """The shards of part ``(i, n)``: a contiguous share of the ``nshards`` of the whole job."""
    i, n = part
    return range(i * nshards // n, (i + 1) * nshards // n)


def _part_manifest_name(part: tuple[int, int]) -> str:
    return f".manifest.part-{part[0]:05d}-of-{part[1]:05d}.json"


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _records(out_dir: str, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every written shard of the job: the manifest's records and those of its parts' manifests,
    by shard number (only shards whose file exists)."""
    found = dict(manifest["shards"])
    for name in sorted(os.listdir(out_dir)):
        if _PART_MANIFEST.fullmatch(name):
            part = _read_json(os.path.join(out_dir, name))
            if part and part.get("fingerprint") == manifest["fingerprint"]:
                for k, v in part["shards"].items():
                    found.setdefault(k, v)
    return {k: v for k, v in found.items() if os.path.exists(os.path.join(out_dir, v["file"]))}


def _num_shards(job: dict[str, Any]) -> int:
    return max(1, -(-int(job["num_queries"]) // int(job["shard_size"])))


def _create_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Writes a new manifest unless one exists (parts may start at the same moment: the first
    link wins, and the others read it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.remove(tmp)


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
    others = [e for e in os.listdir(out_dir) if not _is_bookkeeping(e)]
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
    part: str | tuple[int, int] | None = None,
) -> Mined | None:
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

    ``part="I/N"`` (or ``(I, N)``, ``0 <= I < N``) writes only part ``I`` of ``N``: a contiguous
    share of the shards, the same files a whole run writes. Any scheduler can run the ``N`` parts,
    at the same time or one after another, on machines that share the directory; each resumes as a
    whole job does, and once all are done the directory reads as the whole result.

    Returns
    -------
    Mined or None
        The whole result, read back from the shards; with ``part``, None until every part is done.

    Raises
    ------
    OutputDirError
        ``out_dir`` holds another job's output (the message lists what differs), unrelated files,
        another process is writing to it (the same part, or a whole run while parts run), or parts
        of another ``N``.
    ParameterError
        ``part`` is not ``I/N`` with ``0 <= I < N``.

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
    >>> parted = os.path.join(tempfile.mkdtemp(), "parted")
    >>> [hardneg.mine_to_disk(corpus[:30], corpus, np.arange(30), parted, num_negatives=3, shard_size=8,
    ...                       part=f"{i}/2") is None for i in (1, 0)]      # None until every part is done
    [True, False]
    >>> bool((hardneg.load_mined(parted).negatives == mined.negatives).all())
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
    spec = parse_part(part)
    if spec is None:
        with _Lock(out, busy=f"another hardneg mine job (or a part of one) is writing to {out!r}; wait for it or "
                             "choose another output directory"):
            manifest = _open_dir(out, job, fingerprint)
            for e in os.listdir(out):
                if e.endswith(".tmp"):
                    os.remove(os.path.join(out, e))
            mpath = os.path.join(out, MANIFEST)
            if not os.path.exists(mpath):
                _write_atomic(mpath, json.dumps(manifest, indent=1, sort_keys=True).encode())
            if not manifest.get("complete"):
                plan.check_queries_finite()
                shards = range(_num_shards(job))
                _run_shards(plan, out, manifest, mpath, shards, _records(out, manifest), shard, progress)
                _finish(out, manifest)
            return load_mined(out)
    pname = _part_manifest_name(spec)
    with _Lock(out, shared=True, busy=f"a whole hardneg mine job (without part) is writing to {out!r}; wait for it, "
                                      "or run only parts on this directory"), \
            _Lock(out, f".lock.part-{spec[0]:05d}-of-{spec[1]:05d}",
                  busy=f"part {spec[0]}/{spec[1]} is already running on {out!r}"):
        manifest = _open_dir(out, job, fingerprint)
        others = {(int(m[1]), int(m[2])) for m in map(_PART_MANIFEST.fullmatch, os.listdir(out)) if m}
        if any(n != spec[1] for _, n in others):
            n = next(n for _, n in others if n != spec[1])
            raise OutputDirError(f"{out!r} is being mined in {n} parts; run the parts as --part I/{n} (or use another "
                                 "output directory)")
        _create_manifest(os.path.join(out, MANIFEST), manifest)
        ppath = os.path.join(out, pname)
        mine_part = _read_json(ppath) or {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint,
                                          "part": list(spec), "shards": {}, "complete": False}
        shards = _part_shards(spec, _num_shards(job))
        for i in shards:  # a write of this part cut short
            with contextlib.suppress(FileNotFoundError):
                os.remove(_tmp_path(os.path.join(out, _shard_name(i))))
        if not mine_part.get("complete"):
            plan.check_queries_finite()
            _run_shards(plan, out, mine_part, ppath, shards, _records(out, manifest), shard, progress)
            mine_part["complete"] = True
            _write_atomic(ppath, json.dumps(mine_part, indent=1, sort_keys=True).encode())
        return load_mined(out) if len(_records(out, manifest)) == _num_shards(job) else None


def _finish(out: str, manifest: dict[str, Any]) -> None:
    """Marks the manifest of a whole job complete, with the counters of all its shards."""
    totals = _zero_stats()
    for v in _records(out, manifest).values():
        add_stats(totals, v["stats"])
    manifest["stats"] = totals
    manifest["complete"] = True
    _write_atomic(os.path.join(out, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
    _fsync_dir(out)


def _run_shards(plan: _Plan, out: str, record: dict[str, Any], record_path: str, shards: range,
                done: dict[str, Any], shard: int, progress: Progress) -> None:
    """Writes the shards of ``shards`` not in ``done``, each recorded in ``record`` (the job's
    manifest, or a part's) and saved to ``record_path`` after its file is in place."""
    import pyarrow.parquet as pq

    rows = plan.rows
    bounds = [(i, i * shard, min((i + 1) * shard, rows)) for i in shards]
    todo = [(i, a, b) for i, a, b in bounds if str(i) not in done]
    total = sum(b - a for _, a, b in bounds)
    advance, close = _progress_bar(progress, total, "mining")
    try:
        if total - sum(b - a for _, a, b in todo):
            advance(total - sum(b - a for _, a, b in todo))
        for i, a, b in todo:
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
            record["shards"][str(i)] = {"file": name, "start": a, "end": b, "stats": stats}
            _write_atomic(record_path, json.dumps(record, indent=1, sort_keys=True).encode())
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
    job = manifest["job"]
    records = _records(out, manifest)
    if not manifest.get("complete"):
        missing = [i for i in range(_num_shards(job)) if str(i) not in records]
        if missing:
            parts = {(int(m[1]), int(m[2])) for m in map(_PART_MANIFEST.fullmatch, os.listdir(out)) if m}
            hint = "run it again with the same arguments to resume it"
            if parts:
                n = max(n for _, n in parts)
                todo = sorted({i for i in range(n) for s in missing if s in _part_shards((i, n), _num_shards(job))})
                hint = f"run (or resume) part(s) {', '.join(f'{i}/{n}' for i in todo)} with the same arguments"
            raise OutputDirError(f"the mining job in {out!r} has not finished ({_num_shards(job) - len(missing)} of "
                                 f"{_num_shards(job)} shards written); {hint}")
        totals = _zero_stats()
        for v in records.values():
            add_stats(totals, v["stats"])
        manifest["stats"] = totals
    shards = sorted(records.values(), key=lambda v: int(v["start"]))
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
    p.add_argument("--part", default=None, metavar="I/N",
                   help="write only part I of N (0 <= I < N) into --out; run every part, in any order or at the same "
                   "time (e.g. a Slurm array: --part $SLURM_ARRAY_TASK_ID/N), and the directory holds the whole result")
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
            simans_b=args.simans_b, chunk_size=args.chunk_size, shard_size=args.shard_size, part=args.part)
    except HardnegError as e:
        print(f"hardneg mine: error: {e}", file=sys.stderr)
        return 2
    if mined is None:
        print(f"Part {args.part} done in {args.out}; the directory reads as one result once every part is done")
        return 0
    print(mined.summary())
    print(f"Wrote {len(mined):,} queries x {mined.params['num_negatives']} negatives to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - thin wrapper used by tests via subprocess
    from .cli import main as cli_main

    return cli_main(["mine", *(argv or sys.argv[1:])])
