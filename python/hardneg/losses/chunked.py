"""Memory-efficient InfoNCE: the ``[B, N]`` logits matrix is never held, only ``[chunk, N]`` blocks.

:class:`ChunkedInfoNCE` computes exactly :class:`~hardneg.losses.InfoNCE` (same candidates, masks,
hardness bias, symmetric and gathered variants) with a custom autograd function that walks over
blocks of rows. For each block it builds the block's logits, its log-sum-exp and, while the block is
still in memory, its contribution to the gradients of the rows and of the candidates. The gradients
are kept (``O((B + N) d)`` memory, the size of the inputs) and the backward pass only scales them by
the incoming scalar gradient, so no block is ever recomputed: three matrix products per block, the
same arithmetic as the dense loss, with peak memory linear in the batch instead of quadratic.

The gradient work is done in the forward pass only when an input requires a gradient and grad mode
is on (under ``torch.no_grad()`` the forward pass costs one matrix product per block).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..errors import ParameterError
from ._common import (
    Candidates,
    apply_mask_bias,
    candidate_mask_bias,
    check_outcome,
    check_reduction,
    check_similarity,
    fp32_context,
    lonely_rows,
)
from .infonce import PerRow, check_common, direction_logits, prepare

__all__ = ["ChunkedInfoNCE", "chunked_info_nce", "chunked_lse_sum"]

_BLOCK_ELEMENTS = 1 << 24  # 64 MiB of float32 logits per block by default


def _check_chunk_size(chunk_size: Optional[int]) -> Optional[int]:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ParameterError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    return chunk_size


def _auto_chunk(rows: int, cols: int, chunk_size: Optional[int]) -> int:
    if chunk_size is not None:
        return max(1, min(rows, chunk_size))
    return max(1, min(rows, _BLOCK_ELEMENTS // max(cols, 1)))


class _ChunkedLSESum(torch.autograd.Function):
    """``sum_i LSE_c(scale * s_ic + bias_ic, masked)`` over blocks of rows, gradients precomputed."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        rows: torch.Tensor,
        cands: torch.Tensor,
        targets: torch.Tensor,
        pos_sim: Optional[torch.Tensor],
        row_ids: Optional[torch.Tensor],
        cand_ids: Optional[torch.Tensor],
        cand_has_id: Optional[torch.Tensor],
        cand_pad: Optional[torch.Tensor],
        scale: float,
        margin: Optional[float],
        alpha: float,
        chunk: int,
        need_grad: bool,
        report: Optional[dict[str, Any]],
    ) -> torch.Tensor:
        need = bool(need_grad and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]))
        B = rows.shape[0]
        acc = torch.float32 if rows.device.type == "mps" else torch.float64  # MPS has no float64
        total = torch.zeros((), dtype=acc, device=rows.device)
        g_rows = torch.empty_like(rows) if need else None
        g_cands = torch.zeros_like(cands) if need else None
        lonely = torch.zeros((), dtype=torch.long, device=rows.device)
        for r0 in range(0, B, chunk):
            r1 = min(B, r0 + chunk)
            rb = rows[r0:r1]
            sim = rb @ cands.T
            mask, bias = candidate_mask_bias(
                sim, targets[r0:r1], pos_sim=None if pos_sim is None else pos_sim[r0:r1],
                row_ids=None if row_ids is None else row_ids[r0:r1], cand_ids=cand_ids, cand_has_id=cand_has_id,
                cand_pad=cand_pad, margin=margin, alpha=alpha,
            )
            lonely += lonely_rows(mask, *sim.shape, sim.device)
            logits = apply_mask_bias(sim.mul_(scale), mask, bias)
            del mask, bias
            lse = torch.logsumexp(logits, dim=1)
            total += lse.sum(dtype=acc)
            if need:
                assert g_rows is not None and g_cands is not None
                p = logits.sub_(lse[:, None]).exp_().mul_(scale)  # d LSE_i / d s_ic; 0 where masked
                torch.mm(p, cands, out=g_rows[r0:r1])
                g_cands.addmm_(p.T, rb)
            del sim, logits
        ctx.save_for_backward(g_rows, g_cands)
        if report is not None:
            report["lonely"] = lonely
        return total.to(rows.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        g_rows, g_cands = ctx.saved_tensors
        gr = g_rows * grad if ctx.needs_input_grad[0] else None
        gc = g_cands * grad if ctx.needs_input_grad[1] else None
        return (gr, gc) + (None,) * 12


def chunked_lse_sum(
    rows: torch.Tensor,
    cands: torch.Tensor,
    targets: torch.Tensor,
    *,
    scale: float,
    pos_sim: Optional[torch.Tensor] = None,
    row_ids: Optional[torch.Tensor] = None,
    cand_ids: Optional[torch.Tensor] = None,
    cand_has_id: Optional[torch.Tensor] = None,
    cand_pad: Optional[torch.Tensor] = None,
    margin: Optional[float] = None,
    alpha: float = 0.0,
    chunk_size: Optional[int] = None,
    report: Optional[dict[str, Any]] = None,
) -> torch.Tensor:
    """``sum_i logsumexp_c(scale * rows_i . cands_c + bias_ic)`` (masked) with linear memory.

    The building block of :class:`ChunkedInfoNCE`; ``targets [B]`` is the column of each row's
    positive (never masked, never biased). Differentiable with respect to ``rows`` and ``cands``
    (first order only). ``cand_pad [N]`` masks padding columns for every row; ``report`` (a dict)
    receives ``"lonely"``, the number of rows left with only their target.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import chunked_lse_sum
    >>> r, c = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    >>> s = chunked_lse_sum(r, c, torch.arange(5), scale=2.0, chunk_size=2)
    >>> bool(torch.allclose(s, torch.logsumexp(2.0 * r @ c.T, dim=1).sum()))
    True
    """
    chunk = _auto_chunk(rows.shape[0], cands.shape[0], chunk_size)
    if pos_sim is not None:
        pos_sim = pos_sim.detach()
    return _ChunkedLSESum.apply(
        rows, cands, targets, pos_sim, row_ids, cand_ids, cand_has_id, cand_pad, float(scale), margin, float(alpha),
        chunk, torch.is_grad_enabled() and (rows.requires_grad or cands.requires_grad), report,
    )


def chunked_info_nce(
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
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """:func:`~hardneg.losses.info_nce` with memory linear in the batch; the functional :class:`ChunkedInfoNCE`.

    Same parameters as :func:`~hardneg.losses.info_nce`, plus ``chunk_size`` (rows per block;
    default: as many as fit 2**24 logits). ``reduction`` must be ``"mean"`` or ``"sum"``.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import chunked_info_nce, info_nce
    >>> g = torch.Generator().manual_seed(0)
    >>> q, p, n = torch.randn(9, 8, generator=g), torch.randn(9, 8, generator=g), torch.randn(9, 2, 8, generator=g)
    >>> a, b = chunked_info_nce(q, p, n, chunk_size=4), info_nce(q, p, n)
    >>> bool(torch.allclose(a, b, atol=1e-5))
    True
    """
    t, margin, alpha = check_common(temperature, false_negative_margin, hardness_alpha, similarity)
    reduction = check_reduction(reduction, ("mean", "sum"))
    chunk_size = _check_chunk_size(chunk_size)
    with fp32_context(queries):
        prep = prepare(
            queries, positives, negatives, positive_ids=positive_ids, negative_ids=negative_ids,
            symmetric=symmetric, in_batch=in_batch, similarity=similarity, gather=gather, group=group,
        )
        scale = 1.0 / t
        B = prep.batch
        total = None
        lonely = 0
        for k, d in enumerate(prep.directions):
            a = alpha if k == 0 else 0.0
            if isinstance(d, PerRow):  # [B, 1 + n] logits: already linear in B
                logits, targets, alone = direction_logits(d, scale, margin, a)
                part = (torch.logsumexp(logits, dim=1) - logits[:, 0]).sum()
            else:
                assert isinstance(d, Candidates)
                report: dict[str, Any] = {}
                lse = chunked_lse_sum(
                    d.rows, d.cands, d.targets, scale=scale, pos_sim=d.pos_sim, row_ids=d.row_ids,
                    cand_ids=d.cand_ids, cand_has_id=d.cand_has_id, cand_pad=d.cand_pad, margin=margin, alpha=a,
                    chunk_size=chunk_size, report=report,
                )
                part = lse - scale * d.pos_sim.sum()
                alone = report["lonely"]
            total = part if total is None else total + part
            lonely = lonely + alone
        assert total is not None
        total = total / len(prep.directions)
        check_outcome(total, lonely, B, prep.inputs, "chunked_info_nce")
        return total / B if reduction == "mean" else total


class ChunkedInfoNCE(nn.Module):
    """:class:`~hardneg.losses.InfoNCE` computed block by block: same values and gradients, linear memory.

    Parameters are those of :class:`~hardneg.losses.InfoNCE` plus ``chunk_size`` (rows per block);
    ``reduction`` is ``"mean"`` (default) or ``"sum"``.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import ChunkedInfoNCE, InfoNCE
    >>> g = torch.Generator().manual_seed(0)
    >>> q = torch.randn(33, 16, generator=g, requires_grad=True)
    >>> p, n = torch.randn(33, 16, generator=g), torch.randn(33, 7, 16, generator=g)
    >>> loss = ChunkedInfoNCE(temperature=0.05, chunk_size=8)(q, p, n)
    >>> bool(torch.allclose(loss, InfoNCE(temperature=0.05)(q, p, n), atol=1e-5))
    True
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
        chunk_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.temperature, self.false_negative_margin, self.hardness_alpha = check_common(
            temperature, false_negative_margin, hardness_alpha, similarity
        )
        self.symmetric, self.in_batch = bool(symmetric), bool(in_batch)
        self.similarity = check_similarity(similarity)
        self.gather, self.group = bool(gather), group
        self.reduction = check_reduction(reduction, ("mean", "sum"))
        self.chunk_size = _check_chunk_size(chunk_size)

    def forward(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: Optional[torch.Tensor] = None,
        *,
        positive_ids: Optional[torch.Tensor] = None,
        negative_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return chunked_info_nce(
            queries, positives, negatives, temperature=self.temperature, symmetric=self.symmetric,
            in_batch=self.in_batch, positive_ids=positive_ids, negative_ids=negative_ids,
            false_negative_margin=self.false_negative_margin, hardness_alpha=self.hardness_alpha,
            similarity=self.similarity, gather=self.gather, group=self.group, reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}, in_batch={self.in_batch}, chunk_size={self.chunk_size}"

