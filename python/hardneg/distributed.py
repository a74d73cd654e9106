"""Hard-negative mining over the ranks of ``torch.distributed``: :func:`mine`.

Two ways to split the work, both giving exactly the single-process :func:`hardneg.mine` result:

* ``split="corpus"`` (default): each rank holds one shard of the corpus and every rank holds all
  queries and positives. The mining engine of :func:`hardneg.mine` runs on every rank over its
  shard seen as the whole corpus (global ids): for each chunk of queries it searches the shard
  (``k = range_max``, positives and ``exclude`` skipped by global id) and scores the positives
  that live in the shard. One ``all_to_all`` then hands rank ``r`` the fixed-size candidate rows
  of its slice of the chunk from every rank; it merges them (:func:`hardneg.merge_topk`), takes
  each positive's score from the rank that holds the row, and runs the engine's selection step,
  seeded by the global query index. Only candidates travel: ``12 * range_max + 4 * P`` bytes per
  query and rank, never the corpus.
* ``split="queries"``: every rank holds the whole corpus and mines its slice of each chunk.

Finally the selected negatives go to every rank (``dst=None``) or to one. Before any work the
ranks exchange a small fixed-size header (dimension, query count, shard rows and offsets,
parameters, digests of the queries and ids) and every rank raises the same error if they
disagree, or if any rank failed to load its inputs, instead of hanging.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from typing import Any, Callable, Literal

import numpy as np

from . import _hardneg
from ._arrays import as_matrix, id_lists_to_csr, similarity_name
from .errors import (
    DeviceError,
    DistributedError,
    DTypeError,
    HardnegError,
    IdOutOfRangeError,
    InputFileError,
    NonFiniteError,
    OutputDirError,
    ParameterError,
    ShapeError,
)
from .index import FlatIndex
from .mining import Mined, Progress, _check_dim, _Plan, _progress_bar, _zero_stats, load_matrix, score_distribution
from .selection import SIMANS_A, SIMANS_B, STAT_NAMES, Sampling

__all__ = ["mine"]

_PROTOCOL = 1
# Error classes a failing rank reports to the others, by code (0: any other exception).
_ERRORS: tuple[type[HardnegError], ...] = (HardnegError, ShapeError, DTypeError, NonFiniteError, IdOutOfRangeError,
                                            ParameterError, InputFileError, OutputDirError, DeviceError,
                                            DistributedError)
_MESSAGE_WORDS = 64  # 512 bytes of the failing rank's message travel in the header
# Header fields: (name, what the user changes, error class when ranks disagree).
_FIELDS: tuple[tuple[str, str, type[HardnegError]], ...] = (
    ("protocol", "the hardneg version", ParameterError),
    ("split", "split", ParameterError),
    ("dim", "the embedding dimension", ShapeError),
    ("queries", "the number of queries", ShapeError),
    ("metric", "metric", ParameterError),
    ("num_negatives", "num_negatives", ParameterError),
    ("range_min", "range_min", ParameterError),
    ("range_max", "range_max (k of the search)", ParameterError),
    ("chunk_size", "chunk_size", ParameterError),
    ("dst", "dst", ParameterError),
    ("params", "the filters, sampling, seed or SimANS parameters", ParameterError),
    ("queries_digest", "the queries (same shape, different values)", ParameterError),
    ("ids_digest", "positives or exclude", ParameterError),
    ("corpus_digest", "the corpus (split='queries' needs the whole corpus on every rank)", ParameterError),
    ("rows", "", ParameterError),  # shard rows: checked as a partition, not for equality
    ("row_offset", "", ParameterError),
)
_FIELD = {name: j for j, (name, _, _) in enumerate(_FIELDS)}


def _hash64(*parts: Any) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p if isinstance(p, (bytes, bytearray, memoryview)) else repr(p).encode())
        h.update(b"|")
    return int.from_bytes(h.digest(), "little", signed=True)


class _Comm:
    """The collectives of one run over ``group``, each waited for at most ``timeout``."""

    def __init__(self, group: Any) -> None:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ParameterError("hardneg.distributed.mine needs a torch.distributed process group: call "
                                 "torch.distributed.init_process_group first (torchrun sets up its environment)")
        self.torch, self.dist, self.group = torch, dist, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.timeout: datetime.timedelta | None = None
        nccl = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        self.bytes_sent = 0
        self.bytes_received = 0
        self.seconds = 0.0

    def _run(self, what: str, start: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            work = start()
            if self.timeout is None:
                work.wait()
            else:
                work.wait(timeout=self.timeout)
        except RuntimeError as e:  # gloo/nccl errors (DistBackendError is a RuntimeError)
            limit = "the process group's timeout" if self.timeout is None else f"{self.timeout.total_seconds():g} s"
            raise DistributedError(f"rank {self.rank}: the {what} exchange failed: another rank stopped or did not "
                                   f"answer within {limit} ({str(e).splitlines()[0][:300]})") from e
        self.seconds += time.perf_counter() - t0

    def _tensor(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _global(self, rank: int) -> int:
        if self.group is None:
            return rank
        return int(self.dist.get_global_rank(self.group, rank))

    def all_gather(self, a: np.ndarray, what: str) -> np.ndarray:
        """``[world, *a.shape]``: every rank's ``a`` (same shape and dtype everywhere)."""
        t = self._tensor(a)
        out = self.torch.empty((self.world * t.shape[0], *t.shape[1:]), dtype=t.dtype, device=self.device)
        self._run(what, lambda: self.dist.all_gather_into_tensor(out, t, group=self.group, async_op=True))
        self.bytes_sent += a.nbytes
        self.bytes_received += a.nbytes * (self.world - 1)
        return out.cpu().numpy().reshape(self.world, *a.shape)

    def gather(self, a: np.ndarray, dst: int, what: str) -> np.ndarray | None:
        """``[world, *a.shape]`` on rank ``dst``, None elsewhere."""
        t = self._tensor(a)
        parts = [self.torch.empty_like(t) for _ in range(self.world)] if self.rank == dst else None
        self._run(what, lambda: self.dist.gather(t, parts, dst=self._global(dst), group=self.group, async_op=True))
        self.bytes_sent += a.nbytes if self.rank != dst else 0
        if parts is None:
            return None
        self.bytes_received += a.nbytes * (self.world - 1)
        return self.torch.stack(parts).cpu().numpy()

    def all_to_all(self, a: np.ndarray, send_rows: list[int], recv_rows: int, what: str) -> np.ndarray:
        """Rows ``a[sum(send_rows[:r]) : sum(send_rows[:r + 1])]`` go to rank ``r``; returns the
        ``world * recv_rows`` rows received, by sending rank."""
        t = self._tensor(a)
        out = self.torch.empty((self.world * recv_rows, *t.shape[1:]), dtype=t.dtype, device=self.device)
        self._run(what, lambda: self.dist.all_to_all_single(out, t, [recv_rows] * self.world, send_rows,
                                                            group=self.group, async_op=True))
        row = a.nbytes // max(a.shape[0], 1)
        self.bytes_sent += row * (a.shape[0] - send_rows[self.rank])
        self.bytes_received += row * recv_rows * (self.world - 1)
        return out.cpu().numpy()

    def all_reduce_sum(self, a: np.ndarray, what: str) -> np.ndarray:
        t = self._tensor(a)
        self._run(what, lambda: self.dist.all_reduce(t, group=self.group, async_op=True))
        return t.cpu().numpy()


def _as_timeout(timeout: Any) -> datetime.timedelta | None:
    if timeout is None or isinstance(timeout, datetime.timedelta):
        if timeout is not None and not timeout.total_seconds() > 0:
            raise ParameterError(f"timeout must be positive, got {timeout}")
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ParameterError(f"timeout must be a positive number of seconds or a datetime.timedelta, got {timeout!r}")
    return datetime.timedelta(seconds=float(timeout))


def _encode_failure(err: BaseException | None) -> np.ndarray:
    """``[failed, class code, message words...]`` as int64."""
    out = np.zeros(2 + _MESSAGE_WORDS, np.int64)
    if err is None:
        return out
    out[0] = 1
    out[1] = next((j for j, c in enumerate(_ERRORS) if type(err) is c), 0)
    msg = f"{type(err).__name__}: {err}" if out[1] == 0 else str(err)
    raw = msg.encode("utf-8")[: 8 * _MESSAGE_WORDS]
    out[2:] = np.frombuffer(raw.ljust(8 * _MESSAGE_WORDS, b"\0"), np.int64)
    return out


def _agree(comm: _Comm, what: str, fn: Callable[[], np.ndarray | None], fields: int = 0) -> np.ndarray:
    """Runs ``fn`` on every rank (it returns ``fields`` int64 values, or None when ``fields=0``),
    exchanges the outcome and returns ``[world, fields]``; if ``fn`` failed on any rank, every
    rank raises: the failing rank its own exception, the others the same class naming it."""
    err: Exception | None = None
    values = np.zeros(fields, np.int64)
    try:
        got = fn()
        if fields:
            values = np.asarray(got, np.int64)
    except Exception as e:  # noqa: BLE001 - reported to every rank, then re-raised here
        err = e
    table = comm.all_gather(np.concatenate([_encode_failure(err), values]), "header")
    failed = np.flatnonzero(table[:, 0])
    if failed.size:
        if err is not None:
            raise err
        r = int(failed[0])
        code = int(table[r, 1])
        msg = table[r, 2 : 2 + _MESSAGE_WORDS].tobytes().rstrip(b"\0").decode("utf-8", "replace")
        cls = _ERRORS[code] if code else DistributedError
        raise cls(f"rank {r} could not {what}: {msg}")
    return table[:, 2 + _MESSAGE_WORDS :]


def _check_header(table: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raises if the ranks disagree; returns the ranks' ``(row_offsets, rows)``."""
    for name, what, cls in _FIELDS:
        if not what or (name == "corpus_digest" and split != "queries"):
            continue
        col = table[:, _FIELD[name]]
        bad = np.flatnonzero(col != col[0])
        if bad.size:
            r = int(bad[0])
            if name.endswith(("digest", "params")):
                detail = f"rank 0 and rank {r} differ"
            else:
                shown = {"metric": ("dot", "cosine"), "split": ("corpus", "queries")}.get(name)
                value = (lambda v: shown[v] if shown else ("None" if v == -1 and name in ("range_max", "dst") else v))
                detail = f"rank 0 has {value(int(col[0]))}, rank {r} has {value(int(col[r]))}"
            raise cls(f"the ranks disagree about {what}: {detail}; start every rank with the same value")
    return table[:, _FIELD["row_offset"]], table[:, _FIELD["rows"]]


def _shard_layout(offsets: np.ndarray, rows: np.ndarray, split: str) -> tuple[np.ndarray, int]:
    """Checks that the shards cover the corpus exactly once; returns each rank's row offset and N."""
    world = len(rows)
    if split == "queries":
        if (offsets > 0).any():
            r = int(np.argmax(offsets > 0))
            raise ParameterError(f"split='queries' needs the whole corpus on every rank, but rank {r} passed "
                                 f"row_offset={int(offsets[r])}; drop row_offset")
        return np.zeros(world, np.int64), int(rows[0])
    given = offsets >= 0
    if given.any() and not given.all():
        raise ParameterError(f"row_offset was given on rank {int(np.argmax(given))} but not on rank "
                             f"{int(np.argmin(given))}; give it on every rank, or on none (shards in rank order)")
    if not given.any():
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    n = int(rows.sum())
    order = [r for r in np.argsort(offsets, kind="stable") if rows[r] > 0]
    expected = 0
    for j, r in enumerate(order):
        a, b = int(offsets[r]), int(offsets[r] + rows[r])
        if a < expected:
            p = order[j - 1]
            raise ParameterError(f"the corpus shards overlap: rank {p} holds rows {int(offsets[p])}..{expected} and "
                                 f"rank {r} holds rows {a}..{b}; give every corpus row to exactly one rank")
        if a > expected:
            raise ParameterError(f"corpus rows {expected}..{a} are on no rank (rank {r} starts at row {a}); "
                                 "give every corpus row to exactly one rank")
        expected = b
    return offsets, n


def _pack(*arrays: np.ndarray) -> np.ndarray:
    """Row-wise concatenation of ``[rows, w]`` arrays of 4- or 8-byte items as int32 words."""
    rows = arrays[0].shape[0]
    return np.concatenate([np.ascontiguousarray(a).view(np.int32).reshape(rows, a.shape[1] * a.itemsize // 4)
                           for a in arrays], axis=1)


def _unpack(words: np.ndarray, layout: list[tuple[Any, int]]) -> list[np.ndarray]:
    out, j = [], 0
    for dtype, width in layout:
        w = width * np.dtype(dtype).itemsize // 4
        # Copied into a fresh array: views of one row keep strides the extension refuses.
        part = np.empty((len(words), width), dtype)
        part.view(np.int32)[:] = words[:, j : j + w]
        out.append(part)
        j += w
    return out


def _padded(offsets: np.ndarray, ids: np.ndarray, width: int) -> np.ndarray:
    """CSR id rows as ``[rows, width]`` padded with -1 (every row has at most ``width`` ids)."""
    lens = np.diff(offsets)
    out = np.full((len(lens), width), -1, np.int64)
    out[np.arange(width) < lens[:, None]] = ids[offsets[0] : offsets[-1]]
    return out


class _ShardIndex:
    """This rank's shard as the mining engine sees it: the whole corpus of ``total_rows`` rows
    with global ids, holding rows ``row_offset ..`` (none when ``index`` is None)."""

    def __init__(self, index: FlatIndex | None, row_offset: int, total_rows: int, dim: int, metric: str) -> None:
        self._inner = _hardneg.ShardIndex(None if index is None else index._inner, row_offset=row_offset,
                                          total_rows=total_rows, dim=dim, metric=metric)
        self.metric, self.dim, self._rows = metric, dim, total_rows

    def __len__(self) -> int:
        return self._rows


def _slices(a: int, b: int, world: int) -> list[int]:
    """Cut points giving each rank a contiguous, near-equal slice of queries ``a:b``."""
    return [a + ((b - a) * r) // world for r in range(world + 1)]


def mine(
    queries: Any,
    corpus_shard: Any,
    positives: Any,
    *,
    row_offset: int | None = None,
    split: Literal["corpus", "queries"] = "corpus",
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
    dst: int | None = None,
    group: Any = None,
    timeout: float | datetime.timedelta | None = None,
) -> Mined | None:
    """:func:`hardneg.mine` over the ranks of a ``torch.distributed`` process group, exactly.

    Call it on every rank of an initialised process group (``gloo`` for CPU tensors, ``nccl``
    with a CUDA device set; launched by ``torchrun`` or any launcher) with the same queries,
    positives and arguments. The result equals ``hardneg.mine(queries, whole_corpus, positives,
    ...)`` bit for bit: negatives, scores, positive scores and counters.

    Parameters
    ----------
    queries : array_like, np.memmap or path of a .npy file, shape (Q, d)
        All queries, on every rank (a memory-mapped ``.npy`` is read chunk by chunk).
    corpus_shard : array_like, np.memmap, path of a .npy file, or FlatIndex, shape (n, d)
        ``split="corpus"``: this rank's shard, global rows ``row_offset .. row_offset + n``
        (``n`` may differ between ranks, may be smaller than ``range_max``, and may be 0; a
        float32 memmap such as ``np.load(path, mmap_mode="r")[a:b]`` is not copied).
        ``split="queries"``: the whole corpus, the same on every rank.
    positives : int array (Q,) or (Q, P) padded with -1, list of int sequences, .npy path, or None
        Every query's positives in global corpus ids, on every rank (they may live on any shard).
    row_offset : int, optional
        Global id of this shard's first row. Give it on every rank, or on none: then the shards
        follow rank order (rank 0 holds the first rows). Overlapping shards or rows on no rank
        are an error on every rank.
    split : {"corpus", "queries"}, default "corpus"
        What the ranks divide: the corpus (each rank searches its shard for every query and the
        candidates are merged) or the queries (each rank searches the whole corpus for its
        slice of the queries; no candidates travel).
    num_negatives, metric, range_min, range_max, min_score, max_score, absolute_margin, \
relative_margin, sampling, seed, exclude, exclude_self, simans_a, simans_b
        As :func:`hardneg.mine`; ``exclude`` in global ids; ``exclude_self`` excludes global row
        ``i`` from query ``i``.
    threads : int, optional
        Worker threads of this rank (default: every core).
    progress : None, bool or callable, optional
        As :func:`hardneg.mine`, shown by the rank that receives the result (rank 0 when
        ``dst=None``).
    chunk_size : int, optional
        Queries per step (default 8192); the same on every rank. Each step exchanges about
        ``chunk_size * (12 * range_max + 4 * P)`` bytes per rank.
    dst : int, optional
        The rank that gets the result; the others return None. Default: every rank gets it.
    group : ProcessGroup, optional
        Default: the default group.
    timeout : float (seconds) or datetime.timedelta, optional
        Longest wait for the other ranks at each exchange; when a rank dies or stalls, the others
        raise :class:`DistributedError` after at most this long. Default: the process group's
        timeout.

    Returns
    -------
    Mined or None
        As :func:`hardneg.mine` (``params`` identical); ``stats["distributed"]`` adds this rank's
        ``world_size``, ``bytes_sent``, ``bytes_received`` and the seconds spent in search,
        exchange, merge and selection. None on ranks other than ``dst``.

    Raises
    ------
    ShapeError, ParameterError
        On every rank, when the ranks disagree about the dimension, the query count, the
        parameters, the queries or ids (digests), or when the shards overlap or leave rows out.
    DistributedError
        A rank died or did not answer within ``timeout``.
    HardnegError
        Any bad input of :func:`hardneg.mine`, raised on every rank (the others name the rank
        whose input was bad).

    Examples
    --------
    Without a launcher, a one-rank ``gloo`` group gives the same as :func:`hardneg.mine`; under
    ``torchrun`` each rank passes its own shard and ``row_offset``.

    >>> import numpy as np, tempfile, os, torch.distributed as dist, hardneg
    >>> import hardneg.distributed
    >>> dist.init_process_group("gloo", init_method="file://" + os.path.join(tempfile.mkdtemp(), "pg"),
    ...                         rank=0, world_size=1)
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((300, 16), dtype=np.float32)
    >>> queries = corpus[:20] + 0.1 * rng.standard_normal((20, 16), dtype=np.float32)
    >>> got = hardneg.distributed.mine(queries, corpus[:300], np.arange(20), row_offset=0, num_negatives=4)
    >>> want = hardneg.mine(queries, corpus, np.arange(20), num_negatives=4)
    >>> bool((got.negatives == want.negatives).all()), got.stats["distributed"]["world_size"]
    (True, 1)
    >>> dist.destroy_process_group()
    """
    comm = _Comm(group)
    kwargs = dict(num_negatives=num_negatives, metric=metric, range_min=range_min, range_max=range_max,
                  min_score=min_score, max_score=max_score, absolute_margin=absolute_margin,
                  relative_margin=relative_margin, sampling=sampling, seed=seed, exclude=exclude, threads=threads,
                  simans_a=simans_a, simans_b=simans_b, chunk_size=chunk_size, exclude_self=exclude_self)
    loaded: dict[str, Any] = {}

    def load() -> list[int]:
        """Loads this rank's inputs and describes them in the header."""
        # Every check runs inside the exchange, so a bad argument on one rank fails them all.
        comm.timeout = _as_timeout(timeout)
        if split not in ("corpus", "queries"):
            raise ParameterError(f"split must be 'corpus' or 'queries', got {split!r}")
        sim = None if metric is None else similarity_name(metric, "metric")
        if dst is not None and (isinstance(dst, bool) or not isinstance(dst, int) or not 0 <= dst < comm.world):
            raise ParameterError(f"dst must be a rank in 0..{comm.world - 1} or None, got {dst!r}")
        if row_offset is not None and (isinstance(row_offset, bool) or not isinstance(row_offset, int)
                                       or row_offset < 0):
            raise ParameterError(f"row_offset must be a non-negative integer or None, got {row_offset!r}")
        q = load_matrix(queries, "queries")
        _check_dim(q, "queries")
        if not hasattr(q, "shape"):
            q = as_matrix(q, "queries")
        shard = load_matrix(corpus_shard, "corpus_shard")
        if isinstance(shard, FlatIndex):
            index, rows, dim = shard, len(shard), shard.dim
            if sim is None:
                sim = similarity_name(shard.metric, "metric")
            elif similarity_name(shard.metric, "metric") != sim:
                raise ParameterError(f"the shard's index was built with metric={shard.metric!r} but metric={metric!r} "
                                     f"was asked; pass metric={shard.metric!r} or build the index with metric={metric!r}")
        else:
            sim = sim or "cosine"
            shape = getattr(shard, "shape", None)
            if shape is not None and len(shape) == 2 and shape[0] == 0 and shape[1] > 0 and split == "corpus":
                index, rows, dim = None, 0, int(shape[1])  # an empty shard: it only pads
            else:
                _check_dim(shard, "corpus_shard")
                index = FlatIndex(shard, metric=sim, threads=threads)
                rows, dim = len(index), index.dim
        if int(q.shape[1]) != dim:
            raise ShapeError(f"queries have dimension {q.shape[1]} but the corpus shard has dimension {dim}; "
                             "embed both with the same model")
        nq = int(q.shape[0])
        from .mining_job import _digest_rows

        ids = {what: None if x is None else load_matrix(x, what) for x, what in
               ((positives, "positives"), (exclude, "exclude"))}
        id_digest = [id_lists_to_csr(x, nq, what, allow_1d=True) for what, x in ids.items() if x is not None]
        given = {k: v for k, v in kwargs.items() if k not in ("threads", "chunk_size", "num_negatives", "metric",
                                                             "range_min", "range_max", "exclude")}
        loaded.update(queries=q, index=index, dim=dim, metric=sim, **ids)
        header = dict(
            protocol=_PROTOCOL, split=("corpus", "queries").index(split), dim=dim, queries=nq,
            metric=("dot", "cosine").index(sim),
            num_negatives=num_negatives if isinstance(num_negatives, int) else -2,
            range_min=range_min if isinstance(range_min, int) else -2,
            range_max=-1 if range_max is None else (range_max if isinstance(range_max, int) else -2),
            chunk_size=-1 if chunk_size is None else (chunk_size if isinstance(chunk_size, int) else -2),
            dst=-1 if dst is None else dst,
            params=_hash64(json.dumps(given, sort_keys=True, default=repr)),
            queries_digest=_hash64(_digest_rows(q, False)),
            ids_digest=_hash64(*(np.ascontiguousarray(a).tobytes() for pair in id_digest for a in pair)),
            corpus_digest=_hash64(_digest_rows(index.vectors, False)) if split == "queries" and index else 0,
            rows=rows, row_offset=-1 if row_offset is None else row_offset,
        )
        return [int(header[field]) for field, _, _ in _FIELDS]

    table = _agree(comm, "load its inputs", load, fields=len(_FIELDS))
    offsets, shard_rows = _check_header(table, split)
    offsets, n = _shard_layout(offsets, shard_rows, split)
    if n == 0:
        raise ShapeError("the corpus is empty on every rank; give the ranks at least one corpus row")
    plans: list[_Plan] = []

    def check() -> None:
        """The arguments and ids as hardneg.mine checks them (ids against the whole corpus); the
        engine runs over this rank's shard seen as the whole corpus, or over the whole corpus."""
        index = loaded["index"]
        if split == "corpus":
            index = _ShardIndex(index, int(offsets[comm.rank]), n, loaded["dim"], loaded["metric"])
        plans.append(_Plan(loaded["queries"], None, loaded["positives"], index=index,
                           **{**kwargs, "exclude": loaded["exclude"], "metric": loaded["metric"]}))
        plans[0].check_queries_finite()

    _agree(comm, "check its arguments", check)
    return _Run(comm, plans[0], split, dst).run(progress)


class _Run:
    """The chunk loop of :func:`mine` on one rank."""

    def __init__(self, comm: _Comm, plan: _Plan, split: str, dst: int | None) -> None:
        self.comm, self.plan, self.split, self.dst = comm, plan, split, dst
        self.K, self.P, self.nn = plan.range_max, plan.pos_width, plan.num_negatives
        self.receives = dst is None or dst == comm.rank
        self.seconds = {"search": 0.0, "merge": 0.0, "select": 0.0}

    def _timed(self, what: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.seconds[what] += time.perf_counter() - t0
        return out

    def _search(self, q: np.ndarray, a: int, b: int) -> np.ndarray:
        """The engine's candidates for queries ``a:b`` over this shard and the scores of the
        positives it holds (NaN for other shards' rows), packed as the candidate exchange sends them."""
        plan = self.plan
        exclude = () if plan.exclude is None else (plan.exclude[0][a : b + 1], plan.exclude[1])
        s, i, _, ps = plan.miner.candidates(q, plan.pos[0][a : b + 1], plan.pos[1], *exclude, query_offset=a)
        return _pack(s, i, ps)

    def _merge(self, received: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Merges the candidate rows every rank sent for this rank's slice; each positive's score
        comes from the one rank whose shard holds its row (the others sent NaN)."""
        world, K, P = self.comm.world, self.K, self.P
        blocks = received.reshape(world, rows, received.shape[1])
        parts = [_unpack(blocks[r], [(np.float32, K), (np.int64, K), (np.float32, P)]) for r in range(world)]
        ms, mi = _hardneg.merge_topk([(p[0], p[1]) for p in parts], K, threads=self.plan.threads)
        pscore = np.fmax.reduce([p[2] for p in parts]) if P else np.zeros((rows, 0), np.float32)
        return ms, mi, np.ascontiguousarray(pscore, np.float32)

    def _step(self, a: int, b: int, cuts: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Mines this rank's slice ``cuts[rank]:cuts[rank + 1]`` of the chunk ``a:b``: returns its
        ``(negatives, scores, positive scores, counters)``. Every rank runs the same exchanges
        whatever happens locally; a failure on any rank then raises on all of them."""
        plan, comm, K, P, nn = self.plan, self.comm, self.K, self.P, self.nn
        lo, hi = cuts[comm.rank], cuts[comm.rank + 1]
        failure: list[Exception] = []
        out = (np.full((0, nn), -1, np.int64), np.zeros((0, nn), np.float32), np.zeros((0, P), np.float32),
               _zero_stats())

        def attempt(what: str, fn: Callable[[], Any]) -> Any:
            if failure:
                return None
            try:
                return self._timed(what, fn)
            except Exception as e:  # noqa: BLE001 - reported to every rank below
                failure.append(e)
                return None

        if self.split == "corpus":
            q = attempt("search", lambda: as_matrix(np.asarray(plan.queries[a:b]), "queries"))
            sent = attempt("search", lambda: self._search(q, a, b))
            send_rows = [cuts[r + 1] - cuts[r] for r in range(comm.world)]
            if sent is None:  # keep the exchange in step with padding; the status below stops every rank
                sent = _pack(np.full((b - a, K), np.nan, np.float32), np.full((b - a, K), -1, np.int64),
                             np.full((b - a, P), np.nan, np.float32))
            received = comm.all_to_all(sent, send_rows, hi - lo, "candidate")
            if hi > lo:
                merged = attempt("merge", lambda: self._merge(received, hi - lo))
                if merged is not None:
                    ms, mi, pscore = merged
                    picked = attempt("select", lambda: plan.miner.select(ms, mi, pscore, query_offset=lo))
                    if picked is not None:
                        out = (picked[0], picked[1], pscore, picked[2])
        elif hi > lo:
            ran = attempt("search", lambda: plan.run(lo, hi))
            if ran is not None:
                out = (ran[0], ran[1], ran[3], ran[4])

        def report() -> None:
            if failure:
                raise failure[0]

        _agree(comm, f"mine its part of queries {a}..{b}", report)
        return out

    def run(self, progress: Progress) -> Mined | None:
        plan, comm, nn, P = self.plan, self.comm, self.nn, self.P
        rows = plan.rows
        if self.receives:
            negatives = np.full((rows, nn), -1, np.int64)
            scores = np.full((rows, nn), np.nan, np.float32)
            pos_scores = np.full((rows, P), np.nan, np.float32)
        stats = _zero_stats()
        show = self.receives and (self.dst is not None or comm.rank == 0)
        advance, close = _progress_bar(progress if show else False, rows, "mining")
        layout = [(np.int64, nn), (np.float32, nn), (np.float32, P)]
        try:
            for a, b in plan.chunks(0, rows):
                cuts = _slices(a, b, comm.world)
                neg, sc, pscore, st = self._step(a, b, cuts)
                for k in STAT_NAMES:
                    stats[k] += int(st[k])
                # Fixed-size blocks: every rank pads its slice to the widest slice of the chunk.
                width = max(cuts[r + 1] - cuts[r] for r in range(comm.world))
                block = np.zeros((width, (8 * nn + 4 * nn + 4 * P) // 4), np.int32)
                block[: len(neg)] = _pack(neg, sc, pscore)
                got = (comm.all_gather(block, "result") if self.dst is None
                       else comm.gather(block, self.dst, "result"))
                if got is not None:
                    for r in range(comm.world):
                        ra, rb = cuts[r], cuts[r + 1]
                        n_, s_, p_ = _unpack(got[r][: rb - ra], layout)
                        negatives[ra:rb], scores[ra:rb], pos_scores[ra:rb] = n_, s_, p_
                advance(b - a)
        finally:
            close()
        totals = comm.all_reduce_sum(np.array([stats[k] for k in STAT_NAMES], np.int64), "counter")
        if not self.receives:
            return None
        out: dict[str, Any] = {k: int(v) for k, v in zip(STAT_NAMES, totals)}
        pos_ids = _padded(*plan.pos, P)
        out["score_distribution"] = score_distribution(pos_scores, negatives, scores)
        out["distributed"] = {"world_size": comm.world, "split": self.split, "bytes_sent": comm.bytes_sent,
                              "bytes_received": comm.bytes_received, "seconds_exchange": comm.seconds,
                              **{f"seconds_{k}": v for k, v in self.seconds.items()}}
        return Mined(negatives, scores, pos_ids, pos_scores, out, plan.params())
