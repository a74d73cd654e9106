"""TripleCorruptor: never a known triple, uniform / Bernoulli / cluster distributions, determinism,
hard corruptions against brute force, known entities, and every bad input."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

import hardneg
from hardneg import TripleCorruptor

from _recsys_refs import brute_topk_excluding


def _graph(num_entities, num_relations, n, seed):
    rng = np.random.default_rng(seed)
    heads = rng.zipf(1.5, n) % num_entities
    return np.stack([heads, rng.integers(0, num_relations, n), rng.integers(0, num_entities, n)], 1)


@settings(max_examples=40, deadline=None)
@given(
    num_entities=st.integers(3, 40), num_relations=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["head", "tail", "both"]), strategy=st.sampled_from(["uniform", "bernoulli", "cluster"]),
    n=st.integers(1, 12),
)
def test_filtered_corruptions_are_never_known_triples(num_entities, num_relations, seed, mode, strategy, n):
    if strategy == "bernoulli":
        mode = "both"
    known = _graph(num_entities, num_relations, 150, seed)
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 4, num_entities) if strategy == "cluster" else None
    c = TripleCorruptor(known, num_entities, num_relations, mode=mode, strategy=strategy, seed=seed, clusters=clusters)
    truth = set(map(tuple, known.tolist()))
    batch = known[rng.integers(0, len(known), 30)]
    try:
        out = c.corrupt(batch, n, epoch=seed % 5)
    except hardneg.ParameterError as e:  # a triple with every entity known on its side(s)
        assert "has no corruption" in str(e)
        return
    assert out.shape == (30, n, 3)
    for t, negs in zip(batch.tolist(), out.tolist()):
        for x in negs:
            assert tuple(x) not in truth and x != t
            assert x[1] == t[1] and (x[0] == t[0] or x[2] == t[2])
            if mode == "head":
                assert x[2] == t[2]
            if mode == "tail":
                assert x[0] == t[0]


def test_uniform_replacement_is_uniform_over_allowed_entities():
    known = np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3], [5, 0, 1]])
    c = TripleCorruptor(known, 12, 1, mode="tail", seed=1)
    tails = c.corrupt(known[:1], 20000)[0, :, 2]
    counts = np.bincount(tails, minlength=12)
    assert counts[[1, 2, 3]].sum() == 0
    allowed = [0, 4, 5, 6, 7, 8, 9, 10, 11]
    assert stats.chisquare(counts[allowed]).pvalue > 1e-3
    # unfiltered: only the triple's own tail is avoided
    loose = TripleCorruptor(known, 12, 1, mode="tail", filtered=False, seed=1)
    counts = np.bincount(loose.corrupt(known[:1], 20000)[0, :, 2], minlength=12)
    assert counts[1] == 0 and stats.chisquare(np.delete(counts, 1)).pvalue > 1e-3


def test_bernoulli_head_probability_and_frequency():
    known = _graph(200, 3, 3000, seed=3)
    c = TripleCorruptor(known, 200, 3, strategy="bernoulli", seed=2)
    uniq = np.unique(known, axis=0)
    for r in range(3):
        rows = uniq[uniq[:, 1] == r]
        tph = len(rows) / len({(h, r) for h, _, _ in rows.tolist()})
        hpt = len(rows) / len({(r, t) for _, _, t in rows.tolist()})
        assert abs(c.head_probability[r] - tph / (tph + hpt)) < 1e-12
        triple = rows[:1]
        out = c.corrupt(np.repeat(triple, 200, axis=0), 50)
        replaced_head = int((out[:, :, 0] != triple[0, 0]).sum())
        p = c.head_probability[r]
        assert stats.binomtest(replaced_head, out.shape[0] * out.shape[1], p).pvalue > 1e-3
    uniform = TripleCorruptor(known, 200, 3, seed=2).corrupt(known[:100], 100)
    replaced_head = int((uniform[:, :, 0] != known[:100, None, 0]).sum())
    assert stats.binomtest(replaced_head, 10000, 0.5).pvalue > 1e-3


def test_cluster_strategy_draws_cluster_mates():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((8, 16)).astype(np.float32)
    emb = np.repeat(centers, 16, axis=0) + 0.05 * rng.standard_normal((128, 16)).astype(np.float32)
    known = np.stack([rng.integers(0, 128, 400), rng.integers(0, 2, 400), rng.integers(0, 128, 400)], 1)
    c = TripleCorruptor(known, 128, 2, strategy="cluster", entity_embeddings=emb, cluster_size=16, seed=4)
    labels = c.clusters
    assert np.array_equal(labels, hardneg.cluster(emb, cluster_size=16, seed=4))
    out = c.corrupt(known[:50], 20)
    for t, negs in zip(known[:50].tolist(), out.tolist()):
        for x in negs:
            side = 0 if x[0] != t[0] else 2
            assert labels[x[side]] == labels[t[side]] or _cluster_exhausted(known, labels, t, side)


def _cluster_exhausted(known, labels, t, side):
    truth = set(map(tuple, known.tolist()))
    mates = np.nonzero(labels == labels[t[side]])[0]
    return all(tuple(t[:side] + [m] + t[side + 1:]) in truth or m == t[side] for m in mates.tolist())


def test_deterministic_across_threads_and_offsets():
    known = _graph(500, 5, 5000, seed=7)
    for strategy in ("uniform", "bernoulli"):
        c = TripleCorruptor(known, 500, 5, strategy=strategy, seed=3)
        a = c.corrupt(known, 32, epoch=1, threads=1)
        assert np.array_equal(a, c.corrupt(known, 32, epoch=1, threads=2))
        assert np.array_equal(a[1000:], c.corrupt(known[1000:], 32, epoch=1, offset=1000))
        assert not np.array_equal(a, c.corrupt(known, 32, epoch=2))


def test_known_entities_match_a_python_index():
    known = _graph(60, 3, 400, seed=5)
    c = TripleCorruptor(known, 60, 3)
    tails, heads = defaultdict(set), defaultdict(set)
    for h, r, t in known.tolist():
        tails[h, r].add(t)
        heads[r, t].add(h)
    query = np.concatenate([known[:50], [[59, 2, 59]]])
    for side, index, key in (("tail", tails, lambda h, r, t: (h, r)), ("head", heads, lambda h, r, t: (r, t))):
        offsets, ids = c.known(query, side)
        for i, (h, r, t) in enumerate(query.tolist()):
            assert ids[offsets[i]:offsets[i + 1]].tolist() == sorted(index.get(key(h, r, t), ()))


def test_hard_matches_brute_force_with_margin():
    rng = np.random.default_rng(8)
    known = _graph(80, 2, 300, seed=8)
    ent = rng.standard_normal((80, 8)).astype(np.float32)
    batch = known[:40]
    # queries near the true entity (a model that fits the triple): it outscores most candidates,
    # and the margin drops its close neighbours
    hq = (ent[batch[:, 0]] + 0.5 * rng.standard_normal((40, 8))).astype(np.float32)
    tq = (ent[batch[:, 2]] + 0.5 * rng.standard_normal((40, 8))).astype(np.float32)
    c = TripleCorruptor(known, 80, 2, seed=6)
    truth = set(map(tuple, known.tolist()))
    for margin in (None, 0.5):
        out = c.hard(batch, 6, ent, head_queries=hq, tail_queries=tq, false_negative_margin=margin, epoch=3)
        for i, (h, r, t) in enumerate(batch.tolist()):
            side = 0 if out[i, 0, 0] != h else 2
            q = hq[i] if side == 0 else tq[i]
            scores = ent @ q
            own = h if side == 0 else t
            excluded = {e for e in range(80) if (e, r, t) in truth} if side == 0 else {e for e in range(80) if (h, r, e) in truth}
            excluded.add(own)
            if margin is not None:
                excluded |= {e for e in range(80) if scores[e] + margin > scores[own]}
            want = brute_topk_excluding(scores, excluded, 6)
            got = out[i, :, side].tolist()
            assert np.allclose(scores[got], scores[want], atol=1e-5), (i, got, want)
            assert all(tuple(x) not in truth for x in out[i].tolist())
    # the sides follow the corrupt() draws of the same rows: 'both' with the uniform coin
    sides = (out[:, 0, 0] != batch[:, 0]).mean()
    assert 0.2 < sides < 0.8


def test_bad_inputs_get_typed_errors():
    known = np.array([[0, 0, 1], [2, 1, 3]])
    c = TripleCorruptor(known, 4, 3)
    with pytest.raises(hardneg.IdOutOfRangeError, match="tail entity of triples 4 at position 1"):
        TripleCorruptor(np.array([[0, 0, 1], [0, 0, 4]]), 4, 1)
    with pytest.raises(hardneg.IdOutOfRangeError, match="relation of triples 3"):
        c.corrupt([[0, 3, 1]], 1)
    with pytest.raises(hardneg.ParameterError, match="relation 2, which has no known triple"):
        TripleCorruptor(known, 4, 3, strategy="bernoulli").corrupt([[0, 2, 1]], 1)
    with pytest.raises(hardneg.ParameterError, match="mode='both'"):
        TripleCorruptor(known, 4, 3, mode="tail", strategy="bernoulli")
    with pytest.raises(hardneg.ParameterError, match="clusters"):
        TripleCorruptor(known, 4, 3, strategy="cluster")
    with pytest.raises(hardneg.ParameterError, match="only used by strategy='cluster'"):
        TripleCorruptor(known, 4, 3, clusters=[0, 0, 1, 1])
    with pytest.raises(hardneg.ParameterError, match="has 3 labels but there are 4 entities"):
        TripleCorruptor(known, 4, 3, strategy="cluster", clusters=[0, 0, 1])
    full = np.array([[0, 0, e] for e in range(4)])
    with pytest.raises(hardneg.ParameterError, match=r"triple 0 \(0, 0, 2\) has no corruption"):
        TripleCorruptor(full, 4, 1, mode="tail").corrupt([[0, 0, 2]], 1)
    with pytest.raises(hardneg.ShapeError):
        c.corrupt([[0, 0]], 1)
    with pytest.raises(hardneg.DTypeError):
        c.corrupt([[0.0, 0.0, 1.0]], 1)
    ent = np.ones((4, 2), np.float32)
    q = np.ones((1, 2), np.float32)
    with pytest.raises(hardneg.ParameterError, match="head_queries"):
        c.hard([[0, 0, 1]], 1, ent, tail_queries=q)
    bad = ent.copy()
    bad[2, 0] = np.inf
    with pytest.raises(hardneg.NonFiniteError, match="entity_embeddings"):
        c.hard([[0, 0, 1]], 1, bad, head_queries=q, tail_queries=q)
    with pytest.raises(hardneg.NonFiniteError, match="tail_queries"):
        c.hard([[0, 0, 1]], 1, ent, head_queries=q, tail_queries=q * np.nan)
    with pytest.raises(hardneg.ShapeError):
        c.hard([[0, 0, 1]], 1, ent, head_queries=q, tail_queries=np.ones((2, 2), np.float32))
    tail_only = TripleCorruptor(known, 4, 3, mode="tail")
    line = np.arange(4, dtype=np.float32)[:, None]
    with pytest.raises(hardneg.ParameterError, match="false_negative_margin"):
        tail_only.hard([[0, 0, 1]], 2, line, tail_queries=np.ones((1, 1), np.float32), false_negative_margin=0.5)
    with pytest.raises(hardneg.ParameterError, match="only 3 allowed corruptions"):
        tail_only.hard([[0, 0, 1]], 4, line, tail_queries=np.ones((1, 1), np.float32))
