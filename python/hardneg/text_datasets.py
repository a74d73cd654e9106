"""Mined ids as texts: the ``datasets.Dataset`` layouts sentence-transformers trains on.

:meth:`hardneg.Mined.to_dataset` (also on the result of :func:`hardneg.load_mined`, i.e. a
mining output directory) and the drop-in
:func:`hardneg.integrations.sentence_transformers.mine_hard_negatives` build their rows here, in
the order and with the column names of ``sentence_transformers.util.mine_hard_negatives``:

* ``"triplet"``: one row ``(anchor, positive, negative)`` per negative of each (query, positive)
  pair; missing negatives (``-1``) give no row.
* ``"n-tuple"``: one row ``(anchor, positive, negative_1, ..., negative_n)`` per pair; pairs whose
  query lacks any of its ``n`` negatives are left out.
* ``"labeled-list"``: ``(anchor, [positive, negative...], labels [1, 0, ...])`` per pair that has at
  least one negative (``scores`` instead of ``labels`` with ``output_scores``).
* ``"labeled-pair"``: ``(anchor, document, label)``: per query its positives (label 1), then its
  negatives (label 0).

``output_scores=True`` adds the scores as sentence-transformers does (``scores`` lists of the
positive's then the negatives' scores; ``score`` for labeled pairs).

Examples
--------
>>> import numpy as np, hardneg
>>> corpus = np.eye(4, dtype=np.float32) + 0.1
>>> mined = hardneg.mine(corpus[:2], corpus, positives=[0, 1], num_negatives=2)
>>> ds = mined.to_dataset(["q0", "q1"], ["d0", "d1", "d2", "d3"], format="n-tuple")
>>> ds.column_names, ds[0]["positive"]
(['anchor', 'positive', 'negative_1', 'negative_2'], 'd0')
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from .errors import IdOutOfRangeError, ParameterError, ShapeError

__all__ = ["build_dataset", "mined_to_dataset", "DatasetFormat", "FORMATS"]

DatasetFormat = Literal["triplet", "n-tuple", "labeled-list", "labeled-pair"]
FORMATS: tuple[str, ...] = ("triplet", "n-tuple", "labeled-list", "labeled-pair")


def _take(texts: Sequence[str], idx: np.ndarray) -> list[str]:
    return [texts[i] for i in idx.tolist()]


def build_dataset(fmt: str, output_scores: bool, acol: str, pcol: str, queries: Sequence[str],
                  corpus: Sequence[str], pair_q: np.ndarray, pair_p: np.ndarray, pos_scores: np.ndarray,
                  neg_ids: np.ndarray, neg_scores: np.ndarray, n: int) -> Any:
    """The rows of sentence-transformers' output for each format, in its order.

    ``pair_q`` / ``pair_p`` / ``pos_scores`` list the (query, positive) pairs (query index, corpus
    id, score) in row order; ``neg_ids`` / ``neg_scores`` are each query's negatives ``[Q, n]`` in
    rank order, ``-1`` for missing ones.
    """
    from datasets import Dataset

    rep_ids = neg_ids[pair_q]  # [pairs, n]: each (query, positive) row with its query's negatives
    rep_scores = neg_scores[pair_q]
    valid = rep_ids >= 0
    data: dict[str, list[Any]]
    if fmt == "triplet":
        r, j = np.nonzero(valid)
        data = {acol: _take(queries, pair_q[r]), pcol: _take(corpus, pair_p[r]), "negative": _take(corpus, rep_ids[r, j])}
        if output_scores:
            data["scores"] = np.stack([pos_scores[r], rep_scores[r, j]], axis=1).astype(np.float64).tolist()
    elif fmt == "n-tuple":
        keep = valid.all(axis=1)
        data = {acol: _take(queries, pair_q[keep]), pcol: _take(corpus, pair_p[keep])}
        for i in range(n):
            data[f"negative_{i + 1}"] = _take(corpus, rep_ids[keep, i])
        if output_scores:
            data["scores"] = np.concatenate([pos_scores[keep, None], rep_scores[keep]], axis=1).astype(np.float64).tolist()
    elif fmt == "labeled-list":
        keep = valid.any(axis=1)
        rows = np.nonzero(keep)[0]
        data = {acol: _take(queries, pair_q[rows]), pcol: []}
        vals: list[list[Any]] = []
        for r in rows.tolist():
            m = valid[r]
            data[pcol].append([corpus[pair_p[r]]] + _take(corpus, rep_ids[r][m]))
            if output_scores:
                vals.append([float(pos_scores[r])] + rep_scores[r][m].astype(np.float64).tolist())
            else:
                vals.append([1] + [0] * int(m.sum()))
        data["scores" if output_scores else "labels"] = vals
    else:  # labeled-pair: per query its positives (label 1), then its negatives (label 0)
        qn, jn = np.nonzero(neg_ids >= 0)
        q_all = np.concatenate([pair_q, qn])
        kind = np.concatenate([np.zeros(len(pair_q), np.int64), np.ones(len(qn), np.int64)])
        pos_in_q = np.arange(len(pair_q))
        within = np.concatenate([pos_in_q, jn])
        order = np.lexsort((within, kind, q_all))
        docs = np.concatenate([pair_p, neg_ids[qn, jn]])[order]
        vals_f = np.concatenate([pos_scores, neg_scores[qn, jn]]).astype(np.float64)[order]
        data = {acol: _take(queries, q_all[order]), pcol: _take(corpus, docs)}
        if output_scores:
            data["score"] = vals_f.tolist()
        else:
            data["label"] = (1 - kind[order]).tolist()
    return Dataset.from_dict(data)


def _texts(x: Any, what: str) -> Sequence[str]:
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise ParameterError(f"{what} must be a sequence of texts (a list, a datasets column, ...), got {type(x).__name__}")
    return x if isinstance(x, (list, tuple)) else list(x)


def mined_to_dataset(mined: Any, query_texts: Any, corpus_texts: Any, format: str = "triplet", *,
                     output_scores: bool = False, anchor_column: str = "anchor", positive_column: str = "positive") -> Any:
    """:meth:`hardneg.Mined.to_dataset`: see there."""
    if format not in FORMATS:
        raise ParameterError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    queries = _texts(query_texts, "query_texts")
    corpus = _texts(corpus_texts, "corpus_texts")
    q, n = mined.negatives.shape
    if len(queries) != q:
        raise ShapeError(f"query_texts has {len(queries):,} texts but {q:,} queries were mined; give the query "
                         "texts in the order of the query embeddings")
    most = max(int(mined.negatives.max(initial=-1)), int(mined.positives.max(initial=-1)))
    if most >= len(corpus):
        raise IdOutOfRangeError(f"corpus id {most:,} was mined but corpus_texts has {len(corpus):,} texts; give the "
                                "corpus texts in the order of the corpus embeddings")
    pos = mined.positives
    pair_q, slot = np.nonzero(pos >= 0)
    return build_dataset(format, bool(output_scores), anchor_column, positive_column, queries, corpus, pair_q,
                         pos[pair_q, slot], mined.positive_scores[pair_q, slot], mined.negatives, mined.scores, n)
