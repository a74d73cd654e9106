"""Planning one epoch of batches: hardneg.ClusterBatchSampler against torch's and sentence-transformers' samplers.

Clustering is done once outside the timing; each timed call plans (and lists) a new epoch.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import hardneg
from _common import topic_embeddings

SMALL = 20_000
FULL = 200_000
BATCH = 512


@pytest.fixture(scope="module")
def data(full):
    n = FULL if full else SMALL
    x = topic_embeddings(n, 32, seed=4)
    keys = np.random.default_rng(5).integers(0, n // 4, n)  # repeated positives: 4 rows per key on average
    return x, keys


def _epochs(sampler):
    counter = itertools.count()

    def plan():
        sampler.set_epoch(next(counter))
        return [list(b) for b in sampler]

    return plan


@pytest.mark.parametrize("engine", ["hardneg clusters", "torch random"])
def test_plan_epoch(benchmark, data, engine):
    x, _ = data
    benchmark.group = f"plan an epoch of {len(x):,} rows, batches of {BATCH}"
    if engine == "torch random":
        torch = pytest.importorskip("torch")
        from torch.utils.data import BatchSampler, RandomSampler

        sampler = BatchSampler(RandomSampler(range(len(x)), generator=torch.Generator().manual_seed(0)), BATCH, False)
        batches = benchmark(lambda: [list(b) for b in sampler])
    else:
        sampler = hardneg.ClusterBatchSampler(x, batch_size=BATCH, cluster_size=64, seed=0)
        batches = benchmark(_epochs(sampler))
    assert sorted(i for b in batches for i in b) == list(range(len(x)))


@pytest.mark.parametrize("engine", ["hardneg group_keys", "sentence-transformers NoDuplicatesBatchSampler"])
def test_plan_duplicate_free_epoch(benchmark, data, engine):
    x, keys = data
    benchmark.group = f"plan a duplicate-free epoch of {len(x):,} rows, batches of {BATCH}"
    if engine.startswith("sentence"):
        datasets = pytest.importorskip("datasets")
        pytest.importorskip("sentence_transformers")
        from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

        ds = datasets.Dataset.from_dict({"positive": [f"p{k}" for k in keys.tolist()]})
        sampler = NoDuplicatesBatchSampler(ds, batch_size=BATCH, drop_last=False, seed=0)
        batches = benchmark(_epochs(sampler))
    else:
        sampler = hardneg.ClusterBatchSampler(x, batch_size=BATCH, cluster_size=64, group_keys=keys, seed=0)
        batches = benchmark(_epochs(sampler))
    assert all(len(set(keys[b].tolist())) == len(b) for b in batches)  # no key twice in a batch
    assert len({i for b in batches for i in b}) == sum(len(b) for b in batches)  # no row twice
