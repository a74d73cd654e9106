"""Two real processes (gloo, CPU): gathered losses give each rank the single-process full-batch gradients."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

WORLD, B, D_IN, D = 2, 5, 6, 8


def _configs():
    from hardneg import losses as L

    return {
        "infonce": lambda g: L.InfoNCE(temperature=0.1, gather=g),
        "infonce_sym_ids_margin_alpha": lambda g: L.InfoNCE(
            temperature=0.1, symmetric=True, gather=g, false_negative_margin=0.2, hardness_alpha=3.0),
        "chunked_sym": lambda g: L.ChunkedInfoNCE(temperature=0.1, symmetric=True, gather=g, chunk_size=2),
        "hcl": lambda g: L.HardNegativeInfoNCE(temperature=0.2, tau_plus=0.1, beta=0.5, gather=g),
        "siglip": lambda g: L.SigLIPLoss(gather=g, learnable=False),
        "gist": lambda g: L.GuidedInfoNCE(temperature=0.1, margin=0.1, contrast_anchors=False, gather=g),
    }


def _data():
    g = torch.Generator().manual_seed(0)
    n = WORLD * B
    xq = torch.randn(n, D_IN, generator=g)
    xp = xq + 0.5 * torch.randn(n, D_IN, generator=g)
    xn = torch.randn(n, 2, D_IN, generator=g)
    ids = torch.arange(n) % 7  # duplicates across ranks: rows 0 and 7 share an id
    guide = torch.randn(D_IN, 4, generator=g)
    return xq, xp, xn, ids, guide


def _model():
    torch.manual_seed(42)
    return torch.nn.Linear(D_IN, D)


def _loss(name, loss_fn, model, xq, xp, xn, ids, guide):
    b = xq.shape[0]
    emb = model(torch.cat([xq, xp, xn.reshape(-1, D_IN)]))
    q, p, n = emb[:b], emb[b:2 * b], emb[2 * b:].reshape(b, 2, D)
    if name == "gist":
        return loss_fn(q, p, n, guide_queries=xq @ guide, guide_positives=xp @ guide, guide_negatives=xn @ guide)
    if name.startswith("infonce_sym") or name == "siglip":
        return loss_fn(q, p, n, positive_ids=ids)
    return loss_fn(q, p, n)


def _full_batch_grads():
    xq, xp, xn, ids, guide = _data()
    out = {}
    for name, make in _configs().items():
        model = _model()
        _loss(name, make(False), model, xq, xp, xn, ids, guide).backward()
        out[name] = [p.grad.clone() for p in model.parameters()]
    return out


def _worker(rank, port, outdir):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from hardneg import ShapeError
        from hardneg.losses import gather_with_grad

        xq, xp, xn, ids, guide = _data()
        sl = slice(rank * B, (rank + 1) * B)
        result = {}
        for name, make in _configs().items():
            model = torch.nn.parallel.DistributedDataParallel(_model())
            loss = _loss(name, make(True), model, xq[sl], xp[sl], xn[sl], ids[sl], guide)
            loss.backward()  # DDP averages the parameter gradients over the ranks
            result[name] = [p.grad.clone() for p in model.parameters()]
        try:  # uneven batches are refused on every rank with a clear error
            gather_with_grad(torch.ones(3 + rank, 2))
            result["uneven"] = "no error"
        except ShapeError as e:
            result["uneven"] = str(e)
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_gathered_losses_give_full_batch_gradients_on_every_rank():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(_free_port(), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
    ref = _full_batch_grads()
    for r, res in enumerate(ranks):
        for name, grads in ref.items():
            assert float(sum(g.abs().sum() for g in grads)) > 0
            for a, b in zip(res[name], grads):
                assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), (r, name, (a - b).abs().max())
        assert "same shape on every rank" in res["uneven"], res["uneven"]


def test_without_gather_a_rank_sees_only_its_rows():
    """Control: the local-only loss does not give the full-batch gradients (the test above is not vacuous)."""
    xq, xp, xn, ids, guide = _data()
    ref = _full_batch_grads()["infonce"]
    from hardneg.losses import InfoNCE

    grads = []
    for r in range(WORLD):
        model = _model()
        sl = slice(r * B, (r + 1) * B)
        _loss("infonce", InfoNCE(temperature=0.1), model, xq[sl], xp[sl], xn[sl], ids[sl], guide).backward()
        grads.append([p.grad for p in model.parameters()])
    avg = [(a + b) / 2 for a, b in zip(*grads)]
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(avg, ref))
