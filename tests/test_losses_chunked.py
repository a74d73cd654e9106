"""ChunkedInfoNCE equals InfoNCE (values and gradients) for odd sizes; gradcheck of the custom function."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

import hardneg  # noqa: E402
from hardneg.losses import ChunkedInfoNCE, InfoNCE, chunked_info_nce, chunked_lse_sum, info_nce  # noqa: E402

from _loss_refs import grads_of  # noqa: E402


def _data(B, n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, d, generator=g, dtype=dtype)
    p = q + torch.randn(B, d, generator=g, dtype=dtype)
    neg = torch.randn(B, n, d, generator=g, dtype=dtype) if n else None
    return q, p, neg


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 13), n=st.integers(0, 4), d=st.integers(1, 6), chunk=st.integers(1, 15),
    seed=st.integers(0, 2**16), symmetric=st.booleans(), in_batch=st.booleans(), use_ids=st.booleans(),
    margin=st.sampled_from([None, 0.1, -0.1]), alpha=st.sampled_from([0.0, 9.0]), cosine=st.booleans(),
    reduction=st.sampled_from(["mean", "sum"]),
)
@pytest.mark.filterwarnings("ignore:.*nothing left to contrast")
def test_chunked_equals_dense(B, n, d, chunk, seed, symmetric, in_batch, use_ids, margin, alpha, cosine, reduction):
    if symmetric and not in_batch:
        in_batch = True
    q, p, neg = _data(B, n, d, seed)
    g = torch.Generator().manual_seed(seed + 7)
    pid = torch.randint(-1, 4, (B,), generator=g) if use_ids else None  # -1: no id / padding
    nid = torch.randint(-1, 5, (B, n), generator=g) if (use_ids and n) else None
    kw = dict(temperature=0.05, symmetric=symmetric, in_batch=in_batch, positive_ids=pid, negative_ids=nid,
              false_negative_margin=margin, hardness_alpha=alpha, similarity="cosine" if cosine else "dot",
              reduction=reduction)
    tensors = (q, p) if neg is None else (q, p, neg)
    v1, g1 = grads_of(lambda *t: chunked_info_nce(*t, chunk_size=chunk, **kw), *tensors)
    v2, g2 = grads_of(lambda *t: info_nce(*t, **kw), *tensors)
    assert torch.allclose(v1, v2, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("B,n,chunk", [(37, 7, 5), (31, 3, 8), (64, 1, 64), (5, 0, 3), (50, 2, 1)])
def test_chunked_module_equals_dense_float32(B, n, chunk):
    q, p, neg = _data(B, n, 48, B, dtype=torch.float32)
    pid = torch.arange(B) % (B // 2 + 1)
    for opts in (dict(), dict(symmetric=True), dict(hardness_alpha=9.0, false_negative_margin=-0.1)):
        tensors = (q, p) if neg is None else (q, p, neg)
        v1, g1 = grads_of(lambda *t: ChunkedInfoNCE(chunk_size=chunk, **opts)(*t, positive_ids=pid), *tensors)
        v2, g2 = grads_of(lambda *t: InfoNCE(**opts)(*t, positive_ids=pid), *tensors)
        assert torch.allclose(v1, v2, atol=1e-5, rtol=1e-5)
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_gradcheck_float64_custom_function():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    cands = torch.randn(11, 4, dtype=torch.float64, generator=g, requires_grad=True)
    targets = torch.tensor([0, 2, 4, 6, 8, 10, 1])
    row_ids = torch.tensor([0, 1, 2, 0, 1, 2, 3])
    cand_ids = torch.arange(11) % 4
    # margin masks are piecewise constant: keep the similarities away from the thresholds. The
    # hardness bias alpha * sg(s) is a stop-gradient, which finite differences cannot see; its
    # gradients are checked against autograd of the dense loss in test_chunked_equals_dense.
    pos = torch.full((7,), 0.5, dtype=torch.float64)
    for kwargs in (
        dict(),
        dict(row_ids=row_ids, cand_ids=cand_ids),
        dict(pos_sim=pos, margin=0.2),
    ):
        for chunk in (1, 3, 7):
            assert torch.autograd.gradcheck(
                lambda r, c: chunked_lse_sum(r, c, targets, scale=1.7, chunk_size=chunk, **kwargs), (rows, cands)
            )


def test_gradcheck_float64_full_chunked_loss():
    q, p, neg = _data(5, 2, 3, 1)
    leaves = [t.clone().requires_grad_(True) for t in (q, p, neg)]
    assert torch.autograd.gradcheck(
        lambda a, b, c: chunked_info_nce(a, b, c, temperature=0.3, symmetric=True, chunk_size=2), leaves
    )


def test_backward_scales_with_the_incoming_gradient():
    q, p, neg = _data(9, 2, 5, 3)
    _, g1 = grads_of(lambda *t: chunked_info_nce(*t, chunk_size=4), q, p, neg)
    _, g3 = grads_of(lambda *t: 3.0 * chunked_info_nce(*t, chunk_size=4), q, p, neg)
    for a, b in zip(g1, g3):
        assert torch.allclose(3.0 * a, b)


def test_no_grad_forward_matches_and_skips_gradient_work():
    q, p, neg = _data(9, 2, 5, 4)
    with torch.no_grad():
        a = chunked_info_nce(q, p, neg, chunk_size=2)
    assert torch.allclose(a, info_nce(q, p, neg))


def test_bf16_inputs_finite_and_close():
    q, p, neg = _data(33, 3, 32, 8, dtype=torch.float32)
    ref = chunked_info_nce(q, p, neg, temperature=0.01, chunk_size=8)
    qb = q.bfloat16().requires_grad_(True)
    out = chunked_info_nce(qb, p.bfloat16(), neg.bfloat16(), temperature=0.01, chunk_size=8)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(qb.grad.float()).all()
    assert abs(float(out.detach()) - float(ref)) < 0.05 * max(1.0, float(ref))


def test_bad_input():
    q, p, neg = _data(4, 2, 3, 0, dtype=torch.float32)
    with pytest.raises(hardneg.ParameterError, match="chunk_size"):
        ChunkedInfoNCE(chunk_size=0)
    with pytest.raises(hardneg.ParameterError, match="reduction"):
        chunked_info_nce(q, p, reduction="none")
    with pytest.raises(hardneg.ParameterError, match="temperature"):
        chunked_info_nce(q, p, temperature=0)
    with pytest.raises(hardneg.ShapeError):
        chunked_info_nce(q, p, neg[:, :, :2])
