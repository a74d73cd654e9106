"""DCL, debiased, HCL, SigLIP and MoCHi mixing against explicit loops and the reference formulas."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings, strategies as st  # noqa: E402

import hardneg  # noqa: E402
from hardneg.losses import (  # noqa: E402
    DebiasedInfoNCE,
    DecoupledInfoNCE,
    HardNegativeInfoNCE,
    SigLIPLoss,
    debiased_info_nce,
    decoupled_info_nce,
    hard_negative_info_nce,
    info_nce,
    mix_hard_negatives,
    siglip_loss,
)

from _loss_refs import dot, grads_of, infonce_candidates, ref_info_nce, unit  # noqa: E402


def _data(B, n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, d, generator=g, dtype=dtype)
    p = q + torch.randn(B, d, generator=g, dtype=dtype)
    neg = torch.randn(B, n, d, generator=g, dtype=dtype) if n else None
    return q, p, neg


VARIANTS = st.sampled_from(["decoupled", "debiased", "hcl"])


@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 6), n=st.integers(0, 3), d=st.integers(2, 5), seed=st.integers(0, 2**16), variant=VARIANTS,
    symmetric=st.booleans(), in_batch=st.booleans(), use_ids=st.booleans(), temperature=st.sampled_from([0.1, 0.5]),
    tau_plus=st.sampled_from([0.0, 0.1, 0.3]), beta=st.sampled_from([0.0, 0.5, 1.0]),
)
@pytest.mark.filterwarnings("ignore:.*nothing left to contrast")
def test_matches_reference_formulas(B, n, d, seed, variant, symmetric, in_batch, use_ids, temperature, tau_plus, beta):
    if symmetric:
        in_batch = True
    q, p, neg = _data(B, n, d, seed)
    g = torch.Generator().manual_seed(seed + 3)
    pid = torch.randint(-1, 3, (B,), generator=g) if use_ids else None  # -1: no id / padding
    nid = torch.randint(-1, 4, (B, n), generator=g) if (use_ids and n) else None
    tensors = (q, p) if neg is None else (q, p, neg)
    common = dict(temperature=temperature, symmetric=symmetric, in_batch=in_batch)
    if variant == "decoupled":
        def ours(*t):
            return decoupled_info_nce(*t, positive_ids=pid, negative_ids=nid, **common)
        ref_kw = dict(denominator="decoupled")
    elif variant == "debiased":
        def ours(*t):
            return debiased_info_nce(*t, positive_ids=pid, negative_ids=nid, tau_plus=tau_plus, **common)
        ref_kw = dict(denominator="debiased", tau_plus=tau_plus)
    else:
        def ours(*t):
            return hard_negative_info_nce(*t, positive_ids=pid, negative_ids=nid, tau_plus=tau_plus, beta=beta, **common)
        ref_kw = dict(denominator="debiased", tau_plus=tau_plus, beta=beta)
    v1, g1 = grads_of(ours, *tensors)
    v2, g2 = grads_of(lambda *t: ref_info_nce(*t, pid=pid, nid=nid, **common, **ref_kw), *tensors)
    assert torch.allclose(v1, v2, rtol=1e-8, atol=1e-9), (v1, v2)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)


def test_special_cases_reduce_to_infonce():
    q, p, neg = _data(8, 2, 6, 0)
    base = info_nce(q, p, neg, temperature=0.5)
    assert torch.allclose(debiased_info_nce(q, p, neg, temperature=0.5, tau_plus=0.0), base)
    assert torch.allclose(hard_negative_info_nce(q, p, neg, temperature=0.5, tau_plus=0.0, beta=0.0), base)
    # decoupled = InfoNCE minus the positive: log(e^pos + S) - pos > log S - pos
    assert (decoupled_info_nce(q, p, neg, reduction="none") < info_nce(q, p, neg, reduction="none")).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_log_space_is_finite_at_embedding_temperatures(dtype):
    """exp(1/t) overflows float32 for t < 0.0113: the exp-space references return inf/nan there."""
    q, p, neg = _data(16, 3, 32, 1, dtype=torch.float32)
    for fn in (decoupled_info_nce, debiased_info_nce, hard_negative_info_nce):
        ref = fn(q, p, neg, temperature=0.01)
        x = q.to(dtype).clone().requires_grad_(True)  # a copy even for float32
        out = fn(x, p.to(dtype), neg.to(dtype), temperature=0.01)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(x.grad.float()).all()
        assert abs(float(out.detach()) - float(ref)) < 0.05 * max(1.0, abs(float(ref)))
    assert not torch.isfinite(torch.exp(torch.tensor(1 / 0.01, dtype=torch.float32)))


def test_rows_without_negatives_contribute_zero_and_warn():
    q, p, _ = _data(1, 0, 4, 2)  # a single row: no negatives at all
    for fn in (decoupled_info_nce, debiased_info_nce, hard_negative_info_nce):
        x = q.clone().requires_grad_(True)
        with pytest.warns(RuntimeWarning, match=f"{fn.__name__}: 1 of 1 rows have nothing left to contrast"):
            out = fn(x, p)
        out.backward()
        assert float(out.detach()) == 0.0 and torch.isfinite(x.grad).all()


def test_modules_and_bad_input():
    q, p, neg = _data(5, 2, 4, 3, dtype=torch.float32)
    assert torch.allclose(DecoupledInfoNCE(0.1)(q, p, neg), decoupled_info_nce(q, p, neg, temperature=0.1))
    assert torch.allclose(DebiasedInfoNCE(0.1, tau_plus=0.2)(q, p, neg),
                          debiased_info_nce(q, p, neg, temperature=0.1, tau_plus=0.2))
    assert torch.allclose(HardNegativeInfoNCE(0.1, beta=0.5)(q, p, neg),
                          hard_negative_info_nce(q, p, neg, temperature=0.1, beta=0.5))
    with pytest.raises(hardneg.ParameterError, match="tau_plus"):
        DebiasedInfoNCE(tau_plus=1.0)
    with pytest.raises(hardneg.ParameterError, match="temperature"):
        DecoupledInfoNCE(temperature=0)
    with pytest.raises(hardneg.ParameterError, match="beta"):
        hard_negative_info_nce(q, p, beta=float("nan"))


# --- SigLIP --------------------------------------------------------------------------------------


def ref_siglip(q, p, n, t, b, in_batch, pid, nid):
    q, p = unit(q), unit(p)
    n = unit(n) if n is not None else None
    total = 0.0
    for i in range(q.shape[0]):
        for vec, is_target, cid in infonce_candidates(q, p, n, i, in_batch, pid, nid):
            z = 1.0 if (is_target or (pid is not None and cid is not None and cid == int(pid[i]))) else -1.0
            x = z * (t * dot(q[i], vec) + b)
            total = total - torch.log(1 / (1 + torch.exp(-x)))
    return total / q.shape[0]


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 5), n=st.integers(0, 2), seed=st.integers(0, 2**16), in_batch=st.booleans(),
       use_ids=st.booleans(), t=st.sampled_from([1.0, 10.0]), b=st.sampled_from([-10.0, 0.0, 2.0]))
def test_siglip_matches_explicit_loops(B, n, seed, in_batch, use_ids, t, b):
    q, p, neg = _data(B, n, 3, seed)
    g = torch.Generator().manual_seed(seed)
    pid = torch.randint(-1, 3, (B,), generator=g) if use_ids else None  # -1: no id / padding
    nid = torch.randint(-1, 3, (B, n), generator=g) if (use_ids and n) else None
    tensors = (q, p) if neg is None else (q, p, neg)
    v1, g1 = grads_of(lambda *x: siglip_loss(*x, logit_scale=math.log(t), logit_bias=b, in_batch=in_batch,
                                             positive_ids=pid, negative_ids=nid), *tensors)
    v2, g2 = grads_of(lambda *x: ref_siglip(*(x + ((None,) if neg is None else ())), t, b, in_batch, pid, nid), *tensors)
    assert torch.allclose(v1, v2, rtol=1e-8, atol=1e-9)
    for a, c in zip(g1, g2):
        assert torch.allclose(a, c, rtol=1e-6, atol=1e-9)


def test_siglip_module_learns_temperature_and_bias():
    loss_fn = SigLIPLoss()
    assert math.isclose(float(loss_fn.logit_scale.detach().exp()), 10.0, rel_tol=1e-6)
    assert float(loss_fn.logit_bias.detach()) == -10.0
    q, p, neg = _data(6, 2, 8, 4, dtype=torch.float32)
    loss = loss_fn(q, p, neg)
    loss.backward()
    # d/db of the reference with respect to the bias, by central finite differences
    eps = 1e-2
    fd = (siglip_loss(q, p, neg, logit_bias=-10 + eps) - siglip_loss(q, p, neg, logit_bias=-10 - eps)) / (2 * eps)
    assert math.isclose(float(loss_fn.logit_bias.grad), float(fd), rel_tol=1e-3)
    assert float(loss_fn.logit_scale.grad) != 0.0
    bf = SigLIPLoss()(q.bfloat16(), p.bfloat16(), neg.bfloat16())
    assert torch.isfinite(bf) and abs(float(bf.detach()) - float(loss.detach())) < 0.05 * float(loss.detach())
    with pytest.raises(hardneg.ParameterError):
        SigLIPLoss(temperature_init=0.0)


# --- MoCHi mixing --------------------------------------------------------------------------------


def test_mix_hard_negatives_matches_explicit_reference():
    B, m, d, k, s, s2 = 3, 6, 5, 3, 4, 2
    q, _, neg = _data(B, m, d, 7, dtype=torch.float32)
    out = mix_hard_negatives(q, neg, num_mixed=s, num_query_mixed=s2, num_hard=k,
                             generator=torch.Generator().manual_seed(5))
    # replay the documented draw order with the same seed, then mix with explicit loops
    g = torch.Generator().manual_seed(5)
    xa, xb = torch.randint(0, k, (B, s), generator=g), torch.randint(0, k, (B, s), generator=g)
    a = torch.rand(B, s, 1, generator=g)
    xq = torch.randint(0, k, (B, s2), generator=g)
    bq = torch.rand(B, s2, 1, generator=g) * 0.5
    for i in range(B):
        qi = q[i] / q[i].norm()
        nu = [neg[i, j] / neg[i, j].norm() for j in range(m)]
        ranked = sorted(range(m), key=lambda j: (-float(dot(qi, nu[j])), j))[:k]
        for c in range(s):
            h = a[i, c] * nu[ranked[xa[i, c]]] + (1 - a[i, c]) * nu[ranked[xb[i, c]]]
            assert torch.allclose(out[i, c], h / h.norm(), atol=1e-6)
        for c in range(s2):
            h = bq[i, c] * qi + (1 - bq[i, c]) * nu[ranked[xq[i, c]]]
            assert torch.allclose(out[i, s + c], h / h.norm(), atol=1e-6)
    assert not out.requires_grad


def test_mixed_negatives_are_harder_on_average_and_usable():
    q, p, neg = _data(16, 12, 32, 9, dtype=torch.float32)
    h = mix_hard_negatives(q, neg, num_mixed=8, num_query_mixed=8, num_hard=3, generator=torch.Generator().manual_seed(0))
    qu = torch.nn.functional.normalize(q, dim=-1)
    s_mix = torch.einsum("bd,bmd->bm", qu, h).mean()
    s_all = torch.einsum("bd,bmd->bm", qu, torch.nn.functional.normalize(neg, dim=-1)).mean()
    assert s_mix > s_all
    assert torch.isfinite(info_nce(q, p, torch.cat([neg, h], dim=1), in_batch=False))
    with pytest.raises(hardneg.ParameterError, match="num_hard"):
        mix_hard_negatives(q, neg, num_hard=13)
    with pytest.raises(hardneg.ShapeError):
        mix_hard_negatives(q, neg[:, 0])
