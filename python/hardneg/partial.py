"""Search split over corpus shards: :func:`search_partial` and :func:`merge_topk`.

Building blocks for a corpus spread over processes or machines, usable from any engine
(``torch.distributed``, Ray actors, Spark or Dask tasks, a shell loop): whoever holds a shard runs
:func:`search_partial` on it, the fixed-size ``[Q, k]`` results travel (never the corpus), and
:func:`merge_topk` merges them. Rows are ordered by (score descending, id ascending) and a score
does not depend on the shard, so the merged result equals :meth:`FlatIndex.search` over the whole
corpus, bit for bit, whatever the number of shards, their sizes and the merge order.
:func:`hardneg.distributed.mine` is this recipe on ``torch.distributed``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_matrix, as_threads, id_lists_to_csr, similarity_name
from .errors import DTypeError, ParameterError, ShapeError
from .index import FlatIndex, Metric

__all__ = ["search_partial", "merge_topk"]


def _padding(rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((rows, k), np.nan, np.float32), np.full((rows, k), -1, np.int64)


def search_partial(
    queries: Any,
    corpus_shard: Any,
    k: int,
    *,
    row_offset: int = 0,
    exclude: Any = None,
    total_rows: int | None = None,
    metric: Metric = "dot",
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query over one shard of a corpus, with global ids.

    Parameters
    ----------
    queries : array_like, shape (Q, d)
    corpus_shard : array_like, np.memmap, path of a .npy file, or FlatIndex, shape (n, d)
        Global rows ``row_offset .. row_offset + n`` of the corpus (borrowed without a copy when
        float32 and C-contiguous; a :class:`FlatIndex` is reused as is). A shard with no rows
        returns padding only.
    k : int
        Results per query. A shard with fewer than ``k`` candidates for a query pads its row.
    row_offset : int, default 0
        Global id of the shard's first row; returned ids are ``row_offset + local row``.
    exclude : list of int sequences, or int array (Q, m) padded with -1, optional
        Global ids never returned for each query (ids outside the shard are ignored); applied
        inside the search.
    total_rows : int, optional
        Rows of the whole corpus: when given, the shard and the excluded ids must lie below it.
    metric : {"dot", "cosine"}, default "dot"
        Ignored when ``corpus_shard`` is a :class:`FlatIndex` (its own metric is used).
    threads : int, optional
        Worker threads (default: every core); the result does not depend on it.

    Returns
    -------
    scores : ndarray of float32, shape (Q, k)
        Each row by descending score, ties by the lower id; NaN where the shard ran out.
    ids : ndarray of int64, shape (Q, k)
        Global ids, ``-1`` where the shard ran out.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
        Bad embeddings or a dimension mismatch.
    ParameterError, IdOutOfRangeError
        ``k < 1``, a negative ``row_offset``, a shard or excluded id beyond ``total_rows``.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> corpus = np.array([[1, 0], [0, 1], [1, 1], [2, 0]], np.float32)
    >>> q = np.array([[1, 0.5]], np.float32)
    >>> a = hardneg.search_partial(q, corpus[:2], k=2, row_offset=0)
    >>> b = hardneg.search_partial(q, corpus[2:], k=2, row_offset=2, exclude=[[3]])
    >>> b[1].tolist()   # global ids; id 3 excluded, so the shard pads its row
    [[2, -1]]
    >>> scores, ids = hardneg.merge_topk([a, b], k=2)
    >>> ids.tolist(), scores.tolist()
    ([[2, 0]], [[1.5, 1.0]])
    """
    k = as_count(k, "k")
    row_offset = as_count(row_offset, "row_offset", minimum=0)
    total = None if total_rows is None else as_count(total_rows, "total_rows", minimum=0)
    nthreads = as_threads(threads)
    metric = similarity_name(metric, "metric")
    from .mining import load_matrix

    shard = load_matrix(corpus_shard, "corpus_shard")
    q = as_matrix(queries, "queries")
    offsets = ids = None
    if exclude is not None:
        offsets, ids = id_lists_to_csr(exclude, q.shape[0], "exclude")
    if not isinstance(shard, FlatIndex):
        shape = getattr(shard, "shape", None)
        if shape is not None and len(shape) == 2 and shape[0] == 0:
            return _empty_shard(q, shape[1], k, row_offset, total, ids)
        shard = FlatIndex(shard, metric=metric, threads=threads)
    if q.shape[1] != shard.dim:
        raise ShapeError(f"queries have dimension {q.shape[1]} but the corpus shard has dimension {shard.dim}; "
                         "embed both with the same model")
    return _hardneg.search_partial(shard._inner, q, k, row_offset=row_offset, exclude_offsets=offsets,
                                   exclude_ids=ids, total_rows=total, threads=nthreads)


def _empty_shard(q: np.ndarray, dim: int, k: int, row_offset: int, total: int | None,
                 ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The result of a shard without rows: padding, after the checks a non-empty shard makes."""
    if q.shape[1] != dim:
        raise ShapeError(f"queries have dimension {q.shape[1]} but the corpus shard has dimension {dim}; "
                         "embed both with the same model")
    if total is not None and row_offset > total:
        raise ParameterError(f"the shard starts at global row {row_offset} but the corpus has only {total} rows; "
                             "fix row_offset or total_rows")
    if ids is not None and ((ids < -1).any() or (total is not None and (ids >= total).any())):
        from .errors import IdOutOfRangeError

        raise IdOutOfRangeError(f"exclude holds ids outside the corpus ids 0..{total}; use -1 only as padding")
    return _padding(q.shape[0], k)


def _c_array(x: np.ndarray, dtype: Any) -> np.ndarray:
    """A C-contiguous copy when needed, with plain strides (numpy calls a view of one row
    contiguous whatever its row stride, the extension does not)."""
    a = np.ascontiguousarray(x, dtype=dtype)
    return a if a.strides == (a.shape[1] * a.itemsize, a.itemsize) else a.copy()


def merge_topk(parts: Sequence[tuple[Any, Any]], k: int, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the union of partial results (one per corpus shard).

    Parameters
    ----------
    parts : sequence of (scores, ids)
        Each a :func:`search_partial` result for the same queries: ``[Q, k_i]`` arrays, rows
        ordered by (score descending, id ascending), global ids, ``-1`` padding at the end of a
        row. Widths may differ between parts.
    k : int
        Results per query.
    threads : int, optional
        Worker threads (default: every core); the result does not depend on it.

    Returns
    -------
    scores : ndarray of float32, shape (Q, k)
    ids : ndarray of int64, shape (Q, k)
        The ``k`` best entries of each query over all parts, ordered by (score descending, id
        ascending), padded with ``-1`` / NaN when all parts together hold fewer. The order of
        ``parts`` does not matter, and merging merged results again gives the same rows.

    Raises
    ------
    ParameterError
        A row out of order, padding followed by an id, the same entry in two parts (overlapping
        shards), no part, ``k < 1``.
    ShapeError, NonFiniteError, IdOutOfRangeError, DTypeError
        Parts with different numbers of rows or mismatched shapes, a NaN score, an id below -1.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> a = (np.array([[0.9, 0.5]], np.float32), np.array([[7, 1]]))
    >>> b = (np.array([[0.9, 0.8]], np.float32), np.array([[3, 4]]))
    >>> hardneg.merge_topk([a, b], k=3)[1].tolist()    # the tie at 0.9 goes to the lower id
    [[3, 7, 4]]
    """
    k = as_count(k, "k")
    if isinstance(parts, tuple) and len(parts) == 2 and isinstance(parts[0], np.ndarray) and parts[0].ndim == 2:
        raise ParameterError("parts must be a list of (scores, ids) pairs, got one pair; wrap it in a list")
    arrays = []
    for p, part in enumerate(parts):
        try:
            scores, ids = part
        except (TypeError, ValueError):
            raise ParameterError(f"part {p} must be a (scores, ids) pair") from None
        s, i = np.asarray(scores), np.asarray(ids)
        if s.dtype.kind not in "fiu":
            raise DTypeError(f"part {p}: scores must hold real numbers, got dtype {s.dtype}")
        if i.dtype.kind not in "iu":
            raise DTypeError(f"part {p}: ids must hold integer ids, got dtype {i.dtype}")
        if s.ndim != 2 or i.shape != s.shape:
            raise ShapeError(f"part {p}: scores and ids must be 2-D arrays of one shape, got {s.shape} and {i.shape}")
        arrays.append((_c_array(s, np.float32), _c_array(i, np.int64)))
    return _hardneg.merge_topk(arrays, k, threads=as_threads(threads))
