"""``mine_hard_negatives``: sentence-transformers' mining function, with hardneg's search and selection.

Same arguments and the same ``datasets.Dataset`` as
``sentence_transformers.util.mine_hard_negatives`` (the four output formats, ``output_scores``,
``include_positives``, a separate ``corpus``, duplicate anchors as multiple positives, prompts,
``cache_folder``, cross-encoder rescoring), but:

* the exact top-k search runs in hardneg's fused SIMD kernel (:class:`hardneg.FlatIndex`): the
  ``[queries, corpus]`` score matrix (16,384 x N floats per chunk in sentence-transformers'
  default path) is never built, and ``use_faiss`` / ``faiss_batch_size`` are accepted but not
  needed;
* the search, the positives' scores, the filters, the rank window and the sampling run in
  hardneg's mining engine, in Rust, in one call (the selection of :func:`hardneg.select_negatives`);
* a cross-encoder rescores only the real candidates (not the positives, nor the padding), in
  batches across queries instead of one ``predict`` call per query;
* ``sampling_strategy="random"`` (and hardneg's ``"simans"``) take a ``seed`` and are
  reproducible; sentence-transformers draws from Python's global ``random``.

Where queries get fewer negatives than asked (a corpus too small for the window, filters that
remove too many candidates) it behaves as sentence-transformers: the rows found are returned and
``verbose`` prints the same report, "Could not find enough negatives for N samples ... Consider
adjusting the range_max parameter ...", with sentence-transformers' own counts (of missing
output rows, per format). ``return_stats=True`` also returns per-query counts.
(:func:`hardneg.mine` raises :class:`hardneg.ParameterError` instead when ``num_negatives`` does
not fit the window.) sentence-transformers' GPU-FAISS cap of ``range_max`` to 2048 does not
apply: hardneg has no ``k`` limit.

Examples
--------
>>> from hardneg.integrations.sentence_transformers import derive_range_max
>>> derive_range_max(range_min=0, num_negatives=3, max_positives=1, uses_score_filter=False)
4
>>> derive_range_max(range_min=10, num_negatives=5, max_positives=2, uses_score_filter=True)
62
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import _hardneg
from .._arrays import as_matrix, as_threads
from ..errors import ParameterError
from ..index import FlatIndex
from ..mining import default_range_max
from ..selection import _opt_float, _seed, check_sampling
from ..text_datasets import build_dataset

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

__all__ = ["mine_hard_negatives", "derive_range_max", "ClusterBatchSamplerFactory"]

logger = logging.getLogger(__name__)

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]
_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")


def derive_range_max(*, range_min: int, num_negatives: int, max_positives: int, uses_score_filter: bool) -> int:
    """``range_max`` as sentence-transformers derives it when it is not given.

    ``range_min + num_negatives + max_positives``, or ``range_min + 10 * num_negatives +
    max_positives`` when a score filter (a margin, ``max_score``, or ``min_score`` with a
    cross-encoder) may drop candidates.

    Examples
    --------
    >>> derive_range_max(range_min=2, num_negatives=4, max_positives=3, uses_score_filter=False)
    9
    """
    return default_range_max(range_min, num_negatives, max_positives, filtered=uses_score_filter)


def _check_int(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {type(x).__name__} {x!r}")
    return int(x)


def _check_model(model: Any, what: str = "model", cls: str = "SentenceTransformer") -> None:
    """A path or a name where a loaded model is expected gets an error saying so (``str.encode``
    would otherwise fail deep inside with "encode() takes at most 2 arguments")."""
    if isinstance(model, (str, bytes, os.PathLike)):
        raise ParameterError(
            f"{what} must be a loaded {cls}, got the {'path' if os.path.exists(os.fspath(model)) else 'name'} "
            f"{os.fspath(model)!r}; load it first: {what} = sentence_transformers.{cls}({os.fspath(model)!r})"
        )
    method = "encode" if cls == "SentenceTransformer" else "predict"
    if not callable(getattr(model, method, None)):
        raise ParameterError(f"{what} must be a {cls} (an object with a .{method}() method), got {type(model).__name__}")


def _encode(model: Any, texts: list[str], *, kind: str, pool: Any, batch_size: int, prompt_name: str | None,
            prompt: str | None, verbose: bool) -> np.ndarray:
    fn = getattr(model, "encode_document" if kind == "corpus" else "encode_query", None) or model.encode
    emb = fn(
        texts,
        pool=pool,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=verbose,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return np.ascontiguousarray(np.asarray(emb, dtype=np.float32))


def mine_hard_negatives(
    dataset: Dataset,
    model: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: list[str] | None = None,
    cross_encoder: Any = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top", "simans"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: OutputFormat = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = 16384,
    use_faiss: bool = False,
    use_multi_process: list[str] | bool = False,
    verbose: bool = True,
    cache_folder: str | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    seed: int = 0,
    simans_a: float = 0.5,
    simans_b: float = 0.0,
    threads: int | None = None,
    return_stats: bool = False,
) -> Any:
    """Adds hard negatives to a data set of (anchor, positive) pairs; a drop-in for sentence-transformers'.

    Takes the arguments of ``sentence_transformers.util.mine_hard_negatives`` (same names, order,
    defaults and meaning; see its documentation) and returns the same ``datasets.Dataset``. The
    search is hardneg's exact fused top-k (``use_faiss`` and ``faiss_batch_size`` are accepted
    and ignored: results equal FAISS ``IndexFlatIP`` on CPU), the selection is
    :func:`hardneg.select_negatives`. Queries short of negatives keep the rows found, and
    ``verbose`` prints sentence-transformers' report of them.

    Parameters
    ----------
    dataset : datasets.Dataset
        (anchor, positive) pairs; a repeated anchor means several positives for one query.
    model : SentenceTransformer
        A loaded model (a path raises :class:`hardneg.ParameterError` saying to load it). Embeds the texts (``encode_query`` / ``encode_document`` with
        ``normalize_embeddings=True``). Its ``similarity_fn_name`` must be ``"cosine"`` or
        ``"dot"`` (the same inner product on normalised embeddings).
    anchor_column_name, positive_column_name, corpus, cross_encoder, range_min, range_max, \
max_score, min_score, absolute_margin, relative_margin, num_negatives, sampling_strategy, \
query_prompt_name, query_prompt, corpus_prompt_name, corpus_prompt, include_positives, \
output_format, output_scores, batch_size, faiss_batch_size, use_faiss, use_multi_process, \
verbose, cache_folder, as_triplets, margin
        As in sentence-transformers. ``sampling_strategy`` also accepts ``"simans"`` (SimANS
        ambiguous negatives, parameters ``simans_a`` and ``simans_b``). ``cache_folder`` uses
        sentence-transformers' file names and hashes, so either function reuses the other's cache.
    seed : int, default 0
        Seed of ``"random"`` and ``"simans"`` sampling; the output is identical for a seed.
    simans_a, simans_b : float
        SimANS weight ``exp(-a * (s - p - b) ** 2)``.
    threads : int, optional
        Threads of the search (default: every core). Results do not depend on it.
    return_stats : bool, default False
        Also return a dict of statistics: ``queries``, ``queries_short`` (queries with fewer than
        ``num_negatives`` negatives), ``negatives_missing`` (in total, whatever the format; the
        printed report counts missing output rows as sentence-transformers does), ``skipped``
        (candidates removed by each rule, each counted once) and ``range_max``.

    Returns
    -------
    datasets.Dataset, or (datasets.Dataset, dict) when ``return_stats``

    Examples
    --------
    A stand-in model keeps the example free of downloads (any SentenceTransformer works):

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> from hardneg.integrations.sentence_transformers import mine_hard_negatives
    >>> class Letters:  # embeds a text by its letter counts
    ...     similarity_fn_name = "cosine"
    ...     def encode(self, texts, **kw):
    ...         v = np.array([[t.count(c) for c in "abcdefgh"] for t in texts], np.float32) + 0.1
    ...         return v / np.linalg.norm(v, axis=1, keepdims=True)
    >>> pairs = Dataset.from_dict({"q": ["aab", "ccd", "eef"], "doc": ["aabb", "ccdd", "eeff"]})
    >>> out = mine_hard_negatives(pairs, Letters(), corpus=["abab", "hhhh"], num_negatives=1,
    ...                           verbose=False)
    >>> out.column_names, out[0]
    (['q', 'doc', 'negative'], {'q': 'aab', 'doc': 'aabb', 'negative': 'abab'})
    """
    from .._optional import require

    require("datasets", "mine_hard_negatives")  # fail here, before any work, when it is missing
    from .. import select_negatives

    # ---- arguments, checked as sentence-transformers does (same rules, typed errors) ----
    _check_model(model)
    if cross_encoder is not None:
        _check_model(cross_encoder, "cross_encoder", "CrossEncoder")
    if len(dataset) == 0:
        raise ParameterError("The dataset is empty. Please provide a non-empty dataset.")
    faiss_batch_size = _check_int(faiss_batch_size, "faiss_batch_size")
    if faiss_batch_size <= 0:
        raise ParameterError(f"faiss_batch_size must be a positive integer, got {faiss_batch_size}.")
    columns = dataset.column_names
    if not anchor_column_name or anchor_column_name not in columns:
        anchor_column_name = columns[0]
    if not positive_column_name or positive_column_name not in columns:
        if len(columns) < 2:
            raise ParameterError("Dataset must contain at least two columns to select the positive column automatically.")
        positive_column_name = columns[1]
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning("The `as_triplets` parameter is deprecated. Use `output_format` instead (now %r).", output_format)
    if include_positives:
        if (range_min != 0 or range_max is not None or max_score is not None or min_score is not None
                or absolute_margin is not None or relative_margin is not None or margin is not None
                or sampling_strategy != "top"):
            logger.warning(
                "With include_positives=True, changing range_min, range_max, max_score, min_score, "
                "absolute_margin, relative_margin or sampling_strategy may still discard the positives."
            )
        if output_format != "n-tuple":
            logger.warning('With include_positives=True, output_format is set to "n-tuple" to keep the ranking order.')
            output_format = "n-tuple"
    if output_format == "n-tuple-scores":
        logger.warning('output_format="n-tuple-scores" is deprecated; use "n-tuple" with output_scores=True.')
        output_format, output_scores = "n-tuple", True
    if output_format not in _FORMATS:
        raise ParameterError(
            f"Invalid output_format: {output_format}. Must be one of 'triplet', 'n-tuple', 'labeled-pair', or 'labeled-list'."
        )
    if sampling_strategy not in ("top", "random", "simans"):
        raise ParameterError(f"sampling_strategy must be 'top', 'random' or 'simans', got {sampling_strategy!r}")
    if margin is not None:
        absolute_margin = margin
        logger.warning("The `margin` parameter is deprecated; setting absolute_margin to %s.", margin)
    num_negatives = _check_int(num_negatives, "num_negatives")
    if num_negatives < 1:
        raise ParameterError(f"num_negatives must be at least 1, got num_negatives={num_negatives}.")
    range_min = _check_int(range_min, "range_min")

    queries_all = list(dataset[anchor_column_name])
    positives_all = list(dataset[positive_column_name])
    # rows per anchor, duplicates included: what sentence-transformers' groupby().count() gives
    max_positives = max(Counter(queries_all).values())
    uses_score_filter = (absolute_margin is not None or relative_margin is not None or max_score is not None
                         or (cross_encoder is not None and min_score is not None))
    if range_max is None:
        range_max = derive_range_max(range_min=range_min, num_negatives=num_negatives,
                                     max_positives=max_positives, uses_score_filter=uses_score_filter)
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    range_max = _check_int(range_max, "range_max")
    if range_min < 0:
        raise ParameterError(f"range_min must be non-negative, got range_min={range_min}.")
    if range_min >= range_max:
        raise ParameterError(
            f"range_min must be smaller than range_max, got range_min={range_min} and range_max={range_max}."
        )
    if num_negatives > range_max - range_min:
        raise ParameterError(
            f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates remain after "
            f"skipping the first range_min={range_min} of range_max={range_max}. Decrease num_negatives or "
            "range_min, or increase range_max."
        )

    # ---- texts: de-duplicated exactly as sentence-transformers does ----
    corpus_texts = list(dict.fromkeys((list(corpus) if corpus is not None else []) + positives_all))
    corpus_idx = {t: i for i, t in enumerate(corpus_texts)}
    queries = list(dict.fromkeys(queries_all))
    query_idx = {t: i for i, t in enumerate(queries)}
    n_queries, n_corpus = len(queries), len(corpus_texts)

    pos_lists: list[list[int]] = [[] for _ in range(n_queries)]
    for q, p in zip(queries_all, positives_all):
        lst = pos_lists[query_idx[q]]
        c = corpus_idx[p]
        if c not in lst:
            lst.append(c)
    n_pos = np.array([len(p) for p in pos_lists], dtype=np.int64)

    if n_queries != len(queries_all) and verbose:
        print(f"Found {n_queries} unique queries out of {len(queries_all)} total queries.")
    if max_positives > 1 and verbose:
        print(f"Found an average of {float(np.mean(list(Counter(queries_all).values()))):.3f} positives per query.")

    # ---- embeddings (sentence-transformers' cache files and hashes) ----
    query_emb = corpus_emb = None
    if cache_folder:
        os.makedirs(cache_folder, exist_ok=True)
        card = getattr(model, "model_card_data", None)
        model_name = (getattr(card, "base_model", None) or "") if card is not None else ""
        qhash = hashlib.sha256(repr((model_name, query_prompt, query_prompt_name, queries)).encode()).hexdigest()
        chash = hashlib.sha256(repr((model_name, corpus_prompt, corpus_prompt_name, corpus_texts)).encode()).hexdigest()
        qfile = os.path.join(cache_folder, f"query_embeddings_{qhash}.npy")
        cfile = os.path.join(cache_folder, f"corpus_embeddings_{chash}.npy")
        if os.path.exists(qfile):
            query_emb = np.load(qfile)
            if verbose:
                print(f"[Cache] Loaded query embeddings from {qfile} (shape={query_emb.shape})")
        if os.path.exists(cfile):
            corpus_emb = np.load(cfile)
            if verbose:
                print(f"[Cache] Loaded corpus embeddings from {cfile} (shape={corpus_emb.shape})")
    if corpus_emb is None or query_emb is None:
        pool = None
        if use_multi_process:
            pool = model.start_multi_process_pool(
                target_devices=None if isinstance(use_multi_process, bool) else use_multi_process
            )
        try:
            if corpus_emb is None:
                corpus_emb = _encode(model, corpus_texts, kind="corpus", pool=pool, batch_size=batch_size,
                                     prompt_name=corpus_prompt_name, prompt=corpus_prompt, verbose=verbose)
            if query_emb is None:
                query_emb = _encode(model, queries, kind="query", pool=pool, batch_size=batch_size,
                                    prompt_name=query_prompt_name, prompt=query_prompt, verbose=verbose)
        finally:
            if pool is not None:
                model.stop_multi_process_pool(pool)
    if cache_folder:
        if not os.path.exists(qfile):
            np.save(qfile, query_emb)
            if verbose:
                print(f"[Cache] Saved query embeddings to {qfile}")
        if not os.path.exists(cfile):
            np.save(cfile, corpus_emb)
            if verbose:
                print(f"[Cache] Saved corpus embeddings to {cfile}")
    sim = getattr(model, "similarity_fn_name", None) or "cosine"
    if sim not in ("cosine", "dot"):
        raise ParameterError(
            f"model.similarity_fn_name is {sim!r}; hardneg mines with the inner product of normalised embeddings, "
            "which ranks like 'cosine' and 'dot'. Set model.similarity_fn_name = 'cosine'."
        )

    # ---- the engine: sentence-transformers' candidate list, range_max + max_positives per query,
    # positives masked in it (kept with include_positives), positives scored like the candidates ----
    pair_q = np.repeat(np.arange(n_queries, dtype=np.int64), n_pos)
    pair_p = np.fromiter((c for lst in pos_lists for c in lst), dtype=np.int64, count=int(n_pos.sum()))
    pos_offsets = np.concatenate([[0], np.cumsum(n_pos)]).astype(np.int64)
    in_row = np.arange(int(n_pos.max()))[None, :] < n_pos[:, None]  # padded [query, slot] -> a (query, positive) pair
    width = range_max + max_positives
    index = FlatIndex(corpus_emb, metric="ip", threads=threads)
    sampling, simans_a, simans_b = check_sampling(sampling_strategy, simans_a, simans_b)
    miner = _hardneg.Miner(
        index._inner, num_negatives=num_negatives, positive_width=int(n_pos.max()), range_max=range_max,
        candidates=width, positives="keep" if include_positives else "mask", range_min=range_min,
        min_score=_opt_float(min_score, "min_score"), max_score=_opt_float(max_score, "max_score"),
        absolute_margin=_opt_float(absolute_margin, "absolute_margin"),
        relative_margin=_opt_float(relative_margin, "relative_margin"), sampling=sampling, seed=_seed(seed),
        simans_a=simans_a, simans_b=simans_b, threads=as_threads(threads),
    )
    query_emb = as_matrix(query_emb, "query embeddings")

    # sentence-transformers rescores with a cross-encoder when any score rule is set (min_score included)
    if cross_encoder is None or not (uses_score_filter or min_score is not None):
        neg_ids, neg_scores, _, pos_padded, raw = miner.mine(query_emb, pos_offsets, pair_p)
        sel: Any = (neg_ids, neg_scores, raw)
        pos_scores = pos_padded[in_row]
    else:
        # ---- cross-encoder rescoring of the real candidates only (masked positives stay out) ----
        _, ids, _, _ = miner.candidates(query_emb, pos_offsets, pair_p)
        rq, rc = np.nonzero(ids >= 0)
        pool = None
        if use_multi_process:
            pool = cross_encoder.start_multi_process_pool(
                target_devices=None if isinstance(use_multi_process, bool) else use_multi_process
            )
        try:
            ce = cross_encoder.predict(
                [(queries[q], corpus_texts[c]) for q, c in zip(rq.tolist(), ids[rq, rc].tolist())],
                batch_size=batch_size, convert_to_numpy=True, show_progress_bar=verbose, pool=pool,
            )
            pos_scores = np.asarray(cross_encoder.predict(
                [(queries[q], corpus_texts[p]) for q, p in zip(pair_q.tolist(), pair_p.tolist())],
                batch_size=batch_size, convert_to_numpy=True, show_progress_bar=verbose, pool=pool,
            ), dtype=np.float32).reshape(-1)
        finally:
            if pool is not None:
                cross_encoder.stop_multi_process_pool(pool)
        scores = np.full(ids.shape, -np.inf, dtype=np.float32)
        scores[rq, rc] = np.asarray(ce, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, axis=1, kind="stable")  # re-rank by the cross-encoder
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.where(np.isfinite(scores), np.take_along_axis(ids, order, axis=1), -1)
        pos_min = np.minimum.reduceat(pos_scores, np.cumsum(n_pos) - n_pos).astype(np.float32)
        sel = select_negatives(
            scores, ids, pos_min,
            num_negatives=num_negatives, range_min=range_min, range_max=range_max,
            min_score=min_score, max_score=max_score,
            absolute_margin=absolute_margin, relative_margin=relative_margin,
            sampling=sampling_strategy, seed=seed, simans_a=simans_a, simans_b=simans_b,
        )
    neg_ids, neg_scores, skipped, candidates = _unpack_selection(sel)
    # sentence-transformers lists each query's negatives by descending score, missing ones last
    key = np.where(neg_ids >= 0, neg_scores, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")
    neg_ids = np.take_along_axis(neg_ids, order, axis=1)
    neg_scores = np.take_along_axis(neg_scores, order, axis=1)

    if verbose:
        print("Negative candidates mined, preparing dataset...")
    ds = build_dataset(
        output_format, output_scores, anchor_column_name, positive_column_name,
        queries, corpus_texts, pair_q, pair_p, pos_scores, neg_ids, neg_scores, num_negatives,
    )

    found = (neg_ids >= 0).sum(axis=1)
    stats = {
        "queries": n_queries,
        "queries_short": int((found < num_negatives).sum()),
        "negatives_missing": int((num_negatives - found).sum()),
        "skipped": skipped,
        "range_max": range_max,
    }
    if verbose:
        rules = {"absolute_margin": absolute_margin, "relative_margin": relative_margin, "max_score": max_score,
                 "min_score": min_score}
        # sentence-transformers' largest possible output, per format, and its candidate matrix size
        most_rows = {"triplet": len(pair_q) * num_negatives, "labeled-pair": n_queries * num_negatives + len(dataset)}
        _print_report(output_format, pos_scores, pair_q, neg_ids, neg_scores, rules, skipped,
                      entries=n_queries * width, candidates=candidates, range_min=range_min,
                      most_rows=most_rows.get(output_format, len(pair_q)), rows=len(ds))
    return (ds, stats) if return_stats else ds


def _unpack_selection(sel: Any) -> tuple[np.ndarray, np.ndarray, dict[str, int], int]:
    """(negatives, scores, candidates removed per rule, candidates) from :func:`hardneg.select_negatives`."""
    neg_ids, neg_scores, raw = sel
    skipped = {rule: int(raw.get(f"skipped_{rule}", 0))
               for rule in ("absolute_margin", "relative_margin", "max_score", "min_score")}
    return (np.asarray(neg_ids, dtype=np.int64), np.asarray(neg_scores, dtype=np.float32), skipped,
            int(raw.get("candidates", 0)))


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def _median_low(a: np.ndarray) -> float:
    """torch.median: the lower of the two middle values (NaN when empty)."""
    return float(np.sort(a)[(len(a) - 1) // 2]) if len(a) else float("nan")


# The rows of sentence-transformers' statistics table: its torch reductions, and what they give
# on an empty tensor (mean/median/std NaN, min/quantiles inf, max -inf).
_TABLE = (
    ("Mean", lambda a: float(np.mean(a)) if len(a) else float("nan")),
    ("Median", _median_low),
    ("Std", lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else float("nan")),
    ("Min", lambda a: float(np.min(a)) if len(a) else float("inf")),
    ("25%", lambda a: float(np.quantile(a, 0.25)) if len(a) else float("inf")),
    ("50%", lambda a: float(np.quantile(a, 0.5)) if len(a) else float("inf")),
    ("75%", lambda a: float(np.quantile(a, 0.75)) if len(a) else float("inf")),
    ("Max", lambda a: float(np.max(a)) if len(a) else float("-inf")),
)


def _print_report(fmt: str, pos_scores: np.ndarray, pair_q: np.ndarray, neg_ids: np.ndarray, neg_scores: np.ndarray,
                  rules: dict[str, Any], skipped: dict[str, int], *, entries: int, candidates: int, range_min: int,
                  most_rows: int, rows: int) -> None:
    """sentence-transformers' report, line for line and with its counting conventions.

    ``entries`` is the size of its candidate matrix (queries x (range_max + max positives)) and
    ``candidates`` the real candidates among them (not positives, not padding); ``most_rows`` its
    largest possible output for the format, ``rows`` the rows returned.
    """
    rep_ids, rep_scores = neg_ids[pair_q], neg_scores[pair_q]  # each (query, positive) row with its negatives
    found = rep_ids >= 0
    if fmt == "n-tuple":  # only complete rows enter its statistics
        found = found & found.all(axis=1, keepdims=True)
    negs = rep_scores[found].astype(np.float64)
    diff = np.broadcast_to(pos_scores[:, None], rep_scores.shape)[found].astype(np.float64) - negs
    pos = pos_scores.astype(np.float64)
    row = "{:<6} {:>14} {:>14} {:>14}"
    print(row.format("Metric", "Positive", "Negative", "Difference"))
    print(row.format("Count", f"{len(pos):,}", f"{len(negs):,}", ""))
    for name, f in _TABLE:
        print(row.format(name, *(_fmt(f(a)) for a in (pos, negs, diff))))
    # Its counts: each rule counts what it removes from the whole matrix; the margins shrink the
    # denominator of the later ratios; min_score also counts every entry already removed.
    remaining = entries
    for rule in ("absolute_margin", "relative_margin", "max_score", "min_score"):
        if rules[rule] is None:
            continue
        n = skipped[rule]
        if rule == "min_score":
            n += entries - candidates + sum(skipped[r] for r in ("absolute_margin", "relative_margin", "max_score"))
        if n:
            print(f"Skipped {n:,} potential negatives ({n / remaining:.2%}) due to the {rule} of {rules[rule]}.")
            if rule in ("absolute_margin", "relative_margin"):
                remaining -= n
    missing = most_rows - rows
    if missing > 0:
        solutions = ["range_max"] + (["range_min"] if range_min > 0 else [])
        solutions += [r for r in ("absolute_margin", "relative_margin", "max_score") if rules[r] is not None]
        names = solutions[0] if len(solutions) == 1 else ", ".join(solutions[:-1]) + " and " + solutions[-1]
        print(f"Could not find enough negatives for {missing} samples ({missing / most_rows:.2%})."
              f" Consider adjusting the {names} parameter{'s' if len(solutions) > 1 else ''} if you'd like to find"
              " more valid negatives.")


# --- the trainer's batch sampler -------------------------------------------------------------------

_EVAL_BATCHES = ("sequential", "cluster")
# ClusterBatchSampler arguments the factory sets itself (from the trainer's call or the data)
_FACTORY_SET = ("embeddings", "batch_size", "group_keys", "drop_last", "seed", "num_replicas", "rank")


class ClusterBatchSamplerFactory:
    """``batch_sampler=`` for sentence-transformers' trainer: cluster-balanced training batches.

    The trainer calls its ``batch_sampler`` for every dataset it loads, the evaluation and test
    sets included, with ``(dataset, batch_size, drop_last, valid_label_columns, generator, seed)``.
    This factory recognises the training data (the same object, or the same number of rows with
    the same anchor texts) and returns a :class:`hardneg.ClusterBatchSampler` over its embeddings
    (given, or computed once with ``model``); any other dataset gets ``eval_batches``: plain
    sequential batches (the default: evaluation losses stay comparable from one evaluation to the
    next), or clustered batches of its own embeddings. ``num_replicas=1, rank=0`` are set because
    accelerate already splits the batches between processes.

    Parameters
    ----------
    train_dataset : datasets.Dataset or DatasetDict
        The training data given to the trainer (a ``DatasetDict``: each of its datasets).
    model : SentenceTransformer, optional
        Embeds the anchor column (``normalize_embeddings=True``) when ``embeddings`` is not given,
        and the evaluation sets with ``eval_batches="cluster"``.
    embeddings : array_like [len(train_dataset), d], or a mapping name -> array for a DatasetDict
        Precomputed embeddings of the training rows (e.g. of the anchors).
    anchor_column : str, optional
        Column that identifies and embeds a dataset (default: the first column).
    group_key_column : str or None, default "auto"
        Column whose values may not repeat within a batch (``group_keys``); ``"auto"``: the second
        column (the positive, in sentence-transformers' column order) when there is one.
    eval_batches : {"sequential", "cluster"}, default "sequential"
    **sampler_kwargs
        More :class:`hardneg.ClusterBatchSampler` arguments (``cluster_size``,
        ``clusters_per_batch``, ``random_fraction``, ``schedule``, ``method``, ``iters``, ``threads``).

    Attributes
    ----------
    train_sampler : ClusterBatchSampler or None
        The sampler last built for training data (e.g. to ``refresh`` it with new embeddings).

    Examples
    --------
    >>> import numpy as np
    >>> from datasets import Dataset
    >>> from hardneg.integrations.sentence_transformers import ClusterBatchSamplerFactory
    >>> train = Dataset.from_dict({"anchor": [f"q{i}" for i in range(64)], "positive": [f"d{i % 40}" for i in range(64)]})
    >>> emb = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    >>> factory = ClusterBatchSamplerFactory(train, embeddings=emb, cluster_size=4)
    >>> len(factory(train, batch_size=16, drop_last=False))      # what the trainer does for training
    4
    >>> dev = Dataset.from_dict({"anchor": ["a", "b", "c"], "positive": ["x", "y", "z"]})
    >>> list(factory(dev, batch_size=2, drop_last=False))        # and for evaluation
    [[0, 1], [2]]
    """

    def __init__(self, train_dataset: Any, *, model: Any = None, embeddings: Any = None, anchor_column: str | None = None,
                 group_key_column: str | None = "auto", eval_batches: str = "sequential", **sampler_kwargs: Any) -> None:
        import inspect

        from ..sampler import ClusterBatchSampler

        if model is not None:
            _check_model(model)
        if eval_batches not in _EVAL_BATCHES:
            raise ParameterError(f"eval_batches must be 'sequential' or 'cluster', got {eval_batches!r}")
        if model is None and (embeddings is None or eval_batches == "cluster"):
            need = "embeddings of the training rows or a model" if embeddings is None else "a model to embed evaluation sets"
            raise ParameterError(f"ClusterBatchSamplerFactory needs {need}; pass model=SentenceTransformer(...)")
        allowed = set(inspect.signature(ClusterBatchSampler).parameters) - set(_FACTORY_SET)
        unknown = sorted(set(sampler_kwargs) - allowed)
        if unknown:
            raise ParameterError(f"unknown ClusterBatchSampler arguments {unknown}; the factory takes {sorted(allowed)} "
                                 "(the trainer gives batch_size, drop_last and seed)")
        parts = dict(train_dataset) if hasattr(train_dataset, "keys") else {None: train_dataset}
        if embeddings is not None and not hasattr(embeddings, "keys"):
            embeddings = {None: embeddings} if None in parts else None
            if embeddings is None:
                raise ParameterError("train_dataset is a DatasetDict: give embeddings as a mapping name -> array, or a model")
        self._train = parts
        self._embeddings = dict(embeddings) if embeddings is not None else {}
        for name, emb in self._embeddings.items():
            rows = len(emb)
            if name not in parts or rows != len(parts[name]):
                raise ParameterError(f"embeddings{'' if name is None else f'[{name!r}]'} has {rows} rows but "
                                     f"the training dataset {'' if name is None else repr(name) + ' '}has "
                                     f"{len(parts[name]) if name in parts else 'no such part'}; give one row per example")
        self._digests: dict[Any, str] = {}
        self.model = model
        self.anchor_column = anchor_column
        self.group_key_column = group_key_column
        self.eval_batches = eval_batches
        self.sampler_kwargs = sampler_kwargs
        self.train_sampler: Any = None

    def _anchors(self, dataset: Any) -> list[str]:
        col = self.anchor_column or dataset.column_names[0]
        if col not in dataset.column_names:
            raise ParameterError(f"anchor_column={col!r} is not a column of the dataset ({dataset.column_names})")
        return list(dataset[col])

    def _digest(self, dataset: Any) -> str:
        h = hashlib.blake2b(digest_size=16)
        for t in self._anchors(dataset):
            h.update(str(t).encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()

    def _training_part(self, dataset: Any) -> tuple[bool, Any]:
        """``(True, name)`` when ``dataset`` is (a part of) the training data."""
        for name, part in self._train.items():
            if dataset is part:
                return True, name
        digest = None
        for name, part in self._train.items():
            if len(part) == len(dataset):
                if name not in self._digests:
                    self._digests[name] = self._digest(part)
                digest = digest or self._digest(dataset)
                if digest == self._digests[name]:
                    return True, name
        return False, None

    def _embed(self, dataset: Any) -> np.ndarray:
        emb = self.model.encode(self._anchors(dataset), convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False)
        return np.ascontiguousarray(np.asarray(emb, dtype=np.float32))

    def __call__(self, dataset: Any, batch_size: int, drop_last: bool, valid_label_columns: Any = None,
                 generator: Any = None, seed: int = 0) -> Any:
        from ..sampler import ClusterBatchSampler

        is_train, name = self._training_part(dataset)
        if not is_train and self.eval_batches == "sequential":
            import torch

            return torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(len(dataset))), batch_size,
                                                 drop_last)
        if is_train:
            if name not in self._embeddings:
                self._embeddings[name] = self._embed(dataset)
            emb = self._embeddings[name]
        else:
            emb = self._embed(dataset)
        key_col = self.group_key_column
        if key_col == "auto":
            key_col = dataset.column_names[1] if len(dataset.column_names) > 1 else None
        keys = dataset[key_col] if key_col is not None else None
        sampler = ClusterBatchSampler(emb, batch_size, group_keys=keys, drop_last=drop_last, seed=0 if seed is None else seed,
                                      num_replicas=1, rank=0, **self.sampler_kwargs)
        if is_train:
            self.train_sampler = sampler
        return sampler

    def __repr__(self) -> str:
        return (f"ClusterBatchSamplerFactory(train rows={sum(len(p) for p in self._train.values())}, "
                f"eval_batches={self.eval_batches!r}, {', '.join(f'{k}={v!r}' for k, v in self.sampler_kwargs.items())})")
