"""SigLIP pairwise sigmoid loss (Zhai et al. 2023) on in-batch and mined negatives."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from ._common import candidate_mask_bias, check_float, check_outcome, check_reduction, fp32_context, reduce
from .infonce import PerRow, prepare

__all__ = ["SigLIPLoss", "siglip_loss"]


def siglip_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: Optional[torch.Tensor] = None,
    *,
    logit_scale: Union[float, torch.Tensor] = math.log(10.0),
    logit_bias: Union[float, torch.Tensor] = -10.0,
    in_batch: bool = True,
    positive_ids: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    gather: bool = False,
    group: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``L_i = -sum_c log sigmoid(z_ic * (exp(logit_scale) * s_ic + logit_bias))`` on unit vectors.

    ``z_ic = +1`` for row ``i``'s positive (and, with ids, for every candidate with the same id as the
    positive: several positives are natural for a sigmoid loss), ``-1`` for every other candidate
    (the candidates of :class:`~hardneg.losses.InfoNCE`; a negative with id ``-1`` is padding and
    forms no pair). The loss is normalised per anchor:
    ``mean`` averages ``L_i`` over the (local) rows, as in big_vision and open_clip.

    Parameters
    ----------
    logit_scale : float or scalar tensor, default log(10)
        Log of the temperature multiplier ``t`` (``t = exp(logit_scale)``; SigLIP initialises t=10).
    logit_bias : float or scalar tensor, default -10
        The bias ``b`` (SigLIP initialises -10).

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import siglip_loss
    >>> q = torch.eye(3)
    >>> bool(siglip_loss(q, q) < siglip_loss(q, q.roll(1, 0)))
    True
    """
    reduction = check_reduction(reduction)
    with fp32_context(queries):
        prep = prepare(
            queries, positives, negatives, positive_ids=positive_ids, negative_ids=negative_ids, symmetric=False,
            in_batch=in_batch, similarity="cosine", gather=gather, group=group,
        )
        d = prep.directions[0]
        if isinstance(d, PerRow):
            sim = d.sim
            targets = torch.zeros(sim.shape[0], dtype=torch.long, device=sim.device)
        else:
            sim = d.rows @ d.cands.T
            targets = d.targets
        same, _ = candidate_mask_bias(sim, None, row_ids=d.row_ids, cand_ids=d.cand_ids, cand_has_id=d.cand_has_id)
        z = -torch.ones_like(sim)
        if same is not None:
            z = z.masked_fill(same, 1.0)
        z.scatter_(1, targets[:, None], 1.0)
        t = logit_scale.float().exp() if isinstance(logit_scale, torch.Tensor) else math.exp(check_float(logit_scale, "logit_scale"))
        b = logit_bias.float() if isinstance(logit_bias, torch.Tensor) else check_float(logit_bias, "logit_bias")
        logits = sim * t + b
        terms = -F.logsigmoid(z * logits)
        if d.cand_pad is not None:  # padding (negative id -1) is no pair at all
            pad = d.cand_pad[None, :] if d.cand_pad.dim() == 1 else d.cand_pad
            terms = terms.masked_fill(pad, 0.0)
        loss = terms.sum(dim=1)
        check_outcome(loss, None, prep.batch, prep.inputs, "siglip_loss")
        return reduce(loss, reduction)


class SigLIPLoss(nn.Module):
    """SigLIP sigmoid loss with a learnable temperature and bias (initialised ``t=10``, ``b=-10``).

    The parameters are ``logit_scale = log t`` and ``logit_bias``; ``max_temperature`` clamps ``t``
    in the forward pass (open_clip clamps ``log t`` to ``[0, log 100]`` after each step).
    See :func:`siglip_loss` for the formula.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import SigLIPLoss
    >>> loss_fn = SigLIPLoss()
    >>> round(float(loss_fn.logit_scale.detach().exp()), 4), float(loss_fn.logit_bias.detach())
    (10.0, -10.0)
    >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3, 8))
    >>> loss.detach().shape, loss.backward(), loss_fn.logit_bias.grad is not None
    (torch.Size([]), None, True)
    """

    def __init__(
        self,
        temperature_init: float = 10.0,
        bias_init: float = -10.0,
        *,
        learnable: bool = True,
        max_temperature: Optional[float] = 100.0,
        in_batch: bool = True,
        gather: bool = False,
        group: Any = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        t0 = check_float(temperature_init, "temperature_init")
        if t0 <= 0:
            raise ParameterError(f"temperature_init is the multiplier t and must be > 0 (SigLIP: 10), got {temperature_init!r}")
        scale = torch.tensor(math.log(t0))
        bias = torch.tensor(check_float(bias_init, "bias_init"))
        if learnable:
            self.logit_scale = nn.Parameter(scale)
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer("logit_scale", scale)
            self.register_buffer("logit_bias", bias)
        if max_temperature is not None and check_float(max_temperature, "max_temperature") <= 0:
            raise ParameterError(f"max_temperature must be > 0 or None, got {max_temperature!r}")
        self.max_temperature = max_temperature
        self.in_batch, self.gather, self.group = bool(in_batch), bool(gather), group
        self.reduction = check_reduction(reduction)

    def forward(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: Optional[torch.Tensor] = None,
        *,
        positive_ids: Optional[torch.Tensor] = None,
        negative_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        scale = self.logit_scale
        if self.max_temperature is not None:
            scale = scale.clamp(max=math.log(self.max_temperature))
        return siglip_loss(
            queries, positives, negatives, logit_scale=scale.to(queries.device), logit_bias=self.logit_bias.to(queries.device),
            in_batch=self.in_batch, positive_ids=positive_ids, negative_ids=negative_ids, gather=self.gather,
            group=self.group, reduction=self.reduction,
        )
