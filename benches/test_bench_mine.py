"""Mining: hardneg.mine and the sentence-transformers drop-in against sentence_transformers.util.mine_hard_negatives.

Precomputed embeddings (a stand-in model looks the rows up), so only mining is timed:
``relative_margin=0.05``, 8 negatives, ``"top"``; query ``i``'s positive is corpus row ``i``.
"""

from __future__ import annotations

import numpy as np
import pytest

import hardneg
from _common import run_once, topic_embeddings
from bench_mine import PrecomputedModel  # the stand-in model of the mining script


class StandInModel(PrecomputedModel):
    """The mining script's stand-in with the ``encode`` method the drop-in checks a model for."""

    def encode(self, texts, **kw):
        return self.encode_document(texts, **kw)

SMALL = (300, 3_000, 64)
FULL = (5_000, 100_000, 384)
KW = dict(num_negatives=8, relative_margin=0.05)


@pytest.fixture(scope="module")
def data(full):
    q, n, d = FULL if full else SMALL
    corpus = topic_embeddings(n, d, seed=1)
    rng = np.random.default_rng(2)
    queries = corpus[:q] + 0.3 * rng.standard_normal((q, d), dtype=np.float32) / np.sqrt(d) * 8
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    want = hardneg.mine(queries, corpus, np.arange(q), progress=False, **KW)
    return queries.astype(np.float32), corpus, want


def _pairs(q: int, n: int):
    datasets = pytest.importorskip("datasets")
    pairs = datasets.Dataset.from_dict({"anchor": [f"q{i}" for i in range(q)], "positive": [f"d{i}" for i in range(q)]})
    return pairs, [f"d{j}" for j in range(n)]


@pytest.mark.parametrize("variant", ["hardneg.mine", "hardneg drop-in", "sentence-transformers", "sentence-transformers faiss"])
def test_mine(benchmark, data, variant):
    queries, corpus, want = data
    q, n = len(queries), len(corpus)
    benchmark.group = f"mine {q:,} queries x {n:,} x {corpus.shape[1]}, 8 negatives, relative_margin 0.05"
    if variant == "hardneg.mine":
        got = run_once(benchmark, hardneg.mine, queries, corpus, np.arange(q), progress=False, **KW)
        np.testing.assert_array_equal(got.negatives, want.negatives)
        return
    pytest.importorskip("sentence_transformers")
    pairs, texts = _pairs(q, n)
    model = StandInModel(queries, corpus)
    if variant == "hardneg drop-in":
        from hardneg.integrations.sentence_transformers import mine_hard_negatives
    else:
        if variant.endswith("faiss"):
            pytest.importorskip("faiss")
        from sentence_transformers.util import mine_hard_negatives
    extra = {"use_faiss": True} if variant.endswith("faiss") else {}
    ds = run_once(benchmark, mine_hard_negatives, pairs, model, corpus=texts, verbose=False, output_format="n-tuple",
                  **KW, **extra)
    # the same negatives as hardneg.mine for the queries that got all 8 (rows in query order)
    full_rows = np.flatnonzero((want.negatives >= 0).all(axis=1))
    assert len(ds) == len(full_rows)
    got = np.array([[int(r[f"negative_{j + 1}"][1:]) for j in range(8)] for r in ds.select(range(min(len(ds), 50)))])
    np.testing.assert_array_equal(got, want.negatives[full_rows[: len(got)]])
