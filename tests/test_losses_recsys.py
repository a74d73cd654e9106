"""BPR, SimpleX's cosine contrastive loss, the logQ-corrected sampled softmax and the streaming item
frequencies, against explicit-loop references (values and gradients, gradcheck in float64)."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

import hardneg  # noqa: E402
from hardneg.losses import (  # noqa: E402
    BPRLoss,
    CosineContrastiveLoss,
    ItemFrequencyEstimator,
    SampledSoftmaxLoss,
    bpr_loss,
    cosine_contrastive_loss,
    sampled_softmax_loss,
)

from _loss_refs import grads_of  # noqa: E402
from _recsys_refs import ref_bpr, ref_ccl, ref_frequency, ref_sampled_softmax  # noqa: E402


def _data(B, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, d, generator=g, dtype=torch.float64)
    p = u + 0.7 * torch.randn(B, d, generator=g, dtype=torch.float64)
    neg = torch.randn(B, n, d, generator=g, dtype=torch.float64)
    return u, p, neg, g


def _ids(B, n, g, padding):
    pid = torch.randint(-1, 3, (B,), generator=g)
    nid = torch.randint(-1 if padding else 0, 4, (B, n), generator=g)
    nid[:, 0] = 9  # every row keeps a negative
    return pid, nid


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 5), n=st.integers(1, 4), d=st.integers(1, 5), seed=st.integers(0, 2**16),
       use_ids=st.booleans(), cosine=st.booleans())
def test_bpr_matches_loops(B, n, d, seed, use_ids, cosine):
    u, p, neg, g = _data(B, n, d, seed)
    pid, nid = _ids(B, n, g, True) if use_ids else (None, None)
    sim = "cosine" if cosine else "dot"
    v1, g1 = grads_of(lambda *t: bpr_loss(*t, similarity=sim, positive_ids=pid, negative_ids=nid), u, p, neg)
    v2, g2 = grads_of(lambda *t: ref_bpr(*t, cosine=cosine, pid=pid, nid=nid), u, p, neg)
    assert torch.allclose(v1, v2, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 5), n=st.integers(1, 4), d=st.integers(2, 5), seed=st.integers(0, 2**16),
       use_ids=st.booleans(), margin=st.sampled_from([-0.5, 0.0, 0.3, 0.9]), weight=st.sampled_from([1.0, 10.0]))
def test_ccl_matches_loops(B, n, d, seed, use_ids, margin, weight):
    u, p, neg, g = _data(B, n, d, seed)
    pid, nid = _ids(B, n, g, True) if use_ids else (None, None)
    kw = dict(margin=margin, negative_weight=weight, positive_ids=pid, negative_ids=nid)
    v1, g1 = grads_of(lambda *t: cosine_contrastive_loss(*t, **kw), u, p, neg)
    v2, g2 = grads_of(lambda *t: ref_ccl(*t, margin=margin, weight=weight, pid=pid, nid=nid), u, p, neg)
    assert torch.allclose(v1, v2, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 5), m=st.integers(0, 3), d=st.integers(1, 5), seed=st.integers(0, 2**16),
       use_ids=st.booleans(), correct=st.booleans(), use_q=st.booleans(), cosine=st.booleans())
def test_sampled_softmax_matches_loops(B, m, d, seed, use_ids, correct, use_q, cosine):
    q, v, _, g = _data(B, 1, d, seed)
    extra = torch.randn(m, d, generator=g, dtype=torch.float64) if m else None
    lq = torch.log(torch.rand(B, generator=g, dtype=torch.float64) * 0.9 + 0.05) if use_q else None
    elq = torch.log(torch.rand(m, generator=g, dtype=torch.float64) * 0.9 + 0.05) if (use_q and m) else None
    ids = torch.randint(-1, 3, (B,), generator=g) if use_ids else None
    eids = torch.randint(-1, 3, (m,), generator=g) if (use_ids and m) else None
    kw = dict(temperature=0.5, correct_positive=correct)
    tensors = (q, v) if extra is None else (q, v, extra)

    def ours(*t):
        return sampled_softmax_loss(t[0], t[1], lq, item_ids=ids, negatives=t[2] if len(t) > 2 else None,
                                    negative_log_q=elq, negative_ids=eids, similarity="cosine" if cosine else "dot", **kw)

    def ref(*t):
        return ref_sampled_softmax(t[0], t[1], lq, ids=ids, extra=t[2] if len(t) > 2 else None, extra_lq=elq,
                                   extra_ids=eids, cosine=cosine, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows left alone by the masks warn
        v1, g1 = grads_of(ours, *tensors)
    v2, g2 = grads_of(ref, *tensors)
    assert torch.allclose(v1, v2, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def test_gradcheck_float64():
    u, p, neg, g = _data(3, 4, 5, 1)
    pid, nid = _ids(3, 4, g, True)
    leaves = [t.clone().requires_grad_(True) for t in (u, p, neg)]
    assert torch.autograd.gradcheck(lambda a, b, c: bpr_loss(a, b, c, negative_ids=nid, positive_ids=pid), leaves)
    assert torch.autograd.gradcheck(lambda a, b, c: bpr_loss(a, b, c, similarity="cosine"), leaves)
    # CCL is piecewise smooth: keep every cosine away from the relu kinks
    assert torch.autograd.gradcheck(lambda a, b, c: cosine_contrastive_loss(a, b, c, margin=-1.0), leaves)
    lq = torch.log(torch.tensor([0.5, 0.2, 0.9], dtype=torch.float64))
    extra = torch.randn(2, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: sampled_softmax_loss(a, b, lq, negatives=c, negative_log_q=lq[:2], temperature=0.3),
        (leaves[0], leaves[1], extra),
    )


def test_padding_duplicates_and_lonely_rows():
    u, p, neg, _ = _data(3, 3, 4, 2)
    nid = torch.tensor([[1, -1, 2], [-1, -1, -1], [5, 5, 7]])
    neg_nan = neg.clone()
    neg_nan[0, 1] = float("nan")  # a padded slot may hold anything
    neg_nan[1] = float("nan")
    with pytest.warns(RuntimeWarning, match="1 of 3 rows have no negative left"):
        a = bpr_loss(u, p, neg_nan, negative_ids=nid, reduction="none")
    assert torch.isfinite(a).all() and a[1] == 0
    assert torch.allclose(a[0], ref_bpr(u[:1], p[:1], neg[:1, [0, 2]]))
    # a negative carrying the positive's id is not a negative
    with pytest.warns(RuntimeWarning, match="cosine_contrastive_loss: 1 of 3 rows"):  # row 1: every negative has id 0
        b = cosine_contrastive_loss(u, p, neg, positive_ids=torch.tensor([0, 0, 5]), negative_ids=nid.clamp(min=0),
                                    reduction="none")
    assert torch.allclose(b[2], ref_ccl(u[2:], p[2:], neg[2:, 2:], margin=0.5, weight=10.0))
    assert torch.allclose(b[1], torch.relu(1 - torch.cosine_similarity(u[1], p[1], dim=0)))
    # the sampled softmax masks other copies of the row's own item: row 0 sees items 0 and 1 only
    q, v = torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    v[2] = v[0]
    s = sampled_softmax_loss(q, v, item_ids=torch.tensor([4, 5, 4]), temperature=1.0, reduction="none")
    assert torch.allclose(s[0], torch.log1p(torch.exp(torch.tensor(-1.0, dtype=torch.float64))))
    with pytest.warns(RuntimeWarning, match="sampled_softmax_loss: 2 of 2 rows"):
        sampled_softmax_loss(q[:2], v[:2], item_ids=torch.tensor([4, 4]))


def test_non_finite_embeddings_raise_with_the_name():
    u, p, neg, _ = _data(2, 2, 3, 3)
    u[1, 0] = float("nan")
    with pytest.raises(hardneg.NonFiniteError, match=r"users\[1\]"):
        bpr_loss(u, p, neg)
    neg[0, 1, 2] = float("inf")
    with pytest.raises(hardneg.NonFiniteError, match=r"negatives\[0, 1\]"):
        cosine_contrastive_loss(p, p, neg)
    with pytest.raises(hardneg.NonFiniteError, match="log_q"):
        sampled_softmax_loss(p, p, torch.tensor([0.0, float("nan")], dtype=torch.float64))


def test_bad_parameters():
    u, p, neg, _ = _data(2, 2, 3, 4)
    with pytest.raises(hardneg.ParameterError, match="margin"):
        cosine_contrastive_loss(u, p, neg, margin=2.0)
    with pytest.raises(hardneg.ParameterError, match="negatives are required"):
        bpr_loss(u, p, None)
    with pytest.raises(hardneg.ShapeError):
        bpr_loss(u, p, neg[:, 0])
    with pytest.raises(hardneg.ShapeError):
        sampled_softmax_loss(u, p, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(hardneg.ParameterError, match="together"):
        sampled_softmax_loss(u, p, torch.zeros(2), negatives=neg[0])
    with pytest.raises(hardneg.ParameterError):
        ItemFrequencyEstimator()
    with pytest.raises(hardneg.ParameterError, match="power of two"):
        ItemFrequencyEstimator(num_buckets=1000)
    with pytest.raises(hardneg.IdOutOfRangeError):
        ItemFrequencyEstimator(num_items=5).update(torch.tensor([5]))
    with pytest.raises(hardneg.ParameterError, match="needs item_ids"):
        SampledSoftmaxLoss(ItemFrequencyEstimator(num_items=5))(u, p)


@pytest.mark.parametrize("hashed", [False, True])
def test_frequency_estimator_matches_the_loop_reference(hashed):
    g = torch.Generator().manual_seed(0)
    # item i appears in a batch with probability ~ 1 / (i + 1)
    batches = [torch.nonzero(torch.rand(200, generator=g) < 1.0 / torch.arange(1, 201)).ravel() for _ in range(300)]
    kw = dict(num_buckets=64, num_hashes=3) if hashed else dict(num_items=200)
    est = ItemFrequencyEstimator(alpha=0.05, **kw)
    for b in batches:
        est.update(torch.cat([b, b[:2]]))  # a repeat within a batch counts once
    prob = ref_frequency([b.tolist() for b in batches], size=64 if hashed else 200, alpha=0.05, hashed=hashed,
                         num_hashes=3 if hashed else 1)
    ids = torch.arange(200)
    got = est.probabilities(ids)
    want = torch.tensor([prob(i) for i in range(200)], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=1e-12)
    if not hashed:  # close to the true batch frequencies for frequent items
        assert torch.allclose(got[:4], 1.0 / torch.arange(1, 5, dtype=torch.float64), rtol=0.35)
    state = est.state_dict()
    clone = ItemFrequencyEstimator(alpha=0.05, **kw)
    clone.load_state_dict(state)
    assert torch.equal(clone.probabilities(ids), got)


def test_modules_and_lazy_exports():
    assert hardneg.BPRLoss is BPRLoss and hardneg.CosineContrastiveLoss is CosineContrastiveLoss
    assert hardneg.SampledSoftmaxLoss is SampledSoftmaxLoss and hardneg.ItemFrequencyEstimator is ItemFrequencyEstimator
    u, p, neg, _ = _data(4, 3, 6, 5)
    assert torch.allclose(BPRLoss(similarity="dot")(u, p, neg), bpr_loss(u, p, neg))
    assert torch.allclose(CosineContrastiveLoss(0.2, 3.0)(u, p, neg), cosine_contrastive_loss(u, p, neg, margin=0.2, negative_weight=3.0))
    est = ItemFrequencyEstimator(num_items=10)
    loss_fn = SampledSoftmaxLoss(est, temperature=0.1)
    ids = torch.tensor([1, 2, 3, 1])
    loss_fn(u, p, item_ids=ids)
    assert int(est.step) == 1
    loss_fn.eval()
    with torch.no_grad():
        value = loss_fn(u, p, item_ids=ids)
    assert int(est.step) == 1  # evaluation does not update the estimate
    assert torch.allclose(value, sampled_softmax_loss(u, p, est.log_q(ids).double(), item_ids=ids, temperature=0.1))
