"""GradCache: train an encoder with a batch larger than memory (Gao et al. 2021).

:class:`CachedEncoder` wraps an encoder. Calling it embeds the batch mini-batch by mini-batch
*without* an autograd graph (recording the RNG state of each mini-batch) and returns embeddings
that are part of the graph through a custom autograd function. Compute any loss on them (the
full-batch loss: :class:`~hardneg.losses.InfoNCE`, :class:`~hardneg.losses.ChunkedInfoNCE`, ...)
and call ``backward()``: the function receives the gradient of the loss with respect to the
embeddings (the cache), then re-embeds each mini-batch *with* a graph, replaying its RNG state so
dropout draws the same masks, and back-propagates ``sum(embedding * cached_grad)`` (in float32)
into the encoder's parameters. Peak activation memory is one mini-batch; the parameter gradients
equal those of the full-batch loss.

The re-embedding happens inside the outer ``backward()``, so the incoming gradient (gradient
accumulation divisors, fp16 loss scaling) reaches every mini-batch, and each call keeps its own
cache, so two forward calls before one backward are fine.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Mapping, Optional, Union

import torch

from ..errors import ParameterError, ShapeError

__all__ = ["CachedEncoder"]

Features = Union[torch.Tensor, Mapping[str, Any]]


def _batch_size(features: Features) -> int:
    if isinstance(features, torch.Tensor):
        if features.dim() == 0:
            raise ShapeError("features must have a batch dimension (dim 0)")
        return int(features.shape[0])
    if isinstance(features, Mapping):
        sizes = {int(v.shape[0]) for v in features.values() if isinstance(v, torch.Tensor) and v.dim() > 0}
        if len(sizes) != 1:
            raise ShapeError(f"every tensor in features must share the batch size (dim 0), got sizes {sorted(sizes)}")
        return sizes.pop()
    raise ShapeError(f"features must be a tensor or a mapping of tensors, got {type(features).__name__}")


def _slice(features: Features, start: int, end: int) -> Features:
    if isinstance(features, torch.Tensor):
        return features[start:end]
    return {k: (v[start:end] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in features.items()}


def _devices(features: Features) -> list[torch.device]:
    tensors = [features] if isinstance(features, torch.Tensor) else [v for v in features.values() if isinstance(v, torch.Tensor)]
    return sorted({t.device for t in tensors if t.device.type == "cuda"}, key=str)


class _RngState:
    """CPU and CUDA RNG states at one point, restorable inside a forked RNG context."""

    def __init__(self, devices: list[torch.device]) -> None:
        self.cpu = torch.get_rng_state()
        self.devices = [d.index if d.index is not None else torch.cuda.current_device() for d in devices]
        self.cuda = [torch.cuda.get_rng_state(i) for i in self.devices]

    def replay(self) -> Any:
        import contextlib

        @contextlib.contextmanager
        def ctx() -> Any:
            with torch.random.fork_rng(devices=self.devices):
                torch.set_rng_state(self.cpu)
                for i, s in zip(self.devices, self.cuda):
                    torch.cuda.set_rng_state(s, i)
                yield

        return ctx()


class _CachedEmbed(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, enc: "CachedEncoder", features: Features) -> torch.Tensor:  # type: ignore[override]
        B = _batch_size(features)
        ranges = [(s, min(B, s + enc.mini_batch_size)) for s in range(0, B, enc.mini_batch_size)]
        devices = _devices(features)
        states, outs = [], []
        for s, e in ranges:
            states.append(_RngState(devices))
            with torch.no_grad():
                outs.append(enc._embed(_slice(features, s, e)).detach())
        ctx.enc, ctx.features, ctx.ranges, ctx.states = enc, features, ranges, states
        return torch.cat(outs, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:
        enc: CachedEncoder = ctx.enc
        for i, ((s, e), state) in enumerate(zip(ctx.ranges, ctx.states)):
            last = i == len(ctx.ranges) - 1
            sync = nullcontext() if (last or enc.no_sync is None) else enc.no_sync()
            with state.replay(), torch.enable_grad(), sync:
                emb = enc._embed(_slice(ctx.features, s, e))
                surrogate = (emb.float() * grad[s:e].float()).sum()
                surrogate.backward()
        ctx.features = ctx.states = None
        return None, None, None


class CachedEncoder:
    """GradCache wrapper: full-batch gradients with the activation memory of one mini-batch.

    Parameters
    ----------
    model : callable
        ``model(features) -> embeddings [b, d]`` (or a mapping holding them under ``output_key``,
        as a ``SentenceTransformer`` returns), called on row slices of the features.
    mini_batch_size : int, default 32
        Rows embedded at once.
    output_key : str, default "sentence_embedding"
        Key of the embeddings when the model returns a mapping.
    no_sync : callable, optional
        A context manager factory such as ``ddp_model.no_sync``: used for every mini-batch but the
        last one of each call, so DDP all-reduces the parameter gradients once.

    Examples
    --------
    >>> import torch
    >>> from hardneg.losses import CachedEncoder, InfoNCE
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 4))
    >>> enc = CachedEncoder(model, mini_batch_size=3)
    >>> x, y = torch.randn(10, 6), torch.randn(10, 6)
    >>> loss = InfoNCE()(enc(x), enc(y))
    >>> loss.backward()   # re-embeds 4 mini-batches per call, replaying dropout
    >>> model[0].weight.grad.shape
    torch.Size([8, 6])
    """

    def __init__(
        self,
        model: Callable[[Any], Any],
        mini_batch_size: int = 32,
        *,
        output_key: str = "sentence_embedding",
        no_sync: Optional[Callable[[], Any]] = None,
    ) -> None:
        if not callable(model):
            raise ParameterError(f"model must be callable, got {type(model).__name__}")
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ParameterError(f"mini_batch_size must be a positive int, got {mini_batch_size!r}")
        self.model, self.mini_batch_size, self.output_key, self.no_sync = model, mini_batch_size, output_key, no_sync

    def _embed(self, features: Features) -> torch.Tensor:
        out = self.model(features)
        if isinstance(out, Mapping):
            out = out[self.output_key]
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ShapeError(f"the model must return embeddings [b, d], got {getattr(out, 'shape', type(out))}")
        return out

    def __call__(self, features: Features) -> torch.Tensor:
        """Embeds ``features`` (a tensor or a mapping of tensors, batch on dim 0); see the class doc."""
        if not torch.is_grad_enabled():
            B = _batch_size(features)
            return torch.cat(
                [self._embed(_slice(features, s, min(B, s + self.mini_batch_size))) for s in range(0, B, self.mini_batch_size)]
            )
        anchor = torch.empty(0, requires_grad=True)
        return _CachedEmbed.apply(anchor, self, features)
