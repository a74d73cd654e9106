"""Approximate top-k search on an HNSW graph: :class:`HnswIndex` (usearch, built into hardneg)."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_id_matrix, as_matrix, as_queries, as_threads, id_lists_to_csr, similarity_name
from .errors import ParameterError
from .index import _SAVED_INDEXES, Metric
from .selection import _seed

__all__ = ["HnswIndex", "Storage"]

Storage = Literal["float32", "bfloat16", "int8"]


def _exclusions(exclude: Any, rows: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if exclude is None:
        return None, None
    return id_lists_to_csr(exclude, rows, "exclude")


class HnswIndex:
    """An approximate similarity index: an HNSW graph (the usearch library) over an ``[N, d]`` corpus.

    Searches return what :class:`FlatIndex` returns: similarities (not distances), each row by
    descending score with ties broken by the lower id, per-query exclusions that never take a
    result slot, and id ``-1`` (score NaN) padding when a query has fewer than ``k`` rows left.
    By default the candidates are scored again exactly in float32 (``rescore=True``), so the
    scores, and margins computed from them, are those :class:`FlatIndex` gives for the same
    pairs; only a near neighbour the graph walk missed can differ. See :meth:`recall`.

    Parameters
    ----------
    corpus : array_like, shape (N, d)
        Embeddings. A C-contiguous float32 array (or ``np.memmap``) is borrowed without a copy
        for exact rescoring (do not modify it while the index lives); the graph keeps its own
        copy in ``storage``. Checked once for NaN/Inf.
    metric : {"dot", "cosine"}, default "dot"
        Inner product (``"ip"`` is accepted for ``"dot"``), or cosine similarity (the graph
        stores normalised rows). ``"dot"`` suits rows of similar length, as sentence-embedding
        models produce.
    storage : {"float32", "bfloat16", "int8"}, default "float32"
        How the graph stores vectors: 4, 2 or 1 byte per value. ``int8`` keeps only each row's
        direction, so with ``metric="dot"`` the rows must have one length (else ParameterError).
    connectivity : int, default 16
        Edges per node (``2 * connectivity`` on the bottom level), FAISS's ``M``.
    expansion_add : int, default 128
        Candidate list size while inserting (FAISS's ``efConstruction``).
    expansion_search : int, default 128
        Default candidate list size while searching (FAISS's ``efSearch``); at least ``k``.
        The default reaches recall@10 of 0.99 on sentence embeddings (see the README).
    seed : int, default 0
        Seed of the order in which rows are inserted.
    deterministic : bool, default False
        Build on one thread: the same seed then gives the same graph and a byte-identical file
        on any machine. A parallel build (the default) is faster but its graph depends on how
        the threads interleave.
    threads : int, optional
        Build threads (default: every core).
    progress : bool, default True
        Show a tqdm progress bar while building.

    Notes
    -----
    After a parallel build the bottom level is audited for nodes no edge points to (parallel
    inserts can leave some: usearch issue 735) and those are inserted again; :attr:`orphans`
    reports what was found and what remains.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((500, 16)).astype(np.float32)
    >>> index = hardneg.HnswIndex(corpus, metric="cosine", progress=False)
    >>> len(index), index.dim, index.metric, index.storage
    (500, 16, 'cosine', 'float32')
    >>> scores, ids = index.search(corpus[:2], k=3, exclude=[[0], [1]])
    >>> ids.shape, bool((ids[:, 0] != [0, 1]).all())
    ((2, 3), True)
    """

    def __init__(
        self,
        corpus: Any,
        *,
        metric: Metric = "dot",
        storage: Storage = "float32",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        seed: int = 0,
        deterministic: bool = False,
        threads: int | None = None,
        progress: bool = True,
    ) -> None:
        name = similarity_name(metric, "metric")
        arr = as_matrix(corpus, "corpus")
        nthreads = as_threads(threads)
        inner = _hardneg.HnswIndex(
            arr,
            metric="ip" if name == "dot" else name,
            storage=storage,
            connectivity=as_count(connectivity, "connectivity", 2),
            expansion_add=as_count(expansion_add, "expansion_add"),
            expansion_search=as_count(expansion_search, "expansion_search"),
            seed=_seed(seed),
            threads=nthreads,
            deterministic=bool(deterministic),
        )
        n = arr.shape[0]
        # Chunks of about 1% (at least 2,000 rows): the bar moves and thread start-up is amortised.
        chunk = max(2000, n // 100)
        from tqdm.auto import tqdm

        with tqdm(total=n, desc="HNSW build", unit="rows", disable=not progress, leave=False) as bar:
            done = 0
            while done < n:
                now = inner.add_rows(chunk, threads=nthreads)
                bar.update(now - done)
                done = now
        inner.finish_build(threads=nthreads)
        self._init(inner, arr)

    def _init(self, inner: Any, corpus: np.ndarray | None) -> None:
        self._inner = inner
        self._corpus = corpus

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, corpus: Any = None, mmap: bool = True, threads: int | None = None
    ) -> HnswIndex:
        """Opens an index written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
        corpus : array_like, shape (N, d), optional
            The float32 rows the index was built from (an ``np.memmap`` is fine). Needed for
            exact rescoring when the index stores ``bfloat16`` or ``int8`` vectors, and for
            :meth:`recall`. Without it a ``float32`` index rescores with its stored vectors:
            the same scores for ``"dot"``; for ``"cosine"`` equal to within rounding.
        mmap : bool, default True
            Map the file and search it in place (read-only; pages load on demand) instead of
            reading it into memory.
        threads : int, optional
            Threads for checking ``corpus``.

        Raises
        ------
        InputFileError
            The file is missing, not an HnswIndex file, from another hardneg/usearch version,
            truncated or damaged (checksum).

        Examples
        --------
        >>> import numpy as np, hardneg, tempfile, os
        >>> corpus = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
        >>> index = hardneg.HnswIndex(corpus, progress=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "corpus.hnsw")
        >>> index.save(path)
        >>> back = hardneg.HnswIndex.load(path)
        >>> bool((back.search(corpus[:5], 4)[1] == index.search(corpus[:5], 4)[1]).all()), back.is_view
        (True, True)
        """
        arr = None if corpus is None else as_matrix(corpus, "corpus")
        inner = _hardneg.HnswIndex.load(os.fspath(path), corpus=arr, mmap=bool(mmap), threads=as_threads(threads))
        self = cls.__new__(cls)
        self._init(inner, arr)
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index to ``path`` (one file: a hardneg header, then usearch's graph and vectors).

        The corpus is not included; pass it to :meth:`load` again where it is needed.

        Examples
        --------
        >>> import numpy as np, hardneg, tempfile, os
        >>> index = hardneg.HnswIndex(np.eye(4, dtype=np.float32), progress=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "eye.hnsw")
        >>> index.save(path)
        >>> os.path.getsize(path) > 4096
        True
        """
        self._inner.save(os.fspath(path))

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        c, ea, es, _ = self._inner.params
        return (
            f"HnswIndex(n={len(self)}, dim={self.dim}, metric={self.metric!r}, storage={self.storage!r}, "
            f"connectivity={c}, expansion_add={ea}, expansion_search={es})"
        )

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return self._inner.dim

    @property
    def metric(self) -> Metric:
        """``"dot"`` or ``"cosine"``."""
        return similarity_name(self._inner.metric, "metric")  # type: ignore[return-value]  # the extension says "ip"

    @property
    def storage(self) -> Storage:
        """``"float32"``, ``"bfloat16"`` or ``"int8"``."""
        return self._inner.storage  # type: ignore[return-value]

    @property
    def connectivity(self) -> int:
        """Edges per node (``2 *`` that on the bottom level)."""
        return self._inner.params[0]

    @property
    def expansion_add(self) -> int:
        """Candidate list size the graph was built with."""
        return self._inner.params[1]

    @property
    def expansion_search(self) -> int:
        """Default candidate list size of :meth:`search`."""
        return self._inner.params[2]

    @property
    def seed(self) -> int:
        """Seed of the insertion order."""
        return self._inner.params[3]

    @property
    def orphans(self) -> dict[str, int]:
        """The build's audit of the bottom level: nodes without an incoming edge ``found``
        after the inserts, and ``remaining`` after inserting them again."""
        found, remaining = self._inner.orphans
        return {"found": found, "remaining": remaining}

    def _check_can_mine(self) -> None:
        """Mining scores candidates and positives exactly: a bfloat16/int8 index needs its corpus."""
        if self._corpus is None and self.storage != "float32":
            raise ParameterError(
                f"this HnswIndex stores {self.storage} vectors and was loaded without its corpus, but mining needs "
                "exact float32 scores: load it with hardneg.HnswIndex.load(path, corpus=corpus_embeddings) and pass "
                "that object as index= (a saved float32 index mines on its own, e.g. with hardneg mine --index)")

    def _job_identity(self) -> dict[str, Any]:
        """What a resumable mining job records of this index (see :func:`hardneg.mine_to_disk`):
        its kind, parameters and the digest of its graph, equal for an index and its saved file.
        Cosine scores rescored from the stored (normalised) rows round differently from those
        rescored from the corpus, so which one rescores is recorded too."""
        c, ea, es, seed = self._inner.params
        rescored = "stored rows" if self._corpus is None and self.metric == "cosine" else "corpus"
        return {"kind": "hnsw", "storage": self.storage, "connectivity": c, "expansion_add": ea,
                "expansion_search": es, "seed": seed, "graph_digest": f"{self._inner.graph_digest():016x}",
                "rescored_from": rescored}

    @property
    def memory_usage(self) -> int:
        """Bytes held by the graph and its vectors (for a memory-mapped index: the mapping).

        Includes the copy of the graph and the int8 codes a float32 index with its corpus
        searches by (about ``132 + dim`` MB per million rows at connectivity 16); not the
        float32 corpus itself.
        """
        return self._inner.memory_usage

    @property
    def is_view(self) -> bool:
        """Whether the index searches a memory-mapped file in place."""
        return self._inner.is_view

    @property
    def vectors(self) -> np.ndarray | None:
        """The float32 corpus used for exact rescoring, or None for an index loaded without it."""
        return self._corpus

    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = None,
        expansion_search: int | None = None,
        rescore: bool = True,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k of each query.

        Parameters
        ----------
        queries : array_like, shape (Q, d)
            Query embeddings (normalised here when ``metric="cosine"``).
        k : int
            Results per query, at least 1 and at most ``expansion_search``.
        exclude : list of int sequences, or int array (Q, m) padded with -1, optional
            Corpus ids never returned for each query. The graph walk passes through them but
            they never take a result slot, so rows stay full while enough rows are left.
        expansion_search : int, optional
            Candidate list size for this call (default: the index's). Higher is slower and
            finds more of the exact top-k; it must be at least ``k``.
        rescore : bool, default True
            Score the candidates again exactly in float32 (over-fetching ``2 * k``, ``4 * k``
            for int8, within ``expansion_search``). With False the scores are the graph's
            approximations from the stored vectors.
        threads : int, optional
            Worker threads (default: every core). Results are identical for any value, and
            several Python threads may search the same index at once.

        Returns
        -------
        scores : ndarray of float32, shape (Q, k)
            Similarities, each row in descending order; ties broken by the lower id; NaN pads.
        ids : ndarray of int64, shape (Q, k)
            Corpus row ids matching ``scores``; -1 pads.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> corpus = np.eye(3, dtype=np.float32)
        >>> index = hardneg.HnswIndex(corpus, expansion_search=4, progress=False)
        >>> scores, ids = index.search(np.array([[1.0, 0.5, 0.0]], np.float32), k=4, exclude=[[1]])
        >>> ids.tolist(), scores[0, :2].tolist()
        ([[0, 2, -1, -1]], [1.0, 0.0])
        """
        q = as_queries(queries, self.dim)
        k = as_count(k, "k")
        offsets, ids = _exclusions(exclude, q.shape[0])
        ef = None if expansion_search is None else as_count(expansion_search, "expansion_search")
        return self._inner.search(
            q,
            k,
            exclude_offsets=offsets,
            exclude_ids=ids,
            expansion_search=ef,
            rescore=bool(rescore),
            threads=as_threads(threads),
        )

    def score(self, queries: Any, ids: Any) -> np.ndarray:
        """Exact float32 scores of given corpus ids, as a rescoring :meth:`search` gives them.

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
        >>> index = hardneg.HnswIndex(np.array([[1, 0], [3, 4]], np.float32), metric="cosine", progress=False)
        >>> [round(float(x), 3) for x in index.score(np.array([[0, 2]], np.float32), np.array([[1, -1]]))[0]]
        [0.8, nan]
        """
        return self._inner.score(as_queries(queries, self.dim), as_id_matrix(ids))

    def recall(
        self,
        sample: int = 1000,
        k: int = 10,
        *,
        queries: Any = None,
        expansion_search: int | None = None,
        seed: int = 0,
        threads: int | None = None,
    ) -> float:
        """Measures recall@k of :meth:`search` against exact search on a sample of queries.

        Without ``queries``, ``sample`` corpus rows are drawn (seeded) and each excludes itself,
        as a query excludes its positive when mining. Recall counts ties: a returned id whose
        exact score equals the exact k-th score is a hit.

        Parameters
        ----------
        sample : int, default 1000
            Queries drawn (at most the number of rows available).
        k : int, default 10
        queries : array_like, shape (Q, d), optional
            Use (a sample of) these queries instead of corpus rows; nothing is excluded.
        expansion_search : int, optional
            Candidate list size to measure (default: the index's).
        seed : int, default 0
        threads : int, optional

        Returns
        -------
        float
            The fraction of the exact top-k that the search returns, in [0, 1].

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> corpus = np.random.default_rng(2).standard_normal((2000, 16)).astype(np.float32)
        >>> index = hardneg.HnswIndex(corpus, progress=False)
        >>> index.recall(sample=200, k=10) > 0.9
        True
        """
        if self._corpus is None:
            raise ParameterError(
                "recall compares against exact search over the float32 corpus: pass corpus= to HnswIndex.load"
            )
        sample = as_count(sample, "sample")
        k = as_count(k, "k")
        rng = np.random.default_rng(_seed(seed))
        if queries is None:
            n = len(self)
            rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
            q = self._corpus[rows]
            offsets, ids = id_lists_to_csr(rows.astype(np.int64)[:, None], len(rows), "exclude")
        else:
            allq = as_queries(queries, self.dim)
            pick = np.sort(rng.choice(allq.shape[0], size=min(sample, allq.shape[0]), replace=False))
            q = np.ascontiguousarray(allq[pick])
            offsets = ids = None
        ef = None if expansion_search is None else as_count(expansion_search, "expansion_search")
        return self._inner.recall(
            q, k, exclude_offsets=offsets, exclude_ids=ids, expansion_search=ef, threads=as_threads(threads)
        )



# load_index opens HnswIndex files by their header (every format version: the loader names the
# version it cannot read).
_SAVED_INDEXES[b"hardneg HNSW"] = ("hardneg.hnsw", "HnswIndex")
