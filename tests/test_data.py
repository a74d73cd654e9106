"""HardNegativeDataset and NegativeStore: keyed draws, workers, resume, collate, versions, bad input."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardneg
from hardneg.data import HardNegativeDataset

torch = pytest.importorskip("torch")


def make(n_q: int = 40, n_d: int = 60, pool: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((n_d, 8)).astype(np.float32)
    q = d[:n_q] + 0.3 * rng.standard_normal((n_q, 8)).astype(np.float32)
    mined = hardneg.mine(q, d, np.arange(n_q), num_negatives=pool)
    queries = [f"query {i}" for i in range(n_q)]
    docs = [f"document {i}" for i in range(n_d)]
    return q, d, mined, queries, docs


def batches_of(loader) -> list[tuple]:
    return [(b["query_ids"].tolist(), b["positive_ids"].tolist(), b["negative_ids"].tolist(), b["negatives"]) for b in loader]


# -- keyed draws -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(pool=st.integers(0, 9), k=st.integers(1, 4), seed=st.integers(0, 2**64 - 1), holes=st.integers(0, 9))
def test_draws_rotate_through_the_pool_without_repeats(pool: int, k: int, seed: int, holes: int) -> None:
    # reference: the valid ids of a query, taken k per epoch, each once before any repeats
    rng = np.random.default_rng(pool * 31 + k)
    rows = 5
    neg = np.full((rows, max(pool, 1)), -1, np.int64)
    for r in range(rows):
        valid = max(0, pool - (holes + r) % (pool + 1))
        neg[r, :valid] = rng.choice(100, size=valid, replace=False)
    store = hardneg.NegativeStore(neg, positives=np.arange(100, 100 + rows), num_documents=200)
    ds = HardNegativeDataset(None, None, store, negatives_per_item=k, seed=seed)
    for r in range(rows):
        valid = neg[r][neg[r] >= 0].tolist()
        if not valid:
            for e in range(3):
                assert ds.draw([r], epoch=e)[1][0].tolist() == [-1] * k
            continue
        epochs = -(-len(valid) // k) if len(valid) % k == 0 else len(valid)
        seen = []
        for e in range(epochs):
            pos, got = ds.draw([r], epoch=e)
            assert pos[0] == 100 + r
            got = got[0].tolist()
            present = [g for g in got if g >= 0]
            assert len(present) == min(k, len(valid)) and set(present) <= set(valid)
            assert len(set(present)) == len(present)  # no repeats inside an item
            assert got[len(present):] == [-1] * (k - len(present))
            seen += present
        if len(valid) % k == 0:  # whole windows: every valid id exactly once over len/k epochs
            assert sorted(seen) == sorted(valid)
        else:
            assert set(seen) == set(valid)


def test_draws_depend_only_on_seed_epoch_query_version() -> None:
    _, _, mined, queries, docs = make()
    a = HardNegativeDataset(queries, docs, mined, negatives_per_item=2, seed=7)
    b = HardNegativeDataset(queries, docs, mined, negatives_per_item=2, seed=7)
    c = HardNegativeDataset(queries, docs, mined, negatives_per_item=2, seed=8)
    ids = np.arange(len(queries))
    np.testing.assert_array_equal(a.draw(ids)[1], b.draw(ids[::-1])[1][::-1])  # order of the request is irrelevant
    assert not np.array_equal(a.draw(ids)[1], c.draw(ids)[1])
    e1 = a.draw(ids, epoch=1)[1]
    assert not np.array_equal(a.draw(ids)[1], e1)
    a.set_epoch(1)
    np.testing.assert_array_equal(a.draw(ids)[1], e1)
    assert [a[i] for i in range(3)] == [a[i] for i in range(3)]  # repeated reads agree
    # items agree with draw() and the texts match the ids
    it = a[5]
    assert it["negative_ids"] == e1[5].tolist() and it["negatives"] == [docs[j] for j in it["negative_ids"]]
    assert it["query"] == queries[5] and it["positive"] == docs[it["positive_id"]]


def test_several_positives_rotate_with_the_epoch() -> None:
    neg = np.array([[5, 6], [7, 8]])
    pos = np.array([[0, 1, 2], [3, -1, -1]])
    ds = HardNegativeDataset(None, None, hardneg.NegativeStore(neg, positives=pos, num_documents=9), seed=3)
    firsts = [int(ds.draw([0], epoch=e)[0][0]) for e in range(3)]
    assert sorted(firsts) == [0, 1, 2]
    assert [int(ds.draw([1], epoch=e)[0][0]) for e in range(3)] == [3, 3, 3]


# -- DataLoader: workers, persistent workers, spawn, resume ------------------------------------


def _loader(ds, sampler, **kw):
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate, **kw)


@pytest.mark.parametrize("workers", [
    {"num_workers": 2},
    {"num_workers": 2, "persistent_workers": True},
    {"num_workers": 1, "multiprocessing_context": "spawn", "persistent_workers": True},
])
def test_workers_match_the_main_process_across_epochs_and_versions(workers) -> None:
    q, _, mined, queries, docs = make()

    def run(**kw):
        store = hardneg.NegativeStore(mined)
        ds = HardNegativeDataset(queries, docs, store, negatives_per_item=2, seed=3)
        sampler = hardneg.ClusterBatchSampler(q, 8, cluster_size=4, seed=1)
        loader = _loader(ds, sampler, **kw)
        out = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            if epoch == 2:  # a refresh between epochs: the workers must follow
                store.publish(np.roll(mined.negatives, 1, axis=1), epoch=epoch)
                ds.use_version()
            out.append(batches_of(loader))
        return out

    main = run(num_workers=0)
    assert main[0] != main[1] and main[1] != main[2]
    assert run(**workers) == main


def test_stateful_dataloader_resumes_mid_epoch() -> None:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    q, _, mined, queries, docs = make()

    def loader(store):
        ds = HardNegativeDataset(queries, docs, store, negatives_per_item=1, seed=5)
        sampler = hardneg.ClusterBatchSampler(q, 8, cluster_size=4, seed=2)
        return ds, sampler, sdl.StatefulDataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate, num_workers=0)

    store = hardneg.NegativeStore(mined)
    store.publish(np.roll(mined.negatives, 2, axis=1))
    ds, sampler, dl = loader(store)
    sampler.set_epoch(1)
    ds.set_epoch(1)
    ds.use_version(1)
    full = batches_of(dl)
    ds, sampler, dl = loader(store)
    sampler.set_epoch(1)
    ds.set_epoch(1)
    ds.use_version(1)
    it = iter(dl)
    head = [next(it) for _ in range(2)]
    state = dl.state_dict()
    ds2, _, dl2 = loader(store)  # a fresh process: epoch 0, latest version
    assert ds2.epoch == 0
    dl2.load_state_dict(state)
    rest = batches_of(dl2)
    assert ds2.state_dict() == {"seed": 5, "epoch": 1, "version": 1}
    assert batches_of(head) + rest == full
    with pytest.raises(hardneg.ParameterError, match="seed"):
        HardNegativeDataset(queries, docs, store, seed=6).load_state_dict(ds2.state_dict())


# -- collate and the losses --------------------------------------------------------------------


def test_collate_shapes_masks_and_keys() -> None:
    neg = np.array([[2, 3], [4, -1], [-1, -1], [5, 0]])
    pos = np.array([0, 1, 2, 3])
    docs = [f"d{i}" for i in range(6)]
    keys = ["a", "b", "c", "a", "e", "f"]  # document 3 duplicates document 0
    ds = HardNegativeDataset([f"q{i}" for i in range(4)], docs, hardneg.NegativeStore(neg, positives=pos),
                             negatives_per_item=2, doc_keys=keys)
    b = ds.collate([ds[i] for i in range(4)])
    assert b["query_ids"].tolist() == [0, 1, 2, 3] and b["positive_ids"].tolist() == [0, 1, 2, 3]
    assert tuple(b["negative_ids"].shape) == tuple(b["negative_keys"].shape) == tuple(b["negative_mask"].shape) == (4, 2)
    assert b["negative_ids"].dtype == torch.int64 and b["negative_mask"].dtype == torch.bool
    assert b["negative_mask"].tolist() == [[True, True], [True, False], [False, False], [True, True]]
    assert (b["negative_ids"][~b["negative_mask"]] == -1).all() and (b["negative_keys"][~b["negative_mask"]] == -1).all()
    assert len(b["negatives"]) == 8
    assert [t for t, m in zip(b["negatives"], b["negative_mask"].reshape(-1).tolist()) if not m] == ["", "", ""]
    pk = b["positive_keys"].tolist()
    assert pk[0] == pk[3] and len(set(pk[:3])) == 3  # duplicates share a key
    row0 = set(b["negative_ids"][0].tolist())
    assert row0 == {2, 3}
    k3 = b["negative_keys"][0][b["negative_ids"][0] == 3].item()
    assert k3 == pk[0]  # query 0's negative 3 duplicates its positive: same key, so the loss masks it


def test_collate_feeds_the_loss_and_duplicates_are_masked() -> None:
    from hardneg.losses import info_nce

    neg = np.array([[3], [4], [5]])
    pos = np.array([0, 1, 2])
    keys = [0, 1, 2, 0, 4, 5]  # document 3 (query 0's negative) duplicates document 0 (its positive)
    ds = HardNegativeDataset(None, None, hardneg.NegativeStore(neg, positives=pos, num_documents=6), doc_keys=keys)
    b = ds.collate([ds[i] for i in range(3)])
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=-1)
    qe = e[:3] + 0.1 * torch.randn(3, 16, generator=g)
    loss = info_nce(qe, e[b["positive_ids"]], e[b["negative_ids"]], positive_ids=b["positive_keys"],
                    negative_ids=b["negative_keys"], reduction="none")
    # reference: row i against all positives and negatives of the batch, minus masked duplicates
    qn = torch.nn.functional.normalize(qe, dim=-1)
    cands = torch.cat([e[b["positive_ids"]], e[b["negative_ids"].reshape(-1)]])
    cand_keys = torch.cat([b["positive_keys"], b["negative_keys"].reshape(-1)]).tolist()
    for i in range(3):
        logits = [float(qn[i] @ cands[c]) / 0.05 for c in range(6)
                  if c == i or cand_keys[c] != b["positive_keys"][i].item()]
        ref = float(torch.logsumexp(torch.tensor(logits), 0) - float(qn[i] @ cands[i]) / 0.05)
        assert abs(float(loss[i]) - ref) < 1e-4
    assert len([c for c in range(6) if cand_keys[c] == 0]) == 2  # the duplicate was there to mask


# -- sentence-transformers layout --------------------------------------------------------------


def test_to_hf_dataset_layout_and_filling() -> None:
    pytest.importorskip("datasets")
    neg = np.array([[2, 3, 4], [5, -1, -1], [-1, -1, -1]])
    pos = np.array([0, 1, 2])
    docs = [f"d{i}" for i in range(6)]
    ds = HardNegativeDataset(["q0", "q1", "q2"], docs, hardneg.NegativeStore(neg, positives=pos), negatives_per_item=2, seed=4)
    hf = ds.to_hf_dataset()
    assert hf.column_names == ["anchor", "query_id"] and hf["anchor"] == ["q0", "q1", "q2"]  # stored columns
    rows = hf[:3]
    assert list(rows) == ["anchor", "positive", "negative_1", "negative_2"]
    assert rows["anchor"] == ["q0", "q1", "q2"] and rows["positive"] == ["d0", "d1", "d2"]
    assert {rows["negative_1"][0], rows["negative_2"][0]} <= {"d2", "d3", "d4"}
    assert rows["negative_1"][0] != rows["negative_2"][0]
    assert rows["negative_1"][1] == rows["negative_2"][1] == "d5"  # one valid negative: repeated
    assert "d2" not in (rows["negative_1"][2], rows["negative_2"][2])  # none: random documents, never the positive
    assert hf[0] == {k: v[0] for k, v in rows.items()}
    ds.set_epoch(1)
    assert hf[:3]["negative_1"][0] != rows["negative_1"][0] or hf[:3]["negative_2"][0] != rows["negative_2"][0]


# -- the store ---------------------------------------------------------------------------------


def _reader(directory: str, rounds: int, out) -> None:
    store = hardneg.NegativeStore.open(directory)
    seen = []
    for _ in range(rounds):
        v = store.read()
        a = np.asarray(v.negatives)
        seen.append((v.version, int(a.min()), int(a.max())))
    out.put(seen)


def test_store_versions_under_concurrent_readers(tmp_path) -> None:
    rows, width = 2000, 16
    store = hardneg.NegativeStore(np.zeros((rows, width), np.int64), positives=np.zeros(rows, np.int64),
                                  num_documents=1000, directory=tmp_path / "store", keep=2)
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(str(tmp_path / "store"), 300, out)) for _ in range(2)]
    for p in procs:
        p.start()
    held = store.read()
    for v in range(1, 40):
        assert store.publish(np.full((rows, width), v, np.int64), step=v) == v
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for seen in results:
        versions = [v for v, _, _ in seen]
        assert versions == sorted(versions)  # never goes back
        assert all(lo == hi == v for v, lo, hi in seen)  # every read is one whole version, never a mix
    assert store.versions() == [38, 39]  # keep=2
    assert held.version == 0 and int(np.asarray(held.negatives).max()) == 0  # a held version stays readable
    with pytest.raises(hardneg.ParameterError, match="not in the store"):
        store.read(0)
    assert hardneg.NegativeStore.open(tmp_path / "store").read().step == 39


def test_store_and_dataset_bad_input(tmp_path) -> None:
    _, _, mined, queries, docs = make()
    with pytest.raises(hardneg.ShapeError, match="queries has 39 texts but the mined negatives have 40 rows"):
        HardNegativeDataset(queries[:-1], docs, mined)
    with pytest.raises(hardneg.IdOutOfRangeError, match="only 50 documents"):
        HardNegativeDataset(queries, docs[:50], mined)
    store = hardneg.NegativeStore(mined)
    ds = HardNegativeDataset(queries, docs, store, negatives_per_item=2)
    before = [ds[i] for i in range(len(ds))]
    bad = mined.negatives.copy()
    bad[3, 1] = len(docs)
    with pytest.raises(hardneg.IdOutOfRangeError, match="query 3 holds document id 60"):
        store.publish(bad)
    with pytest.raises(hardneg.ShapeError, match="has 39 rows but the store has 40"):
        store.publish(mined.negatives[:-1])
    with pytest.raises(hardneg.DTypeError):
        store.publish(mined.negatives.astype(np.float32))
    assert store.version == 0 and ds.use_version() == 0
    assert [ds[i] for i in range(len(ds))] == before  # previous negatives kept
    with pytest.raises(hardneg.ShapeError, match="doc_keys has 3 entries"):
        HardNegativeDataset(queries, docs, mined, doc_keys=[1, 2, 3])
    with pytest.raises(hardneg.ParameterError, match="query 1 has no positive"):
        HardNegativeDataset(None, None, hardneg.NegativeStore(np.array([[1], [2]]), positives=np.array([[0], [-1]])))
    with pytest.raises(hardneg.ParameterError, match="positives are needed"):
        hardneg.NegativeStore(np.array([[1]]))
    with pytest.raises(hardneg.OutputDirError, match="not an empty directory"):
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "f").write_text("")
        hardneg.NegativeStore(mined, directory=tmp_path / "x")
    with pytest.raises(hardneg.InputFileError):
        hardneg.NegativeStore.open(tmp_path)


def test_dataset_from_a_mining_output_directory(tmp_path) -> None:
    q, d, mined, queries, docs = make()
    out = tmp_path / "mined"
    on_disk = hardneg.mine_to_disk(q, d, np.arange(len(q)), out, num_negatives=6, progress=False)
    a = HardNegativeDataset(queries, docs, os.fspath(out), negatives_per_item=3, seed=1)
    b = HardNegativeDataset(queries, docs, on_disk, negatives_per_item=3, seed=1)
    assert [a[i] for i in range(len(a))] == [b[i] for i in range(len(b))]
    np.testing.assert_array_equal(a.store.read().negatives, mined.negatives)


def test_item_ids_outside_the_queries() -> None:
    _, _, mined, queries, docs = make()
    ds = HardNegativeDataset(queries, docs, mined)
    assert ds[-1]["query_id"] == len(queries) - 1
    with pytest.raises(hardneg.IdOutOfRangeError, match="query id 40 is outside 0..39"):
        ds[40]
    with pytest.raises(IndexError):  # what Python's sequence protocol expects
        ds.draw([0, -3])
