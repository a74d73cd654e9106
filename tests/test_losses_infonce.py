"""InfoNCE against explicit loops, sentence-transformers MNRL and pytorch-metric-learning NTXentLoss."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

import hardneg  # noqa: E402
from hardneg.losses import InfoNCE, info_nce  # noqa: E402

from _loss_refs import grads_of, load_minilm, ref_info_nce  # noqa: E402


def _data(B, n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, d, generator=g, dtype=dtype)
    p = q + 0.8 * torch.randn(B, d, generator=g, dtype=dtype)
    neg = torch.randn(B, n, d, generator=g, dtype=dtype) if n else None
    return q, p, neg


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 6), n=st.integers(0, 3), d=st.integers(1, 5), seed=st.integers(0, 2**16),
    symmetric=st.booleans(), in_batch=st.booleans(), use_ids=st.booleans(),
    margin=st.sampled_from([None, 0.0, 0.3, -0.1]), alpha=st.sampled_from([0.0, 5.0]),
    temperature=st.sampled_from([0.05, 0.5]), cosine=st.booleans(),
)
@pytest.mark.filterwarnings("ignore:info_nce.*nothing left to contrast")
def test_matches_explicit_loops(B, n, d, seed, symmetric, in_batch, use_ids, margin, alpha, temperature, cosine):
    if symmetric and not in_batch:
        symmetric = False
    q, p, neg = _data(B, n, d, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pid = nid = None
    if use_ids:  # few distinct ids: many duplicates across the batch; -1: no id / padding
        pid = torch.randint(-1, 3, (B,), generator=g)
        nid = torch.randint(-1, 4, (B, n), generator=g) if n else None
    kw = dict(temperature=temperature, symmetric=symmetric, in_batch=in_batch, margin=margin, alpha=alpha, cosine=cosine)
    tensors = (q, p) if neg is None else (q, p, neg)

    def ours(*t):
        return info_nce(*t, temperature=temperature, symmetric=symmetric, in_batch=in_batch, positive_ids=pid,
                        negative_ids=nid, false_negative_margin=margin, hardness_alpha=alpha,
                        similarity="cosine" if cosine else "dot")

    def ref(*t):
        return ref_info_nce(*t, pid=pid, nid=nid, **{k: v for k, v in kw.items()})

    v1, g1 = grads_of(ours, *tensors)
    v2, g2 = grads_of(ref, *tensors)
    assert torch.allclose(v1, v2, rtol=1e-9, atol=1e-9), (v1, v2)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)


def test_ids_mask_duplicates_of_the_positive():
    q, p, neg = _data(4, 2, 8, 0)
    p = p.clone()
    p[2] = p[0]  # row 2 has the same positive as row 0
    pid = torch.tensor([7, 1, 7, 3])
    masked = info_nce(q, p, neg, positive_ids=pid)
    plain = info_nce(q, p, neg)
    assert masked < plain  # the duplicate is no longer a negative of rows 0 and 2
    # equals dropping the duplicate by hand for rows 0 and 2 (explicit reference)
    assert torch.allclose(masked, ref_info_nce(q, p, neg, pid=pid))


def test_reduction_none_and_sum():
    q, p, neg = _data(5, 2, 4, 3)
    rows = info_nce(q, p, neg, reduction="none")
    assert rows.shape == (5,)
    assert torch.allclose(rows.mean(), info_nce(q, p, neg))
    assert torch.allclose(rows.sum(), info_nce(q, p, neg, reduction="sum"))


# --- sentence-transformers MultipleNegativesRankingLoss, called for real ------------------------


@pytest.fixture(scope="module")
def minilm():
    model = load_minilm()
    model.eval()  # no dropout: both sides must see the same embeddings
    return model


ST_CONFIGS = [
    dict(kw={}, ours={}),
    dict(kw=dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"), ours=dict(symmetric=True)),
    dict(kw=dict(hardness_mode="all_negatives", hardness_strength=5.0), ours=dict(hardness_alpha=5.0)),
    dict(kw=dict(scale=50.0), ours=dict(temperature=0.02)),
]


@pytest.mark.parametrize("n_neg", [0, 1, 3])
@pytest.mark.parametrize("cfg", ST_CONFIGS, ids=["default", "symmetric", "hardness", "scale50"])
def test_matches_sentence_transformers_mnrl_on_embeddings(minilm, cfg, n_neg):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    st_loss = MultipleNegativesRankingLoss(minilm, **cfg["kw"])
    g = torch.Generator().manual_seed(n_neg)
    B, d = 7, 16
    q = torch.randn(B, d, generator=g)
    p = q + torch.randn(B, d, generator=g)
    neg = torch.randn(B, n_neg, d, generator=g)
    cols = [q, p] + [neg[:, k] for k in range(n_neg)]

    leaves = [c.clone().requires_grad_(True) for c in cols]
    ref = st_loss.compute_loss_from_embeddings(leaves, labels=None)
    ref.backward()

    ours_leaves = [c.clone().requires_grad_(True) for c in cols]
    nn = torch.stack(ours_leaves[2:], dim=1) if n_neg else None
    loss = InfoNCE(**cfg["ours"])(ours_leaves[0], ours_leaves[1], nn)
    loss.backward()
    assert torch.allclose(loss, ref, atol=1e-5, rtol=1e-5), (float(loss), float(ref))
    for a, b in zip(ours_leaves, leaves):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4)


def test_matches_sentence_transformers_mnrl_end_to_end(minilm):
    """Real texts through MiniLM: same loss and the same gradient on every parameter."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    anchors = ["how do cats sleep", "capital of france", "python list sort", "best pizza dough", "rust borrow checker"]
    positives = ["cats sleep 16 hours a day", "paris is the capital of france", "use sorted() or list.sort()",
                 "flour water salt yeast", "the borrow checker enforces ownership"]
    negatives = ["dogs bark at night", "berlin is in germany", "java arrays are fixed", "sourdough bread recipe",
                 "go has a garbage collector"]
    feats = [minilm.preprocess(x) for x in (anchors, positives, negatives)]
    st_loss = MultipleNegativesRankingLoss(minilm, directions=("query_to_doc", "doc_to_query"),
                                           partition_mode="per_direction")
    minilm.zero_grad()
    ref = st_loss([dict(f) for f in feats], labels=None)
    ref.backward()
    ref_grads = {k: v.grad.clone() for k, v in minilm.named_parameters() if v.grad is not None}
    assert ref_grads and any(float(g.abs().sum()) > 0 for g in ref_grads.values())

    minilm.zero_grad()
    emb = [minilm(dict(f))["sentence_embedding"] for f in feats]
    loss = InfoNCE(symmetric=True)(emb[0], emb[1], emb[2][:, None])
    loss.backward()
    assert torch.allclose(loss, ref, atol=1e-5)
    for k, v in minilm.named_parameters():
        if k in ref_grads:
            assert torch.allclose(v.grad, ref_grads[k], atol=1e-5, rtol=1e-3), k


# --- pytorch-metric-learning NTXentLoss ---------------------------------------------------------


@pytest.mark.parametrize("n_neg", [0, 2])
def test_matches_pytorch_metric_learning_ntxent(n_neg):
    from pytorch_metric_learning.losses import NTXentLoss

    g = torch.Generator().manual_seed(11)
    B, d, t = 6, 10, 0.07
    q = torch.randn(B, d, generator=g, requires_grad=True)
    p = torch.randn(B, d, generator=g, requires_grad=True)
    neg = torch.randn(B, n_neg, d, generator=g, requires_grad=True)
    # anchors q_i; references: the positives (label i) and the negatives (labels no anchor has)
    ref_emb = torch.cat([p, neg.reshape(-1, d)])
    ref_labels = torch.cat([torch.arange(B), B + torch.arange(B * n_neg)])
    ref = NTXentLoss(temperature=t)(q, torch.arange(B), ref_emb=ref_emb, ref_labels=ref_labels)
    gq, gp = torch.autograd.grad(ref, [q, p])
    ours = info_nce(q, p, neg if n_neg else None, temperature=t)
    oq, op = torch.autograd.grad(ours, [q, p])
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(oq, gq, atol=1e-5) and torch.allclose(op, gp, atol=1e-5)


# --- dtypes and bad input -----------------------------------------------------------------------


def test_bf16_inputs_are_finite_and_close_to_float32():
    q, p, neg = _data(16, 3, 32, 5, dtype=torch.float32)
    for t in (0.01, 0.05):
        ref = info_nce(q, p, neg, temperature=t, hardness_alpha=9.0)
        qb = q.bfloat16().requires_grad_(True)
        out = info_nce(qb, p.bfloat16(), neg.bfloat16(), temperature=t, hardness_alpha=9.0)
        out.backward()
        assert out.dtype == torch.float32 and torch.isfinite(out)
        assert torch.isfinite(qb.grad.float()).all() and qb.grad.dtype == torch.bfloat16
        assert abs(float(out.detach()) - float(ref)) < 0.05 * max(1.0, float(ref))


def test_bad_input_raises_typed_errors():
    q, p, neg = _data(4, 2, 3, 0, dtype=torch.float32)
    with pytest.raises(hardneg.ParameterError, match="temperature"):
        InfoNCE(temperature=0.0)
    with pytest.raises(hardneg.ParameterError, match="temperature"):
        info_nce(q, p, temperature=-1.0)
    with pytest.raises(hardneg.ShapeError, match="positives"):
        info_nce(q, p[:3])
    with pytest.raises(hardneg.ShapeError, match=r"\[B, n, d\]"):
        info_nce(q, p, neg[:, 0])  # 2-D negatives
    with pytest.raises(hardneg.ShapeError, match="negatives"):
        info_nce(q, p, neg[:3])
    with pytest.raises(hardneg.ShapeError, match="positive_ids"):
        info_nce(q, p, positive_ids=torch.arange(5))
    with pytest.raises(hardneg.ShapeError, match="negative_ids"):
        info_nce(q, p, neg, positive_ids=torch.arange(4), negative_ids=torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(hardneg.DTypeError, match="integers"):
        info_nce(q, p, positive_ids=torch.ones(4))
    with pytest.raises(hardneg.DTypeError, match="floating"):
        info_nce(q.long(), p)
    with pytest.raises(hardneg.ParameterError, match="in_batch"):
        info_nce(q, p, symmetric=True, in_batch=False)
    with pytest.raises(hardneg.ParameterError, match="similarity"):
        InfoNCE(similarity="l2")
    meta = torch.empty(4, 3, device="meta")
    with pytest.raises(hardneg.DeviceError, match="device"):
        info_nce(q, meta)
    assert issubclass(hardneg.DeviceError, ValueError) and issubclass(hardneg.DeviceError, hardneg.HardnegError)


def test_autocast_keeps_similarities_in_float32():
    from hardneg.losses import chunked_info_nce, decoupled_info_nce, guided_info_nce, siglip_loss

    q, p, neg = _data(12, 2, 32, 2, dtype=torch.float32)
    fns = [
        lambda: info_nce(q, p, neg, temperature=0.01),
        lambda: chunked_info_nce(q, p, neg, temperature=0.01, chunk_size=5),
        lambda: decoupled_info_nce(q, p, neg, temperature=0.01),
        lambda: siglip_loss(q, p, neg),
        lambda: guided_info_nce(q, p, neg, guide_queries=q, guide_positives=p, guide_negatives=neg),
    ]
    for fn in fns:
        ref = fn()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn()
        assert out.dtype == torch.float32 and torch.allclose(out, ref, rtol=1e-6, atol=1e-6)
