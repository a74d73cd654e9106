"""Shared plumbing of the contrastive losses: input checks, the candidate layout and the logit masks.

**Ids and padding** (one convention with :class:`hardneg.Mined`, whose missing negatives are
``-1``): ``negative_ids`` of ``-1`` (any negative id) mark padding slots, which are masked out of
every row's candidates and whose embeddings are ignored (zeroed before use, so a NaN placeholder is
harmless); ``positive_ids`` of ``-1`` mean "no id": that positive never matches a candidate. A row
left with nothing to contrast (every candidate besides its positive masked) adds 0 to the loss and
triggers a ``RuntimeWarning``; a NaN/Inf in an embedding that is used raises
:class:`~hardneg.NonFiniteError` naming it. Both checks cost one host synchronisation per call.

Every InfoNCE-family loss in :mod:`hardneg.losses` scores a local row (a query, or a positive in the
reverse direction of a symmetric loss) against a set of *candidates*:

* ``in_batch=True`` (sentence-transformers ``MultipleNegativesRankingLoss`` layout): the candidates
  are every positive of the (gathered) batch followed by every mined negative of the (gathered)
  batch, so one query also sees the hard negatives of the other queries. The target of local row
  ``i`` is column ``offset + i`` where ``offset = rank * B``.
* ``in_batch=False``: row ``i`` sees only its own positive (column 0) and its own ``n`` negatives.

Masks are computed from *detached* raw similarities (before the temperature) and never hide the
target column, so no row is ever fully masked.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .._arrays import similarity_name
from .._warnings import warn
from ..errors import DeviceError, DTypeError, NonFiniteError, ParameterError, ShapeError

__all__: list[str] = []

NEG_INF = float("-inf")


def check_temperature(temperature: Any, name: str = "temperature", similarity: str = "cosine") -> float:
    """Returns ``temperature`` as a float > 0, or raises :class:`~hardneg.ParameterError`; warns when
    it is above 1 with cosine similarity (likely a sentence-transformers ``scale``)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ParameterError(f"{name} must be a positive number, got {temperature!r}")
    t = float(temperature)
    if not (t > 0.0) or not math.isfinite(t):
        raise ParameterError(f"{name} must be > 0 and finite (e.g. 0.05), got {temperature!r}")
    if t > 1.0 and similarity == "cosine":
        warn(f"{name}={t:g} is above 1: cosine logits s / {t:g} stay within +-{1 / t:.2g}, so the softmax is nearly flat "
             f"and the loss barely trains. A temperature divides the similarities, sentence-transformers' scale "
             f"multiplies them (scale=20 is temperature=0.05): did you mean {name}={1 / t:g}?")
    return t


def check_optional_float(value: Any, name: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number or None, got {value!r}")
    return float(value)


def check_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_similarity(similarity: Any) -> str:
    """``"cosine"`` or ``"dot"`` (``"ip"`` accepted), the names mining's ``metric`` uses too."""
    return similarity_name(similarity, "similarity")


def _check_tensor(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{name} must be a floating-point tensor (float32, bfloat16, ...), got {x.dtype}")
    return x


def check_embeddings(
    queries: Any, positives: Any, negatives: Any = None, *, names: tuple[str, str, str] = ("queries", "positives", "negatives")
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Checks ``queries [B, d]``, ``positives [B, d]`` and optional ``negatives [B, n, d]``."""
    qn, pn, nn_ = names
    q = _check_tensor(queries, qn)
    p = _check_tensor(positives, pn)
    if q.dim() != 2:
        raise ShapeError(f"{qn} must be 2-D [B, d], got shape {tuple(q.shape)}")
    if q.shape[0] == 0 or q.shape[1] == 0:
        raise ShapeError(f"{qn} is empty (shape {tuple(q.shape)}); pass at least one row and one column")
    if p.shape != q.shape:
        raise ShapeError(f"{pn} must have the shape of {qn} {tuple(q.shape)}, got {tuple(p.shape)}")
    if p.device != q.device:
        raise DeviceError(f"{pn} is on {p.device} but {qn} is on {q.device}; move them to one device")
    n = None
    if negatives is not None:
        n = _check_tensor(negatives, nn_)
        if n.dim() != 3:
            hint = "; for one negative per query use negatives[:, None, :]" if n.dim() == 2 else ""
            raise ShapeError(f"{nn_} must be 3-D [B, n, d], got shape {tuple(n.shape)}{hint}")
        if n.shape[0] != q.shape[0] or n.shape[2] != q.shape[1]:
            raise ShapeError(
                f"{nn_} must be [B={q.shape[0]}, n, d={q.shape[1]}] to match {qn}, got {tuple(n.shape)}"
            )
        if n.device != q.device:
            raise DeviceError(f"{nn_} is on {n.device} but {qn} is on {q.device}; move them to one device")
        if n.shape[1] == 0:
            n = None
    return q, p, n


def check_ids(ids: Any, name: str, shape: tuple[int, ...], device: torch.device) -> Optional[torch.Tensor]:
    """Checks an optional integer id tensor of the given shape (ids are moved to ``device``)."""
    if ids is None:
        return None
    if not isinstance(ids, torch.Tensor):
        try:
            ids = torch.as_tensor(ids)
        except Exception as e:  # noqa: BLE001 - any conversion failure is a dtype problem
            raise DTypeError(f"{name} could not be converted to an integer tensor: {e}") from e
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise DTypeError(f"{name} must hold integers (one id per item), got {ids.dtype}")
    if tuple(ids.shape) != tuple(shape):
        raise ShapeError(f"{name} must have shape {tuple(shape)} (one id per item), got {tuple(ids.shape)}")
    return ids.to(device=device, dtype=torch.long)


def embed_prep(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """float32 (or float64) copy used for the similarities; unit rows for ``similarity='cosine'``."""
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if similarity == "cosine":
        x = F.normalize(x, p=2, dim=-1)
    return x


@dataclass
class Candidates:
    """The in-batch candidate layout of one direction (rows scored against ``cands``)."""

    rows: torch.Tensor  # [B, d] local rows (prepared)
    cands: torch.Tensor  # [N, d] candidates (prepared, gathered)
    targets: torch.Tensor  # [B] column of each row's positive
    pos_sim: torch.Tensor  # [B] raw similarity of each row to its positive (with grad)
    row_ids: Optional[torch.Tensor]  # [B]
    cand_ids: Optional[torch.Tensor]  # [N]
    cand_has_id: Optional[torch.Tensor]  # [N] bool; candidates without an id never match
    cand_pad: Optional[torch.Tensor] = None  # [N] bool; padding (negative id -1): masked for every row


def candidate_mask_bias(
    sim: torch.Tensor,
    targets: Optional[torch.Tensor],
    *,
    pos_sim: Optional[torch.Tensor] = None,
    row_ids: Optional[torch.Tensor] = None,
    cand_ids: Optional[torch.Tensor] = None,
    cand_has_id: Optional[torch.Tensor] = None,
    cand_pad: Optional[torch.Tensor] = None,
    margin: Optional[float] = None,
    alpha: float = 0.0,
    col_offset: int = 0,
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Boolean mask (True = drop) and additive bias for a block of raw similarities ``sim [r, c]``.

    * ids: candidate ``c`` is dropped for row ``i`` when ``cand_ids[c] == row_ids[i]`` (a duplicate of
      the positive), unless it is the target.
    * padding: candidate ``c`` is dropped for every row when ``cand_pad[c]`` (``[c]`` or ``[r, c]``).
    * margin: dropped when ``sim[i, c] > pos_sim[i] - margin`` (a likely false negative).
    * alpha: bias ``alpha * sg(sim[i, c])`` on every non-target candidate (hardness weighting).

    ``targets`` are absolute column indices; ``col_offset`` is the absolute index of column 0 of the
    block. Returns ``(mask, bias)``; either may be None.
    """
    r, c = sim.shape
    mask = None
    if row_ids is not None and cand_ids is not None:
        ci = cand_ids[None, :] if cand_ids.dim() == 1 else cand_ids
        mask = ci == row_ids[:, None]
        if cand_has_id is not None:
            mask &= cand_has_id[None, :] if cand_has_id.dim() == 1 else cand_has_id
    if cand_pad is not None:
        pad = (cand_pad[None, :] if cand_pad.dim() == 1 else cand_pad).expand(r, c)
        mask = pad.clone() if mask is None else (mask | pad)
    if margin is not None:
        assert pos_sim is not None
        fn = sim.detach() > (pos_sim.detach() - margin)[:, None]
        mask = fn if mask is None else (mask | fn)
    bias = None
    if alpha != 0.0:
        bias = alpha * sim.detach()
    if targets is not None and (mask is not None or bias is not None):
        local = targets - col_offset
        inside = (local >= 0) & (local < c)
        if bool(inside.any()):
            rr = torch.arange(r, device=sim.device)[inside]
            cc = local[inside]
            if mask is not None:
                mask[rr, cc] = False
            if bias is not None:
                bias[rr, cc] = 0.0
    return mask, bias


def apply_mask_bias(logits: torch.Tensor, mask: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Adds ``bias`` and sets masked entries to -inf **in place** and returns ``logits``, which
    must be a fresh tensor the caller owns (e.g. ``sim * scale``): no extra ``[B, N]`` copies."""
    if bias is not None:
        logits.add_(bias)
    if mask is not None:
        logits.masked_fill_(mask, NEG_INF)
    return logits


def lonely_rows(mask: Optional[torch.Tensor], rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """Number of rows (a 0-d tensor) whose only unmasked candidate is their target (the target column
    is never masked): nothing left to contrast."""
    if mask is None:
        return torch.tensor(rows if cols <= 1 else 0, device=device)
    return ((~mask).sum(dim=1) <= 1).sum()


def zero_padding(x: Optional[torch.Tensor], pad: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``x [B, n, d]`` with the padded slots (``pad [B, n]``) zeroed, so that whatever they hold (NaN
    placeholders included) reaches neither the loss nor the gradients."""
    if x is None or pad is None:
        return x
    return x.masked_fill(pad[..., None], 0.0)


def check_outcome(loss: torch.Tensor, lonely: Any, batch: int, inputs: list[tuple[str, Any, Any]], what: str,
                  masked_by: str = "duplicate ids, false_negative_margin") -> None:
    """After a loss: names the non-finite input behind a non-finite loss (:class:`NonFiniteError`) and
    warns when rows had nothing left to contrast. One host synchronisation.

    ``inputs`` lists ``(name, tensor or None, padding mask or None)``; ``lonely`` counts rows (summed
    over the directions of a symmetric loss).
    """
    counts = [(~torch.isfinite(loss.detach())).sum()]
    if lonely is not None:
        counts.append(lonely.to(counts[0].device))
    got = torch.stack(counts).tolist()
    if got[0]:
        _raise_non_finite(inputs)
    if len(got) > 1 and got[1]:
        warn(
            f"{what}: {got[1]} of {batch} rows have nothing left to contrast: every candidate besides the positive is "
            f"padding (negative_ids=-1) or masked ({masked_by}), so those rows add 0 to the loss and give no gradient. "
            "Contrast with in-batch negatives (in_batch=True), use larger batches, or leave out queries without "
            "negatives.",
            RuntimeWarning,
        )


def _raise_non_finite(inputs: list[tuple[str, Any, Any]]) -> None:
    for name, x, pad in inputs:
        if x is None:
            continue
        bad = ~torch.isfinite(x.detach()).all(dim=-1)
        if pad is not None:
            bad &= ~pad
        if bool(bad.any()):
            where = ", ".join(str(int(i)) for i in torch.nonzero(bad)[0])
            hint = ("mark a missing negative with negative_ids=-1 (it is then ignored) or repair it"
                    if pad is not None or x.dim() == 3 else "the model produced it (diverged training, fp16 overflow?) "
                    "or the input holds it")
            raise NonFiniteError(f"{name}[{where}] holds NaN or Inf, so the loss is not finite; {hint}")


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_reduction(reduction: Any, allowed: tuple[str, ...] = ("mean", "sum", "none")) -> str:
    if reduction not in allowed:
        raise ParameterError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def fp32_context(t: Any) -> Any:
    """Disables autocast on ``t``'s device: similarities and log-sum-exps stay in float32 under autocast."""
    dev = getattr(getattr(t, "device", None), "type", None)
    if dev not in ("cpu", "cuda", "xpu", "mps"):
        return nullcontext()
    try:
        return torch.autocast(device_type=dev, enabled=False)
    except (RuntimeError, ValueError):  # a torch build without autocast for that device
        return nullcontext()
