"""Slow, obvious references for the recommendation and knowledge-graph tests: explicit loops.

The loss references build every term one at a time from float64 scalars (no shared code with
:mod:`hardneg.losses`); the sampler references work on Python sets.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _score(a, b, cosine):
    s = sum(a[k] * b[k] for k in range(a.shape[0]))
    if cosine:
        s = s / (torch.sqrt(sum(a[k] * a[k] for k in range(a.shape[0]))) * torch.sqrt(sum(b[k] * b[k] for k in range(b.shape[0]))))
    return s


def _kept(i, j, pid, nid):
    if nid is None:
        return True
    if int(nid[i, j]) == -1:
        return False
    return not (pid is not None and int(pid[i]) != -1 and int(nid[i, j]) == int(pid[i]))


def ref_bpr(u, p, n, *, cosine=False, pid=None, nid=None):
    """Mean over rows of the mean over kept negatives of -log sigmoid(s_pos - s_neg)."""
    total = 0.0
    for i in range(u.shape[0]):
        pos = _score(u[i], p[i], cosine)
        terms = [-torch.log(torch.sigmoid(pos - _score(u[i], n[i, j], cosine))) for j in range(n.shape[1]) if _kept(i, j, pid, nid)]
        total = total + (sum(terms) / len(terms) if terms else 0.0 * pos)
    return total / u.shape[0]


def ref_ccl(u, p, n, *, margin, weight, pid=None, nid=None):
    """SimpleX CCL: relu(1 - cos+) + w * mean over kept negatives of relu(cos- - margin)."""
    total = 0.0
    for i in range(u.shape[0]):
        row = torch.relu(1 - _score(u[i], p[i], True))
        terms = [torch.relu(_score(u[i], n[i, j], True) - margin) for j in range(n.shape[1]) if _kept(i, j, pid, nid)]
        if terms:
            row = row + weight * sum(terms) / len(terms)
        total = total + row
    return total / u.shape[0]


def ref_sampled_softmax(q, v, log_q=None, *, ids=None, extra=None, extra_lq=None, extra_ids=None, temperature, cosine,
                        correct_positive=True):
    """Row i: -log softmax over the kept candidates (batch items, then shared extras) at the target i."""
    B = q.shape[0]
    cands = [(v[j], None if log_q is None else log_q[j], None if ids is None else int(ids[j])) for j in range(B)]
    if extra is not None:
        cands += [(extra[m], None if extra_lq is None else extra_lq[m], None if extra_ids is None else int(extra_ids[m]))
                  for m in range(extra.shape[0])]
    total = 0.0
    for i in range(B):
        logits, target = [], None
        for c, (vec, lq, cid) in enumerate(cands):
            is_target = c == i
            if not is_target:
                if cid == -1 and c >= B:
                    continue  # padding
                if ids is not None and cid is not None and int(ids[i]) != -1 and cid == int(ids[i]):
                    continue  # another copy of the row's own item
            z = _score(q[i], vec, cosine) / temperature
            if lq is not None and (correct_positive or not is_target):
                z = z - lq
            if is_target:
                target = z
            logits.append(z)
        m = max(float(z.detach()) for z in logits)
        total = total + (m + torch.log(sum(torch.exp(z - m) for z in logits)) - target)
    return total / B


MULTIPLIERS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93)


def ref_frequency(batches, *, size, alpha, hashed, num_hashes=1):
    """Yi et al.'s streaming estimate with Python dicts: returns {slot key: (last step, interval)} per hash
    and a function id -> probability."""
    A = [dict() for _ in range(num_hashes)]
    Bv = [dict() for _ in range(num_hashes)]
    bits = int(math.log2(size)) if hashed else 0

    def slot(k, y):
        if not hashed:
            return y
        return ((y * MULTIPLIERS[k]) % 2**64) >> (64 - bits) if bits else 0

    for t, batch in enumerate(batches, start=1):
        for k in range(num_hashes):
            for s in {slot(k, int(y)) for y in batch}:
                Bv[k][s] = (1 - alpha) * Bv[k].get(s, 0.0) + alpha * (t - A[k].get(s, 0))
                A[k][s] = t

    def prob(y):
        interval = max(Bv[k].get(slot(k, int(y)), 0.0) for k in range(num_hashes))
        return 1.0 / max(interval, 1.0)

    return prob


def brute_topk_excluding(scores: np.ndarray, excluded: set, k: int) -> list:
    """Ids of the k best scores (ties: lower id), skipping excluded ids."""
    order = sorted((i for i in range(len(scores)) if i not in excluded), key=lambda i: (-scores[i], i))
    return order[:k]
