"""MoCHi hard-negative mixing (Kalantidis et al. 2020): synthetic negatives from the hardest ones."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ._common import check_embeddings, check_ids, zero_padding

__all__ = ["mix_hard_negatives"]


def _count(x: object, name: str, minimum: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < minimum:
        raise ParameterError(f"{name} must be an int >= {minimum}, got {x!r}")
    return x


def mix_hard_negatives(
    queries: torch.Tensor,
    negatives: torch.Tensor,
    *,
    num_mixed: int = 16,
    num_query_mixed: int = 0,
    num_hard: Optional[int] = None,
    max_query_weight: float = 0.5,
    negative_ids: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Synthetic hard negatives for each query, mixed from its hardest negatives (MoCHi).

    For each query, its negatives are ranked by cosine similarity (ties by lower index) and the top
    ``num_hard`` are kept. Then, on unit vectors:

    * ``num_mixed`` negatives ``h = normalize(a * n_x + (1 - a) * n_y)`` with ``a ~ U(0, 1)`` and
      ``x, y`` drawn uniformly among the top ``num_hard``;
    * ``num_query_mixed`` harder ones ``h' = normalize(b * q + (1 - b) * n_x)`` with
      ``b ~ U(0, max_query_weight)`` (MoCHi: 0.5, so the negative stays the majority).

    The random draws are, in this order: ``x``, ``y`` (``randint``, shape ``[B, num_mixed]``),
    ``a`` (``rand``), then ``x`` for the query mixes and ``b``, all from ``generator`` (CPU).
    The result is detached (no gradient flows through synthetic negatives) and float32. Append it
    to the mined negatives, e.g. ``InfoNCE(in_batch=False)(q, p, torch.cat([n, h], 1))`` for
    per-query synthetics as in MoCHi.

    Parameters
    ----------
    queries : torch.Tensor, shape (B, d)
    negatives : torch.Tensor, shape (B, m, d)
    num_mixed, num_query_mixed : int
    num_hard : int, optional
        How many of the hardest negatives to mix (default: all ``m``).
    max_query_weight : float, default 0.5
    negative_ids : torch.Tensor, shape (B, m), optional
        ``-1`` marks padding (a missing mined negative, as in :class:`hardneg.Mined`): never
        mixed. A row with fewer than ``num_hard`` real negatives mixes among those it has (its
        indices are then drawn as ``floor(u * count)`` with ``u ~ U(0, 1)`` instead of
        ``randint``); a row with none raises :class:`~hardneg.ParameterError`.
    generator : torch.Generator, optional
        A CPU generator, for reproducible draws.

    Returns
    -------
    torch.Tensor, shape (B, num_mixed + num_query_mixed, d)

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import mix_hard_negatives
    >>> g = torch.Generator().manual_seed(0)
    >>> q, n = torch.randn(4, 8, generator=g), torch.randn(4, 10, 8, generator=g)
    >>> h = mix_hard_negatives(q, n, num_mixed=5, num_query_mixed=2, num_hard=3, generator=g)
    >>> h.shape, bool(torch.allclose(h.norm(dim=-1), torch.ones(4, 7)))
    (torch.Size([4, 7, 8]), True)
    """
    q, _, n = check_embeddings(queries, queries, negatives)
    if n is None:
        raise ParameterError("mix_hard_negatives needs at least one negative per query")
    num_mixed = _count(num_mixed, "num_mixed", 0)
    num_query_mixed = _count(num_query_mixed, "num_query_mixed", 0)
    B, m, _ = n.shape
    k = m if num_hard is None else _count(num_hard, "num_hard", 1)
    if k > m:
        raise ParameterError(f"num_hard={k} is larger than the {m} negatives per query")
    if not (0.0 <= float(max_query_weight) <= 1.0):
        raise ParameterError(f"max_query_weight must be in [0, 1], got {max_query_weight!r}")
    pad = None if negative_ids is None else check_ids(negative_ids, "negative_ids", (B, m), q.device) < 0
    counts = None  # real negatives among each row's k hardest, when padding is present
    if pad is not None and bool(pad.any()):
        real = (~pad).sum(dim=1)
        if bool((real == 0).any()):
            row = int(torch.nonzero(real == 0)[0, 0])
            raise ParameterError(f"row {row} has no negative to mix: all its negative_ids are -1 (padding); leave "
                                 "that row out or give it a negative")
        counts = real.clamp(max=k).cpu()
    else:
        pad = None
    with torch.no_grad():
        qu = F.normalize(q.detach().float(), dim=-1)
        nu = F.normalize(zero_padding(n.detach(), pad).float(), dim=-1)
        scores = torch.einsum("bd,bmd->bm", qu, nu)
        if pad is not None:
            scores = scores.masked_fill(pad, float("-inf"))  # padding ranks last, never among the drawn
        order = torch.argsort(-scores, dim=1, stable=True)[:, :k]
        hard = nu.gather(1, order[:, :, None].expand(B, k, nu.shape[-1]))  # [B, k, d]
        out = []
        dev = q.device

        def pick(idx: torch.Tensor) -> torch.Tensor:
            idx = idx.to(dev)
            return hard.gather(1, idx[:, :, None].expand(B, idx.shape[1], hard.shape[-1]))

        def draw(cols: int) -> torch.Tensor:
            if counts is None:
                return torch.randint(0, k, (B, cols), generator=generator)
            return (torch.rand(B, cols, generator=generator, dtype=torch.float64) * counts[:, None]).long()

        if num_mixed:
            xa = draw(num_mixed)
            xb = draw(num_mixed)
            a = torch.rand(B, num_mixed, 1, generator=generator).to(dev)
            out.append(F.normalize(a * pick(xa) + (1.0 - a) * pick(xb), dim=-1))
        if num_query_mixed:
            xa = draw(num_query_mixed)
            b = (torch.rand(B, num_query_mixed, 1, generator=generator) * float(max_query_weight)).to(dev)
            out.append(F.normalize(b * qu[:, None, :] + (1.0 - b) * pick(xa), dim=-1))
        if not out:
            return nu.new_zeros(B, 0, nu.shape[-1])
        return torch.cat(out, dim=1)
