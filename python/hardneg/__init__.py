"""hardneg: Rust-accelerated negative sampling for training embedding models.

* :class:`FlatIndex` / :func:`topk`: exact fused SIMD top-k similarity search with exclusions.
* :func:`mine` / :class:`Mined`: streaming hard-negative mining (search, filters, window, sampling).
* :func:`mine_to_disk` / :func:`load_mined` / ``hardneg mine``: the same as a resumable job writing Parquet shards.
* :func:`select_negatives`: filters, rank window and top/random/SimANS sampling over candidate lists.

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
    DTypeError,
    HardnegError,
    IdOutOfRangeError,
    InputFileError,
    NonFiniteError,
    OutputDirError,
    ParameterError,
    ShapeError,
)
from .index import FlatIndex, topk
from .selection import Selection, select_negatives
from .mining import Mined, mine
from .mining_job import load_mined, mine_to_disk

__version__: str = _hardneg.__version__

__all__ = [
    "__version__",
    "FlatIndex",
    "topk",
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
]
