"""GISTEmbed: a guide model's similarities mask likely false negatives (Solatorio 2024).

Same blocks and threshold as sentence-transformers ``GISTEmbedLoss``: for anchor ``i`` the
candidates are the (gathered) positives ``AP``, the local anchors ``AA``, the positives ``PP`` and
the (gathered) negatives ``AN``; a candidate is masked when the *guide* scores it above
``g_i - margin`` (absolute) or ``g_i - |g_i| * margin`` (relative), where ``g_i`` is the guide's
similarity of anchor ``i`` and its positive; the true positive is never masked.

The self-similarity gap: sentence-transformers drops the self terms of ``AA`` and ``PP``
(``s(a_i, a_i) = 1``, a logit of ``1 / t = 100``) only through that threshold, so when the guide
scores the pair at ``g_i = 1`` (a duplicate pair) with ``margin=0`` the strict ``>`` keeps them and
the loss is dominated by an anchor matching itself. Here the diagonals are masked explicitly
(``mask_self=True``, the default); ``mask_self=False`` reproduces sentence-transformers exactly.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..errors import DeviceError, ParameterError, ShapeError
from ._common import (
    NEG_INF,
    check_embeddings,
    check_float,
    check_ids,
    check_outcome,
    check_reduction,
    check_temperature,
    embed_prep,
    fp32_context,
    reduce,
    zero_padding,
)
from .distributed import gather_no_grad, gather_with_grad, rank_and_world_size

__all__ = ["GuidedInfoNCE", "guided_info_nce"]


def _check_margin_strategy(margin_strategy: str) -> str:
    if margin_strategy not in ("absolute", "relative"):
        raise ParameterError(f"margin_strategy must be 'absolute' or 'relative', got {margin_strategy!r}")
    return margin_strategy


def _unit(x: torch.Tensor) -> torch.Tensor:
    return embed_prep(x, "cosine")


def guided_info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: Optional[torch.Tensor] = None,
    *,
    guide_queries: torch.Tensor,
    guide_positives: torch.Tensor,
    guide_negatives: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    temperature: float = 0.01,
    margin_strategy: str = "absolute",
    margin: float = 0.0,
    contrast_anchors: bool = True,
    contrast_positives: bool = True,
    mask_self: bool = True,
    gather: bool = False,
    group: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """GISTEmbed loss from model embeddings and precomputed guide embeddings (cosine similarity).

    Parameters
    ----------
    queries, positives : torch.Tensor, shape (B, d)
        Embeddings of the model being trained.
    negatives : torch.Tensor, shape (B, n, d), optional
    guide_queries, guide_positives, guide_negatives : torch.Tensor
        The guide model's embeddings of the same texts (shapes ``(B, g)`` and ``(B, n, g)``; ``g`` may
        differ from ``d``). They are detached.
    negative_ids : torch.Tensor, shape (B, n), optional
        Marks padding: a negative whose id is ``-1`` (a missing mined negative, as in
        :class:`hardneg.Mined`) is masked for every row and its embeddings are ignored.
    temperature : float, default 0.01
    margin_strategy : {"absolute", "relative"}, default "absolute"
    margin : float, default 0.0
    contrast_anchors, contrast_positives : bool, default True
        Add the anchor-anchor and positive-positive blocks.
    mask_self : bool, default True
        Mask the self-similarities of those blocks explicitly (see the module docstring).
    gather : bool, default False
        Gather positives and negatives (and their guide embeddings) from every rank.
    reduction : {"mean", "sum", "none"}, default "mean"

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import guided_info_nce
    >>> g = torch.Generator().manual_seed(0)
    >>> q, p = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    >>> gq, gp = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    >>> loss = guided_info_nce(q, p, guide_queries=gq, guide_positives=gp, margin=0.1)
    >>> bool(torch.isfinite(loss))
    True
    """
    t = check_temperature(temperature)
    _check_margin_strategy(margin_strategy)
    m = check_float(margin, "margin")
    reduction = check_reduction(reduction)
    q, p, n = check_embeddings(queries, positives, negatives)
    gq, gp, gn = check_embeddings(
        guide_queries, guide_positives, guide_negatives,
        names=("guide_queries", "guide_positives", "guide_negatives"),
    )
    if gq.shape[0] != q.shape[0]:
        raise ShapeError(f"guide_queries must have B={q.shape[0]} rows like queries, got {gq.shape[0]}")
    if (n is None) != (gn is None) or (n is not None and gn is not None and gn.shape[1] != n.shape[1]):
        raise ShapeError(
            "guide_negatives must be given exactly when negatives are, with the same number of negatives per row "
            f"(negatives: {None if n is None else tuple(n.shape)}, guide_negatives: {None if gn is None else tuple(gn.shape)})"
        )
    if gq.device != q.device:
        raise DeviceError(f"guide embeddings are on {gq.device} but queries are on {q.device}; move them to one device")
    pad = None
    if negative_ids is not None:
        if n is None:
            raise ParameterError("negative_ids were given without negatives")
        pad = check_ids(negative_ids, "negative_ids", tuple(n.shape[:2]), q.device) < 0
    with fp32_context(q):
        B = q.shape[0]
        a, pu = _unit(q), _unit(p)
        nu = _unit(zero_padding(n, pad)).reshape(-1, n.shape[-1]) if n is not None else None
        with torch.no_grad():
            ga, gpu = _unit(gq.detach()), _unit(gp.detach())
            gnu = _unit(zero_padding(gn.detach(), pad)).reshape(-1, gn.shape[-1]) if gn is not None else None
        rank, world = rank_and_world_size(group) if gather else (0, 1)
        offset = rank * B
        if gather and world > 1:
            p_all, gp_all = gather_with_grad(pu, group), gather_no_grad(gpu, group)
            n_all = gather_with_grad(nu, group) if nu is not None else None
            gn_all = gather_no_grad(gnu, group) if gnu is not None else None
            pad_all = gather_no_grad(pad, group) if pad is not None else None
        else:
            p_all, gp_all, n_all, gn_all, pad_all = pu, gpu, nu, gnu, pad
        rows = torch.arange(B, device=q.device)
        g_pos = (ga * gpu).sum(-1)[:, None]
        thr = g_pos - m if margin_strategy == "absolute" else g_pos - g_pos.abs() * m

        def block(x: torch.Tensor, y: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, self_col: Optional[int],
                  protect: bool, padding: Optional[torch.Tensor] = None) -> torch.Tensor:
            s = x @ y.T
            mask = (gx @ gy.T) > thr
            if padding is not None:
                mask |= padding[None, :]
            if protect:
                mask[rows, offset + rows] = False
            if self_col is not None and mask_self:
                mask[rows, self_col + rows] = True
            return s.masked_fill(mask, NEG_INF)

        blocks = [block(a, p_all, ga, gp_all, None, True)]
        if contrast_anchors:
            blocks.append(block(a, a, ga, ga, 0, False))
        if contrast_positives:
            blocks.append(block(pu, p_all, gpu, gp_all, offset, False))
        if n_all is not None:
            assert gn_all is not None
            blocks.append(block(a, n_all, ga, gn_all, None, False, None if pad_all is None else pad_all.reshape(-1)))
        logits = torch.cat(blocks, dim=1) / t
        targets = offset + rows
        loss = torch.logsumexp(logits, dim=1) - logits.gather(1, targets[:, None])[:, 0]
        lonely = (torch.isfinite(logits).sum(dim=1) <= 1).sum()
        check_outcome(loss, lonely, B, [("queries", q, None), ("positives", p, None), ("negatives", n, pad),
                                        ("guide_queries", gq, None), ("guide_positives", gp, None),
                                        ("guide_negatives", gn, pad)], "guided_info_nce",
                      masked_by="the guide scores them above the positive's threshold")
        return reduce(loss, reduction)


class GuidedInfoNCE(nn.Module):
    """Module form of :func:`guided_info_nce` (GISTEmbed with the self-similarity fix).

    ``forward(queries, positives, negatives=None, *, guide_queries, guide_positives,
    guide_negatives=None, negative_ids=None)`` (``negative_ids``: ``-1`` marks padding). Compute the guide embeddings under ``torch.no_grad()`` with the guide
    model, from the same texts.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import GuidedInfoNCE
    >>> q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
    >>> loss_fn = GuidedInfoNCE(temperature=0.01, margin_strategy="relative", margin=0.05)
    >>> loss = loss_fn(q, p, n, guide_queries=q, guide_positives=p, guide_negatives=n)
    >>> loss.shape
    torch.Size([])
    """

    def __init__(
        self,
        temperature: float = 0.01,
        *,
        margin_strategy: str = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
        mask_self: bool = True,
        gather: bool = False,
        group: Any = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.margin_strategy, self.margin = _check_margin_strategy(margin_strategy), check_float(margin, "margin")
        self.contrast_anchors, self.contrast_positives = bool(contrast_anchors), bool(contrast_positives)
        self.mask_self, self.gather, self.group = bool(mask_self), bool(gather), group
        self.reduction = check_reduction(reduction)

    def forward(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: Optional[torch.Tensor] = None,
        *,
        guide_queries: torch.Tensor,
        guide_positives: torch.Tensor,
        guide_negatives: Optional[torch.Tensor] = None,
        negative_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return guided_info_nce(
            queries, positives, negatives, guide_queries=guide_queries, guide_positives=guide_positives,
            guide_negatives=guide_negatives, negative_ids=negative_ids, temperature=self.temperature, margin_strategy=self.margin_strategy,
            margin=self.margin, contrast_anchors=self.contrast_anchors, contrast_positives=self.contrast_positives,
            mask_self=self.mask_self, gather=self.gather, group=self.group, reduction=self.reduction,
        )
