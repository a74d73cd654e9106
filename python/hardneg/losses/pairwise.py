"""Pairwise losses of implicit-feedback recommendation: BPR and SimpleX's cosine contrastive loss.

Both score a user (or query) ``u_i [B, d]`` against its positive item ``p_i [B, d]`` and its sampled
negatives ``n_ij [B, n, d]`` (e.g. from :class:`hardneg.InteractionSampler`):

* :func:`bpr_loss` (Rendle et al. 2009): ``L_i = mean_j softplus(s(u_i, n_ij) - s(u_i, p_i))``,
  i.e. ``-log sigmoid(s_pos - s_neg)`` averaged over the row's negatives; inner product by default.
* :func:`cosine_contrastive_loss` (SimpleX, Mao et al. 2021):
  ``L_i = relu(1 - cos(u_i, p_i)) + w * mean_j relu(cos(u_i, n_ij) - m)``: only negatives whose
  cosine exceeds the margin ``m`` contribute, so a large negative ratio focuses on the hard ones.

Padding follows the other losses: ``negative_ids`` of ``-1`` mark missing negatives, which are left
out of the row's mean (their embeddings are ignored, NaN placeholders included); with
``positive_ids`` a negative carrying the row's positive id is left out too. A row left without any
negative contributes its positive term only (0 for BPR) and triggers a ``RuntimeWarning``. A NaN or
infinity in a used embedding raises :class:`~hardneg.NonFiniteError`.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NonFiniteError, ParameterError
from ._common import check_embeddings, check_float, check_ids, check_reduction, check_similarity, embed_prep, fp32_context, reduce

__all__ = ["BPRLoss", "bpr_loss", "CosineContrastiveLoss", "cosine_contrastive_loss"]


def _pair_scores(users: Any, positives: Any, negatives: Any, similarity: str, positive_ids: Any, negative_ids: Any):
    """``(pos [B], neg [B, n], keep [B, n] bool)`` in float32/64, padding zeroed and masked."""
    similarity = check_similarity(similarity)
    if negatives is None:
        raise ParameterError("negatives are required: pass [B, n, d] sampled negatives (e.g. from hardneg.InteractionSampler)")
    u, p, n = check_embeddings(users, positives, negatives, names=("users", "positives", "negatives"))
    if n is None:
        raise ParameterError("negatives has no columns (shape [B, 0, d]); pass at least one negative per row")
    B, k = n.shape[0], n.shape[1]
    pid = check_ids(positive_ids, "positive_ids", (B,), u.device)
    nid = check_ids(negative_ids, "negative_ids", (B, k), u.device)
    keep = torch.ones(B, k, dtype=torch.bool, device=u.device)
    if nid is not None:
        keep &= nid != -1
        if pid is not None:
            keep &= (nid != pid[:, None]) | (pid[:, None] == -1)
        n = n.masked_fill(~keep[..., None], 0.0)  # padding never reaches the loss or the gradients
    ue, pe = embed_prep(u, similarity), embed_prep(p, similarity)
    pos = (ue * pe).sum(-1)
    # [B, n, d] negatives: divide the [B, n] dots by the norms instead of normalising a copy
    nf = embed_prep(n, "dot")
    neg = torch.einsum("bd,bnd->bn", ue, nf)
    if similarity == "cosine":
        neg = neg / nf.norm(dim=-1).clamp(min=1e-12)  # F.normalize's epsilon
    return pos, neg, keep, [("users", u, None), ("positives", p, None), ("negatives", n, ~keep)]


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row means of ``x`` over ``keep`` (0 for a row with nothing kept) and the number of such rows."""
    count = keep.sum(dim=1)
    mean = torch.where(keep, x, torch.zeros_like(x)).sum(dim=1) / count.clamp(min=1).to(x.dtype)
    return mean, (count == 0).sum()


def _check_outcome(loss: torch.Tensor, empty: torch.Tensor, batch: int, inputs: list, what: str) -> None:
    """Names the input behind a non-finite loss; warns about rows without negatives (one host sync)."""
    bad, lonely = torch.stack([(~torch.isfinite(loss.detach())).sum(), empty.to(loss.device)]).tolist()
    if bad:
        for name, x, pad in inputs:
            rows = ~torch.isfinite(x.detach()).all(dim=-1)
            if pad is not None:
                rows &= ~pad
            if bool(rows.any()):
                where = ", ".join(str(int(i)) for i in torch.nonzero(rows)[0])
                raise NonFiniteError(
                    f"{name}[{where}] holds NaN or Inf, so the loss is not finite; repair it, or mark a missing "
                    "negative with negative_ids=-1 (it is then ignored)"
                )
    if lonely:
        warnings.warn(
            f"{what}: {lonely} of {batch} rows have no negative left (every negative_id is -1 or the positive's id), "
            "so they contribute their positive term only; sample more negatives or drop those rows",
            RuntimeWarning,
            stacklevel=3,
        )


def bpr_loss(
    users: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    similarity: str = "dot",
    positive_ids: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Bayesian personalised ranking: ``L_i = mean_j -log sigmoid(s(u_i, p_i) - s(u_i, n_ij))``.

    Parameters
    ----------
    users, positives : Tensor [B, d]
    negatives : Tensor [B, n, d]
    similarity : {"dot", "cosine"}, default "dot"
        Matrix factorisation scores by inner product.
    positive_ids : Tensor [B], optional
        With ``negative_ids``, a negative whose id equals the row's positive id is left out.
    negative_ids : Tensor [B, n], optional
        ``-1`` marks padding: left out of the row's mean.
    reduction : {"mean", "sum", "none"}

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import bpr_loss
    >>> u, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    >>> n = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])          # scores: pos 2, negatives 0 and 1
    >>> round(float(bpr_loss(u, p, n)), 4)                    # (softplus(-2) + softplus(-1)) / 2
    0.2201
    >>> round(float(bpr_loss(u, p, n, negative_ids=torch.tensor([[5, -1]]))), 4)   # second is padding
    0.1269
    """
    reduction = check_reduction(reduction)
    with fp32_context(users):
        pos, neg, keep, inputs = _pair_scores(users, positives, negatives, similarity, positive_ids, negative_ids)
        row, empty = _masked_mean(F.softplus(neg - pos[:, None]), keep)
        out = reduce(row, reduction)
    _check_outcome(out, empty, row.shape[0], inputs, "bpr_loss")
    return out


def cosine_contrastive_loss(
    users: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    margin: float = 0.5,
    negative_weight: float = 10.0,
    positive_ids: Optional[torch.Tensor] = None,
    negative_ids: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """SimpleX's cosine contrastive loss: ``relu(1 - cos(u, p)) + w * mean_j relu(cos(u, n_j) - margin)``.

    Parameters
    ----------
    users, positives : Tensor [B, d]
    negatives : Tensor [B, n, d]
    margin : float, default 0.5
        Negatives with cosine at most ``margin`` cost nothing (RecBole's default; SimpleX tunes it in
        ``[-1, 1]``, often 0.8-0.9 with hundreds of negatives).
    negative_weight : float, default 10
        ``w``, the weight of the negatives' mean against the positive term.
    positive_ids, negative_ids, reduction
        As in :func:`bpr_loss`.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import cosine_contrastive_loss
    >>> u, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])   # cos(u, p) = 0.7071
    >>> n = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])                    # cosines 1 and 0
    >>> round(float(cosine_contrastive_loss(u, p, n, margin=0.5, negative_weight=2.0)), 4)  # 0.2929 + 2 * 0.25
    0.7929
    """
    reduction = check_reduction(reduction)
    margin = check_float(margin, "margin")
    if not -1.0 <= margin <= 1.0:
        raise ParameterError(f"margin is compared with cosines, so it must lie in [-1, 1], got {margin!r}")
    weight = check_float(negative_weight, "negative_weight")
    if weight < 0:
        raise ParameterError(f"negative_weight must be >= 0, got {negative_weight!r}")
    with fp32_context(users):
        pos, neg, keep, inputs = _pair_scores(users, positives, negatives, "cosine", positive_ids, negative_ids)
        neg_term, empty = _masked_mean(F.relu(neg - margin), keep)
        out = reduce(F.relu(1.0 - pos) + weight * neg_term, reduction)
    _check_outcome(out, empty, pos.shape[0], inputs, "cosine_contrastive_loss")
    return out


class BPRLoss(nn.Module):
    """:func:`bpr_loss` as a module.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import BPRLoss
    >>> loss = BPRLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 5, 8))
    >>> loss.shape
    torch.Size([])
    """

    def __init__(self, *, similarity: str = "dot", reduction: str = "mean") -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        self.reduction = check_reduction(reduction)

    def forward(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *,
                positive_ids: Optional[torch.Tensor] = None, negative_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return bpr_loss(users, positives, negatives, similarity=self.similarity, positive_ids=positive_ids,
                        negative_ids=negative_ids, reduction=self.reduction)


class CosineContrastiveLoss(nn.Module):
    """:func:`cosine_contrastive_loss` (SimpleX's CCL) as a module.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import CosineContrastiveLoss
    >>> loss_fn = CosineContrastiveLoss(margin=0.8, negative_weight=50.0)
    >>> u = torch.randn(4, 8, requires_grad=True)
    >>> loss_fn(u, torch.randn(4, 8), torch.randn(4, 100, 8)).backward()
    >>> u.grad.shape
    torch.Size([4, 8])
    """

    def __init__(self, margin: float = 0.5, negative_weight: float = 10.0, *, reduction: str = "mean") -> None:
        super().__init__()
        self.margin = check_float(margin, "margin")
        self.negative_weight = check_float(negative_weight, "negative_weight")
        self.reduction = check_reduction(reduction)

    def forward(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *,
                positive_ids: Optional[torch.Tensor] = None, negative_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return cosine_contrastive_loss(users, positives, negatives, margin=self.margin, negative_weight=self.negative_weight,
                                       positive_ids=positive_ids, negative_ids=negative_ids, reduction=self.reduction)
