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


@pytest.fixture(scope="session")
def minilm_stdlib():
    """Real sentence embeddings, computed once per test run: all-MiniLM-L6-v2 (the packaged
    weights) on standard-library docstrings. Returns (corpus ~2,000 passages, 400 queries),
    unit rows, float32."""
    from _loss_refs import load_minilm

    from hardneg.textpairs import stdlib_docstring_pairs, stdlib_docstring_paragraphs

    # ~2,000 passages: enough for a graph walk to miss neighbours, cheap enough to embed on CPU
    pairs = stdlib_docstring_pairs(limit=1200, max_chars=200)
    passages = [p for _, p in pairs] + [p for _, ps in stdlib_docstring_paragraphs(limit=300, max_chars=200) for p in ps]
    queries = [q for q, _ in pairs[:400]]
    model = load_minilm()
    corpus = model.encode(passages, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    q = model.encode(queries, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return np.ascontiguousarray(corpus, np.float32), np.ascontiguousarray(q, np.float32)
