"""Exact top-k similarity search: :class:`FlatIndex`, :func:`topk` and :func:`kernels`;
:func:`load_index` opens any saved hardneg index."""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_id_matrix, as_matrix, as_queries, as_threads, id_lists_to_csr, similarity_name
from .errors import InputFileError, ParameterError, ShapeError

__all__ = ["FlatIndex", "topk", "kernels", "Metric", "Storage", "load_index"]

Metric = Literal["dot", "cosine", "ip"]
Storage = Literal["float32", "bfloat16", "int8"]
_STORAGES = ("float32", "bfloat16", "int8")


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


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
        Threads for the finiteness check and the storage copy (default: every core).
    storage : {"float32", "bfloat16", "int8"}, default "float32"
        What the search scans. ``"bfloat16"`` keeps a bf16 copy next to the float32 rows (+50 %
        memory, half the bytes to scan): on CPUs with AMX the search scans the copy and returns
        the same results as float32, bit for bit (candidates are rescored from the float32 rows
        and certified). ``"int8"`` keeps an int8 copy (+25 %, a quarter of the bytes) and is
        approximate: ``search(..., exact=False)`` is required (see the README for its recall).

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

    def __init__(self, corpus: Any, *, metric: Metric = "dot", threads: int | None = None, storage: Storage = "float32") -> None:
        name = similarity_name(metric, "metric")
        if storage not in _STORAGES:
            raise ParameterError(f"storage must be 'float32', 'bfloat16' or 'int8', got {storage!r}")
        arr = as_matrix(corpus, "corpus")
        self._inner = _hardneg.FlatIndex(arr, metric="ip" if name == "dot" else name, threads=as_threads(threads), storage=storage)
        self._corpus = arr

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = False) -> FlatIndex:
        """Opens an index written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        mmap : bool, default True
            Memory-map the rows: the index opens at once whatever its size, and the operating
            system reads pages as searches touch them (do not modify the file meanwhile).
            False reads everything into memory and checks it against the stored checksums.
        verify : bool, default False
            With ``mmap=True``, also read the rows once to check their checksums.

        Returns
        -------
        FlatIndex
            The same metric, storage and results as the saved index; :attr:`vectors` is a
            read-only view of the file's float32 rows.

        Raises
        ------
        InputFileError
            The file is missing, truncated, corrupted, of another format version, or not a
            hardneg index; the message says which.

        Examples
        --------
        >>> import numpy as np, hardneg, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "corpus.hnidx")
        >>> hardneg.FlatIndex(np.eye(3, dtype=np.float32), metric="cosine").save(path)
        >>> index = hardneg.FlatIndex.load(path)
        >>> len(index), index.metric, index.search(np.ones((1, 3), np.float32), k=1)[1].tolist()
        (3, 'cosine', [[0]])
        """
        inner = _hardneg.FlatIndex.load(os.fspath(path), mmap=_flag(mmap, "mmap"), verify=_flag(verify, "verify"))
        index = cls.__new__(cls)
        index._inner = inner
        index._corpus = inner.vectors()
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index (float32 rows, storage copy, cosine norms) to one file.

        The format is versioned and checksummed (see the README); the file is written under a
        temporary name and renamed, so an interrupted save never leaves a partial index.

        Examples
        --------
        >>> import numpy as np, hardneg, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "corpus.hnidx")
        >>> hardneg.FlatIndex(np.ones((5, 4), np.float32), storage="bfloat16").save(path)
        >>> hardneg.FlatIndex.load(path).storage
        'bfloat16'
        """
        self._inner.save(os.fspath(path))

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return f"FlatIndex(n={len(self)}, dim={self.dim}, metric={self.metric!r}, storage={self.storage!r})"

    @property
    def storage(self) -> Storage:
        """``"float32"``, ``"bfloat16"`` or ``"int8"``."""
        return self._inner.storage  # type: ignore[return-value]  # the extension says str

    @property
    def kernel(self) -> str:
        """The kernel that searches a large batch here: ``"amx"``, ``"avx512"``, ``"avx2"`` or ``"scalar"``.

        See :meth:`kernel_for` for a given batch size and :func:`kernels` for the whole picture.
        ``HARDNEG_KERNEL`` forces one.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> hardneg.FlatIndex(np.eye(2, dtype=np.float32)).kernel in hardneg.kernels()["available"]
        True
        """
        return self._inner.kernel_for(_hardneg.kernels()["amx_min_queries"][self.storage])

    def kernel_for(self, n_queries: int) -> str:
        """The kernel a search of ``n_queries`` queries uses on this machine.

        The AMX scan runs when the CPU has AMX tiles (and Linux grants them) and at least
        ``hardneg.kernels()["amx_min_queries"][index.storage]`` queries share a pass over the
        corpus (measured crossovers: 32 for float32, 16 for bfloat16, which halves the bytes to
        scan; int8 always scans its copy); otherwise the float32 kernel of the best instruction
        set runs. Results are the same either way (except int8, which is approximate).

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> index = hardneg.FlatIndex(np.eye(2, dtype=np.float32))
        >>> index.kernel_for(1) == hardneg.kernels()["small_batches"]
        True
        """
        return self._inner.kernel_for(as_count(n_queries, "n_queries"))

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
        """The float32 corpus the index searches (as given: not normalised, even for cosine).

        For a loaded index, a read-only view of the file's rows.
        """
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
        exact: bool = True,
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
        exact : bool, default True
            False allows the approximate int8 storage (required with it). Float32 and bfloat16
            indexes return exact results either way.

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
        exact = _flag(exact, "exact")
        offsets = ids = None
        if exclude is not None:
            offsets, ids = id_lists_to_csr(exclude, q.shape[0], "exclude")
        return self._inner.search(q, k, exclude_offsets=offsets, exclude_ids=ids, threads=nthreads, exact=exact)


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


def kernels() -> dict[str, Any]:
    """What runs searches on this machine.

    Returns
    -------
    dict
        ``available``: kernels this process can run, best first (``"amx"``, ``"avx512"``,
        ``"avx2"``, ``"scalar"``); ``amx``: ``"ready"``, or why the AMX tiles cannot be used
        (no AMX in the CPU, Linux refused the permission); ``amx_min_queries``: per storage, the
        queries that must share a corpus pass before an index uses AMX (the measured crossover
        where the AMX scan becomes faster than the float32 kernel); ``override``: the value of
        ``HARDNEG_KERNEL`` (``amx``, ``avx512``, ``avx2`` or ``scalar`` forces that kernel; one
        the CPU lacks makes searches raise ``ParameterError``); ``large_batches`` /
        ``small_batches``: the kernels a float32 index uses (``"error: ..."`` when the override
        cannot run); ``counts``: queries answered since
        the process started by the float32 kernels (``f32_queries``), by the AMX scan and
        certified at once (``amx_certified``), after a second AMX pass (``amx_retried``), by
        the float32 fallback after failed certificates (``amx_fallback``), and approximately
        from int8 storage (``approximate``).

    Examples
    --------
    >>> import hardneg
    >>> sorted(hardneg.kernels())
    ['amx', 'amx_min_queries', 'available', 'counts', 'large_batches', 'override', 'small_batches']
    >>> "scalar" in hardneg.kernels()["available"]
    True
    >>> hardneg.kernels()["amx_min_queries"]
    {'float32': 32, 'bfloat16': 16, 'int8': 1}
    """
    return dict(_hardneg.kernels())


#: Saved index files by the first bytes of their header, and the ``(module, class)`` whose
#: ``load(path, mmap=...)`` opens them. ``HNGFLAT``: :meth:`FlatIndex.save` (the format of
#: ``rust/hardneg-core/src/index/file.rs``).
_SAVED_INDEXES: dict[bytes, tuple[str, str]] = {b"HNGFLAT\0": ("hardneg.index", "FlatIndex")}


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
    >>> import numpy as np, hardneg, tempfile, os
    >>> saved = os.path.join(tempfile.mkdtemp(), "corpus.hnidx")
    >>> hardneg.FlatIndex(np.eye(3, dtype=np.float32), storage="bfloat16").save(saved)
    >>> hardneg.load_index(saved)
    FlatIndex(n=3, dim=3, metric='dot', storage='bfloat16')
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
