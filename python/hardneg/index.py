"""Exact top-k similarity search: :class:`FlatIndex` and :func:`topk`; :func:`load_index` opens
any saved hardneg index."""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_id_matrix, as_matrix, as_queries, as_threads, id_lists_to_csr, similarity_name
from .errors import InputFileError

__all__ = ["FlatIndex", "topk", "Metric", "load_index"]

Metric = Literal["dot", "cosine", "ip"]


class FlatIndex:
    """An exact similarity index over an ``[N, d]`` corpus.

    Like every hardneg index it holds its extension object in ``_inner``; :func:`hardneg.mine`
    hands that object to the Rust mining engine.

    The Rust engine scores queries against the corpus with a fused, register-blocked SIMD
    kernel and keeps each query's running top-k while the scores are still in registers; the
    ``[Q, N]`` score matrix is never built.

    Parameters
    ----------
    corpus : array_like, shape (N, d)
        Embeddings. A C-contiguous float32 array or ``np.memmap`` is borrowed without a copy
        (do not modify it while the index lives); other float dtypes or layouts are converted
        once. Checked once for NaN/Inf.
    metric : {"dot", "cosine"}, default "dot"
        Inner product (``"ip"`` is accepted for ``"dot"``), or cosine similarity. For cosine the corpus is not copied either: its
        inverse row norms are computed once and multiplied into the scores; queries are
        normalised into a copy. Zero rows score 0 against everything.
    threads : int, optional
        Threads for the finiteness check (default: every core).

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> corpus = np.eye(4, dtype=np.float32)
    >>> index = hardneg.FlatIndex(corpus)
    >>> len(index), index.dim, index.metric
    (4, 4, 'dot')
    >>> scores, ids = index.search(np.array([[0.1, 0.9, 0.5, 0.0]], np.float32), k=2)
    >>> ids.tolist()
    [[1, 2]]
    """

    def __init__(self, corpus: Any, *, metric: Metric = "dot", threads: int | None = None) -> None:
        name = similarity_name(metric, "metric")
        arr = as_matrix(corpus, "corpus")
        self._inner = _hardneg.FlatIndex(arr, metric="ip" if name == "dot" else name, threads=as_threads(threads))
        self._corpus = arr

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return f"FlatIndex(n={len(self)}, dim={self.dim}, metric={self.metric!r})"

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return self._inner.dim

    @property
    def metric(self) -> Metric:
        """``"dot"`` or ``"cosine"``."""
        return similarity_name(self._inner.metric, "metric")  # type: ignore[return-value]  # the extension says "ip"

    @property
    def vectors(self) -> np.ndarray:
        """The float32 corpus the index searches (as given: not normalised, even for cosine)."""
        return self._corpus

    def _queries(self, queries: Any) -> np.ndarray:
        return as_queries(queries, self.dim)

    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = None,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of each query.

        Parameters
        ----------
        queries : array_like, shape (Q, d)
            Query embeddings (normalised here when ``metric="cosine"``).
        k : int
            Results per query, at least 1 and at most what the corpus holds after exclusions.
        exclude : list of int sequences, or int array (Q, m) padded with -1, optional
            Corpus ids never returned for each query (its positives, itself). They are skipped
            inside the search, so every row still has ``k`` results.
        threads : int, optional
            Worker threads (default: every core). Results are identical for any value.

        Returns
        -------
        scores : ndarray of float32, shape (Q, k)
            Similarities, each row in descending order; ties broken by the lower id.
        ids : ndarray of int64, shape (Q, k)
            Corpus row ids matching ``scores``.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> index = hardneg.FlatIndex(np.eye(3, dtype=np.float32))
        >>> scores, ids = index.search(np.ones((1, 3), np.float32), k=2, exclude=[[0]])
        >>> ids.tolist(), scores.tolist()
        ([[1, 2]], [[1.0, 1.0]])
        """
        q = self._queries(queries)
        k = as_count(k, "k")
        nthreads = as_threads(threads)
        offsets = ids = None
        if exclude is not None:
            offsets, ids = id_lists_to_csr(exclude, q.shape[0], "exclude")
        return self._inner.search(q, k, exclude_offsets=offsets, exclude_ids=ids, threads=nthreads)


    def score(self, queries: Any, ids: Any) -> np.ndarray:
        """Scores of given corpus ids, exactly as :meth:`search` would score them.

        Parameters
        ----------
        queries : array_like, shape (Q, d)
        ids : int array, shape (Q, m)
            Corpus ids per query; -1 means none and scores NaN.

        Returns
        -------
        ndarray of float32, shape (Q, m)

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> index = hardneg.FlatIndex(np.array([[1, 0], [3, 4]], np.float32), metric="cosine")
        >>> [round(float(x), 3) for x in index.score(np.array([[0, 2]], np.float32), np.array([[1, -1]]))[0]]
        [0.8, nan]
        """
        return self._inner.score(self._queries(queries), as_id_matrix(ids))


def topk(
    queries: Any,
    corpus: Any,
    k: int,
    *,
    metric: Metric = "dot",
    exclude: Any = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``queries`` against ``corpus`` in one call.

    Same as ``FlatIndex(corpus, metric=metric).search(queries, k, exclude=exclude,
    threads=threads)``; see :meth:`FlatIndex.search` for the arguments and results.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> corpus = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    >>> scores, ids = hardneg.topk(np.array([[2, 1]], np.float32), corpus, k=2)
    >>> ids.tolist(), scores.tolist()
    ([[2, 0]], [[3.0, 2.0]])
    """
    index = FlatIndex(corpus, metric=metric, threads=threads)
    return index.search(queries, k, exclude=exclude, threads=threads)


#: Saved index files by the first bytes of their header, and the ``(module, class)`` whose
#: ``load(path, mmap=...)`` opens them.
_SAVED_INDEXES: dict[bytes, tuple[str, str]] = {}


def load_index(path: str | os.PathLike[str], *, mmap: bool = True) -> Any:
    """Opens a saved hardneg index, whatever its kind, by the header of the file.

    Parameters
    ----------
    path : str or path-like
        A file written by an index's ``save``.
    mmap : bool, default True
        Map the file instead of reading it into memory, where the index kind supports it.

    Raises
    ------
    InputFileError
        The file is missing, unreadable, or not a saved hardneg index.

    Examples
    --------
    >>> import hardneg, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "corpus.npy")
    >>> open(path, "wb").write(b"not an index")
    12
    >>> try:
    ...     hardneg.load_index(path)
    ... except hardneg.InputFileError as e:
    ...     print("not a saved hardneg index" in str(e))
    True
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise InputFileError(f"index file {p!r} does not exist; pass the path an index was saved to")
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise InputFileError(f"index file {p!r} cannot be read ({e})") from e
    for magic, (module, cls) in _SAVED_INDEXES.items():
        if head.startswith(magic):
            return getattr(importlib.import_module(module), cls).load(p, mmap=mmap)
    raise InputFileError(f"{p!r} is not a saved hardneg index (its header starts {head[:16]!r}); pass a file written "
                         "by an index's save(), or pass embeddings as corpus=")
