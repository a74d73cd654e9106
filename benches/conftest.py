"""pytest-benchmark runs: each hardneg case next to its anchors, on the same data, in the same run.

    .venv/bin/python -m pytest benches/ --benchmark-only              # small sizes (seconds)
    .venv/bin/python -m pytest benches/ --benchmark-only --full       # the sizes of the README tables
    make bench                                                        # --full, saved, compared with the last run
    .venv/bin/python -m pytest benches/ --benchmark-disable           # every case once (make test's smoke run)

Each benchmark sets ``benchmark.group``: hardneg and its anchors (FAISS, torch, numpy,
sentence-transformers, usearch) share a group, so pytest-benchmark's table shows their ratios
(the numbers in parentheses, relative to the fastest of the group). Every case also checks that
the anchor computed the same thing as hardneg, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", default=False,
                     help="benchmark at the README's sizes instead of the small smoke sizes")


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--full"))
