"""GuidedInfoNCE against sentence-transformers GISTEmbedLoss and an explicit-loop reference."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

import hardneg  # noqa: E402
from hardneg.losses import GuidedInfoNCE, guided_info_nce  # noqa: E402

from _loss_refs import EmbeddingLookup, grads_of, load_minilm, ref_guided  # noqa: E402


def _data(B, n, d, gd, seed, dtype=torch.float64, dup_rows=0, noise=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, d, generator=g, dtype=dtype)
    p = q + noise * torch.randn(B, d, generator=g, dtype=dtype)
    neg = torch.randn(B, n, d, generator=g, dtype=dtype) if n else None
    gq = torch.randn(B, gd, generator=g, dtype=dtype)
    gp = gq + 0.7 * torch.randn(B, gd, generator=g, dtype=dtype)
    gn = (gq[:, None, :] + torch.randn(B, n, gd, generator=g, dtype=dtype)) if n else None
    for r in range(dup_rows):  # the guide sees these pairs as duplicates: g_i = 1
        gp[r] = gq[r]
    return q, p, neg, gq, gp, gn


@settings(max_examples=15, deadline=None)
@given(
    B=st.integers(1, 6), n=st.integers(0, 2), seed=st.integers(0, 2**16),
    strategy=st.sampled_from(["absolute", "relative"]), margin=st.sampled_from([0.0, 0.1, 0.3]),
    ca=st.booleans(), cp=st.booleans(), mask_self=st.booleans(), dup=st.integers(0, 2),
)
def test_matches_explicit_loops(B, n, seed, strategy, margin, ca, cp, mask_self, dup):
    if not mask_self:
        dup = 0  # without the explicit mask a duplicate's self term sits exactly on the threshold (1 > 1)
    q, p, neg, gq, gp, gn = _data(B, n, 4, 3, seed, dup_rows=min(dup, B))
    kw = dict(temperature=0.05, margin=margin, contrast_anchors=ca, contrast_positives=cp, mask_self=mask_self)
    tensors = (q, p) if neg is None else (q, p, neg)

    def ours(*t):
        return guided_info_nce(*t, guide_queries=gq, guide_positives=gp, guide_negatives=gn,
                               margin_strategy=strategy, **kw)

    def ref(*t):
        return ref_guided(*(t + ((None,) if neg is None else ())), gq, gp, gn, strategy=strategy, **kw)

    v1, g1 = grads_of(ours, *tensors)
    v2, g2 = grads_of(ref, *tensors)
    assert torch.allclose(v1, v2, rtol=1e-9, atol=1e-9)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def _st_gist(minilm, model_table, guide_table, **kw):
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    loss = GISTEmbedLoss(minilm, minilm, **kw)  # same tokenizer: no re-tokenisation
    loss.model = EmbeddingLookup(model_table)
    loss.guide = EmbeddingLookup(guide_table)
    return loss


@pytest.mark.parametrize("n_neg", [0, 1])
@pytest.mark.parametrize(
    "kw",
    [dict(), dict(margin_strategy="relative", margin=0.1), dict(margin=0.2, contrast_anchors=False),
     dict(temperature=0.05, contrast_positives=False)],
    ids=["default", "relative", "abs-no-aa", "no-pp"],
)
def test_matches_sentence_transformers_gist(minilm, kw, n_neg):
    B, d = 6, 12
    # noisy positives: at temperature 0.01 the loss must not vanish, or the comparison is vacuous
    q, p, neg, gq, gp, gn = _data(B, n_neg, d, d, 3 + n_neg, dtype=torch.float32, noise=3.0)
    gq[3] = gq[2]  # the guide sees anchors 2 and 3 as the same: masks are certain to fire ...
    q[3] = q[2] + 0.01 * q[3]  # ... and matter, since the model scores them as near-duplicates too
    unmasked = guided_info_nce(q, p, neg, guide_queries=gq, guide_positives=gp, guide_negatives=gn,
                               temperature=kw.get("temperature", 0.01), margin=-10.0)
    cols = [q, p] + ([neg[:, 0]] if n_neg else [])
    gcols = [gq, gp] + ([gn[:, 0]] if n_neg else [])
    table = torch.cat(cols).clone().requires_grad_(True)
    gtable = torch.cat(gcols)
    feats = [{"row": torch.arange(c * B, (c + 1) * B)} for c in range(len(cols))]
    ref = _st_gist(minilm, table, gtable, **kw)(feats, labels=None)
    ref.backward()

    leaves = [c.clone().requires_grad_(True) for c in cols]
    ours_kw = {("temperature" if k == "temperature" else k): v for k, v in kw.items()}
    for mask_self in (False, True):  # no guide duplicates here: the explicit self-mask changes nothing
        loss = GuidedInfoNCE(mask_self=mask_self, **ours_kw)(
            leaves[0], leaves[1], leaves[2][:, None] if n_neg else None,
            guide_queries=gq, guide_positives=gp, guide_negatives=gn[:, :1] if n_neg else None,
        )
        grads = torch.autograd.grad(loss, leaves)
        assert torch.allclose(loss, ref, atol=1e-5, rtol=1e-5), (float(loss), float(ref))
        assert float(loss.detach()) > 0.1 and abs(float(loss.detach()) - float(unmasked)) > 1e-3  # the guide did mask something
        assert torch.allclose(torch.cat(grads), table.grad, atol=1e-5, rtol=1e-4)


def test_self_similarity_gap_is_fixed(minilm):
    """A pair the guide sees as identical (g_0 = 1) with margin 0: ST keeps s(a_0, a_0) = 1 in the
    softmax (logit 100); mask_self=False reproduces that, the default masks it."""
    B, d = 5, 8
    q, p, _, gq, gp, _ = _data(B, 0, d, d, 21, dtype=torch.float32, dup_rows=1)
    table = torch.cat([q, p]).clone().requires_grad_(True)
    feats = [{"row": torch.arange(0, B)}, {"row": torch.arange(B, 2 * B)}]
    ref = _st_gist(minilm, table, torch.cat([gq, gp]))(feats, labels=None)
    kept = guided_info_nce(q, p, guide_queries=gq, guide_positives=gp, mask_self=False)
    fixed = guided_info_nce(q, p, guide_queries=gq, guide_positives=gp)
    assert torch.allclose(kept, ref, atol=1e-5)
    # row 0's self term dominates its softmax: the loss of row 0 is about 100 * (1 - s(a_0, p_0))
    rows = guided_info_nce(q, p, guide_queries=gq, guide_positives=gp, mask_self=False, reduction="none")
    cos0 = torch.nn.functional.cosine_similarity(q[0], p[0], dim=0)
    assert float(rows[0]) > 0.9 * 100 * (1 - float(cos0))
    assert float(fixed) < float(kept) - 1.0
    assert torch.allclose(fixed.double(), ref_guided(q, p, None, gq, gp, None, temperature=0.01, strategy="absolute",
                                                     margin=0.0, contrast_anchors=True, contrast_positives=True,
                                                     mask_self=True), atol=1e-5)


def test_bf16_and_bad_input():
    q, p, neg, gq, gp, gn = _data(8, 2, 16, 6, 1, dtype=torch.float32)
    ref = guided_info_nce(q, p, neg, guide_queries=gq, guide_positives=gp, guide_negatives=gn)
    out = guided_info_nce(q.bfloat16(), p.bfloat16(), neg.bfloat16(), guide_queries=gq.bfloat16(),
                          guide_positives=gp.bfloat16(), guide_negatives=gn.bfloat16())
    assert torch.isfinite(out) and abs(float(out) - float(ref)) < 0.1 * max(1.0, float(ref))
    with pytest.raises(hardneg.ShapeError, match="guide_negatives"):
        guided_info_nce(q, p, neg, guide_queries=gq, guide_positives=gp)
    with pytest.raises(hardneg.ShapeError, match="guide_positives"):
        guided_info_nce(q, p, guide_queries=gq, guide_positives=gp[:3])
    with pytest.raises(hardneg.ParameterError, match="margin_strategy"):
        GuidedInfoNCE(margin_strategy="percent")
    with pytest.raises(hardneg.ParameterError, match="temperature"):
        GuidedInfoNCE(temperature=-0.01)
