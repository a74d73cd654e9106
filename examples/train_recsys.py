"""Implicit-feedback recommendation on Debian's package dependencies: negative samplers and losses compared.

"Users" are source packages and "items" the binary packages their binaries depend on or recommend
(``examples/debian_data.py`` builds the 5-core set from ``apt-cache dumpavail``; see there for how
to rebuild it); 20% of each user's items are held out. A matrix factorisation (64-d user and item
embeddings) is trained with each method for the same number of epochs, and every user's held-out
items are ranked among all items it has no training interaction with (hardneg's exact top-k with
the training items excluded): Recall@20 and NDCG@20.

* ``bpr-uniform`` / ``bpr-popularity``: BPR with one negative per positive from
  :class:`hardneg.InteractionSampler` (uniform, or popularity^0.75);
* ``bpr-dns``: BPR with dynamic negative sampling: the highest-scoring of 16 uniform candidates
  under the current model (``InteractionSampler.hard(pool=16)``);
* ``ccl``: SimpleX's cosine contrastive loss with 64 uniform negatives per positive;
* ``softmax`` / ``softmax-logq``: in-batch sampled softmax, without and with the logQ correction
  from the streaming item-frequency estimator.

    nice -n 19 python examples/train_recsys.py --data /work/scratch/recsys/debian --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import hardneg
from hardneg.losses import (
    ItemFrequencyEstimator,
    SampledSoftmaxLoss,
    bpr_loss,
    cosine_contrastive_loss,
)

METHODS = ("bpr-uniform", "bpr-popularity", "bpr-dns", "ccl", "softmax", "softmax-logq")


def evaluate(user_emb: np.ndarray, item_emb: np.ndarray, sampler: hardneg.InteractionSampler, test: np.ndarray,
             metric: str, k: int = 20) -> tuple[float, float]:
    """Mean Recall@k and NDCG@k over users with held-out items; training items are never ranked."""
    users = np.unique(test[:, 0])
    offsets, items = sampler.positives()
    exclude = [items[offsets[u]:offsets[u + 1]] for u in users]
    _, top = hardneg.topk(user_emb[users], item_emb, k, metric=metric, exclude=exclude)
    held = {}
    for u, i in test.tolist():
        held.setdefault(u, set()).add(i)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg = [], []
    for row, u in enumerate(users.tolist()):
        hits = np.array([i in held[u] for i in top[row].tolist()], dtype=float)
        recall.append(hits.sum() / min(len(held[u]), k))
        ndcg.append((hits * discount).sum() / discount[: min(len(held[u]), k)].sum())
    return float(np.mean(recall)), float(np.mean(ndcg))


def train(args: argparse.Namespace, data: dict, method: str, seed: int) -> dict:
    train_pairs, test = data["train"], data["test"]
    U, I = len(data["users"]), len(data["items"])
    strategy = "popularity" if method == "bpr-popularity" else "uniform"
    sampler = hardneg.InteractionSampler(train_pairs, I, strategy=strategy, alpha=0.75, seed=seed, num_users=U)
    g = torch.Generator().manual_seed(seed)
    user = torch.nn.Parameter(torch.randn(U, args.dim, generator=g) * 0.1)
    item = torch.nn.Parameter(torch.randn(I, args.dim, generator=g) * 0.1)
    opt = torch.optim.Adam([user, item], lr=args.lr)
    softmax = None
    if method.startswith("softmax"):
        estimator = ItemFrequencyEstimator(num_items=I, alpha=0.01) if method == "softmax-logq" else None
        softmax = SampledSoftmaxLoss(estimator, temperature=args.temperature)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(train_pairs))
        for s in range(0, len(order), args.batch):
            batch = train_pairs[order[s:s + args.batch]]
            u, p = torch.from_numpy(batch[:, 0]), torch.from_numpy(batch[:, 1])
            if softmax is not None:
                loss = softmax(user[u], item[p], item_ids=p)
            elif method == "ccl":
                neg = torch.from_numpy(sampler.sample(batch[:, 0], args.ccl_negatives, epoch=epoch, offset=s))
                loss = cosine_contrastive_loss(user[u], item[p], item[neg], margin=args.ccl_margin,
                                               negative_weight=args.ccl_weight)
            else:
                if method == "bpr-dns":
                    neg = sampler.hard(batch[:, 0], user.detach()[u].numpy(), item.detach().numpy(), 1,
                                       pool=args.dns_pool, epoch=epoch, offset=s)
                else:
                    neg = sampler.sample(batch[:, 0], 1, epoch=epoch, offset=s)
                loss = bpr_loss(user[u], item[p], item[torch.from_numpy(neg)])
            reg = args.reg * (user[u].pow(2).sum() + item[p].pow(2).sum()) / len(batch)
            opt.zero_grad()
            (loss + reg).backward()
            opt.step()
    metric = "ip" if method.startswith("bpr") else "cosine"
    recall, ndcg = evaluate(user.detach().numpy(), item.detach().numpy(), sampler, test, metric)
    return dict(recall=recall, ndcg=ndcg, seconds=time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/scratch/recsys/debian", help="directory with interactions.npz")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--reg", type=float, default=1e-4)
    ap.add_argument("--dns-pool", type=int, default=16)
    ap.add_argument("--ccl-negatives", type=int, default=64)
    ap.add_argument("--ccl-margin", type=float, default=0.5)
    ap.add_argument("--ccl-weight", type=float, default=10.0)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads (1 by default: its spinning workers waste a shared, loaded machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    data = dict(np.load(Path(args.data) / "interactions.npz"))
    print(f"{len(data['users'])} users (source packages) x {len(data['items'])} items (packages): "
          f"{len(data['train'])} train, {len(data['test'])} held-out interactions", flush=True)
    results = {}
    for method in args.methods:
        for seed in args.seeds:
            r = results[method, seed] = train(args, data, method, seed)
            print(f"{method:>15} seed {seed}: Recall@20 {r['recall']:.4f}  NDCG@20 {r['ndcg']:.4f}  ({r['seconds']:.0f} s)", flush=True)
    print("\nmethod            Recall@20 (mean +- std over seeds)   NDCG@20")
    for method in args.methods:
        rec = np.array([results[method, s]["recall"] for s in args.seeds])
        nd = np.array([results[method, s]["ndcg"] for s in args.seeds])
        print(f"{method:>15}   {rec.mean():.4f} +- {rec.std():.4f}                  {nd.mean():.4f} +- {nd.std():.4f}")


if __name__ == "__main__":
    main()
