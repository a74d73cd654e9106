"""hardneg: Rust-accelerated negative sampling for training embedding models.

* :class:`FlatIndex` / :func:`topk`: exact fused SIMD top-k similarity search with exclusions;
  AMX bf16 scans certified exact, bfloat16/int8 storage, saved indexes; :func:`kernels` says
  what runs; :func:`load_index` opens a saved index of any kind.
* :class:`HnswIndex`: approximate top-k on an HNSW graph (usearch) with the same output, for
  corpora beyond brute force; saved and memory-mapped files.
* :func:`mine` / :class:`Mined`: streaming hard-negative mining (search, filters, window, sampling).
* :func:`mine_to_disk` / :func:`load_mined` / ``hardneg mine``: the same as a resumable job writing Parquet shards.
* :func:`select_negatives`: filters, rank window and top/random/SimANS sampling over candidate lists.
* :mod:`hardneg.losses` (needs torch, imported on first use): contrastive losses such as
  :class:`InfoNCE` and the memory-efficient :class:`ChunkedInfoNCE`.
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

__version__: str = _hardneg.__version__

__all__ = [
    "__version__",
    "FlatIndex",
    "HnswIndex",
    "topk",
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
    "losses",
    "InfoNCE",
    "ChunkedInfoNCE",
    "GuidedInfoNCE",
    "SigLIPLoss",
    "CachedEncoder",
    "cluster",
    "ClusterResult",
    "ClusterBatchSampler",
]

# The losses need torch: import them only when used, so ``import hardneg`` works without torch.
_LOSS_NAMES = ("InfoNCE", "ChunkedInfoNCE", "GuidedInfoNCE", "SigLIPLoss", "CachedEncoder")


def __getattr__(name: str) -> object:
    if name == "losses" or name in _LOSS_NAMES:
        import importlib

        from ._optional import require

        require("torch", f"hardneg.{name}")  # one clear line, not an import traceback, without torch
        losses = importlib.import_module(".losses", __name__)
        return losses if name == "losses" else getattr(losses, name)
    if name == "ClusterBatchSampler":  # the sampler module is loaded on first use too
        from .sampler import ClusterBatchSampler

        return ClusterBatchSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
