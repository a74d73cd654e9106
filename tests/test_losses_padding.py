"""One padding convention from mining to the losses: -1 marks a missing negative (``Mined.negatives``)
and is masked out of every loss; a positive id of -1 means "no id"; rows left with nothing to
contrast warn; NaN in a used embedding is named. Also the range and vocabulary checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hardneg  # noqa: E402
from hardneg.losses import (  # noqa: E402
    ChunkedInfoNCE,
    DecoupledInfoNCE,
    GuidedInfoNCE,
    InfoNCE,
    SigLIPLoss,
    info_nce,
    mix_hard_negatives,
)

from _loss_refs import grads_of, ref_guided, ref_info_nce  # noqa: E402


@pytest.fixture(scope="module")
def mined_batch():
    """A batch built from a real mining result whose short queries have -1 negatives; the padded
    slots hold NaN placeholders, as a dataset may give for a missing negative."""
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((40, 8)).astype(np.float32)
    queries = corpus[:6] + 0.3 * rng.standard_normal((6, 8)).astype(np.float32)
    # queries 1 and 4 exclude most of the corpus, so they get fewer than 3 negatives
    exclude = [[] for _ in range(6)]
    exclude[1] = [i for i in range(40) if i not in (0, 1)]  # one candidate left
    exclude[4] = [i for i in range(40) if i not in (4, 5, 6)]  # two
    mined = hardneg.mine(queries, corpus, np.arange(6), num_negatives=3, exclude=exclude, progress=False)
    assert (mined.negatives == -1).any(axis=1).tolist() == [False, True, False, False, True, False]
    neg = torch.from_numpy(corpus[np.maximum(mined.negatives, 0)]).double()
    nid = torch.from_numpy(mined.negatives)
    neg[nid < 0] = float("nan")
    pid = torch.from_numpy(mined.positives[:, 0])
    return torch.from_numpy(queries).double(), torch.from_numpy(corpus[:6]).double(), neg, pid, nid


@pytest.mark.parametrize("in_batch, symmetric", [(True, False), (False, False), (True, True)])
def test_mined_padding_is_masked_in_infonce_and_chunked(mined_batch, in_batch, symmetric):
    q, p, neg, pid, nid = mined_batch
    kw = dict(temperature=0.1, in_batch=in_batch, symmetric=symmetric)
    placeholder = torch.where((nid < 0)[..., None], 1.0, neg)  # the reference never reads padded slots
    v_ref, g_ref = grads_of(lambda *t: ref_info_nce(*t, pid=pid, nid=nid, **kw), q, p, placeholder)
    for loss_fn in (InfoNCE(**kw), ChunkedInfoNCE(chunk_size=4, **kw)):
        v, g = grads_of(lambda *t: loss_fn(*t, positive_ids=pid, negative_ids=nid), q, p, neg)
        assert torch.isfinite(v) and torch.allclose(v, v_ref, atol=1e-9)
        for a, b in zip(g, g_ref):
            assert torch.isfinite(a).all()
            assert torch.allclose(a, b, atol=1e-9)
        assert (g[2][nid < 0] == 0).all()  # padding gets no gradient


def test_padding_alone_without_positive_ids(mined_batch):
    q, p, neg, _, nid = mined_batch
    got = info_nce(q, p, neg, negative_ids=nid, in_batch=False)
    want = ref_info_nce(q, p, torch.where((nid < 0)[..., None], 1.0, neg), nid=nid, in_batch=False)
    assert torch.allclose(got, want, atol=1e-9)


def test_positive_ids_of_minus_one_mean_no_id():
    g = torch.Generator().manual_seed(0)
    q, p, n = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(4, 2, 8, generator=g)
    plain = info_nce(q, p, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        no_ids = info_nce(q, p, n, positive_ids=torch.full((4,), -1), negative_ids=torch.full((4, 2), 7))
    assert float(no_ids) > 0.5 and torch.allclose(no_ids, plain)  # was 0.0: -1 == -1 masked every candidate


def test_a_row_with_nothing_to_contrast_warns_instead_of_silently_adding_zero():
    g = torch.Generator().manual_seed(1)
    q, p, n = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(4, 2, 8, generator=g)
    nid = torch.tensor([[3, 4], [-1, -1], [5, 6], [7, -1]])
    with pytest.warns(RuntimeWarning, match=r"info_nce: 1 of 4 rows have nothing left to contrast.*negative_ids=-1"):
        rows = info_nce(q, p, n, negative_ids=nid, in_batch=False, reduction="none", temperature=0.5)
    assert rows[1] == 0 and (rows[[0, 2, 3]] > 0).all()
    with pytest.warns(RuntimeWarning, match="chunked_info_nce: 1 of 1 rows"):
        ChunkedInfoNCE()(q[:1], p[:1])
    with pytest.warns(RuntimeWarning, match="decoupled_info_nce: 1 of 4 rows"):
        DecoupledInfoNCE(in_batch=False)(q, p, n, negative_ids=nid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info_nce(q, p, n, negative_ids=nid)  # in-batch: the other rows' positives are still there


def test_non_finite_embeddings_are_named():
    g = torch.Generator().manual_seed(2)
    q, p, n = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(4, 2, 8, generator=g)
    bad_n = n.clone()
    bad_n[1, 0, 3] = float("nan")
    for fn in (InfoNCE(), ChunkedInfoNCE(), DecoupledInfoNCE(), SigLIPLoss()):
        with pytest.raises(hardneg.NonFiniteError, match=r"negatives\[1, 0\] holds NaN or Inf.*negative_ids=-1"):
            fn(q, p, bad_n)
    bad_q = q.clone()
    bad_q[2, 0] = float("inf")
    with pytest.raises(hardneg.NonFiniteError, match=r"queries\[2\] holds NaN or Inf"):
        info_nce(bad_q, p, n)
    # the same NaN in a padded slot is ignored
    nid = torch.tensor([[1, 2], [-1, 3], [4, 5], [6, 7]])
    assert torch.isfinite(info_nce(q, p, bad_n, negative_ids=nid))
    assert torch.isfinite(SigLIPLoss()(q, p, bad_n, negative_ids=nid))


def test_guided_masks_padding(mined_batch):
    q, p, neg, _, nid = mined_batch
    gq, gp, gn = q.flip(1), p.flip(1), neg.flip(2)
    kw = dict(temperature=0.05, strategy="absolute", margin=0.1, contrast_anchors=True, contrast_positives=True,
              mask_self=True)
    pad = (nid < 0)[..., None]
    want = ref_guided(q, p, torch.where(pad, 1.0, neg), gq, gp, torch.where(pad, 1.0, gn), nid=nid, **kw)
    got = GuidedInfoNCE(temperature=0.05, margin=0.1)(q, p, neg, guide_queries=gq, guide_positives=gp,
                                                     guide_negatives=gn, negative_ids=nid)
    assert torch.allclose(got, want, atol=1e-9)


def test_mixing_never_draws_padding():
    g = torch.Generator().manual_seed(3)
    q, n = torch.randn(3, 8, generator=g), torch.randn(3, 4, 8, generator=g)
    nid = torch.tensor([[0, 1, 2, 3], [4, -1, -1, -1], [5, 6, -1, -1]])
    n[nid < 0] = float("nan")
    h = mix_hard_negatives(q, n, num_mixed=50, num_hard=3, negative_ids=nid, generator=g)
    assert torch.isfinite(h).all()
    assert torch.allclose(h[1], torch.nn.functional.normalize(n[1, 0], dim=-1).expand(50, 8), atol=1e-6)
    with pytest.raises(hardneg.ParameterError, match="row 1 has no negative to mix"):
        mix_hard_negatives(q, n, negative_ids=torch.tensor([[0, 1, 2, 3], [-1] * 4, [5, 6, 7, 8]]))


def test_temperature_above_one_warns_with_the_likely_value():
    with pytest.warns(UserWarning, match=r"temperature=20 is above 1.*scale=20 is temperature=0\.05.*did you mean temperature=0\.05") as rec:
        InfoNCE(temperature=20)
    assert rec[0].filename == __file__
    for make in (lambda: ChunkedInfoNCE(temperature=20), lambda: GuidedInfoNCE(temperature=50),
                 lambda: DecoupledInfoNCE(temperature=2)):
        with pytest.warns(UserWarning, match="did you mean temperature="):
            make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InfoNCE(temperature=20, similarity="dot")  # unnormalised dot products: a large temperature can make sense
        InfoNCE(temperature=1.0)


def test_one_similarity_vocabulary_with_ip_as_an_alias():
    g = torch.Generator().manual_seed(4)
    q, p = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    assert torch.equal(info_nce(q, p, similarity="ip"), info_nce(q, p, similarity="dot"))
    assert InfoNCE(similarity="ip").similarity == "dot"
    with pytest.raises(hardneg.ParameterError, match="'cosine' or 'dot'"):
        InfoNCE(similarity="euclidean")
