"""Negative sampling for implicit-feedback recommendation: :class:`InteractionSampler`.

Every item a user never interacted with is a candidate negative (BPR, SimpleX, sampled softmax).
:class:`InteractionSampler` draws them in Rust, in parallel, exactly: a returned item is never one
of the user's items, uniform draws are uniform over the user's free items, popularity draws follow
``count**alpha`` restricted to them, and every row is reproducible from ``(seed, epoch, offset +
row)`` whatever the thread count.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_ids, as_matrix, as_seed, as_threads, similarity_name
from .errors import ParameterError, ShapeError

__all__ = ["InteractionSampler"]

Strategy = Literal["uniform", "popularity"]


class InteractionSampler:
    """Draws items that a user never interacted with.

    Parameters
    ----------
    interactions : int array (N, 2) of ``(user, item)`` pairs, or a CSR matrix
        Implicit feedback. A ``scipy.sparse`` matrix (any format with ``tocsr()``, or anything
        with ``indptr`` / ``indices``) has one row per user; every stored entry is an interaction
        (values are ignored). Repeated pairs count once.
    num_items : int
        Number of items; item ids are ``0..num_items``.
    strategy : {"uniform", "popularity"}, default "uniform"
        ``"uniform"``: every item the user never interacted with is equally likely.
        ``"popularity"``: item ``i`` with probability proportional to ``count_i ** alpha``
        (``count_i`` = users who interacted with it) among the user's free items; items nobody
        interacted with are never drawn. Drawn from an alias table; users holding more than half
        the popularity mass are served by an exact inversion instead of redrawing.
    alpha : float, default 0.75
        Popularity exponent (word2vec's 0.75; 1 = proportional to counts, 0 = uniform over
        items with an interaction).
    seed : int, default 0
        Seed of every draw.
    num_users : int, optional
        Number of users (default: the largest user id + 1, or the CSR's rows). Users without
        interactions may be sampled: every item (with some interaction, for popularity) is free.
    threads : int, optional
        Threads used to build the sampler (default: every core).

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> pairs = np.array([[0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [1, 3]])
    >>> sampler = hardneg.InteractionSampler(pairs, num_items=5, seed=7)
    >>> neg = sampler.sample([0, 1, 1], num_negatives=4)
    >>> neg.shape, neg.dtype
    ((3, 4), dtype('int64'))
    >>> sorted(set(neg[1:].ravel().tolist()))  # user 1's only free item
    [4]
    >>> set(neg[0].tolist()) <= {0, 3, 4}
    True
    """

    def __init__(
        self,
        interactions: Any,
        num_items: int,
        *,
        strategy: Strategy = "uniform",
        alpha: float = 0.75,
        seed: int = 0,
        num_users: int | None = None,
        threads: int | None = None,
    ) -> None:
        if strategy not in ("uniform", "popularity"):
            raise ParameterError(f"strategy must be 'uniform' or 'popularity', got {strategy!r}")
        num_items = as_count(num_items, "num_items")
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise ParameterError(f"alpha must be a number, got {alpha!r}") from None
        self.strategy: Strategy = strategy
        self.alpha = alpha
        self.seed = as_seed(seed)
        nthreads = as_threads(threads)
        kw = dict(strategy=strategy, alpha=alpha, threads=nthreads)
        if hasattr(interactions, "tocsr") and not hasattr(interactions, "indptr"):
            interactions = interactions.tocsr()
        if hasattr(interactions, "indptr") and hasattr(interactions, "indices"):
            offsets = as_ids(interactions.indptr, "interactions.indptr")
            items = as_ids(interactions.indices, "interactions.indices")
            rows = len(offsets) - 1
            if num_users is not None and as_count(num_users, "num_users") != rows:
                raise ShapeError(f"the CSR interactions have {rows} rows but num_users={num_users}; give one row per user")
            self._inner = _hardneg.InteractionSampler.from_csr(offsets, items, num_items, **kw)
            return
        pairs = as_ids(interactions, "interactions", ndim=2)
        if pairs.shape[1] != 2:
            raise ShapeError(f"interactions must be (user, item) pairs of shape (N, 2), got {pairs.shape}")
        if num_users is None:
            if pairs.shape[0] == 0:
                raise ShapeError("interactions is empty; give num_users to build a sampler without interactions")
            num_users = max(int(pairs[:, 0].max()) + 1, 1)
        users = np.ascontiguousarray(pairs[:, 0])
        items = np.ascontiguousarray(pairs[:, 1])
        self._inner = _hardneg.InteractionSampler.from_pairs(users, items, as_count(num_users, "num_users"), num_items, **kw)

    def __repr__(self) -> str:
        alpha = f", alpha={self.alpha}" if self.strategy == "popularity" else ""
        return (
            f"InteractionSampler(num_users={self.num_users}, num_items={self.num_items}, "
            f"interactions={self._inner.num_interactions}, strategy={self.strategy!r}{alpha}, seed={self.seed})"
        )

    @property
    def num_users(self) -> int:
        """Number of users."""
        return self._inner.num_users

    @property
    def num_items(self) -> int:
        """Number of items."""
        return self._inner.num_items

    @property
    def item_probabilities(self) -> np.ndarray:
        """float64 ``[num_items]``: each item's probability in one draw before a user's own items
        are excluded (``1 / num_items``, or ``count**alpha / sum``): the proposal ``q`` of a
        logQ correction."""
        return self._inner.probabilities()

    def positives(self) -> tuple[np.ndarray, np.ndarray]:
        """The de-duplicated interactions as CSR ``(offsets, items)`` (int64, items sorted per user).

        Examples
        --------
        >>> import hardneg
        >>> offsets, items = hardneg.InteractionSampler([[1, 2], [0, 1], [1, 2]], num_items=3).positives()
        >>> offsets.tolist(), items.tolist()
        ([0, 1, 2], [1, 2])
        """
        return self._inner.csr()

    def sample(
        self,
        users: Any,
        num_negatives: int,
        epoch: int = 0,
        *,
        replace: bool = True,
        offset: int = 0,
        threads: int | None = None,
    ) -> np.ndarray:
        """Negative items for each user.

        Parameters
        ----------
        users : int array (B,)
            User ids (repeats allowed: one row per training example).
        num_negatives : int
            Negatives per row.
        epoch : int, default 0
            A new epoch draws new negatives for the same rows.
        replace : bool, default True
            ``False``: the items of a row are distinct (then every user needs at least
            ``num_negatives`` free items, else :class:`~hardneg.ParameterError`).
        offset : int, default 0
            Global position of row 0. Row ``i`` draws from the stream ``(seed, epoch, offset +
            i)``: when you sample batch by batch, pass the batch's start so that batches do not
            repeat each other's draws (the result then equals one call over all rows).
        threads : int, optional
            Worker threads (default: every core); the result does not depend on it.

        Returns
        -------
        ndarray of int64, shape (B, num_negatives)
            Items none of which the row's user interacted with.

        Raises
        ------
        IdOutOfRangeError
            A user id outside ``0..num_users``.
        ParameterError
            A user with no free item, or (``replace=False``) fewer than ``num_negatives``.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> pairs = np.array([[0, 0], [0, 1], [1, 2]])
        >>> s = hardneg.InteractionSampler(pairs, num_items=6, seed=1)
        >>> whole = s.sample([0, 1, 0, 1], 3, epoch=2)
        >>> halves = np.vstack([s.sample([0, 1], 3, epoch=2), s.sample([0, 1], 3, epoch=2, offset=2)])
        >>> bool((whole == halves).all())
        True
        >>> row = s.sample([0], 4, replace=False)[0]
        >>> sorted(row.tolist())
        [2, 3, 4, 5]
        """
        u = as_ids(users, "users")
        n = as_count(num_negatives, "num_negatives")
        return self._inner.sample(
            u, n, replace=bool(replace), seed=self.seed, epoch=as_count(epoch, "epoch", 0),
            offset=as_count(offset, "offset", 0), threads=as_threads(threads),
        )

    def hard(
        self,
        users: Any,
        user_embeddings: Any,
        item_embeddings: Any,
        num_negatives: int,
        *,
        pool: int | None = None,
        metric: Literal["dot", "cosine", "ip"] = "dot",
        epoch: int = 0,
        offset: int = 0,
        threads: int | None = None,
    ) -> np.ndarray:
        """Hard negative items: the highest-scoring items each user never interacted with.

        Parameters
        ----------
        users : int array (B,)
        user_embeddings : array_like, shape (B, d)
            One query vector per row (for an embedding table, pass ``table[users]``).
        item_embeddings : array_like, shape (num_items, d)
        num_negatives : int
        pool : int, optional
            ``None``: the exact top ``num_negatives`` over every free item (hardneg's fused
            search with the user's items excluded). An int: dynamic negative sampling (DNS, Zhang
            et al. 2013): draw ``pool`` distinct candidates as ``sample(..., replace=False)``
            does, keep the ``num_negatives`` best scored.
        metric : {"dot", "cosine"}, default "dot"
            The score: inner product, or cosine (``"ip"`` is accepted for ``"dot"``).
        epoch, offset, threads
            As in :meth:`sample` (they only matter with a pool).

        Returns
        -------
        ndarray of int64, shape (B, num_negatives)
            Each row by descending score (ties: lower id).

        Raises
        ------
        NonFiniteError
            NaN or infinity in an embedding.

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> s = hardneg.InteractionSampler(np.array([[0, 4]]), num_items=5)
        >>> items = np.arange(5, dtype=np.float32)[:, None]   # 1-d items: score = user * item
        >>> s.hard([0], np.ones((1, 1), np.float32), items, 2).tolist()
        [[3, 2]]
        >>> s.hard([0], np.ones((1, 1), np.float32), items, 1, pool=4).shape
        (1, 1)
        """
        metric = similarity_name(metric, "metric")
        u = as_ids(users, "users")
        q = as_matrix(user_embeddings, "user_embeddings")
        items = as_matrix(item_embeddings, "item_embeddings")
        if q.shape[0] != u.shape[0]:
            raise ShapeError(f"user_embeddings has {q.shape[0]} rows but there are {u.shape[0]} users; give one row per user")
        if items.shape[0] != self.num_items:
            raise ShapeError(f"item_embeddings has {items.shape[0]} rows but there are {self.num_items} items; give one row per item")
        if q.shape[1] != items.shape[1]:
            raise ShapeError(f"user_embeddings have dimension {q.shape[1]} but item_embeddings {items.shape[1]}; embed both with one model")
        n = as_count(num_negatives, "num_negatives")
        if pool is not None:
            pool = as_count(pool, "pool")
        return self._inner.hard(
            u, q, items, n, pool=pool, metric="ip" if metric == "dot" else metric, seed=self.seed, epoch=as_count(epoch, "epoch", 0),
            offset=as_count(offset, "offset", 0), threads=as_threads(threads),
        )

