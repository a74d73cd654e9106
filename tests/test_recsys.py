"""InteractionSampler: never a positive, the target distributions, without replacement, determinism,
hard negatives against brute force, and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

import hardneg
from hardneg import InteractionSampler

from _recsys_refs import brute_topk_excluding


def _power_law(num_users, num_items, seed, max_items=40):
    rng = np.random.default_rng(seed)
    counts = np.minimum((rng.pareto(1.2, num_users) + 1).astype(int) * 2, max_items)
    p = 1.0 / np.arange(1, num_items + 1) ** 0.9
    users = np.repeat(np.arange(num_users), counts)
    items = rng.choice(num_items, size=users.size, p=p / p.sum())
    return np.stack([users, items], 1)


def _positive_sets(pairs, num_users):
    sets = [set() for _ in range(num_users)]
    for u, i in pairs.tolist():
        sets[u].add(i)
    return sets


@settings(max_examples=40, deadline=None)
@given(
    num_users=st.integers(1, 30), num_items=st.integers(2, 60), seed=st.integers(0, 2**32 - 1),
    strategy=st.sampled_from(["uniform", "popularity"]), replace=st.booleans(), m=st.integers(1, 8),
    alpha=st.sampled_from([0.0, 0.75, 2.0]),
)
def test_never_returns_a_positive(num_users, num_items, seed, strategy, replace, m, alpha):
    rng = np.random.default_rng(seed)
    pairs = np.stack([rng.integers(0, num_users, 200), rng.integers(0, num_items, 200)], 1)
    sampler = InteractionSampler(pairs, num_items, strategy=strategy, alpha=alpha, seed=seed, num_users=num_users)
    pos = _positive_sets(pairs, num_users)
    drawable = set(range(num_items)) if strategy == "uniform" else set(pairs[:, 1].tolist())
    free = [len(drawable - pos[u]) for u in range(num_users)]
    users = np.array([u for u in rng.integers(0, num_users, 50) if free[u] >= (1 if replace else m)], dtype=np.int64)
    for epoch in range(3):
        out = sampler.sample(users, m, epoch=epoch, replace=replace)
        assert out.shape == (users.size, m) and out.dtype == np.int64
        for u, row in zip(users.tolist(), out.tolist()):
            assert not set(row) & pos[u], (u, row)
            assert set(row) <= drawable
            if not replace:
                assert len(set(row)) == m


def test_uniform_draws_are_uniform_over_free_items():
    pairs = np.array([[0, 1], [0, 4], [0, 5], [1, 0]])
    s = InteractionSampler(pairs, 10, seed=3)
    free = [0, 2, 3, 6, 7, 8, 9]
    for replace in (True, False):
        out = s.sample(np.zeros(3000, np.int64), 4, replace=replace)
        for col in range(4):  # every position is uniform, with or without replacement
            counts = np.bincount(out[:, col], minlength=10)
            assert counts[[1, 4, 5]].sum() == 0
            assert stats.chisquare(counts[free]).pvalue > 1e-3


def test_popularity_draws_follow_count_to_the_alpha():
    pairs = _power_law(400, 60, seed=1)
    for alpha in (0.75, 1.0):
        s = InteractionSampler(pairs, 60, strategy="popularity", alpha=alpha, seed=5)
        # counts are per distinct (user, item) pair
        count = np.bincount(np.unique(pairs, axis=0)[:, 1], minlength=60).astype(float)
        w = np.where(count > 0, count ** alpha, 0.0)
        assert np.allclose(s.item_probabilities, w / w.sum(), atol=1e-9)
        user = int(np.argmax(np.bincount(pairs[:, 0])))  # the heaviest user
        pos = _positive_sets(pairs, 400)[user]
        target = w.copy()
        target[list(pos)] = 0
        out = s.sample(np.full(20000, user), 2)
        counts = np.bincount(out.ravel(), minlength=60)
        assert counts[target == 0].sum() == 0
        keep = target > 0
        expected = target[keep] / target[keep].sum() * out.size
        assert stats.chisquare(counts[keep], expected).pvalue > 1e-3
        # without replacement: the first pick follows the same distribution
        first = s.sample(np.full(20000, user), 3, replace=False)[:, 0]
        counts = np.bincount(first, minlength=60)
        assert stats.chisquare(counts[keep], target[keep] / target[keep].sum() * first.size).pvalue > 1e-3


def test_heavy_user_holding_most_popularity_mass():
    # user 0 interacted with the 3 most popular items (most of the mass): the exact inversion path
    pairs = [[0, 0], [0, 1], [0, 2]] + [[u, i] for u in range(1, 50) for i in (0, 1, 2)] + [[u, 3 + u % 4] for u in range(1, 9)]
    s = InteractionSampler(np.array(pairs), 8, strategy="popularity", alpha=1.0, seed=0)
    out = s.sample(np.zeros(8000, np.int64), 1)
    counts = np.bincount(out.ravel(), minlength=8)
    assert counts[:3].sum() == 0
    assert stats.chisquare(counts[3:7]).pvalue > 1e-3  # items 3..6: two users each
    assert sorted(s.sample([0], 4, replace=False)[0].tolist()) == [3, 4, 5, 6]


def test_deterministic_across_threads_offsets_and_formats():
    pairs = _power_law(3000, 500, seed=2)
    users = np.random.default_rng(0).integers(0, 3000, 20000)
    for strategy in ("uniform", "popularity"):
        s = InteractionSampler(pairs, 500, strategy=strategy, seed=11)
        for replace in (True, False):
            one = s.sample(users, 16, epoch=4, replace=replace, threads=1)
            assert np.array_equal(one, s.sample(users, 16, epoch=4, replace=replace, threads=3))
            assert np.array_equal(one[5000:], s.sample(users[5000:], 16, epoch=4, replace=replace, offset=5000))
            assert not np.array_equal(one, s.sample(users, 16, epoch=5, replace=replace))
    sp = pytest.importorskip("scipy.sparse")
    csr = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(3000, 500))
    a = InteractionSampler(pairs, 500, seed=1).sample(users, 8)
    assert np.array_equal(a, InteractionSampler(csr, 500, seed=1).sample(users, 8))
    assert np.array_equal(a, InteractionSampler(csr.tocoo(), 500, seed=1).sample(users, 8))
    offsets, items = InteractionSampler(csr, 500).positives()
    assert np.array_equal(offsets, csr.indptr)
    pos = _positive_sets(pairs, 3000)
    assert all(sorted(pos[u]) == items[offsets[u]:offsets[u + 1]].tolist() for u in range(3000))


def test_hard_topk_matches_brute_force_and_pool_is_best_of_sample():
    rng = np.random.default_rng(4)
    pairs = _power_law(50, 300, seed=4)
    s = InteractionSampler(pairs, 300, seed=9)
    users = rng.integers(0, 50, 40)
    q = rng.standard_normal((40, 16)).astype(np.float32)
    items = rng.standard_normal((300, 16)).astype(np.float32)
    items[7] = items[3]  # a tie
    pos = _positive_sets(pairs, 50)
    for metric in ("dot", "cosine"):
        got = s.hard(users, q, items, 10, metric=metric)
        if metric == "cosine":
            scores = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (items / np.linalg.norm(items, axis=1, keepdims=True)).T
        else:
            scores = q @ items.T
        for r, u in enumerate(users.tolist()):
            want = brute_topk_excluding(scores[r], pos[u], 10)
            assert set(got[r].tolist()).isdisjoint(pos[u])
            # float32 rounding may swap near-equal neighbours: compare the scores of the picks
            assert np.allclose(np.sort(scores[r, got[r]]), np.sort(scores[r, want]), atol=1e-5)
    assert np.array_equal(s.hard(users, q, items, 10, metric="ip"), s.hard(users, q, items, 10))  # "ip" = "dot"
    pooled = s.hard(users, q, items, 5, pool=40, epoch=2)
    drawn = s.sample(users, 40, epoch=2, replace=False)
    scores = q @ items.T
    for r in range(40):
        best = sorted(drawn[r].tolist(), key=lambda i: (-scores[r, i], i))[:5]
        assert np.allclose(scores[r, pooled[r]], scores[r, best], atol=1e-5)
        assert set(pooled[r].tolist()) <= set(drawn[r].tolist())


def test_bad_inputs_get_typed_errors():
    pairs = np.array([[0, 0], [0, 1], [1, 2]])
    s = InteractionSampler(pairs, 3)
    with pytest.raises(hardneg.IdOutOfRangeError, match="item id of interactions 5 at position 1"):
        InteractionSampler(np.array([[0, 1], [0, 5]]), 3)
    with pytest.raises(hardneg.IdOutOfRangeError, match="user id 2 at position 0 is outside 0..2"):
        s.sample([2], 1)
    with pytest.raises(hardneg.IdOutOfRangeError):
        s.sample([-1], 1)
    full = InteractionSampler(np.array([[0, 0], [0, 1], [0, 2], [1, 0]]), 3)
    with pytest.raises(hardneg.ParameterError, match="user 0 .* has interacted with every item"):
        full.sample([1, 0], 1)
    with pytest.raises(hardneg.ParameterError, match="num_negatives=2 without replacement, but user 0 .* only 1 items"):
        s.sample([0], 2, replace=False)
    with pytest.raises(hardneg.ParameterError, match="popularity sampling only draws items"):
        InteractionSampler(np.array([[0, 0], [1, 1]]), 3, strategy="popularity").sample([0], 2, replace=False)
    with pytest.raises(hardneg.ParameterError):
        InteractionSampler(pairs, 3, strategy="popular")
    with pytest.raises(hardneg.ParameterError, match="alpha"):
        InteractionSampler(pairs, 3, strategy="popularity", alpha=-1)
    with pytest.raises(hardneg.DTypeError):
        s.sample([0.5], 1)
    with pytest.raises(hardneg.ShapeError):
        InteractionSampler(np.array([0, 1, 2]), 3)
    with pytest.raises(hardneg.ParameterError):
        s.sample([0], 0)
    emb = np.ones((3, 4), np.float32)
    bad = emb.copy()
    bad[1, 2] = np.nan
    with pytest.raises(hardneg.NonFiniteError, match="item_embeddings"):
        s.hard([0], np.ones((1, 4), np.float32), bad, 1)
    with pytest.raises(hardneg.NonFiniteError, match="user_embeddings"):
        s.hard([0], bad[1:2], emb, 1)
    with pytest.raises(hardneg.ShapeError):
        s.hard([0, 1], np.ones((1, 4), np.float32), emb, 1)
    with pytest.raises(hardneg.ParameterError, match="metric must be 'cosine' or 'dot'"):
        s.hard([0], np.ones((1, 4), np.float32), emb, 1, metric="l2")
    with pytest.raises(hardneg.ShapeError):
        s.hard([0], np.ones((1, 4), np.float32), emb[:2], 1)
    with pytest.raises(hardneg.ParameterError, match="pool=1 is smaller than num_negatives=2"):
        InteractionSampler(pairs, 6).hard([0], np.ones((1, 4), np.float32), np.ones((6, 4), np.float32), 2, pool=1)
