"""Exceptions raised by hardneg.

Every error hardneg raises on bad input derives from :class:`HardnegError`, and also from the
builtin exception that fits (``ValueError``, ``TypeError``, ``IndexError``) so existing
``except ValueError`` handlers keep working.

Examples
--------
>>> import numpy as np, hardneg
>>> try:
...     hardneg.topk(np.ones((2, 3), np.float32), np.ones((5, 4), np.float32), k=1)
... except hardneg.ShapeError as e:
...     print(type(e).__name__, isinstance(e, ValueError))
ShapeError True
"""

from __future__ import annotations

__all__ = [
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
]


class HardnegError(Exception):
    """Base class of every error raised by hardneg."""


class ShapeError(HardnegError, ValueError):
    """An array has the wrong number of dimensions, rows or columns, or is empty."""


class DTypeError(HardnegError, TypeError):
    """An array has a dtype hardneg cannot use (not a real number type)."""


class NonFiniteError(HardnegError, ValueError):
    """An embedding holds NaN or infinity; the message names the first such row."""


class IdOutOfRangeError(HardnegError, IndexError):
    """An id (positive, exclusion, ...) points outside the corpus."""


class ParameterError(HardnegError, ValueError):
    """A parameter has an impossible value (``k < 1``, ``k`` larger than the corpus, ...)."""


class InputFileError(HardnegError, ValueError):
    """An input file (``.npy``) is missing, unreadable or malformed."""


class OutputDirError(HardnegError, ValueError):
    """An output path cannot be written, or an output directory holds something else (another job's results, unrelated files)."""


class DeviceError(HardnegError, ValueError):
    """Tensors that must be used together live on different devices (e.g. ``cpu`` and ``cuda:0``)."""


class DistributedError(HardnegError, RuntimeError):
    """A rank of a distributed job stopped or did not answer in time (``hardneg.distributed``)."""
