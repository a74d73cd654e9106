"""In-batch sampled softmax with the logQ correction, and the streaming item-frequency estimate it needs.

With in-batch negatives, popular items appear in many batches and are over-used as negatives: the
softmax over the batch estimates the full softmax with a bias towards them. Subtracting the log of
each item's sampling probability from its logit corrects it (Bengio & Senécal 2008; Yi et al. 2019,
"Sampling-bias-corrected neural modeling for large corpus item recommendations"):

    logit_ij = s(q_i, v_j) / temperature - log q_j

* :class:`ItemFrequencyEstimator`: ``q_j`` estimated from the stream of training batches, as Yi et
  al.'s streaming frequency estimation: for every item seen at step ``t``, the interval since its
  last sighting is averaged, ``B <- (1 - alpha) B + alpha (t - A)``, ``A <- t``, and
  ``q = 1 / B`` (the probability that the item is in a batch). Dense ids use one slot per item;
  arbitrary ids are hashed into ``num_buckets`` slots by several hash functions, and the largest
  interval is kept (collisions only shorten intervals).
* :func:`sampled_softmax_loss`: the corrected in-batch softmax; duplicates of a row's positive item
  elsewhere in the batch are masked; shared extra negatives (mixed negative sampling, e.g. uniform
  draws with ``log q`` from :attr:`hardneg.InteractionSampler.item_probabilities`) are optional.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._arrays import as_count
from ..errors import DTypeError, ParameterError, ShapeError
from ._common import (
    NEG_INF,
    check_embeddings,
    check_float,
    check_ids,
    check_reduction,
    check_similarity,
    check_temperature,
    embed_prep,
    fp32_context,
    reduce,
)
from .pairwise import _check_outcome

__all__ = ["ItemFrequencyEstimator", "SampledSoftmaxLoss", "sampled_softmax_loss"]

# Multiply-shift hashing constants (odd 64-bit multipliers); hash k uses _MULTIPLIERS[k].
_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93)


def _signed64(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


class ItemFrequencyEstimator(nn.Module):
    """Streaming estimate of each item's probability of appearing in a training batch.

    Parameters
    ----------
    num_items : int, optional
        Dense item ids ``0..num_items``: one slot per item, no collisions.
    num_buckets : int, optional
        Instead of ``num_items``: any int64 ids, hashed into ``num_buckets`` slots (a power of two)
        by ``num_hashes`` multiply-shift hash functions.
    num_hashes : int, default 2
        Hash functions with ``num_buckets`` (at most 4); the estimate keeps the largest interval.
    alpha : float, default 0.01
        Learning rate of the interval average (Yi et al. use 0.01-0.1).

    The state (last step and average interval per slot, the step counter) is kept in buffers: it
    moves with ``.to(device)`` and is saved in ``state_dict()``. Items appearing several times in one
    batch count once for that step.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import ItemFrequencyEstimator
    >>> est = ItemFrequencyEstimator(num_items=4, alpha=0.5)
    >>> for step in range(20):                    # item 0 in every batch, item 1 in every other one
    ...     est.update(torch.tensor([0, 1]) if step % 2 == 0 else torch.tensor([0, 2, 0]))
    >>> est.probabilities(torch.tensor([0, 1])).round(decimals=2).tolist()
    [1.0, 0.5]
    """

    last_step: torch.Tensor
    interval: torch.Tensor
    step: torch.Tensor

    def __init__(
        self,
        num_items: Optional[int] = None,
        *,
        num_buckets: Optional[int] = None,
        num_hashes: int = 2,
        alpha: float = 0.01,
    ) -> None:
        super().__init__()
        if (num_items is None) == (num_buckets is None):
            raise ParameterError("give exactly one of num_items (dense ids 0..num_items) or num_buckets (hashed ids)")
        self.alpha = check_float(alpha, "alpha")
        if not 0.0 < self.alpha <= 1.0:
            raise ParameterError(f"alpha must be in (0, 1], got {alpha!r}")
        if num_items is not None:
            size, hashes, self.hashed = as_count(num_items, "num_items"), 1, False
        else:
            size = as_count(num_buckets, "num_buckets")
            if size & (size - 1):
                raise ParameterError(f"num_buckets must be a power of two, got {size}")
            hashes = as_count(num_hashes, "num_hashes")
            if hashes > len(_MULTIPLIERS):
                raise ParameterError(f"num_hashes must be at most {len(_MULTIPLIERS)}, got {hashes}")
            self.hashed = True
        self.size, self.num_hashes = size, hashes
        self.register_buffer("last_step", torch.zeros(hashes, size, dtype=torch.long))
        self.register_buffer("interval", torch.zeros(hashes, size, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def _slots(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``[num_hashes, len(ids)]`` slot of each id under each hash function."""
        if not isinstance(item_ids, torch.Tensor):
            item_ids = torch.as_tensor(item_ids)
        if item_ids.is_floating_point() or item_ids.is_complex() or item_ids.dtype == torch.bool:
            raise DTypeError(f"item_ids must hold integer ids, got {item_ids.dtype}")
        ids = item_ids.reshape(-1).to(device=self.last_step.device, dtype=torch.long)
        if not self.hashed:
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.size):
                from ..errors import IdOutOfRangeError

                raise IdOutOfRangeError(f"item_ids must lie in 0..num_items={self.size}, got ids in {int(ids.min())}..{int(ids.max())}")
            return ids[None, :]
        shift = 64 - int(math.log2(self.size))
        rows = []
        for k in range(self.num_hashes):
            h = ids * _signed64(_MULTIPLIERS[k])  # wraps modulo 2**64
            # the top log2(size) bits: a logical shift of the two's-complement value
            rows.append((h >> shift) & (self.size - 1) if shift < 64 else torch.zeros_like(h))
        return torch.stack(rows)

    @torch.no_grad()
    def update(self, item_ids: torch.Tensor) -> None:
        """Records one training batch (one step): the items in ``item_ids`` (any shape)."""
        slots = self._slots(item_ids)
        self.step += 1
        t = self.step
        for k in range(self.num_hashes):
            s = torch.unique(slots[k])
            gap = (t - self.last_step[k, s]).to(torch.float64)
            self.interval[k, s] = (1.0 - self.alpha) * self.interval[k, s] + self.alpha * gap
            self.last_step[k, s] = t

    @torch.no_grad()
    def probabilities(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Estimated probability that each item is in a batch, ``1 / interval`` clipped to
        ``(0, 1]`` (items never seen get 1: they are about to be seen and must not be boosted)."""
        slots = self._slots(item_ids)
        interval = torch.stack([self.interval[k, slots[k]] for k in range(self.num_hashes)]).amax(dim=0)
        p = 1.0 / interval.clamp(min=1.0)
        return p.reshape(torch.as_tensor(item_ids).shape)

    def log_q(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``log`` of :meth:`probabilities`, float32: the correction :func:`sampled_softmax_loss` takes."""
        return self.probabilities(item_ids).log().float()

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Records the batch, then returns its items' ``log q`` (the usual order in a training step)."""
        self.update(item_ids)
        return self.log_q(item_ids)


def sampled_softmax_loss(
    queries: torch.Tensor,
    items: torch.Tensor,
    log_q: Optional[torch.Tensor] = None,
    *,
    item_ids: Optional[torch.Tensor] = None,
    negatives: Optional[torch.Tensor] = None,
    negative_log_q: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    temperature: float = 0.05,
    similarity: str = "cosine",
    correct_positive: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """In-batch softmax over the batch's items with the logQ correction.

    Row ``i`` (query ``q_i``, positive item ``v_i``) is a cross-entropy over the logits
    ``s(q_i, v_j) / temperature - log q_j`` of every batch item ``j`` (target ``j = i``), followed
    by the shared ``negatives`` if given.

    Parameters
    ----------
    queries, items : Tensor [B, d]
        Query (user) and positive item embeddings.
    log_q : Tensor [B], optional
        Log sampling probability of each batch item (:class:`ItemFrequencyEstimator`); ``None``
        gives the uncorrected in-batch softmax.
    item_ids : Tensor [B], optional
        Item ids: another row holding row ``i``'s item is masked in row ``i`` (it is not a
        negative). ``-1`` = no id.
    negatives : Tensor [M, d], optional
        Extra negatives shared by every row (mixed negative sampling).
    negative_log_q : Tensor [M], optional
        Their log sampling probability (required with ``log_q``: e.g.
        ``log(sampler.item_probabilities[ids] * M)`` for ``M`` draws).
    negative_ids : Tensor [M], optional
        Their item ids: masked in the rows whose positive has that id; ``-1`` = padding (masked).
    temperature : float, default 0.05
    similarity : {"cosine", "dot"}, default "cosine"
    correct_positive : bool, default True
        Subtract ``log q`` from the positive's logit too, as Yi et al. do (the softmax then
        estimates the full softmax); ``False`` corrects the negatives only.
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import sampled_softmax_loss
    >>> q, v = torch.eye(3), torch.eye(3)
    >>> plain = sampled_softmax_loss(q, v, temperature=1.0)
    >>> same_q = torch.log(torch.full((3,), 0.2))            # equal probabilities: nothing to correct
    >>> bool(torch.isclose(sampled_softmax_loss(q, v, same_q, temperature=1.0), plain))
    True
    >>> popular = torch.log(torch.tensor([0.9, 0.1, 0.1]))   # item 0 is in most batches
    >>> rows = sampled_softmax_loss(q, v, popular, temperature=1.0, reduction="none")
    >>> [round(float(x), 3) for x in rows]                  # the popular item's logit is discounted
    [2.031, 0.343, 0.343]
    """
    reduction = check_reduction(reduction)
    similarity = check_similarity(similarity)
    t = check_temperature(temperature)
    q, v, _ = check_embeddings(queries, items, None, names=("queries", "items", "negatives"))
    B, dev = q.shape[0], q.device
    lq = _check_vector(log_q, "log_q", B, dev)
    ids = check_ids(item_ids, "item_ids", (B,), dev)
    extra = extra_lq = extra_ids = None
    if negatives is not None:
        if not isinstance(negatives, torch.Tensor) or negatives.dim() != 2 or negatives.shape[1] != q.shape[1]:
            raise ShapeError(f"negatives must be a [M, d={q.shape[1]}] tensor shared by every row, got {getattr(negatives, 'shape', type(negatives))}")
        extra = negatives.to(dev)
        M = extra.shape[0]
        extra_lq = _check_vector(negative_log_q, "negative_log_q", M, dev)
        if (lq is None) != (extra_lq is None):
            raise ParameterError("give log_q and negative_log_q together (both corrected) or neither")
        extra_ids = check_ids(negative_ids, "negative_ids", (M,), dev)
    elif negative_log_q is not None or negative_ids is not None:
        raise ParameterError("negative_log_q / negative_ids were given without negatives")
    with fp32_context(q):
        qe, ve = embed_prep(q, similarity), embed_prep(v, similarity)
        cands = ve if extra is None else torch.cat([ve, embed_prep(extra, similarity)])
        logits = (qe @ cands.T) / t
        if lq is not None:
            correction = lq if extra_lq is None else torch.cat([lq, extra_lq])
            bias = correction.to(logits.dtype)[None, :].expand(B, -1).clone()
            if not correct_positive:
                bias.diagonal().zero_()
            logits = logits - bias
        mask = torch.zeros_like(logits, dtype=torch.bool)
        if ids is not None:
            cand_ids = ids if extra_ids is None else torch.cat([ids, extra_ids])
            mask |= (cand_ids[None, :] == ids[:, None]) & (ids[:, None] != -1)
        if extra_ids is not None:
            mask[:, B:] |= (extra_ids == -1)[None, :]
        mask.diagonal().fill_(False)
        logits = logits.masked_fill(mask, NEG_INF)
        target = torch.arange(B, device=dev)
        row = F.cross_entropy(logits, target, reduction="none")
        out = reduce(row, reduction)
    empty = ((~mask).sum(dim=1) <= 1).sum()
    pad = None if extra_ids is None else (extra_ids == -1)
    inputs = [("queries", q, None), ("items", v, None)] + ([("negatives", extra, pad)] if extra is not None else [])
    _check_outcome(out, empty, B, inputs, "sampled_softmax_loss")
    return out


def _check_vector(x: Optional[torch.Tensor], name: str, n: int, device: torch.device) -> Optional[torch.Tensor]:
    if x is None:
        return None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor of log probabilities, got {getattr(x, 'dtype', type(x))}")
    if tuple(x.shape) != (n,):
        raise ShapeError(f"{name} must have shape ({n},), one value per item, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        from ..errors import NonFiniteError

        raise NonFiniteError(f"{name} holds NaN or Inf: log probabilities must be finite (q > 0)")
    return x.to(device)


class SampledSoftmaxLoss(nn.Module):
    """:func:`sampled_softmax_loss` with an optional :class:`ItemFrequencyEstimator` that is updated
    with every training batch and supplies ``log_q``.

    Parameters
    ----------
    estimator : ItemFrequencyEstimator, optional
        Updated with ``item_ids`` on every call in training mode (``self.training``); with no
        estimator, pass ``log_q`` to the call (or nothing: uncorrected in-batch softmax).
    temperature, similarity, correct_positive, reduction
        As in :func:`sampled_softmax_loss`.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import ItemFrequencyEstimator, SampledSoftmaxLoss
    >>> loss_fn = SampledSoftmaxLoss(ItemFrequencyEstimator(num_items=100))
    >>> ids = torch.tensor([3, 7, 3, 42])               # item 3 twice: masked as each other's negative
    >>> loss = loss_fn(torch.randn(4, 16), torch.randn(4, 16), item_ids=ids)
    >>> int(loss_fn.estimator.step), loss.shape
    (1, torch.Size([]))
    """

    def __init__(
        self,
        estimator: Optional[ItemFrequencyEstimator] = None,
        *,
        temperature: float = 0.05,
        similarity: str = "cosine",
        correct_positive: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.estimator = estimator
        self.temperature = check_temperature(temperature)
        self.similarity = check_similarity(similarity)
        self.correct_positive = bool(correct_positive)
        self.reduction = check_reduction(reduction)

    def forward(
        self,
        queries: torch.Tensor,
        items: torch.Tensor,
        *,
        item_ids: Optional[torch.Tensor] = None,
        log_q: Optional[torch.Tensor] = None,
        negatives: Optional[torch.Tensor] = None,
        negative_log_q: Optional[torch.Tensor] = None,
        negative_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if self.estimator is not None:
            if log_q is not None:
                raise ParameterError("this loss estimates log_q itself (it has an estimator); do not pass log_q")
            if item_ids is None:
                raise ParameterError("the frequency estimator needs item_ids (one id per row)")
            if self.training:
                self.estimator.update(item_ids)
            log_q = self.estimator.log_q(item_ids).to(queries.device)
        return sampled_softmax_loss(
            queries, items, log_q, item_ids=item_ids, negatives=negatives, negative_log_q=negative_log_q,
            negative_ids=negative_ids, temperature=self.temperature, similarity=self.similarity,
            correct_positive=self.correct_positive, reduction=self.reduction,
        )

