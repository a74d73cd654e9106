"""Negative sampling for knowledge-graph embeddings: :class:`TripleCorruptor`.

A corrupted triple replaces the head or the tail of a true triple ``(h, r, t)``. The corruptor
draws them in Rust, in parallel: with ``filtered=True`` a corruption is never a known triple (a
hashed index of the known heads and tails of every ``(h, r)`` / ``(r, t)``), the side follows the
mode or the relation's Bernoulli statistics, and the replacement entity is uniform or taken from
the replaced entity's cluster; :meth:`TripleCorruptor.hard` ranks corruptions by the model's own
scores and drops likely false negatives.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_ids, as_matrix, as_seed, as_threads
from .errors import ParameterError, ShapeError

__all__ = ["TripleCorruptor"]

Mode = Literal["head", "tail", "both"]
Strategy = Literal["uniform", "bernoulli", "cluster"]


def _triples(x: Any, what: str = "triples") -> np.ndarray:
    t = as_ids(x, what, ndim=2)
    if t.shape[1] != 3:
        raise ShapeError(f"{what} must be (head, relation, tail) rows of shape (N, 3), got {t.shape}")
    return t


class TripleCorruptor:
    """Draws corrupted triples for knowledge-graph embedding training.

    Parameters
    ----------
    triples : int array (N, 3)
        The known true ``(head, relation, tail)`` triples (usually the training split; add the
        validation triples to keep them out of the negatives too). Repeats count once.
    num_entities, num_relations : int
        Entity ids are ``0..num_entities``, relation ids ``0..num_relations``.
    mode : {"head", "tail", "both"}, default "both"
        Which entity a corruption replaces; ``"both"`` draws the side per negative.
    strategy : {"uniform", "bernoulli", "cluster"}, default "uniform"
        ``"uniform"``: side 1/2 each (mode ``"both"``), entity uniform over the allowed ones.
        ``"bernoulli"`` (mode ``"both"`` only): the head is replaced with probability
        ``tph / (tph + hpt)`` of the triple's relation (tails per head, heads per tail; Wang et
        al. 2014), so 1-to-N relations mostly corrupt heads; entity uniform.
        ``"cluster"``: the replacement is a cluster-mate of the replaced entity (LEMON-style:
        clusters of entity embeddings, e.g. of a language model's embeddings of entity names);
        when no mate is allowed, uniform over the allowed entities.
    filtered : bool, default True
        Never return a known triple (nor the triple itself; with ``False`` only the triple
        itself is avoided).
    seed : int, default 0
    clusters : int array (num_entities,), optional
        Cluster label of every entity, for ``strategy="cluster"``.
    entity_embeddings : array_like (num_entities, d), optional
        For ``strategy="cluster"`` without ``clusters``: clustered here with
        :func:`hardneg.cluster` (balanced, ``cluster_size`` entities per cluster).
    cluster_size : int, default 32

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> known = np.array([[0, 0, 1], [0, 0, 2], [3, 1, 0]])
    >>> c = hardneg.TripleCorruptor(known, num_entities=5, num_relations=2, mode="tail", seed=3)
    >>> neg = c.corrupt([[0, 0, 1]], num_negatives=6)
    >>> neg.shape
    (1, 6, 3)
    >>> set(neg[0, :, 2].tolist()) <= {0, 3, 4}   # never 1 or 2: (0, 0, 1) and (0, 0, 2) are known
    True
    >>> c.head_probability.round(2).tolist()   # relation 0 is 1-to-N: mostly replace heads
    [0.67, 0.5]
    """

    def __init__(
        self,
        triples: Any,
        num_entities: int,
        num_relations: int,
        *,
        mode: Mode = "both",
        strategy: Strategy = "uniform",
        filtered: bool = True,
        seed: int = 0,
        clusters: Any = None,
        entity_embeddings: Any = None,
        cluster_size: int = 32,
    ) -> None:
        if mode not in ("head", "tail", "both"):
            raise ParameterError(f"mode must be 'head', 'tail' or 'both', got {mode!r}")
        if strategy not in ("uniform", "bernoulli", "cluster"):
            raise ParameterError(f"strategy must be 'uniform', 'bernoulli' or 'cluster', got {strategy!r}")
        t = _triples(triples)
        num_entities = as_count(num_entities, "num_entities")
        num_relations = as_count(num_relations, "num_relations")
        self.mode: Mode = mode
        self.strategy: Strategy = strategy
        self.filtered = bool(filtered)
        self.seed = as_seed(seed)
        labels = None
        if strategy == "cluster":
            if clusters is None and entity_embeddings is None:
                raise ParameterError("strategy='cluster' needs clusters (a label per entity) or entity_embeddings to cluster")
            if clusters is None:
                from .cluster import cluster

                emb = as_matrix(entity_embeddings, "entity_embeddings")
                if emb.shape[0] != num_entities:
                    raise ShapeError(f"entity_embeddings has {emb.shape[0]} rows but there are {num_entities} entities")
                clusters = cluster(emb, cluster_size=min(as_count(cluster_size, "cluster_size"), num_entities), seed=self.seed)
            labels = as_ids(clusters, "clusters")
        elif clusters is not None or entity_embeddings is not None:
            raise ParameterError("clusters / entity_embeddings are only used by strategy='cluster'")
        self.clusters = labels
        self._inner = _hardneg.TripleCorruptor(
            t, num_entities, num_relations, mode=mode, strategy=strategy, filtered=self.filtered, clusters=labels
        )

    def __repr__(self) -> str:
        return (
            f"TripleCorruptor(num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"triples={self._inner.num_triples}, mode={self.mode!r}, strategy={self.strategy!r}, "
            f"filtered={self.filtered}, seed={self.seed})"
        )

    @property
    def num_entities(self) -> int:
        """Number of entities."""
        return self._inner.num_entities

    @property
    def num_relations(self) -> int:
        """Number of relations."""
        return self._inner.num_relations

    @property
    def head_probability(self) -> np.ndarray:
        """float64 ``[num_relations]``: Bernoulli probability of replacing the head,
        ``tph / (tph + hpt)`` per relation (NaN for a relation without known triples)."""
        return self._inner.head_probability()

    def known(self, triples: Any, side: Literal["head", "tail"]) -> tuple[np.ndarray, np.ndarray]:
        """The known entities completing each triple on ``side``, as CSR ``(offsets, ids)``.

        The tails of ``(h, r, ?)`` (or heads of ``(?, r, t)``) among the known triples, sorted; the
        triple's own entity is among them when it is known. These are the candidates a filtered
        ranking evaluation skips (build a corruptor over all splits for that).

        Examples
        --------
        >>> import hardneg
        >>> c = hardneg.TripleCorruptor([[0, 0, 1], [0, 0, 2]], num_entities=4, num_relations=1)
        >>> offsets, ids = c.known([[0, 0, 3], [1, 0, 2]], "tail")
        >>> offsets.tolist(), ids.tolist()
        ([0, 2, 2], [1, 2])
        """
        if side not in ("head", "tail"):
            raise ParameterError(f"side must be 'head' or 'tail', got {side!r}")
        return self._inner.known(_triples(triples), side)

    def corrupt(self, triples: Any, num_negatives: int, epoch: int = 0, *, offset: int = 0, threads: int | None = None) -> np.ndarray:
        """Corrupted copies of each triple.

        Parameters
        ----------
        triples : int array (B, 3)
            Triples to corrupt (usually a training batch).
        num_negatives : int
            Corruptions per triple.
        epoch : int, default 0
            A new epoch draws new corruptions for the same rows.
        offset : int, default 0
            Global position of row 0: row ``i`` draws from the stream ``(seed, epoch, offset +
            i)``. Pass a batch's start when corrupting batch by batch.
        threads : int, optional
            Worker threads (default: every core); the result does not depend on it.

        Returns
        -------
        ndarray of int64, shape (B, num_negatives, 3)
            ``(head, relation, tail)``: the relation kept, one entity replaced, never the triple
            itself and (``filtered``) never a known triple.

        Raises
        ------
        IdOutOfRangeError
            An entity or relation id out of range.
        ParameterError
            ``strategy="bernoulli"`` and a relation without known triples, or a triple that has no
            allowed corruption at all.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> known = np.array([[0, 0, 1], [2, 0, 1]])
        >>> c = hardneg.TripleCorruptor(known, 4, 1, mode="head", seed=0)
        >>> heads = c.corrupt(known[:1], 8)[0, :, 0]
        >>> sorted(set(heads.tolist()))   # 0 and 2 are known heads of (?, 0, 1)
        [1, 3]
        """
        t = _triples(triples)
        return self._inner.corrupt(
            t, as_count(num_negatives, "num_negatives"), seed=self.seed, epoch=as_count(epoch, "epoch", 0),
            offset=as_count(offset, "offset", 0), threads=as_threads(threads),
        )

    def hard(
        self,
        triples: Any,
        num_negatives: int,
        entity_embeddings: Any,
        *,
        head_queries: Any = None,
        tail_queries: Any = None,
        false_negative_margin: float | None = None,
        epoch: int = 0,
        offset: int = 0,
        threads: int | None = None,
    ) -> np.ndarray:
        """The highest-scoring allowed corruptions under the model's current embeddings.

        One side per triple is drawn as in :meth:`corrupt` (mode / Bernoulli); every allowed
        entity ``e`` of that side is scored ``query . entity_embeddings[e]`` by hardneg's exact
        search (known triples excluded when ``filtered``), and the best ``num_negatives`` are
        kept. With ``false_negative_margin=m``, candidates scoring above ``true score - m`` are
        dropped first: the hardest corruptions are the likeliest unlabelled true triples (the
        concern of HaSa, Zhang et al. 2024).

        Parameters
        ----------
        triples : int array (B, 3)
        num_negatives : int
        entity_embeddings : array_like (num_entities, d)
        head_queries, tail_queries : array_like (B, d)
            Query vector per triple for replacing its head / tail, such that the model's score is
            the inner product with the candidate's embedding: DistMult ``r * t`` / ``h * r``;
            TransE (squared L2) ``[2 (t - r), -1]`` / ``[2 (h + r), -1]`` against entity rows
            ``[e, |e|^2]``. The ones the mode can use are required.
        false_negative_margin : float, optional
            Keep only candidates with ``score + margin <= true score``.
        epoch, offset, threads
            As in :meth:`corrupt` (they drive the side draws).

        Returns
        -------
        ndarray of int64, shape (B, num_negatives, 3), each row by descending score.

        Raises
        ------
        NonFiniteError
            NaN or infinity in an embedding or query.
        ParameterError
            Fewer than ``num_negatives`` allowed candidates pass the margin for some triple.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> c = hardneg.TripleCorruptor([[0, 0, 1], [0, 0, 2]], 6, 1, mode="tail")
        >>> ent = np.arange(6, dtype=np.float32)[:, None]      # 1-d entities
        >>> q = np.ones((1, 1), np.float32)                     # score of tail e = e
        >>> c.hard([[0, 0, 1]], 2, ent, tail_queries=q)[0, :, 2].tolist()
        [5, 4]
        >>> c.hard([[0, 0, 5]], 2, ent, tail_queries=q, false_negative_margin=1.5)[0, :, 2].tolist()
        [3, 0]
        """
        t = _triples(triples)
        ent = as_matrix(entity_embeddings, "entity_embeddings")
        if ent.shape[0] != self.num_entities:
            raise ShapeError(f"entity_embeddings has {ent.shape[0]} rows but there are {self.num_entities} entities")
        hq = tq = None
        for name, q in (("head_queries", head_queries), ("tail_queries", tail_queries)):
            if q is None:
                continue
            m = as_matrix(q, name)
            if m.shape != (t.shape[0], ent.shape[1]):
                raise ShapeError(f"{name} must have shape ({t.shape[0]}, {ent.shape[1]}) (one query per triple), got {m.shape}")
            if name == "head_queries":
                hq = m
            else:
                tq = m
        margin = None
        if false_negative_margin is not None:
            try:
                margin = float(false_negative_margin)
            except (TypeError, ValueError):
                raise ParameterError(f"false_negative_margin must be a number, got {false_negative_margin!r}") from None
        return self._inner.hard(
            t, as_count(num_negatives, "num_negatives"), ent, head_queries=hq, tail_queries=tq,
            false_negative_margin=margin, seed=self.seed, epoch=as_count(epoch, "epoch", 0),
            offset=as_count(offset, "offset", 0), threads=as_threads(threads),
        )
