"""CachedEncoder (GradCache) against sentence-transformers CachedMultipleNegativesRankingLoss and plain training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import hardneg  # noqa: E402
from hardneg.losses import CachedEncoder, ChunkedInfoNCE, InfoNCE  # noqa: E402

from _loss_refs import load_minilm  # noqa: E402

ANCHORS = ["how do cats sleep", "capital of france", "python list sort", "best pizza dough", "rust borrow checker",
           "tallest mountain on earth", "how to boil an egg"]
POSITIVES = ["cats sleep 16 hours a day", "paris is the capital of france", "use sorted() or list.sort()",
             "flour water salt yeast", "the borrow checker enforces ownership", "mount everest is 8849 m high",
             "put eggs in boiling water for nine minutes"]
NEGATIVES = ["dogs bark at night", "berlin is in germany", "java arrays are fixed", "sourdough bread recipe",
             "go has a garbage collector", "the mariana trench is deep", "frying eggs in butter"]


@pytest.fixture(scope="module")
def minilm():
    model = load_minilm()
    model.eval()  # dropout off so both sides embed identically; replay with dropout is tested below
    return model


def _grads(model):
    return {k: v.grad.detach().clone() for k, v in model.named_parameters() if v.grad is not None}


@pytest.mark.parametrize("mini_batch_size,symmetric", [(3, False), (50, True)])
def test_matches_sentence_transformers_cmnrl(minilm, mini_batch_size, symmetric):
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    feats = [minilm.preprocess(x[:5]) for x in (ANCHORS, POSITIVES, NEGATIVES)]  # 5 rows: mini-batches of 3 + 2
    kw = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction") if symmetric else {}
    st_loss = CachedMultipleNegativesRankingLoss(minilm, mini_batch_size=mini_batch_size, **kw)
    minilm.zero_grad()
    ref = st_loss([dict(f) for f in feats], labels=None)
    ref.backward()
    ref_grads = _grads(minilm)
    assert ref_grads and sum(float(g.abs().sum()) for g in ref_grads.values()) > 0

    for loss_fn in (InfoNCE(symmetric=symmetric), ChunkedInfoNCE(symmetric=symmetric, chunk_size=2))[: 2 if symmetric else 1]:
        minilm.zero_grad()
        enc = CachedEncoder(minilm, mini_batch_size=mini_batch_size)
        q, p, n = (enc(dict(f)) for f in feats)
        loss = loss_fn(q, p, n[:, None])
        loss.backward()
        assert torch.allclose(loss.detach(), ref.detach(), atol=1e-5)
        grads = _grads(minilm)
        assert grads.keys() == ref_grads.keys()
        for k in grads:
            assert torch.allclose(grads[k], ref_grads[k], atol=1e-5, rtol=1e-3), k


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 8))


def _direct_grads(model, xs, chunk, seed, loss_fn, scale=1.0):
    """Plain training: embed each mini-batch with grad, in the same order, from the same seed."""
    model.zero_grad()
    torch.manual_seed(seed)
    embs = [torch.cat([model(x[s:s + chunk]) for s in range(0, x.shape[0], chunk)]) for x in xs]
    (scale * loss_fn(*embs)).backward()
    return [p.grad.clone() for p in model.parameters()]


def _cached_grads(model, xs, chunk, seed, loss_fn, scale=1.0):
    model.zero_grad()
    torch.manual_seed(seed)
    enc = CachedEncoder(model, mini_batch_size=chunk)
    (scale * loss_fn(*[enc(x) for x in xs])).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_dropout_is_replayed_exactly():
    model = _mlp().train()
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(11, 6, generator=g) for _ in range(2)]
    loss_fn = InfoNCE(temperature=0.1)
    direct = _direct_grads(model, xs, 4, 123, loss_fn)
    cached = _cached_grads(model, xs, 4, 123, loss_fn)
    for a, b in zip(direct, cached):
        assert torch.allclose(a, b, atol=1e-6)
    other = _direct_grads(model, xs, 4, 124, loss_fn)  # control: other dropout masks, other gradients
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(direct, other))


def test_outer_gradient_scale_reaches_every_mini_batch():
    model = _mlp().eval()
    xs = [torch.randn(9, 6), torch.randn(9, 6)]
    loss_fn = InfoNCE(temperature=0.1)
    full = _cached_grads(model, xs, 2, 0, loss_fn)
    quarter = _cached_grads(model, xs, 2, 0, loss_fn, scale=0.25)
    for a, b in zip(full, quarter):
        assert torch.allclose(0.25 * a, b, atol=1e-7)


def test_two_forwards_before_one_backward():
    model = _mlp().train()
    g = torch.Generator().manual_seed(2)
    x1, y1, x2, y2 = (torch.randn(7, 6, generator=g) for _ in range(4))
    loss_fn = InfoNCE(temperature=0.1)

    def two(a, b, c, d):
        return loss_fn(a, b) + 0.5 * loss_fn(c, d)

    direct = _direct_grads(model, [x1, y1, x2, y2], 3, 9, two)
    cached = _cached_grads(model, [x1, y1, x2, y2], 3, 9, two)
    for a, b in zip(direct, cached):
        assert torch.allclose(a, b, atol=1e-6)


def test_no_grad_and_bad_input():
    model = _mlp().eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.allclose(CachedEncoder(model, mini_batch_size=2)(x), model(x), atol=1e-6)
    with pytest.raises(hardneg.ParameterError, match="mini_batch_size"):
        CachedEncoder(model, mini_batch_size=0)
    with pytest.raises(hardneg.ParameterError, match="callable"):
        CachedEncoder(42)
    with pytest.raises(hardneg.ShapeError, match="batch size"):
        CachedEncoder(model)({"a": torch.ones(3, 2), "b": torch.ones(4, 2)})
