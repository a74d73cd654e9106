"""hardneg: Rust-accelerated negative sampling for training embedding models.

* :class:`FlatIndex` / :func:`topk`: exact fused SIMD top-k similarity search with exclusions;
  AMX bf16 scans certified exact, bfloat16/int8 storage, saved indexes; :func:`kernels` says
  what runs; :func:`load_index` opens a saved index of any kind.
* :class:`HnswIndex`: approximate top-k on an HNSW graph (usearch) with the same output, for
  corpora beyond brute force; saved and memory-mapped files.
* :func:`mine` / :class:`Mined`: streaming hard-negative mining (search, filters, window, sampling).
* :func:`mine_to_disk` / :func:`load_mined` / ``hardneg mine``: the same as a resumable job writing Parquet shards.
* :func:`search_partial` / :func:`merge_topk`: one corpus shard's top-k with global ids, and the
  exact merge of shards' results (for any engine: torch.distributed, Ray, Spark, ...).
* :func:`hardneg.distributed.mine`: :func:`mine` over the ranks of ``torch.distributed``, exactly
  (corpus or queries split across ranks).
* :func:`select_negatives`: filters, rank window and top/random/SimANS sampling over candidate lists.
* :mod:`hardneg.losses` (needs torch, imported on first use): contrastive losses such as
  :class:`InfoNCE` and the memory-efficient :class:`ChunkedInfoNCE`.
* :class:`NegativeStore` / :class:`Refresher` / :class:`hardneg.data.HardNegativeDataset`: mined
  negatives as training data, refreshed with the current model during training.
* :class:`InteractionSampler` (:mod:`hardneg.recsys`): negative items a user never interacted
  with, uniform or by popularity, and hard ones; :class:`TripleCorruptor` (:mod:`hardneg.kg`):
  filtered knowledge-graph corruptions (uniform, Bernoulli, cluster, hard).
* :func:`cluster`: balanced (or k-means) spherical clustering; :class:`ClusterBatchSampler`:
  cluster-balanced mini-batches for PyTorch (imported lazily, so ``import hardneg`` never
  imports torch).

Examples
--------
>>> import numpy as np, hardneg
>>> scores, ids = hardneg.topk(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), k=1)
>>> ids.ravel().tolist()
[0, 1, 2]
"""

from __future__ import annotations

from . import _hardneg
from .errors import (
    DeviceError,
    DistributedError,
    DTypeError,
    HardnegError,
    IdOutOfRangeError,
    InputFileError,
    NonFiniteError,
    OutputDirError,
    ParameterError,
    ShapeError,
)
from .index import FlatIndex, kernels, load_index, topk
from .hnsw import HnswIndex
from .selection import Selection, select_negatives
from .mining import Mined, mine
from .mining_job import load_mined, mine_to_disk
from .cluster import ClusterResult, cluster
from .partial import merge_topk, search_partial
from . import distributed
from .store import NegativeStore
from .refresh import Refresher
from .recsys import InteractionSampler
from .kg import TripleCorruptor

__version__: str = _hardneg.__version__

__all__ = [
    "__version__",
    "FlatIndex",
    "HnswIndex",
    "topk",
    "search_partial",
    "merge_topk",
    "distributed",
    "kernels",
    "load_index",
    "select_negatives",
    "mine",
    "Mined",
    "mine_to_disk",
    "load_mined",
    "Selection",
    "HardnegError",
    "ShapeError",
    "DTypeError",
    "NonFiniteError",
    "IdOutOfRangeError",
    "ParameterError",
    "InputFileError",
    "OutputDirError",
    "DeviceError",
    "DistributedError",
    "losses",
    "InfoNCE",
    "ChunkedInfoNCE",
    "GuidedInfoNCE",
    "SigLIPLoss",
    "CachedEncoder",
    "BPRLoss",
    "CosineContrastiveLoss",
    "SampledSoftmaxLoss",
    "ItemFrequencyEstimator",
    "cluster",
    "ClusterResult",
    "ClusterBatchSampler",
    "NegativeStore",
    "Refresher",
    "InteractionSampler",
    "TripleCorruptor",
]

# The losses need torch: import them only when used, so ``import hardneg`` works without torch.
_LOSS_NAMES = ("InfoNCE", "ChunkedInfoNCE", "GuidedInfoNCE", "SigLIPLoss", "CachedEncoder")
_RECSYS_LOSS_NAMES = ("BPRLoss", "CosineContrastiveLoss", "SampledSoftmaxLoss", "ItemFrequencyEstimator")


def __getattr__(name: str) -> object:
    if name == "losses" or name in _LOSS_NAMES or name in _RECSYS_LOSS_NAMES:
        import importlib

        from ._optional import require

        require("torch", f"hardneg.{name}")  # one clear line, not an import traceback, without torch
        losses = importlib.import_module(".losses", __name__)
        return losses if name == "losses" else getattr(losses, name)
    if name == "ClusterBatchSampler":  # the sampler module is loaded on first use too
        from .sampler import ClusterBatchSampler

        return ClusterBatchSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
