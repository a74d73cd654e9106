"""Streaming hard-negative mining: :func:`mine` and its result :class:`Mined`.

Queries are processed in chunks. Each chunk goes to the Rust mining engine in one call, without
the GIL: the search over the index (the query's positives and ``exclude`` ids skipped inside the
search, ``k = range_max``, a query with fewer candidates gets a short row), the positives scored
exactly as the search scores candidates, then the filters, rank window and sampling of
:func:`hardneg.select_negatives`. Python keeps the argument handling and the output. Memory is
bounded by the chunk size and ``range_max`` (plus the corpus itself, which may be a read-only
``np.memmap``), never by ``Q x N``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_matrix, as_threads, check_real_dtype, from_torch, id_lists_to_csr, similarity_name
from .errors import IdOutOfRangeError, InputFileError, NonFiniteError, ParameterError, ShapeError
from .index import FlatIndex, load_index
from .selection import SIMANS_A, SIMANS_B, STAT_NAMES, Sampling, add_stats, _seed, check_filters, check_sampling

__all__ = ["mine", "Mined", "default_range_max", "load_matrix"]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[None, bool, Callable[[int, int], Any]]

#: Queries per search call when ``chunk_size`` is not given.
DEFAULT_CHUNK = 8192

_FILTER_RULES = ("absolute_margin", "relative_margin", "max_score", "min_score")


def default_range_max(range_min: int, num_negatives: int, max_positives: int, filtered: bool) -> int:
    """``range_max`` as sentence-transformers derives it when it is not given.

    ``range_min + 10 * num_negatives + max_positives`` when a rule that removes candidates
    (``absolute_margin``, ``relative_margin``, ``max_score``) is set, else
    ``range_min + num_negatives + max_positives``; ``max_positives`` is the largest number of
    positives of any query.

    Examples
    --------
    >>> from hardneg.mining import default_range_max
    >>> default_range_max(0, 8, 1, filtered=True), default_range_max(2, 3, 1, filtered=False)
    (81, 6)
    """
    return range_min + (10 if filtered else 1) * num_negatives + max_positives


def load_matrix(x: Any, what: str) -> Any:
    """Opens a ``.npy`` path read-only memory-mapped; a CPU torch tensor becomes a numpy array;
    arrays and index objects pass through.

    Raises :class:`InputFileError` for a missing, unreadable or malformed file, and
    :class:`DeviceError` for a tensor not in host memory.
    """
    if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        if not os.path.isfile(path):
            raise InputFileError(f"{what} file {path!r} does not exist; pass the path of a .npy file")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - numpy raises ValueError/OSError/EOFError/... for bad files
            raise InputFileError(f"{what} file {path!r} is not a readable .npy array ({type(e).__name__}: {e}); "
                                 "write it with numpy.save") from e
        if not isinstance(arr, np.ndarray):
            raise InputFileError(f"{what} file {path!r} is not a .npy array (an .npz archive?); save one array with numpy.save")
        return arr
    return from_torch(x, what)


def _check_dim(arr: Any, what: str) -> None:
    shape = getattr(arr, "shape", None)
    dtype = getattr(arr, "dtype", None)
    if shape is None or dtype is None:
        return
    check_real_dtype(arr, what)
    if len(shape) != 2:
        raise ShapeError(f"{what} must be 2-D [rows, dim], got shape {tuple(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise ShapeError(f"{what} is empty (shape {tuple(shape)}); pass at least one row and one column")


def _ids_to_csr(x: Any, rows: int, n: int, what: str, allow_1d: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-query ids as CSR ``(offsets, ids)``; ``-1`` is padding. Checks the range."""
    x = load_matrix(x, what) if isinstance(x, (str, os.PathLike)) else x
    offsets, ids = id_lists_to_csr(x, rows, what, allow_1d=allow_1d)
    bad = (ids < -1) | (ids >= n)
    if bad.any():
        j = int(np.argmax(bad))
        row = int(np.searchsorted(offsets, j, side="right") - 1)
        raise IdOutOfRangeError(f"{what} for query {row} holds id {int(ids[j])}, outside the corpus ids 0..{n}; "
                                "use -1 only as padding")
    return offsets, ids


def _describe(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return {"count": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "25%": math.nan, "50%": math.nan,
                "75%": math.nan, "max": math.nan}
    q = np.quantile(x, [0.25, 0.5, 0.75])
    return {"count": int(x.size), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min": float(x.min()), "25%": float(q[0]), "50%": float(q[1]), "75%": float(q[2]), "max": float(x.max())}


@dataclass(eq=False)
class Mined:
    """The result of :func:`mine`.

    Attributes
    ----------
    negatives : ndarray of int64, shape (Q, num_negatives)
        Corpus ids of each query's negatives in rank order (descending score), ``-1`` where the
        query had too few valid candidates.
    scores : ndarray of float32, shape (Q, num_negatives)
        Their scores, NaN where ``negatives`` is ``-1``.
    positives : ndarray of int64, shape (Q, P)
        Each query's positives as given, padded with ``-1`` (``P``: the most positives of a query).
    positive_scores : ndarray of float32, shape (Q, P)
        Their scores (the same computation as the search's), NaN for padding.
    stats : dict
        Counters (``candidates``, ``skipped_<rule>`` for every filter and for ``range_min`` /
        ``range_max``, ``window``, ``short_queries``, ``empty_queries``, ``missing_negatives``) and
        ``score_distribution``: count/mean/std/min/quartiles/max of the positive scores, of the
        negative scores and of the differences (lowest positive of the query minus negative).
    params : dict
        The resolved arguments (``range_max`` included).
    """

    negatives: np.ndarray
    scores: np.ndarray
    positives: np.ndarray
    positive_scores: np.ndarray
    stats: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.negatives.shape[0])

    def __repr__(self) -> str:
        q, n = self.negatives.shape
        found = int((self.negatives != -1).sum())
        per_query = (self.negatives != -1).sum(axis=1)
        short, empty = int((per_query < n).sum()), int((per_query == 0).sum())
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items()
                          if k != "num_negatives" and v is not None and not k.startswith("simans_"))
        return (f"Mined(queries={q:,}, num_negatives={n}, found={found:,} of {q * n:,}, "
                f"short_queries={short:,}, empty_queries={empty:,}{', ' if shown else ''}{shown})")

    def to_dataset(self, query_texts: Any, corpus_texts: Any, format: str = "triplet", *, output_scores: bool = False,
                   anchor_column: str = "anchor", positive_column: str = "positive") -> Any:
        """The mined negatives as texts: a ``datasets.Dataset`` in sentence-transformers' layout.

        The rows are those ``sentence_transformers.util.mine_hard_negatives`` returns for the same
        negatives (see :mod:`hardneg.text_datasets`): one per (query, positive) pair and negative
        (``"triplet"``), per pair with all its negatives (``"n-tuple"``: ``negative_1`` ...
        ``negative_n``; pairs of queries short of negatives are left out), per pair with a list of
        documents and labels (``"labeled-list"``), or per (query, document) (``"labeled-pair"``).
        Missing negatives (``-1``) never become rows. Works the same on the result of
        :func:`hardneg.load_mined` (a mining output directory).

        Parameters
        ----------
        query_texts : sequence of str
            The text of each query, in the order of the query embeddings.
        corpus_texts : sequence of str
            The text of each corpus row, in the order of the corpus embeddings.
        format : {"triplet", "n-tuple", "labeled-list", "labeled-pair"}, default "triplet"
        output_scores : bool, default False
            Add the scores as sentence-transformers does (``scores``, or ``score`` for labeled pairs).
        anchor_column, positive_column : str
            Names of the query and positive columns.

        Returns
        -------
        datasets.Dataset

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> corpus = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.5, 0.5]], np.float32)
        >>> mined = hardneg.mine(corpus[:1], corpus, positives=[0], num_negatives=2)
        >>> ds = mined.to_dataset(["cats"], ["cat", "kitten", "car", "pet"])
        >>> ds.column_names, list(ds["negative"])
        (['anchor', 'positive', 'negative'], ['kitten', 'pet'])
        """
        from .text_datasets import mined_to_dataset

        return mined_to_dataset(self, query_texts, corpus_texts, format, output_scores=output_scores,
                                anchor_column=anchor_column, positive_column=positive_column)

    def summary(self) -> str:
        """A readable table of the score distributions and what each rule removed."""
        return format_summary(self.stats, self.params)

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table`` with one row per query.

        Columns: ``query`` (int64 index), ``negatives`` (fixed-size list of int64, ``-1`` padding),
        ``scores`` (fixed-size list of float32, NaN padding), ``positives`` and
        ``positive_scores`` (fixed-size lists, padded likewise).
        """
        return to_arrow_table(np.arange(len(self), dtype=np.int64), self.negatives, self.scores, self.positives,
                              self.positive_scores)

    def to_pandas(self) -> Any:
        """``to_arrow().to_pandas()``: a ``pandas.DataFrame`` with one row per query (list cells as arrays)."""
        from ._optional import require

        require("pandas", "Mined.to_pandas")
        return self.to_arrow().to_pandas()


def to_arrow_table(query: np.ndarray, negatives: np.ndarray, scores: np.ndarray, positives: np.ndarray,
                   positive_scores: np.ndarray) -> Any:
    """The Arrow layout shared by :meth:`Mined.to_arrow` and the Parquet shards of ``mine_to_disk``."""
    from ._optional import require

    pa = require("pyarrow", "Mined.to_arrow")

    def fixed(a: np.ndarray, typ: Any) -> Any:
        width = a.shape[1]
        if width == 0:  # mined without positives: Arrow has no fixed-size list of size 0
            return pa.array([[]] * a.shape[0], type=pa.list_(typ))
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a).reshape(-1), type=typ), width)

    return pa.table({
        "query": pa.array(query, type=pa.int64()),
        "negatives": fixed(negatives, pa.int64()),
        "scores": fixed(scores, pa.float32()),
        "positives": fixed(positives, pa.int64()),
        "positive_scores": fixed(positive_scores, pa.float32()),
    })


def format_summary(stats: dict[str, Any], params: dict[str, Any]) -> str:
    """Renders :meth:`Mined.summary`."""
    lines = []
    dist = stats.get("score_distribution", {})
    cols = ("positive", "negative", "difference")
    lines.append(f"{'Metric':<8}" + "".join(f"{c.capitalize():>14}" for c in cols))
    for key in ("count", "mean", "std", "min", "25%", "50%", "75%", "max"):
        row = f"{key.capitalize():<8}"
        for c in cols:
            v = dist.get(c, {}).get(key, math.nan)
            row += f"{v:>14,}" if key == "count" else f"{v:>14.4f}"
        lines.append(row)
    cand = max(int(stats.get("candidates", 0)), 1)
    for rule in _FILTER_RULES + ("range_min", "range_max"):
        skipped = int(stats.get(f"skipped_{rule}", 0))
        value = params.get(rule)
        if skipped or (rule in _FILTER_RULES and value is not None):
            lines.append(f"Skipped {skipped:,} of {int(stats.get('candidates', 0)):,} candidates ({skipped / cand:.2%}) "
                         f"due to {rule}={value}.")
    q = max(int(stats.get("queries", 0)), 1)
    short = int(stats.get("short_queries", 0))
    n = params.get("num_negatives")
    lines.append(f"Queries: {int(stats.get('queries', 0)):,}; {short:,} ({short / q:.2%}) got fewer than {n} negatives "
                 f"({int(stats.get('missing_negatives', 0)):,} missing, {int(stats.get('empty_queries', 0)):,} queries with none).")
    if short:
        lines.append("To find more negatives, raise range_max or loosen range_min / the margins / the score bounds.")
    return "\n".join(lines)


def score_distribution(positive_scores: np.ndarray, negatives: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Distributions of positive scores, negative scores and (lowest positive - negative) differences."""
    pos = positive_scores[~np.isnan(positive_scores)]
    found = negatives != -1
    neg = scores[found]
    pmin = np.fmin.reduce(positive_scores, axis=1) if positive_scores.shape[1] else np.full(len(scores), np.nan)
    diff = (pmin[:, None].astype(np.float64) - scores.astype(np.float64))[found]
    diff = diff[~np.isnan(diff)]
    return {"positive": _describe(pos), "negative": _describe(neg), "difference": _describe(diff)}


class _Plan:
    """Everything a mining run needs, validated once; :meth:`run` mines a range of queries."""

    def __init__(self, queries: Any, corpus: Any, positives: Any, *, num_negatives: Any, metric: Any, range_min: Any,
                 range_max: Any, min_score: Any, max_score: Any, absolute_margin: Any, relative_margin: Any,
                 sampling: Any, seed: Any, exclude: Any, threads: Any, simans_a: Any, simans_b: Any,
                 chunk_size: Any, exclude_self: Any = False, index: Any = None) -> None:
        # Arguments first (cheap), then the arrays.
        self.num_negatives = as_count(num_negatives, "num_negatives")
        self.range_min = as_count(range_min, "range_min", minimum=0)
        self.sampling, self.simans_a, self.simans_b = check_sampling(sampling, simans_a, simans_b)
        self.seed = _seed(seed)
        self.filters = check_filters(min_score, max_score, absolute_margin, relative_margin)
        if (self.filters["min_score"] is not None and self.filters["max_score"] is not None
                and self.filters["min_score"] > self.filters["max_score"]):
            raise ParameterError(f"min_score={min_score} is above max_score={max_score}, so no candidate could pass; "
                                 "lower min_score or raise max_score")
        self.threads = as_threads(threads)
        self.chunk_size = DEFAULT_CHUNK if chunk_size is None else as_count(chunk_size, "chunk_size")
        metric = None if metric is None else similarity_name(metric, "metric")
        if not isinstance(exclude_self, (bool, np.bool_)):
            raise ParameterError(f"exclude_self must be True or False, got {exclude_self!r}")

        self.queries = load_matrix(queries, "queries")
        _check_dim(self.queries, "queries")
        if not hasattr(self.queries, "shape"):
            self.queries = as_matrix(self.queries, "queries")
        self.index = _open_index(corpus, index, metric, threads)
        self.metric = similarity_name(self.index.metric, "metric")
        self.n = len(self.index)
        self.rows = int(self.queries.shape[0])
        if int(self.queries.shape[1]) != self.index.dim:
            raise ShapeError(f"queries have dimension {self.queries.shape[1]} but the corpus has dimension "
                             f"{self.index.dim}; embed both with the same model")

        self.pos = (_ids_to_csr(positives, self.rows, self.n, "positives", allow_1d=True) if positives is not None
                    else (np.zeros(self.rows + 1, np.int64), np.zeros(0, np.int64)))
        self.pos_width = int(np.diff(self.pos[0]).max()) if self.rows else 0
        pos_counts = _hardneg.excluded_counts(self.n, *self.pos)  # distinct positives per query
        self.max_positives = int(pos_counts.max()) if self.rows else 0
        needs = next((k for k in ("absolute_margin", "relative_margin") if self.filters[k] is not None), None)
        if needs is None and self.sampling == "simans":
            needs = "sampling='simans'"
        if needs is not None and (pos_counts == 0).any():
            q = int(np.argmax(pos_counts == 0))
            raise ParameterError(f"query {q} has no positive, but {needs} is measured from the query's lowest positive "
                                 "score; give every query at least one positive, or drop the queries without one")
        self.exclude = None if exclude is None else _ids_to_csr(exclude, self.rows, self.n, "exclude", allow_1d=True)
        self.exclude_self = bool(exclude_self)
        if self.exclude_self and self.rows > self.n:
            raise ParameterError(f"exclude_self=True excludes corpus row i from query i, but there are {self.rows} "
                                 f"queries for {self.n} corpus rows; mine the corpus against itself (queries = corpus)")
        filtered = any(self.filters[k] is not None for k in ("absolute_margin", "relative_margin", "max_score"))
        if range_max is None:
            self.range_max = default_range_max(self.range_min, self.num_negatives, self.max_positives, filtered)
        else:
            self.range_max = as_count(range_max, "range_max")
        if self.range_min >= self.range_max:
            raise ParameterError(f"range_min={self.range_min} must be smaller than range_max={self.range_max}; "
                                 "lower range_min or raise range_max")
        if self.num_negatives > self.range_max - self.range_min:
            raise ParameterError(
                f"num_negatives={self.num_negatives} is larger than the window: only {self.range_max - self.range_min} "
                f"candidates remain after skipping the first range_min={self.range_min} of range_max={self.range_max}; "
                "lower num_negatives or range_min, or raise range_max")
        self._check_corpus_size()
        # Hands the index's extension object (its `_inner`) to the engine: any index class whose
        # extension object implements the core Searcher mines the same way.
        self.miner = _hardneg.Miner(self.index._inner, num_negatives=self.num_negatives, positive_width=self.pos_width,
                                    range_max=self.range_max, range_min=self.range_min, sampling=self.sampling,
                                    simans_a=self.simans_a, simans_b=self.simans_b, seed=self.seed,
                                    exclude_self=self.exclude_self, threads=self.threads, **self.filters)

    def _check_corpus_size(self) -> None:
        """A corpus too small to give any query ``num_negatives`` candidates is an error (with the
        numbers), not a run that returns ``[Q, num_negatives]`` arrays of padding."""
        excluded = _hardneg.excluded_counts(self.n, *self.pos, *(self.exclude or ()), exclude_self=self.exclude_self)
        most = self.n - (int(excluded.min()) if self.rows else 0)  # candidates of the least-excluded query
        reachable = min(self.range_max, most) - self.range_min
        if self.num_negatives > reachable:
            besides = " besides its positives and exclusions" if most < self.n else ""
            raise ParameterError(
                f"num_negatives={self.num_negatives:,} cannot be found: the corpus has {self.n:,} rows, so a query has at "
                f"most {most:,} candidates{besides}, and {max(reachable, 0):,} after skipping range_min={self.range_min}; "
                f"lower num_negatives to at most {max(reachable, 0):,} (or range_min), or mine a larger corpus")

    def params(self) -> dict[str, Any]:
        """The resolved arguments that determine the output."""
        return {"num_negatives": self.num_negatives, "metric": self.metric, "range_min": self.range_min,
                "range_max": self.range_max, **self.filters, "sampling": self.sampling, "seed": self.seed,
                "simans_a": self.simans_a, "simans_b": self.simans_b}

    def check_queries_finite(self) -> None:
        """Raises NonFiniteError naming the first query row with NaN/Inf (streamed, bounded memory)."""
        for a in range(0, self.rows, self.chunk_size):
            b = min(a + self.chunk_size, self.rows)
            block = np.asarray(self.queries[a:b])
            ok = np.isfinite(block).all(axis=1)
            if not ok.all():
                raise NonFiniteError(f"queries has a non-finite value (NaN or Inf) in row {a + int(np.argmin(ok))}; "
                                     "drop or repair that row")

    def chunks(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        for a in range(start, end, self.chunk_size):
            yield a, min(a + self.chunk_size, end)

    def run(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Mines queries ``a:b``: ``(negatives, scores, positives padded, positive_scores padded, counters)``.

        One engine call: the CSR offsets of rows ``a..b`` index the whole id arrays as they are.
        """
        q = as_matrix(np.asarray(self.queries[a:b]), "queries")
        exclude = () if self.exclude is None else (self.exclude[0][a : b + 1], self.exclude[1])
        neg, sc, pos_ids, pos_scores, stats = self.miner.mine(q, self.pos[0][a : b + 1], self.pos[1], *exclude,
                                                              query_offset=a)
        return neg, sc, pos_ids, pos_scores, dict(stats)


def _open_index(corpus: Any, index: Any, metric: str | None, threads: Any) -> Any:
    """The index to mine: ``index`` (an index object or the path of a saved one), or a
    :class:`FlatIndex` over ``corpus`` (which may itself be an index object, as before ``index=``).

    ``metric=None`` takes the index's metric (``"cosine"`` for a new :class:`FlatIndex`); an
    explicit metric must match the index's.
    """
    if (corpus is None) == (index is None):
        raise ParameterError("give the corpus embeddings (corpus=) or an index (index=), exactly one of them")
    if index is not None:
        found = load_index(index) if isinstance(index, (str, os.PathLike)) else index
        if not hasattr(found, "_inner"):
            raise ParameterError(f"index must be a hardneg index (FlatIndex, HnswIndex) or the path of a saved one, "
                                 f"got {type(found).__name__}; pass embeddings as corpus= instead")
    else:
        found = load_matrix(corpus, "corpus")
        if not hasattr(found, "_inner"):
            _check_dim(found, "corpus")
            return FlatIndex(found, metric=metric or "cosine", threads=threads)
    have = similarity_name(found.metric, "metric")
    if metric is not None and have != metric:
        raise ParameterError(f"the index was built with metric={have!r} but metric={metric!r} was asked; "
                             f"pass metric={have!r} (or leave it out) or build the index with metric={metric!r}")
    check = getattr(found, "_check_can_mine", None)  # an index that can lack what mining needs
    if check is not None:
        check()
    return found


def _in_notebook() -> bool:
    """Running in a Jupyter kernel (where stderr is no terminal but tqdm draws a widget)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _progress_bar(progress: Progress, total: int, desc: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """Returns ``(advance(n), close())`` for ``progress``: None = tqdm on a terminal or in a notebook,
    True/False, or a callable."""
    if callable(progress) and not isinstance(progress, bool):
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        return advance, lambda: None
    show = (sys.stderr.isatty() or _in_notebook()) if progress is None else bool(progress)
    if not show:
        return (lambda n: None), (lambda: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="query", unit_scale=True, dynamic_ncols=True, smoothing=0.1)
    return bar.update, bar.close


def _zero_stats() -> dict[str, int]:
    return {k: 0 for k in STAT_NAMES}


def mine(
    queries: Any,
    corpus: Any = None,
    positives: Any = None,
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
) -> Mined:
    """Mines hard negatives for every query: exact search, then filters, rank window and sampling.

    For each query: the ``range_max`` best corpus rows by score, its positives and ``exclude``
    ids never among them (skipped inside the search); then, as in sentence-transformers, the
    filters remove candidates (``absolute_margin`` keeps ``score + m <= p``, ``relative_margin``
    keeps ``score <= p - |p| * m``, ``max_score``, ``min_score``; ``p`` is the query's lowest
    positive score), the first ``range_min`` survivors are skipped, and ``num_negatives`` are
    sampled from the rest (see :func:`hardneg.select_negatives` for the exact rules and the
    sampling modes). Positives are scored by the index exactly as the search scores candidates
    (:meth:`FlatIndex.score`), so a positive and an equal candidate compare consistently.

    Parameters
    ----------
    queries : array_like, np.memmap or path of a .npy file, shape (Q, d)
        Query embeddings. A path is opened memory-mapped; chunks are read as needed.
    corpus : array_like, np.memmap, path of a .npy file, torch tensor, or an index, shape (N, d)
        Corpus embeddings, searched exactly by a :class:`FlatIndex`. A float32 C-contiguous
        array or memmap is not copied, for either metric (a corpus larger than RAM works).
        Give either ``corpus`` or ``index``.
    positives : int array (Q,) or (Q, P) padded with -1, list of int sequences, .npy path, or None
        Each query's positive corpus ids; never returned as negatives. ``None``: no positives.
    index : FlatIndex, HnswIndex, or path of a saved index, optional
        The index to mine instead of ``corpus`` (a path is opened with :func:`hardneg.load_index`).
        Every index runs the same engine: exclusions inside the search, positives scored by the
        index exactly as its search scores candidates.
    num_negatives : int, default 8
        At most what the corpus can offer a query; more raises :class:`ParameterError`.
    metric : {"cosine", "dot"}, optional
        ``"dot"`` is the inner product (``"ip"`` is accepted too). Default: the index's metric,
        ``"cosine"`` for a ``corpus`` of embeddings. With an index it must match the index's.
    range_min, range_max : int
        Survivors of rank ``< range_min`` are skipped; the candidate pool is the ``range_max``
        best after exclusions. Default ``range_max``: as sentence-transformers derives it,
        ``range_min + 10 * num_negatives + max_positives`` if ``absolute_margin``,
        ``relative_margin`` or ``max_score`` is set, else ``range_min + num_negatives + max_positives``.
    min_score, max_score, absolute_margin, relative_margin : float, optional
        Filters (``relative_margin=0.05`` is NV-Retriever's TopK-PercPos 95 %).
    sampling : {"top", "random", "simans"}, default "top"
    seed : int, default 0
        Seed of the per-query random streams: the output is the same for a seed whatever
        ``threads`` and ``chunk_size``.
    exclude : int array (Q, m) padded with -1, list of int sequences, or .npy path, optional
        More ids never returned per query (e.g. near-duplicates).
    exclude_self : bool, default False
        Query ``i`` never gets corpus row ``i``: for mining a corpus against itself
        (``queries`` = ``corpus``, NGAME- and GISTEmbed-style).
    threads : int, optional
        Worker threads (default: every core).
    progress : None, bool or callable, optional
        ``None``: a tqdm bar (``tqdm.auto``: a widget in Jupyter, with ``ipywidgets``) when stderr
        is a terminal or in a notebook; ``True``/``False``: always/never; a callable gets
        ``(queries_done, total)`` after each chunk.
    simans_a, simans_b : float
        SimANS weights ``exp(-a * (s - p - b) ** 2)`` (defaults 0.5 and 0 as in the SimANS code).
    chunk_size : int, optional
        Queries per engine call (default 8192). Memory is about
        ``chunk_size * (d + 12 * range_max)`` bytes besides the corpus.

    Notes
    -----
    Where this differs from ``sentence_transformers.util.mine_hard_negatives``: the pool is exactly
    the ``range_max`` best non-excluded rows for every query (sentence-transformers retrieves
    ``range_max + max_positives`` rows and keeps the first ``range_max`` survivors of the filters, so
    a query with fewer positives than the most-positive query can reach a few ranks deeper);
    ``"random"`` samples only among valid candidates (sentence-transformers can draw removed ones
    when too few are valid, and those are then dropped) and takes a ``seed``; ties are broken by
    the lower corpus id; a negative's absence is ``-1`` / NaN rather than a dropped row.

    Returns
    -------
    Mined
        ``negatives``, ``scores``, ``positives``, ``positive_scores``, ``stats``, ``summary()``,
        ``to_arrow()``, ``to_pandas()``.

    Raises
    ------
    ParameterError
        ``num_negatives`` larger than the window or than what the corpus holds,
        ``range_min >= range_max``, unknown sampling,
        a query without positive when a margin or SimANS needs one (that is an error: drop such
        queries or give them a positive), mismatched metric.
    IdOutOfRangeError, NonFiniteError, ShapeError, DTypeError, InputFileError
        Positive/exclude ids outside the corpus, NaN/Inf embeddings, dimension mismatch, bad
        arrays, a missing or malformed ``.npy`` file.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((500, 16), dtype=np.float32)
    >>> queries = corpus[:20] + 0.1 * rng.standard_normal((20, 16), dtype=np.float32)
    >>> mined = hardneg.mine(queries, corpus, positives=np.arange(20), num_negatives=4, relative_margin=0.05)
    >>> mined.negatives.shape, bool((mined.negatives != np.arange(20)[:, None]).all())
    ((20, 4), True)
    >>> mined.params["range_max"]   # 10 * 4 + 1, as sentence-transformers derives it
    41
    >>> print(mined.summary().splitlines()[0])
    Metric        Positive      Negative    Difference
    >>> index = hardneg.FlatIndex(corpus, metric="cosine")   # an index built once, mined as often as needed
    >>> again = hardneg.mine(queries, positives=np.arange(20), index=index, num_negatives=4, relative_margin=0.05)
    >>> bool((again.negatives == mined.negatives).all())
    True
    """
    plan = _Plan(queries, corpus, positives, num_negatives=num_negatives, metric=metric, range_min=range_min,
                 range_max=range_max, min_score=min_score, max_score=max_score, absolute_margin=absolute_margin,
                 relative_margin=relative_margin, sampling=sampling, seed=seed, exclude=exclude, threads=threads,
                 simans_a=simans_a, simans_b=simans_b, chunk_size=chunk_size, exclude_self=exclude_self, index=index)
    plan.check_queries_finite()
    rows, n = plan.rows, plan.num_negatives
    negatives = np.full((rows, n), -1, np.int64)
    scores = np.full((rows, n), np.nan, np.float32)
    pos_ids = np.full((rows, plan.pos_width), -1, np.int64)
    pos_scores = np.full((rows, plan.pos_width), np.nan, np.float32)
    stats = _zero_stats()
    advance, close = _progress_bar(progress, rows, "mining")
    try:
        for a, b in plan.chunks(0, rows):
            neg, sc, pi, ps, st = plan.run(a, b)
            negatives[a:b], scores[a:b], pos_ids[a:b], pos_scores[a:b] = neg, sc, pi, ps
            add_stats(stats, st)
            advance(b - a)
    finally:
        close()
    out: dict[str, Any] = dict(stats)
    out["score_distribution"] = score_distribution(pos_scores, negatives, scores)
    return Mined(negatives, scores, pos_ids, pos_scores, out, plan.params())
