import os

import numpy as np
import pytest

# Hypothesis: bounded, deterministic runs so CI time is predictable.
try:
    from hypothesis import settings

    settings.register_profile("hardneg", max_examples=60, deadline=None, derandomize=True)
    settings.load_profile("hardneg")
except ImportError:  # pragma: no cover
    pass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
