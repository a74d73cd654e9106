"""The engine releases the GIL, stops on Ctrl-C, and the extension matches its stub."""

from __future__ import annotations

import ast
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gil import ticks_while

import hardneg
from hardneg import _hardneg


def _big(rng):
    return rng.standard_normal((100_000, 256), dtype=np.float32), rng.standard_normal((3000, 256), dtype=np.float32)


def test_keyboard_interrupt_stops_a_long_search(rng):
    corpus, q = _big(rng)
    index = hardneg.FlatIndex(corpus)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        for _ in range(50):  # far longer than the timer if the interrupt were ignored
            index.search(q, 10)
    timer.join()
    assert time.perf_counter() - t < 30
    # the index still works afterwards
    s, i = index.search(q[:2], 3)
    assert i.shape == (2, 3)


def test_gil_is_released_during_search(rng):
    corpus, q = _big(rng)
    index = hardneg.FlatIndex(corpus)
    ticks, elapsed = ticks_while(lambda: index.search(q, 10))
    # with the GIL held, the spinning thread could not have run during the search
    assert elapsed > 0.05 and ticks >= 5


def _stub_tree():
    return ast.parse((Path(hardneg.__file__).parent / "_hardneg.pyi").read_text())


def test_stub_matches_extension():
    tree = _stub_tree()
    stub_names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub_names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub_names.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            cls = getattr(_hardneg, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    assert hasattr(cls, item.name), f"stub declares {node.name}.{item.name}, missing in the extension"
            public = {m for m in dir(cls) if not m.startswith("_")}
            declared = {i.name for i in node.body if isinstance(i, ast.FunctionDef)}
            assert public <= declared, f"{node.name} members missing from the stub: {public - declared}"
    runtime = {n for n in dir(_hardneg) if not n.startswith("_") or n == "__version__"}
    assert runtime == stub_names, f"extension-only: {runtime - stub_names}, stub-only: {stub_names - runtime}"


def test_public_api_is_explicit():
    for name in hardneg.__all__:
        assert hasattr(hardneg, name)
    assert _hardneg.build_profile == "release"
    assert _hardneg.isa() in _hardneg.available_isas()
