"""Cross-process negatives: an all-gather that keeps exact gradients.

:func:`gather_with_grad` concatenates a tensor from every rank along dim 0. Its backward sums the
incoming gradients over all ranks (all-reduce) and returns each rank the slice of its own rows, so a
loss computed on the *local rows* against the *gathered candidates* gives, after DDP averages the
parameter gradients over the ``W`` ranks, exactly the gradient of the single-process full-batch
mean loss; no world-size multiplier is needed.

Without an initialised process group (or with ``world_size == 1``) the functions are the identity,
so the same training code runs on one process.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist

from ..errors import ShapeError

__all__ = ["gather_with_grad", "gather_no_grad", "rank_and_world_size"]


def rank_and_world_size(group: Optional[Any] = None) -> tuple[int, int]:
    """``(rank, world_size)`` of ``group`` (the default group), or ``(0, 1)`` without one.

    Examples
    --------
    >>> from hardneg.losses import rank_and_world_size
    >>> rank_and_world_size()
    (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def _check_same_shape(t: torch.Tensor, group: Optional[Any], world: int) -> None:
    shape = torch.tensor(list(t.shape), dtype=torch.long, device=t.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape, group=group)
    first = shapes[0].tolist()
    for r, s in enumerate(shapes):
        if s.tolist() != first:
            raise ShapeError(
                f"gather_with_grad needs the same shape on every rank; rank 0 has {tuple(first)} but "
                f"rank {r} has {tuple(s.tolist())} (drop the last incomplete batch or pad it)"
            )


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: Optional[Any], rank: int, world: int) -> torch.Tensor:
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t, group=group)
        ctx.group, ctx.rank, ctx.rows = group, rank, t.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], None, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None, None, None


def gather_with_grad(tensor: torch.Tensor, group: Optional[Any] = None, *, check_shapes: bool = True) -> torch.Tensor:
    """Concatenates ``tensor`` from every rank along dim 0, with gradients flowing back to each rank.

    Rank ``r``'s rows occupy rows ``r * B`` to ``(r + 1) * B`` of the result. The backward pass sums
    the gradient over ranks, so every rank gets the gradient of the sum of all ranks' losses with
    respect to its own rows. All ranks must call it in the same order with the same shape
    (checked with a small extra collective unless ``check_shapes=False``).

    Parameters
    ----------
    tensor : torch.Tensor, shape (B, ...)
    group : ProcessGroup, optional
        Default: the world group.

    Returns
    -------
    torch.Tensor, shape (W * B, ...)

    Examples
    --------
    Without a process group it returns the input:

    >>> import torch
    >>> from hardneg.losses import gather_with_grad
    >>> x = torch.ones(2, 3)
    >>> gather_with_grad(x) is x
    True
    """
    rank, world = rank_and_world_size(group)
    if world == 1:
        return tensor
    if check_shapes:
        _check_same_shape(tensor, group, world)
    return _GatherWithGrad.apply(tensor, group, rank, world)


def gather_no_grad(tensor: torch.Tensor, group: Optional[Any] = None) -> torch.Tensor:
    """Concatenates ``tensor`` (ids, detached guide embeddings, ...) from every rank along dim 0.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import gather_no_grad
    >>> gather_no_grad(torch.arange(3)).tolist()
    [0, 1, 2]
    """
    rank, world = rank_and_world_size(group)
    if world == 1:
        return tensor
    t = tensor.detach().contiguous()
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t, group=group)
    return torch.cat(parts, dim=0)
