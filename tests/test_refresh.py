"""Refresher and RefreshCallback: re-mining, re-clustering, failures that keep the old negatives,
and the callback inside real sentence-transformers training runs."""

from __future__ import annotations


import numpy as np
import pytest

import hardneg
from hardneg.data import HardNegativeDataset


def setup(n_q: int = 30, n_d: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((n_d, 8)).astype(np.float32)
    q = d[:n_q] + 0.3 * rng.standard_normal((n_q, 8)).astype(np.float32)
    store = hardneg.NegativeStore(hardneg.mine(q, d, np.arange(n_q), num_negatives=4))
    ds = HardNegativeDataset([f"q{i}" for i in range(n_q)], [f"d{i}" for i in range(n_d)], store, negatives_per_item=2)
    return q, d, store, ds


def test_refresh_publishes_what_mine_finds_and_reclusters() -> None:
    q, d, store, ds = setup()
    sampler = hardneg.ClusterBatchSampler(q, 10, cluster_size=5, seed=0)
    labels0 = sampler.labels.copy()
    q2 = q + np.random.default_rng(1).standard_normal(q.shape).astype(np.float32)  # the "trained" query encoder
    kwargs = {"relative_margin": 0.05, "exclude": [[i + 1] for i in range(len(q))]}
    r = hardneg.Refresher(lambda: q2, lambda: d, store=store, every_n_steps=5, mine_kwargs=kwargs, sampler=sampler)
    assert r.refresh(step=5) == 1
    ref = hardneg.mine(q2, d, np.arange(len(q)), num_negatives=4, **kwargs)
    np.testing.assert_array_equal(store.read().negatives, ref.negatives)
    assert store.read().step == 5 and r.history[0]["version"] == 1
    assert not np.array_equal(sampler.labels, labels0)
    np.testing.assert_array_equal(sampler.labels, hardneg.ClusterBatchSampler(q2, 10, cluster_size=5, seed=0).labels)
    assert ds.version == 0  # readers keep their version until they ask
    ds.use_version()
    assert set(ds[0]["negative_ids"]) <= set(ref.negatives[0].tolist())
    # torch tensors from an encoder are fine
    torch = pytest.importorskip("torch")
    r2 = hardneg.Refresher(lambda: torch.from_numpy(q), lambda: torch.from_numpy(d), store=store)
    assert r2.refresh() == 2


def test_due() -> None:
    q, d, store, _ = setup()
    r = hardneg.Refresher(lambda: q, lambda: d, store=store, every_n_steps=3)
    assert [s for s in range(10) if r.due(step=s)] == [3, 6, 9]
    assert r.maybe_refresh(step=3) == 1 and r.maybe_refresh(step=3) is None  # never twice for one step
    e = hardneg.Refresher(lambda: q, lambda: d, store=store, every_n_epochs=2)
    assert [x for x in range(6) if e.due(epoch=x)] == [2, 4] and not e.due(step=2)
    e.load_state_dict(r.state_dict())
    assert e.state_dict()["last_step"] == 3
    with pytest.raises(hardneg.ParameterError, match="not both"):
        hardneg.Refresher(lambda: q, lambda: d, store=store, every_n_steps=1, every_n_epochs=1)
    with pytest.raises(hardneg.ParameterError, match="positives"):
        hardneg.Refresher(lambda: q, lambda: d, store=store, mine_kwargs={"positives": 1})


class EncoderBroke(RuntimeError):
    pass


def _raise() -> np.ndarray:
    raise EncoderBroke("CUDA out of memory (pretend)")


@pytest.mark.parametrize("case", ["raises", "rows", "dim", "nan", "none", "1d", "mine"])
def test_failed_refresh_keeps_everything(case: str) -> None:
    q, d, store, ds = setup()
    sampler = hardneg.ClusterBatchSampler(q, 10, cluster_size=5, seed=0)
    labels = sampler.labels.copy()
    items = [ds[i] for i in range(len(ds))]
    bad_q = q.copy()
    bad_q[7, 3] = np.nan
    enc_q, enc_d, kwargs, err, msg = {
        "raises": (_raise, lambda: d, {}, EncoderBroke, "out of memory"),
        "rows": (lambda: q[:-2], lambda: d, {}, hardneg.ShapeError, "encode_queries returned 28 embeddings"),
        "dim": (lambda: q, lambda: d[:, :4], {}, hardneg.ShapeError, "dimension 8 but encode_documents 4"),
        "nan": (lambda: bad_q, lambda: d, {}, hardneg.NonFiniteError, "NaN or Inf in row 7"),
        "none": (lambda: q, lambda: None, {}, hardneg.ShapeError, "returned None"),
        "1d": (lambda: q[0], lambda: d, {}, hardneg.ShapeError, "2-D"),
        "mine": (lambda: q, lambda: d, {"num_negatives": 0}, hardneg.ParameterError, "num_negatives"),
    }[case]
    r = hardneg.Refresher(enc_q, enc_d, store=store, every_n_steps=1, mine_kwargs=kwargs, sampler=sampler)
    with pytest.raises(err, match=msg) as info:
        r.refresh(step=1)
    assert any("still serves version 0" in n for n in getattr(info.value, "__notes__", []))
    assert store.version == 0 and r.history == [] and r.due(step=1)
    np.testing.assert_array_equal(sampler.labels, labels)
    assert ds.use_version() == 0 and [ds[i] for i in range(len(ds))] == items


# -- the trainer callback ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def st_model():
    pytest.importorskip("datasets")
    from _small_model import one_layer_minilm

    return one_layer_minilm(max_seq_length=16, freeze_embeddings=True)


def _texts():
    topics = ["cats", "dogs", "rust", "python", "tea", "coffee"]
    queries = [f"about {topics[i % 6]} number {i}" for i in range(24)]
    docs = [f"a text on {topics[i % 6]}, item {i}" for i in range(24)]
    return queries, docs


def _train(model, tmp_path, hf, callback, epochs, batch_sampler=None):
    import sentence_transformers as st
    from sentence_transformers.sentence_transformer import losses

    kw = {"batch_sampler": batch_sampler} if batch_sampler is not None else {}
    args = st.SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=6, num_train_epochs=epochs, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0, **kw,
    )  # fmt: skip
    trainer = st.SentenceTransformerTrainer(model=model, args=args, train_dataset=hf,
                                            loss=losses.MultipleNegativesRankingLoss(model), callbacks=[callback])
    trainer.train()
    return trainer


def _recording(ds, monkeypatch):
    seen = []
    draw = ds.draw

    def recorded(query_ids, epoch=None):
        seen.append((ds.epoch, ds.version, np.asarray(query_ids).tolist()))
        return draw(query_ids, epoch)

    monkeypatch.setattr(ds, "draw", recorded)
    return seen


def test_callback_refreshes_between_epochs_in_a_real_training_run(st_model, tmp_path, monkeypatch) -> None:
    from hardneg.integrations.sentence_transformers import ClusterBatchSamplerFactory
    from hardneg.integrations.transformers import RefreshCallback

    queries, docs = _texts()
    enc = lambda texts: st_model.encode(texts, convert_to_numpy=True)  # noqa: E731
    q0, d0 = enc(queries), enc(docs)
    store = hardneg.NegativeStore(hardneg.mine(q0, d0, np.arange(24), num_negatives=3))
    ds = HardNegativeDataset(queries, docs, store, negatives_per_item=1, seed=0)
    hf = ds.to_hf_dataset()
    factory = ClusterBatchSamplerFactory(hf, embeddings=q0, group_key_column=None, cluster_size=3)
    encoded = []  # what the refresher embedded, with the weights of its step

    def encode_recorded(texts):
        encoded.append(enc(texts))
        return encoded[-1]

    refresher = hardneg.Refresher(lambda: encode_recorded(queries), lambda: encode_recorded(docs), store=store,
                                  every_n_epochs=1, mine_kwargs={"num_negatives": 3})
    cb = RefreshCallback(refresher, dataset=ds)
    seen = _recording(ds, monkeypatch)
    trainer = _train(st_model, tmp_path, hf, cb, epochs=2, batch_sampler=factory)
    assert trainer.state.global_step == 8
    assert store.version == 1 and cb.swaps == [(4, 1, 1)]
    q1, d1 = encoded
    assert not np.allclose(q1, q0, atol=1e-4)  # the model trained before the refresh
    # the sampler in the trainer's DataLoader was found and re-clustered on the refreshed embeddings
    assert refresher.sampler is factory.train_sampler
    np.testing.assert_array_equal(factory.train_sampler.labels, hardneg.ClusterBatchSampler(q1, 6, cluster_size=3).labels)
    assert refresher.history[0]["epoch"] == 1
    # every row of epoch 0 was drawn from version 0, every row of epoch 1 from version 1
    by_epoch = {}
    for epoch, version, ids in seen:
        by_epoch.setdefault(epoch, set()).add(version)
    assert by_epoch == {0: {0}, 1: {1}}
    # the new version is what mining the refreshed embeddings gives
    np.testing.assert_array_equal(store.read(1).negatives, hardneg.mine(q1, d1, np.arange(24), num_negatives=3).negatives)
    assert refresher.history[0]["missing_negatives"] == 0


def test_callback_failure_raises_in_training_and_keeps_the_negatives(st_model, tmp_path, monkeypatch) -> None:
    from hardneg.integrations.transformers import RefreshCallback

    queries, docs = _texts()
    q0 = st_model.encode(queries, convert_to_numpy=True)
    d0 = st_model.encode(docs, convert_to_numpy=True)
    store = hardneg.NegativeStore(hardneg.mine(q0, d0, np.arange(24), num_negatives=2))
    ds = HardNegativeDataset(queries, docs, store, negatives_per_item=1, seed=0)
    nan_docs = d0.copy()
    nan_docs[5] = np.nan
    refresher = hardneg.Refresher(lambda: q0, lambda: nan_docs, store=store, every_n_steps=2)
    cb = RefreshCallback(refresher, dataset=ds, swap_at="step")
    with pytest.raises(hardneg.NonFiniteError, match="encode_documents returned NaN or Inf in row 5"):
        _train(st_model, tmp_path, ds.to_hf_dataset(), cb, epochs=1)
    assert store.version == 0 and ds.version == 0 and cb.swaps == []
    # a working refresher with swap_at="step" switches right after its step
    refresher = hardneg.Refresher(lambda: q0[::-1].copy(), lambda: d0, store=store, every_n_steps=2)
    cb = RefreshCallback(refresher, dataset=ds, swap_at="step")
    seen = _recording(ds, monkeypatch)
    _train(st_model, tmp_path, ds.to_hf_dataset(), cb, epochs=1)
    assert cb.swaps == [(2, 0, 1), (4, 0, 2)]
    # accelerate's DataLoaderShard fetches one batch ahead: batch 3 was drawn before the swap after
    # step 2, batch 4 after it (this is the prefetch the callback's swap_at="step" documents)
    # (the trainer's model card also reads a few rows before training: the batches are the last draws)
    assert [(v, len(ids)) for _, v, ids in seen[-4:]] == [(0, 6), (0, 6), (0, 6), (1, 6)]
    assert ds.version == 2  # the swap after the last step
