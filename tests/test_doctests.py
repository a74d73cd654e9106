"""Runs the Examples section of every public docstring in the package."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hardneg


def _modules():
    names = ["hardneg"]
    for info in pkgutil.walk_packages(hardneg.__path__, "hardneg."):
        if not info.name.split(".")[-1].startswith("_"):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
