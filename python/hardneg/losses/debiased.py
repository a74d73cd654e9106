"""InfoNCE variants that change the denominator: decoupled (DCL), debiased (Chuang et al.) and HCL.

All three use the candidates of :class:`~hardneg.losses.InfoNCE` (in-batch positives and mined
negatives, optional duplicate-id and false-negative-margin masks, symmetric and gathered variants)
and work in log space, so they are safe at embedding temperatures (0.01-0.05) in any dtype, where
the reference implementations (which exponentiate ``s / t``) overflow. Let ``x_ic = s_ic / t``,
``pos_i = x_i+`` and ``N_i`` the number of (unmasked) negatives of row ``i``:

* decoupled (Yeh et al. 2022): ``L_i = LSE_{c != +}(x_ic) - pos_i`` (no positive in the denominator).
* debiased (Chuang et al. 2020, ``tau_plus``) and hard-negative (Robinson et al. 2021, ``beta``):
  ``R_i = N_i * sum_c e^{(1 + beta) x_ic} / sum_c e^{beta x_ic}`` (``R_i = sum_c e^{x_ic}`` when
  ``beta = 0``), ``Ng_i = max((R_i - tau_plus * N_i * e^{pos_i}) / (1 - tau_plus), N_i * e^{-1/t})``
  and ``L_i = log(e^{pos_i} + Ng_i) - pos_i``. As in ``joshr17/HCL`` the importance weights
  ``e^{beta x}`` are not detached and ``beta`` multiplies ``s / t``. The floor ``e^{-1/t}`` is the
  smallest cosine logit, so these two losses always use cosine similarity.

A row whose negatives are all masked or padding contributes 0 (decoupled and debiased losses are
undefined without negatives) and triggers a ``RuntimeWarning`` with the count. Ids and padding
(``-1``) follow :class:`~hardneg.losses.InfoNCE`.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..errors import ParameterError
from ._common import (
    NEG_INF,
    check_float,
    check_optional_float,
    check_outcome,
    check_reduction,
    check_similarity,
    check_temperature,
    fp32_context,
    reduce,
)
from .infonce import direction_logits, prepare

__all__ = [
    "DecoupledInfoNCE",
    "decoupled_info_nce",
    "DebiasedInfoNCE",
    "debiased_info_nce",
    "HardNegativeInfoNCE",
    "hard_negative_info_nce",
]


def _negatives(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pos [B], negative logits with the target and masked entries at -inf, has_neg [B],
    finite [B, N])``; ``finite`` marks the real negatives."""
    pos = logits.gather(1, targets[:, None])[:, 0]
    neg = logits.scatter(1, targets[:, None], NEG_INF)
    finite = torch.isfinite(neg)
    has = finite.any(dim=1)
    # rows without any negative get zeros so that the log-sum-exp (and its gradient) stays finite
    neg = torch.where(has[:, None], neg, torch.zeros_like(neg))
    return pos, neg, has, finite


def _row_losses(
    queries: Any, positives: Any, negatives: Any, positive_ids: Any, negative_ids: Any, *, temperature: float,
    symmetric: bool, in_batch: bool, false_negative_margin: Optional[float], gather: bool, group: Any,
    similarity: str, row_loss: Any, what: str,
) -> torch.Tensor:
    with fp32_context(queries):
        prep = prepare(
            queries, positives, negatives, positive_ids=positive_ids, negative_ids=negative_ids,
            symmetric=symmetric, in_batch=in_batch, similarity=similarity, gather=gather, group=group,
        )
        scale = 1.0 / temperature
        losses, lonely = [], 0
        for d in prep.directions:
            logits, targets, alone = direction_logits(d, scale, false_negative_margin, 0.0)
            losses.append(row_loss(logits, targets, scale))
            lonely = lonely + alone
        loss = losses[0] if len(losses) == 1 else 0.5 * (losses[0] + losses[1])
        check_outcome(loss, lonely, prep.batch, prep.inputs, what)
        return loss


def _decoupled_rows(logits: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
    pos, neg, has, _ = _negatives(logits, targets)
    loss = torch.logsumexp(neg, dim=1) - pos
    return torch.where(has, loss, torch.zeros_like(loss))


def _debiased_rows(tau_plus: float, beta: float) -> Any:
    def rows(logits: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
        pos, neg, has, finite = _negatives(logits, targets)
        count = finite.sum(dim=1).clamp(min=1).to(logits.dtype)
        log_n = torch.log(count)
        if beta == 0.0:
            log_r = torch.logsumexp(neg, dim=1)
        else:
            # masked entries of `neg` are -inf in rows with negatives, so they drop out here too
            log_r = log_n + torch.logsumexp((1.0 + beta) * neg, dim=1) - torch.logsumexp(beta * neg, dim=1)
        if tau_plus > 0.0:
            # log(R - tau_plus * N * e^pos) = log R + log1p(-exp(diff)), defined when diff < 0
            diff = math.log(tau_plus) + log_n + pos - log_r
            ok = diff < 0
            safe = torch.where(ok, diff, torch.full_like(diff, -1.0))
            raw = torch.where(ok, log_r + torch.log1p(-torch.exp(safe)), torch.full_like(diff, NEG_INF))
            raw = raw - math.log1p(-tau_plus)
        else:
            raw = log_r
        floor = log_n - scale
        log_ng = torch.maximum(raw, floor)
        loss = torch.logaddexp(pos, log_ng) - pos
        return torch.where(has, loss, torch.zeros_like(loss))

    return rows


def _check_tau_plus(tau_plus: Any) -> float:
    t = check_float(tau_plus, "tau_plus")
    if not 0.0 <= t < 1.0:
        raise ParameterError(f"tau_plus is a class prior and must be in [0, 1), got {tau_plus!r}")
    return t


def decoupled_info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: Optional[torch.Tensor] = None,
    *,
    temperature: float = 0.05,
    symmetric: bool = False,
    in_batch: bool = True,
    positive_ids: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    false_negative_margin: Optional[float] = None,
    similarity: str = "cosine",
    gather: bool = False,
    group: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Decoupled contrastive loss (DCL): InfoNCE without the positive in the denominator.

    Parameters are those of :func:`~hardneg.losses.info_nce` (no hardness weighting).

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import decoupled_info_nce, info_nce
    >>> g = torch.Generator().manual_seed(0)
    >>> q, p = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    >>> bool(decoupled_info_nce(q, p) < info_nce(q, p))   # a smaller denominator
    True
    """
    t = check_temperature(temperature, similarity=check_similarity(similarity))
    margin = check_optional_float(false_negative_margin, "false_negative_margin")
    reduction = check_reduction(reduction)
    loss = _row_losses(
        queries, positives, negatives, positive_ids, negative_ids, temperature=t, symmetric=symmetric,
        in_batch=in_batch, false_negative_margin=margin, gather=gather, group=group, similarity=similarity,
        row_loss=_decoupled_rows, what="decoupled_info_nce",
    )
    return reduce(loss, reduction)


def hard_negative_info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: Optional[torch.Tensor] = None,
    *,
    temperature: float = 0.05,
    tau_plus: float = 0.1,
    beta: float = 1.0,
    symmetric: bool = False,
    in_batch: bool = True,
    positive_ids: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    false_negative_margin: Optional[float] = None,
    gather: bool = False,
    group: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hard-negative contrastive loss (HCL, Robinson et al. 2021): importance-weighted, debiased.

    ``tau_plus`` is the class prior (probability that a "negative" is a false negative), ``beta``
    the concentration on hard negatives (on ``s / t``). ``beta=0`` gives :func:`debiased_info_nce`;
    ``beta=0, tau_plus=0`` gives InfoNCE (unless the floor ``N e^{-1/t}`` is active).

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import hard_negative_info_nce, info_nce
    >>> g = torch.Generator().manual_seed(0)
    >>> q, p = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    >>> a = hard_negative_info_nce(q, p, temperature=0.5, tau_plus=0.0, beta=0.0)
    >>> bool(torch.allclose(a, info_nce(q, p, temperature=0.5)))
    True
    """
    t = check_temperature(temperature)
    tp = _check_tau_plus(tau_plus)
    b = check_float(beta, "beta")
    margin = check_optional_float(false_negative_margin, "false_negative_margin")
    reduction = check_reduction(reduction)
    loss = _row_losses(
        queries, positives, negatives, positive_ids, negative_ids, temperature=t, symmetric=symmetric,
        in_batch=in_batch, false_negative_margin=margin, gather=gather, group=group, similarity="cosine",
        row_loss=_debiased_rows(tp, b), what="hard_negative_info_nce" if b else "debiased_info_nce",
    )
    return reduce(loss, reduction)


def debiased_info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: Optional[torch.Tensor] = None,
    *,
    temperature: float = 0.05,
    tau_plus: float = 0.1,
    symmetric: bool = False,
    in_batch: bool = True,
    positive_ids: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    false_negative_margin: Optional[float] = None,
    gather: bool = False,
    group: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Debiased contrastive loss (Chuang et al. 2020): corrects the negatives for false negatives.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import debiased_info_nce
    >>> g = torch.Generator().manual_seed(0)
    >>> q, p = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    >>> bool(torch.isfinite(debiased_info_nce(q, p, temperature=0.01, tau_plus=0.1)))
    True
    """
    return hard_negative_info_nce(
        queries, positives, negatives, temperature=temperature, tau_plus=tau_plus, beta=0.0, symmetric=symmetric,
        in_batch=in_batch, positive_ids=positive_ids, negative_ids=negative_ids,
        false_negative_margin=false_negative_margin, gather=gather, group=group, reduction=reduction,
    )


class _Base(nn.Module):
    def __init__(self, temperature: float, symmetric: bool, in_batch: bool, false_negative_margin: Optional[float],
                 gather: bool, group: Any, reduction: str, similarity: str = "cosine") -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        self.temperature = check_temperature(temperature, similarity=self.similarity)
        self.false_negative_margin = check_optional_float(false_negative_margin, "false_negative_margin")
        self.symmetric, self.in_batch, self.gather, self.group = bool(symmetric), bool(in_batch), bool(gather), group
        self.reduction = check_reduction(reduction)

    def _kw(self) -> dict[str, Any]:
        return dict(temperature=self.temperature, symmetric=self.symmetric, in_batch=self.in_batch,
                    false_negative_margin=self.false_negative_margin, gather=self.gather, group=self.group,
                    reduction=self.reduction)


class DecoupledInfoNCE(_Base):
    """Module form of :func:`decoupled_info_nce` (DCL, Yeh et al. 2022).

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import DecoupledInfoNCE
    >>> q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
    >>> DecoupledInfoNCE(temperature=0.1)(q, p, n).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.05, *, symmetric: bool = False, in_batch: bool = True,
                 false_negative_margin: Optional[float] = None, similarity: str = "cosine", gather: bool = False,
                 group: Any = None, reduction: str = "mean") -> None:
        super().__init__(temperature, symmetric, in_batch, false_negative_margin, gather, group, reduction, similarity)

    def forward(self, queries: torch.Tensor, positives: torch.Tensor, negatives: Optional[torch.Tensor] = None, *,
                positive_ids: Optional[torch.Tensor] = None, negative_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return decoupled_info_nce(queries, positives, negatives, positive_ids=positive_ids, negative_ids=negative_ids,
                                  similarity=self.similarity, **self._kw())


class HardNegativeInfoNCE(_Base):
    """Module form of :func:`hard_negative_info_nce` (HCL, Robinson et al. 2021).

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import HardNegativeInfoNCE
    >>> q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
    >>> HardNegativeInfoNCE(temperature=0.1, tau_plus=0.1, beta=1.0)(q, p, n).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.05, *, tau_plus: float = 0.1, beta: float = 1.0, symmetric: bool = False,
                 in_batch: bool = True, false_negative_margin: Optional[float] = None, gather: bool = False,
                 group: Any = None, reduction: str = "mean") -> None:
        super().__init__(temperature, symmetric, in_batch, false_negative_margin, gather, group, reduction)
        self.tau_plus = _check_tau_plus(tau_plus)
        self.beta = check_float(beta, "beta")

    def forward(self, queries: torch.Tensor, positives: torch.Tensor, negatives: Optional[torch.Tensor] = None, *,
                positive_ids: Optional[torch.Tensor] = None, negative_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return hard_negative_info_nce(queries, positives, negatives, positive_ids=positive_ids,
                                      negative_ids=negative_ids, tau_plus=self.tau_plus, beta=self.beta, **self._kw())


class DebiasedInfoNCE(HardNegativeInfoNCE):
    """Module form of :func:`debiased_info_nce` (Chuang et al. 2020): HCL with ``beta=0``.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import DebiasedInfoNCE
    >>> q, p = torch.randn(4, 8), torch.randn(4, 8)
    >>> DebiasedInfoNCE(temperature=0.1, tau_plus=0.1)(q, p).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.05, *, tau_plus: float = 0.1, symmetric: bool = False,
                 in_batch: bool = True, false_negative_margin: Optional[float] = None, gather: bool = False,
                 group: Any = None, reduction: str = "mean") -> None:
        super().__init__(temperature, tau_plus=tau_plus, beta=0.0, symmetric=symmetric, in_batch=in_batch,
                         false_negative_margin=false_negative_margin, gather=gather, group=group, reduction=reduction)
