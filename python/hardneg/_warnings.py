"""Warnings that point at the user's line: :func:`warn`."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside hardneg (and torch's module
    machinery, through which the losses are called), whatever the call depth inside."""
    level, frame = 2, sys._getframe(1)  # stacklevel 1 would be this function
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE) or _is_torch(frame.f_code.co_filename)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _is_torch(filename: str) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and filename.startswith(os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
