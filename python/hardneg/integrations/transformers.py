"""``RefreshCallback``: a :class:`hardneg.Refresher` inside the Hugging Face / sentence-transformers trainer.

The trainer calls, per epoch, ``set_epoch`` on its DataLoader, then ``on_epoch_begin``, then
``iter(dataloader)`` (which forks non-persistent workers); per optimizer step ``on_step_end``.
A callback cannot replace the DataLoader, so the swap goes through the dataset: the
:class:`~hardneg.data.HardNegativeDataset` behind ``to_hf_dataset()`` reads its epoch and store
version from shared state that workers (persistent ones too) see.

* ``every_n_epochs``: the refresh runs in ``on_epoch_begin`` and the new negatives (and
  clusters) are used from that epoch's first batch.
* ``every_n_steps``: the refresh runs in ``on_step_end``; with ``swap_at="epoch"`` (default,
  reproducible: every batch of an epoch comes from one version) the dataset switches at the next
  epoch start, with ``swap_at="step"`` right away (batches already fetched still hold the old
  negatives: accelerate reads one batch ahead, DataLoader workers prefetch more).

A refresh that fails raises out of ``trainer.train()`` at the step where it ran; the dataset
keeps the version it had.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from ..errors import ParameterError

__all__ = ["RefreshCallback"]


def _find_cluster_sampler(dataloader: Any) -> Any:
    """The ClusterBatchSampler inside a (possibly accelerate-wrapped) DataLoader, or None."""
    from ..sampler import ClusterBatchSampler

    obj = getattr(dataloader, "batch_sampler", None)
    for _ in range(4):  # DataLoaderShard -> BatchSamplerShard -> the sampler
        if obj is None or isinstance(obj, ClusterBatchSampler):
            return obj
        obj = getattr(obj, "batch_sampler", None)
    return None


class RefreshCallback(TrainerCallback):
    """Refreshes mined negatives during ``Trainer.train()`` / ``SentenceTransformerTrainer.train()``.

    Parameters
    ----------
    refresher : hardneg.Refresher
        What to run and how often (``every_n_steps`` or ``every_n_epochs``).
    dataset : hardneg.data.HardNegativeDataset, optional
        The dataset behind the trainer's ``train_dataset`` (``dataset.to_hf_dataset()``): the
        callback sets its epoch at every epoch start and switches it to new versions.
    swap_at : {"epoch", "step"}, default "epoch"
        When a version published by a step-triggered refresh reaches the dataset.
    recluster : bool, default True
        Without ``refresher.sampler``, re-cluster the :class:`~hardneg.ClusterBatchSampler`
        found in the trainer's DataLoader (the one a ``batch_sampler`` factory built).

    Attributes
    ----------
    swaps : list of tuple
        ``(global_step, dataset epoch, version)`` of every switch of the dataset to a new version.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> from hardneg.data import HardNegativeDataset
    >>> from hardneg.integrations.transformers import RefreshCallback
    >>> emb = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    >>> store = hardneg.NegativeStore(hardneg.mine(emb, emb, np.arange(8), num_negatives=2))
    >>> ds = HardNegativeDataset([f"q{i}" for i in range(8)], [f"d{i}" for i in range(8)], store)
    >>> refresher = hardneg.Refresher(lambda: emb, lambda: emb, store=store, every_n_epochs=1)
    >>> cb = RefreshCallback(refresher, dataset=ds)   # then: trainer = SentenceTransformerTrainer(..., callbacks=[cb])
    >>> cb.swap_at
    'epoch'
    """

    def __init__(self, refresher: Any, dataset: Any = None, *, swap_at: str = "epoch", recluster: bool = True) -> None:
        from ..refresh import Refresher

        if not isinstance(refresher, Refresher):
            raise ParameterError(f"refresher must be a hardneg.Refresher, got {type(refresher).__name__}")
        if swap_at not in ("epoch", "step"):
            raise ParameterError(f"swap_at must be 'epoch' or 'step', got {swap_at!r}")
        self.refresher = refresher
        self.dataset = dataset
        self.swap_at = swap_at
        self.recluster = bool(recluster)
        self.swaps: list[tuple[int, int, int]] = []

    def _attach_sampler(self, kwargs: dict[str, Any]) -> None:
        if self.recluster and self.refresher.sampler is None:
            self.refresher.sampler = _find_cluster_sampler(kwargs.get("train_dataloader"))

    def _swap(self, step: int) -> None:
        if self.dataset is None:
            return
        before = self.dataset.version
        version = self.dataset.use_version()
        if version != before:
            self.swaps.append((step, self.dataset.epoch, version))

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = int(math.floor(state.epoch + 1e-6)) if state.epoch is not None else 0
        self._attach_sampler(kwargs)
        self.refresher.maybe_refresh(step=state.global_step, epoch=epoch)  # raises into train() on failure
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)
        self._swap(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._attach_sampler(kwargs)
        if self.refresher.maybe_refresh(step=state.global_step) is not None and self.swap_at == "step":
            self._swap(state.global_step)
