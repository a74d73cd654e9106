"""The selection step of hard-negative mining, over candidate lists you already have.

:func:`select_negatives` applies hardneg's filters, rank window and sampling to per-query
candidate lists (for instance the top-k of a search, rescored by a cross-encoder). It is the step
:func:`hardneg.mine` runs after each search chunk.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, Mapping, NamedTuple

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_threads, from_torch, rows_to_csr
from ._warnings import warn
from .errors import DTypeError, ParameterError, ShapeError

__all__ = ["select_negatives", "Selection", "Sampling", "SIMANS_A", "SIMANS_B", "STAT_NAMES", "check_filters"]

Sampling = Literal["top", "random", "simans"]

#: Default SimANS ``a`` (``--a`` default of microsoft/SimXNS's SimANS scripts).
SIMANS_A: float = 0.5
#: Default SimANS ``b`` (``--b`` default of microsoft/SimXNS's SimANS scripts).
SIMANS_B: float = 0.0

#: Counter names of :attr:`Selection.stats`, in a fixed order (the core's own list).
STAT_NAMES: tuple[str, ...] = tuple(_hardneg.STAT_NAMES)


def add_stats(total: dict[str, int], part: Mapping[str, Any]) -> None:
    """Adds the counters of ``part`` into ``total`` (both keyed by :data:`STAT_NAMES`)."""
    for k in STAT_NAMES:
        total[k] += int(part[k])


class Selection(NamedTuple):
    """Result of :func:`select_negatives` (a named tuple: ``ids, scores, stats = ...`` works)."""

    negatives: np.ndarray
    """int64 ``[Q, num_negatives]``: chosen candidate ids in rank order, ``-1`` where too few were valid."""
    scores: np.ndarray
    """float32 ``[Q, num_negatives]``: their scores, NaN where ``negatives`` is ``-1``."""
    stats: dict[str, int]
    """Counters (see :data:`STAT_NAMES`): candidates seen, removed by each rule, skipped by the window, short queries."""


def _opt_float(x: Any, name: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ParameterError(f"{name} must be a number or None, got {type(x).__name__} {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ParameterError(f"{name} must be a finite number, got {v}")
    return v


def check_filters(min_score: Any, max_score: Any, absolute_margin: Any, relative_margin: Any) -> dict[str, float | None]:
    """The four filter values as floats (or None), checked; warns when ``relative_margin`` looks like
    a percentage."""
    f = {"absolute_margin": _opt_float(absolute_margin, "absolute_margin"),
         "relative_margin": _opt_float(relative_margin, "relative_margin"),
         "max_score": _opt_float(max_score, "max_score"), "min_score": _opt_float(min_score, "min_score")}
    m = f["relative_margin"]
    if m is not None and m > 1.0:
        warn(
            f"relative_margin={m:g} keeps only candidates scoring below p - {m:g} * |p| (p: the query's lowest "
            f"positive score), which removes every candidate of a query whose positive scores above 0. It is a "
            f"fraction of the positive's score: did you mean relative_margin={m / 100:g} ({m:g} %)?"
        )
    return f


def _seed(x: Any, name: str = "seed") -> int:
    v = as_count(x, name, minimum=0)
    if v >= 1 << 64:
        raise ParameterError(f"{name} must be below 2**64, got {v}")
    return v


def check_sampling(sampling: Any, simans_a: Any, simans_b: Any) -> tuple[str, float, float]:
    """Validates the sampling arguments; returns ``(sampling, a, b)``."""
    if sampling not in ("top", "random", "simans"):
        raise ParameterError(f"unknown sampling {sampling!r}; use 'top', 'random' or 'simans'")
    a = _opt_float(simans_a, "simans_a")
    b = _opt_float(simans_b, "simans_b")
    if a is None or a <= 0:
        raise ParameterError(f"simans_a must be a finite number > 0, got {simans_a!r}")
    if b is None:
        raise ParameterError("simans_b must be a finite number, got None")
    return str(sampling), a, b


def positive_scores_to_csr(positive_scores: Any, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query positive scores as CSR ``(offsets int64, values float32)``; NaN entries are padding.

    Accepts ``None`` (no positive), a 1-D array ``[Q]`` (one per query), a 2-D array ``[Q, P]``
    padded with NaN, or a sequence of ``Q`` float sequences.
    """
    if positive_scores is None:
        return np.zeros(rows + 1, np.int64), np.zeros(0, np.float32)
    return rows_to_csr(positive_scores, rows, "positive_scores", dtype=np.float32, allow_1d=True)


def select_negatives(
    candidate_scores: Any,
    candidate_ids: Any,
    positive_scores: Any = None,
    *,
    num_negatives: int = 8,
    range_min: int = 0,
    range_max: int | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: Sampling = "top",
    seed: int = 0,
    simans_a: float = SIMANS_A,
    simans_b: float = SIMANS_B,
    query_offset: int = 0,
    threads: int | None = None,
) -> Selection:
    """Chooses each query's negatives among its candidates: filters, rank window, sampling.

    For every query independently, in sentence-transformers' order:

    1. **Candidates**: the row's ``(score, id)`` pairs whose id is not ``-1`` (``-1`` marks
       padding or a masked candidate such as a positive: mask positives yourself). They are ranked
       by descending score, ties by the earlier column (rows already sorted, like a search's
       output, keep their order; rescored rows are re-ranked).
    2. **Filters**, in this order, each removed candidate counted under the first rule removing it:
       ``absolute_margin`` keeps ``score + m <= p``; ``relative_margin`` keeps
       ``score <= p - |p| * m`` (sign-safe; 0.05 is NV-Retriever's TopK-PercPos 95 %);
       ``max_score`` keeps ``score <= max_score``; ``min_score`` keeps ``score >= min_score``.
       ``p`` is the query's **lowest** positive score. Computed in float32 (thresholds rounded to
       float32), like sentence-transformers' torch code.
    3. **Window**: the first ``range_min`` survivors are skipped and survivors of rank
       ``>= range_max`` dropped (``range_max=None``: no bound). Given the top-``range_max``
       candidates of a search this is "the ``range_max`` best after exclusions, filtered, minus
       the ``range_min`` best survivors"; given sentence-transformers' candidate rows
       (``range_max + max_positives`` columns, positives masked) it is exactly its
       ``topk(range_max)[:, range_min:]``.
    4. **Sampling** ``num_negatives`` of the window's ``m`` members: ``"top"`` the first ones;
       ``"random"`` a uniform subset without replacement; ``"simans"`` without replacement with
       probability proportional to ``exp(-simans_a * (score - p - simans_b) ** 2)`` (SimANS; the
       mode is at ``p + simans_b``; defaults ``a=0.5, b=0`` as in the SimANS code, whose own
       ``b`` has the opposite sign). If ``m <= num_negatives`` all members are taken.

    Chosen negatives are returned in rank order; missing slots hold id ``-1`` and score NaN.
    Randomness comes from a generator seeded by ``(seed, query_offset + row)``, so a query's
    negatives depend only on its own candidates, the arguments and its global index: pass
    ``query_offset`` when you process queries in chunks and the result is the same as in one call,
    whatever ``threads``.

    Parameters
    ----------
    candidate_scores : array_like of float, shape (Q, C)
        Candidate scores (converted to float32). Unmasked scores must be finite.
    candidate_ids : array_like of int, shape (Q, C)
        Candidate corpus ids, ``-1`` for padding or masked candidates.
    positive_scores : array_like, optional
        Each query's positive scores: 1-D ``[Q]``, 2-D ``[Q, P]`` padded with NaN, or a list of
        float sequences. Needed by the margins and by ``"simans"``.
    num_negatives : int, default 8
        Negatives per query; at most the window size ``min(range_max, C) - range_min``.
    range_min, range_max : int
        Window over the survivors' ranks, ``[range_min, range_max)``.
    min_score, max_score, absolute_margin, relative_margin : float, optional
        Filters (see above).
    sampling : {"top", "random", "simans"}, default "top"
    seed : int, default 0
        Seed of the per-query random streams (``0 <= seed < 2**64``).
    simans_a, simans_b : float
        SimANS kernel parameters (``simans_a > 0``).
    query_offset : int, default 0
        Global index of row 0, for chunked processing.
    threads : int, optional
        Worker threads (default: every core); the result does not depend on it.

    Returns
    -------
    Selection
        ``negatives`` (int64 ``[Q, num_negatives]``), ``scores`` (float32, same shape),
        ``stats`` (dict of counters, see :data:`STAT_NAMES`).

    Raises
    ------
    ParameterError
        Impossible arguments: ``num_negatives`` larger than the window, ``range_min >= range_max``,
        unknown ``sampling``, ``min_score > max_score``; or a query without any positive score
        while a margin or ``"simans"`` needs one (the rule: it is an error, the message names the
        query; drop such queries or give them a positive).
    NonFiniteError
        A NaN or infinite unmasked candidate score, or an infinite positive score.
    ShapeError, DTypeError, IdOutOfRangeError
        Mismatched shapes, non-numeric arrays, ids below ``-1``.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)
    >>> ids = np.array([[4, 7, -1, 2, 9]])          # -1: masked (e.g. the positive)
    >>> sel = hardneg.select_negatives(scores, ids, [0.85], num_negatives=2, absolute_margin=0.1)
    >>> sel.negatives.tolist(), sel.stats["skipped_absolute_margin"]
    ([[2, 9]], 2)
    >>> hardneg.select_negatives(scores, ids, num_negatives=2, range_min=1, sampling="random", seed=3).negatives.shape
    (1, 2)
    """
    s = np.asarray(from_torch(candidate_scores, "candidate_scores"))
    i = np.asarray(from_torch(candidate_ids, "candidate_ids"))
    if s.dtype.kind not in "fiu":
        raise DTypeError(f"candidate_scores must hold real numbers, got dtype {s.dtype}")
    if i.dtype.kind not in "iu":
        raise DTypeError(f"candidate_ids must hold integer ids, got dtype {i.dtype}")
    if s.ndim != 2:
        raise ShapeError(f"candidate_scores must be 2-D [queries, candidates], got shape {s.shape}")
    if i.shape != s.shape:
        raise ShapeError(f"candidate_ids has shape {i.shape} but candidate_scores has shape {s.shape}; give one id per score")
    s = np.ascontiguousarray(s, dtype=np.float32)
    i = np.ascontiguousarray(i, dtype=np.int64)
    rows = s.shape[0]
    offsets, values = positive_scores_to_csr(positive_scores, rows)
    sampling, a, b = check_sampling(sampling, simans_a, simans_b)
    neg, sc, stats = _hardneg.select_negatives(
        s,
        i,
        offsets,
        values,
        num_negatives=as_count(num_negatives, "num_negatives"),
        range_min=as_count(range_min, "range_min", minimum=0),
        range_max=None if range_max is None else as_count(range_max, "range_max"),
        **check_filters(min_score, max_score, absolute_margin, relative_margin),
        sampling=sampling,
        simans_a=a,
        simans_b=b,
        seed=_seed(seed),
        query_offset=_seed(query_offset, "query_offset"),
        threads=as_threads(threads),
    )
    return Selection(neg, sc, dict(stats))
