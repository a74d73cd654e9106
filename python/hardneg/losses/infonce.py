"""InfoNCE (sentence-transformers ``MultipleNegativesRankingLoss``) with mined negatives, masks and gathering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from ..errors import ParameterError
from ._common import (
    Candidates,
    apply_mask_bias,
    candidate_mask_bias,
    check_embeddings,
    check_float,
    check_ids,
    check_optional_float,
    check_reduction,
    check_similarity,
    check_outcome,
    check_temperature,
    embed_prep,
    fp32_context,
    lonely_rows,
    reduce,
    zero_padding,
)
from .distributed import gather_no_grad, gather_with_grad, rank_and_world_size

__all__ = ["InfoNCE", "info_nce"]


@dataclass
class Prepared:
    """Checked, prepared inputs of one InfoNCE-family call."""

    directions: list[Any]  # Candidates (in_batch) or PerRow (not in_batch)
    batch: int
    inputs: list[tuple[str, Any, Any]]  # (name, checked tensor, padding) to name a non-finite input


@dataclass
class PerRow:
    """``in_batch=False``: each row sees only its own positive (column 0) and its own negatives."""

    sim: torch.Tensor  # [B, 1 + n] raw similarities (with grad); column 0 is the positive
    row_ids: Optional[torch.Tensor]
    cand_ids: Optional[torch.Tensor]  # [B, 1 + n]
    cand_has_id: Optional[torch.Tensor]  # [B, 1 + n]
    cand_pad: Optional[torch.Tensor] = None  # [B, 1 + n]: padded negatives


def prepare(
    queries: Any,
    positives: Any,
    negatives: Any = None,
    *,
    positive_ids: Any = None,
    negative_ids: Any = None,
    symmetric: bool = False,
    in_batch: bool = True,
    similarity: str = "cosine",
    gather: bool = False,
    group: Any = None,
) -> Prepared:
    """Validates the inputs and builds the candidate layout of each direction (q->d, then d->q)."""
    similarity = check_similarity(similarity)
    q, p, n = check_embeddings(queries, positives, negatives)
    B = q.shape[0]
    pid = check_ids(positive_ids, "positive_ids", (B,), q.device)
    nid = None
    if negative_ids is not None:
        if n is None:
            raise ParameterError("negative_ids were given without negatives")
        nid = check_ids(negative_ids, "negative_ids", tuple(n.shape[:2]), q.device)
    if symmetric and not in_batch:
        raise ParameterError(
            "symmetric=True needs in_batch=True: with in_batch=False the positive->query direction has a "
            "single candidate and its loss is always 0"
        )
    pad = None if nid is None else nid < 0  # [B, n]: padding slots (a missing mined negative)
    inputs = [("queries", q, None), ("positives", p, None), ("negatives", n, pad)]
    qe, pe = embed_prep(q, similarity), embed_prep(p, similarity)
    ne = embed_prep(zero_padding(n, pad), similarity) if n is not None else None

    if not in_batch:
        pos = (qe * pe).sum(-1, keepdim=True)
        sim = pos if ne is None else torch.cat([pos, torch.einsum("bd,bnd->bn", qe, ne)], dim=1)
        cids = chas = cpad = None
        if pid is not None:
            cids = pid[:, None]
            if ne is not None:
                cids = torch.cat([cids, nid if nid is not None else torch.full((B, ne.shape[1]), -1, device=q.device)], 1)
            chas = cids >= 0
        if pad is not None:
            cpad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=q.device), pad], dim=1)
        return Prepared([PerRow(sim, pid, cids, chas, cpad)], B, inputs)

    rank, world = rank_and_world_size(group) if gather else (0, 1)
    offset = rank * B
    if gather and world > 1:
        q_all = gather_with_grad(qe, group)
        p_all = gather_with_grad(pe, group)
        n_all = gather_with_grad(ne, group) if ne is not None else None
        pid_all = gather_no_grad(pid, group) if pid is not None else None
        nid_all = gather_no_grad(nid, group) if nid is not None else None
    else:
        q_all, p_all, n_all, pid_all, nid_all = qe, pe, ne, pid, nid
    docs = p_all if n_all is None else torch.cat([p_all, n_all.reshape(-1, n_all.shape[-1])], dim=0)
    targets = torch.arange(offset, offset + B, device=q.device)
    pos_sim = (qe * pe).sum(-1)
    cand_ids = cand_has = cand_pad = None
    if pid is not None:
        assert pid_all is not None
        cand_ids = pid_all
        if n_all is not None:
            n_ids = nid_all.reshape(-1) if nid_all is not None else torch.full(
                (n_all.shape[0] * n_all.shape[1],), -1, dtype=torch.long, device=q.device)
            cand_ids = torch.cat([pid_all, n_ids])
        cand_has = cand_ids >= 0
    if nid_all is not None:
        cand_pad = torch.cat([torch.zeros(p_all.shape[0], dtype=torch.bool, device=q.device), nid_all.reshape(-1) < 0])
    dirs: list[Any] = [Candidates(qe, docs, targets, pos_sim, pid, cand_ids, cand_has, cand_pad)]
    if symmetric:
        # positive i against every (gathered) query; a query whose positive has the same id also matches.
        dirs.append(Candidates(pe, q_all, targets, pos_sim, pid, pid_all, None if pid_all is None else pid_all >= 0))
    return Prepared(dirs, B, inputs)


def direction_logits(
    d: Any, scale: float, margin: Optional[float], alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits [B, N], targets [B], rows left with nothing to contrast)`` of one direction, masks
    (-inf) and hardness bias applied."""
    if isinstance(d, PerRow):
        sim = d.sim
        targets = torch.zeros(sim.shape[0], dtype=torch.long, device=sim.device)
        pos_sim = sim[:, 0]
    else:
        sim = d.rows @ d.cands.T
        targets, pos_sim = d.targets, d.pos_sim
    mask, bias = candidate_mask_bias(
        sim, targets, pos_sim=pos_sim, row_ids=d.row_ids, cand_ids=d.cand_ids, cand_has_id=d.cand_has_id,
        cand_pad=d.cand_pad, margin=margin, alpha=alpha,
    )
    lonely = lonely_rows(mask, *sim.shape, sim.device)
    return apply_mask_bias(sim * scale, mask, bias), targets, lonely


def check_common(temperature: Any, false_negative_margin: Any, hardness_alpha: Any,
                 similarity: Any = "cosine") -> tuple[float, Optional[float], float]:
    t = check_temperature(temperature, similarity=check_similarity(similarity))
    return t, check_optional_float(false_negative_margin, "false_negative_margin"), check_float(hardness_alpha, "hardness_alpha")


def info_nce(
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
    hardness_alpha: float = 0.0,
    similarity: str = "cosine",
    gather: bool = False,
    group: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE with in-batch and mined negatives; the functional form of :class:`InfoNCE`.

    Row ``i`` scores its query ``q_i`` against the candidates (see :class:`InfoNCE`) and pays
    ``LSE_c(logit_ic) - logit_i+`` with ``logit = s / temperature``, computed in float32 in log space.

    Parameters
    ----------
    queries, positives : torch.Tensor, shape (B, d)
    negatives : torch.Tensor, shape (B, n, d), optional
        Mined hard negatives of each query.
    temperature : float, default 0.05
        ``0.05`` is sentence-transformers' ``scale=20`` (``temperature = 1 / scale``); above 1
        with cosine similarity it warns.
    symmetric : bool, default False
        Average the query->document loss with the positive->query loss (positives only, as in
        sentence-transformers' symmetric MNRL).
    in_batch : bool, default True
        Use the other rows' positives and negatives as negatives too.
    positive_ids, negative_ids : torch.Tensor, shape (B,) and (B, n), optional
        Item ids (e.g. corpus ids from :func:`hardneg.mine`): a candidate with the same id as row
        ``i``'s positive (a duplicate) is masked. ``-1`` is padding, as in :class:`hardneg.Mined`:
        a negative with id ``-1`` is a missing one and is masked for every row (its embedding is
        ignored); a positive with id ``-1`` has no id and matches nothing. ``negative_ids`` may be
        given alone to mark padding. A row left with nothing to contrast adds 0 and warns; a NaN
        in a used embedding raises :class:`~hardneg.NonFiniteError` naming it.
    false_negative_margin : float, optional
        Mask candidates whose similarity exceeds ``s(q_i, d_i+) - margin`` (Qwen3-Embedding:
        ``margin=-0.1``, i.e. mask what beats the positive by more than 0.1).
    hardness_alpha : float, default 0.0
        Add ``alpha * sg(s)`` to every negative logit of the query->document direction (LLaVE
        alpha=9, EmbeddingGemma alpha=5; sentence-transformers ``hardness_mode="all_negatives"``).
    similarity : {"cosine", "dot"}, default "cosine"
        The names mining's ``metric`` uses (``"ip"`` is accepted for ``"dot"``).
    gather : bool, default False
        Contrast against the candidates of every rank (:func:`gather_with_grad`); the loss is the
        mean over local rows, exact after DDP averaging. No effect with ``in_batch=False``.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    torch.Tensor
        Scalar (or ``[B]`` with ``reduction="none"``), float32.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import info_nce
    >>> g = torch.Generator().manual_seed(0)
    >>> q, p = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    >>> loss = info_nce(q, q + 0.1 * p)   # positives close to their queries: small loss
    >>> bool(loss < info_nce(q, p))
    True
    """
    t, margin, alpha = check_common(temperature, false_negative_margin, hardness_alpha, similarity)
    reduction = check_reduction(reduction)
    with fp32_context(queries):
        prep = prepare(
            queries, positives, negatives, positive_ids=positive_ids, negative_ids=negative_ids,
            symmetric=symmetric, in_batch=in_batch, similarity=similarity, gather=gather, group=group,
        )
        scale = 1.0 / t
        per_dir, lonely = [], 0
        for k, d in enumerate(prep.directions):
            # hardness weighting applies to the query->document direction only (as in sentence-transformers)
            logits, targets, alone = direction_logits(d, scale, margin, alpha if k == 0 else 0.0)
            pos = logits.gather(1, targets[:, None])[:, 0]
            per_dir.append(torch.logsumexp(logits, dim=1) - pos)
            lonely = lonely + alone
        loss = per_dir[0] if len(per_dir) == 1 else 0.5 * (per_dir[0] + per_dir[1])
        check_outcome(loss, lonely, prep.batch, prep.inputs, "info_nce")
        return reduce(loss, reduction)


class InfoNCE(nn.Module):
    """InfoNCE / ``MultipleNegativesRankingLoss`` with mined hard negatives.

    Candidates of query ``i`` with ``in_batch=True`` (the default, sentence-transformers layout):
    every positive of the batch and every mined negative of the batch (the other queries' hard
    negatives too); with ``gather=True``, those of every rank. With ``in_batch=False``: only its own
    positive and its own negatives. See :func:`info_nce` for every parameter.

    ``forward(queries [B, d], positives [B, d], negatives [B, n, d] = None, *, positive_ids=None,
    negative_ids=None)`` returns the loss.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import InfoNCE
    >>> g = torch.Generator().manual_seed(0)
    >>> q = torch.randn(8, 16, generator=g, requires_grad=True)
    >>> p, n = torch.randn(8, 16, generator=g), torch.randn(8, 3, 16, generator=g)
    >>> loss = InfoNCE(temperature=0.05)(q, p, n)
    >>> loss.backward()
    >>> q.grad.shape
    torch.Size([8, 16])
    """

    def __init__(
        self,
        temperature: float = 0.05,
        *,
        symmetric: bool = False,
        in_batch: bool = True,
        false_negative_margin: Optional[float] = None,
        hardness_alpha: float = 0.0,
        similarity: str = "cosine",
        gather: bool = False,
        group: Any = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.temperature, self.false_negative_margin, self.hardness_alpha = check_common(
            temperature, false_negative_margin, hardness_alpha, similarity
        )
        self.symmetric, self.in_batch = bool(symmetric), bool(in_batch)
        self.similarity = check_similarity(similarity)
        self.gather, self.group = bool(gather), group
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
        return info_nce(
            queries, positives, negatives, temperature=self.temperature, symmetric=self.symmetric,
            in_batch=self.in_batch, positive_ids=positive_ids, negative_ids=negative_ids,
            false_negative_margin=self.false_negative_margin, hardness_alpha=self.hardness_alpha,
            similarity=self.similarity, gather=self.gather, group=self.group, reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, in_batch={self.in_batch}, "
            f"false_negative_margin={self.false_negative_margin}, hardness_alpha={self.hardness_alpha}, "
            f"similarity={self.similarity!r}, gather={self.gather}"
        )
