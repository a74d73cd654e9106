"""One forward + backward of the in-batch InfoNCE loss with 7 mined negatives per query:
hardneg's ChunkedInfoNCE and InfoNCE against sentence-transformers' MultipleNegativesRankingLoss."""

from __future__ import annotations

import pytest

SMALL = (256, 128)
FULL = (4096, 768)
NEG = 7


@pytest.fixture(scope="module")
def data(full):
    torch = pytest.importorskip("torch")
    b, d = FULL if full else SMALL
    g = torch.Generator().manual_seed(0)
    return (torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), torch.randn(b, NEG, d, generator=g))


@pytest.mark.parametrize("variant", ["hardneg ChunkedInfoNCE", "hardneg InfoNCE", "sentence-transformers MNRL"])
def test_loss_forward_backward(benchmark, data, variant):
    import torch

    q0, p0, n0 = data
    benchmark.group = f"InfoNCE forward+backward, B={len(q0):,}, d={q0.shape[1]}, {NEG} negatives"
    q, p, n = (t.clone().requires_grad_(True) for t in data)
    if variant.startswith("sentence"):
        pytest.importorskip("sentence_transformers")
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        st = MultipleNegativesRankingLoss(torch.nn.Identity(), scale=20.0)

        def loss():
            return st.compute_loss_from_embeddings([q, p] + [n[:, j] for j in range(NEG)], labels=None)
    else:
        from hardneg.losses import ChunkedInfoNCE, InfoNCE

        fn = (ChunkedInfoNCE if "Chunked" in variant else InfoNCE)(temperature=0.05)

        def loss():
            return fn(q, p, n)

    def step():
        q.grad = p.grad = n.grad = None
        value = loss()
        value.backward()
        return value.detach()

    value = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    from hardneg.losses import InfoNCE

    want = InfoNCE(temperature=0.05)(q0, p0, n0)
    torch.testing.assert_close(value, want, rtol=1e-4, atol=1e-4)  # every variant computes the same loss
